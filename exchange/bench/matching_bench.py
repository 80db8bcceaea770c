"""`jinlian bench matching`: the engine against the bare baseline on the same seeded flow.

Throughput rounds alternate engine and baseline (A B A B ...) so that both see the same machine
weather, and the median of the per-round ratios is the figure to quote: these machines are
shared and noisy, so ratios beat absolute times. Per-message latency is a separate pass (timing
every message costs two clock reads, which would depress the throughput figure). Memory per
resting order is measured with tracemalloc over an engine holding `--memory-orders` orders.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

from exchange import compiled
from exchange.bench.baseline import BaselineBook, BaselineMessage
from exchange.bench.flow import ACCOUNTS, FLOWS, LOT, REFERENCE_PRICE, SYMBOL, Flow, named_flow
from exchange.bench.report import emit
from matching.commands import AddInstrument, Command, PlaceOrder, SetPhase
from matching.engine import MatchingEngine
from matching.types import OrderKind, Phase, Side

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def percentile(sorted_values: Sequence[int], percent: float) -> int:
    """Nearest-rank percentile of an ascending sequence."""
    assert sorted_values, "no values"
    rank = max(1, -(-len(sorted_values) * percent // 100))
    return sorted_values[min(len(sorted_values), int(rank)) - 1]


def engine_after_setup(flow: Flow) -> MatchingEngine:
    engine = MatchingEngine()
    for command in flow.setup:
        engine.apply(command)
    return engine


def baseline_after_setup(flow: Flow) -> BaselineBook:
    baseline = BaselineBook()
    baseline.run(flow.baseline_setup)
    return baseline


def time_engine(flow: Flow) -> tuple[float, MatchingEngine]:
    engine = engine_after_setup(flow)
    apply = engine.apply
    commands = flow.commands
    gc.collect()
    start = time.perf_counter()
    for command in commands:
        apply(command)
    return time.perf_counter() - start, engine


def time_baseline(flow: Flow) -> tuple[float, BaselineBook]:
    baseline = baseline_after_setup(flow)
    gc.collect()
    start = time.perf_counter()
    baseline.run(flow.baseline)
    return time.perf_counter() - start, baseline


def latencies(run_one: Callable[[Any], object], messages: Sequence[Any]) -> list[int]:
    """Nanoseconds spent on each message, ascending."""
    clock = time.perf_counter_ns
    spent = []
    for message in messages:
        start = clock()
        run_one(message)
        spent.append(clock() - start)
    spent.sort()
    return spent


def books_agree(engine: MatchingEngine, baseline: BaselineBook) -> bool:
    rows = [
        (order.order_id, int(order.side is Side.BUY), order.price, order.quantity)
        for order in engine.orders(SYMBOL)
    ]
    return rows == baseline.resting()


def memory_per_order(orders: int) -> float:
    """Bytes the engine retains per resting order, with `orders` orders resting."""
    engine = MatchingEngine()
    engine.apply(
        AddInstrument(
            symbol=SYMBOL, tick_size=1, lot=LOT, reference_price=REFERENCE_PRICE, price_limit_pct=10
        )
    )
    engine.apply(SetPhase(symbol=SYMBOL, phase=Phase.CONTINUOUS))
    accounts = len(ACCOUNTS)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for number in range(orders):
        side = Side.BUY if number % 2 else Side.SELL
        offset = 1 + (number // 2) % 1000  # 1,000 levels a side
        price = REFERENCE_PRICE - offset if side is Side.BUY else REFERENCE_PRICE + offset
        command: Command = PlaceOrder(
            order_id=number + 1,
            symbol=SYMBOL,
            account=ACCOUNTS[number % accounts],
            side=side,
            kind=OrderKind.LIMIT,
            price=price,
            quantity=LOT * (1 + number % 50),
        )
        engine.apply(command)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(engine) == orders, f"{len(engine)} of {orders} orders rest"
    return (after - before) / orders


def measure(arguments: argparse.Namespace) -> dict[str, Any]:
    flow_name = arguments.flow
    depth = FLOWS[flow_name][1] if arguments.depth is None else arguments.depth
    flow = named_flow(flow_name, arguments.seed, arguments.messages, depth)
    count = len(flow.commands)
    engine_rates, baseline_rates, ratios = [], [], []
    agree = True
    for _ in range(arguments.rounds):
        engine_seconds, engine = time_engine(flow)
        baseline_seconds, baseline = time_baseline(flow)
        agree = agree and books_agree(engine, baseline)
        engine_rates.append(count / engine_seconds)
        baseline_rates.append(count / baseline_seconds)
        ratios.append(baseline_seconds / engine_seconds)
    engine_ns = latencies(engine_after_setup(flow).apply, flow.commands)
    baseline = baseline_after_setup(flow)
    baseline_ns = latencies(lambda message: baseline.run([message]), flow.baseline)
    report: dict[str, Any] = {
        "build": compiled.describe(),  # the engine's; the bare baseline always runs as Python
        "flow": flow_name,
        "seed": arguments.seed,
        "messages": count,
        "depth_orders": depth,
        "new_level_share": round(flow.new_level_share, 3),
        "rounds": arguments.rounds,
        "messages_per_s": round(statistics.median(engine_rates)),
        "baseline_messages_per_s": round(statistics.median(baseline_rates)),
        "ratio": round(statistics.median(ratios), 3),
        "books_agree": agree,
        "latency_ns": {f"p{p:g}": percentile(engine_ns, p) for p in PERCENTILES},
        "baseline_latency_ns": {f"p{p:g}": percentile(baseline_ns, p) for p in PERCENTILES},
    }
    report["latency_ns"]["max"] = engine_ns[-1]
    report["baseline_latency_ns"]["max"] = baseline_ns[-1]
    if arguments.memory_orders:
        report["memory_orders"] = arguments.memory_orders
        report["bytes_per_resting_order"] = round(memory_per_order(arguments.memory_orders))
    return report


def render(report: dict[str, Any]) -> str:
    def row(name: str, rate: int, latency: dict[str, int]) -> str:
        cells = "".join(f"{latency[key] / 1000:>9.1f}" for key in ("p50", "p90", "p99", "p99.9"))
        return f"{name:<16}{rate:>14,}{cells}{latency['max'] / 1000:>10.1f}"

    lines = [
        f"matching benchmark: {report['flow']} flow, seed {report['seed']}, "
        f"{report['messages']:,} messages after a {report['depth_orders']:,}-order book, "
        f"median of {report['rounds']} rounds",
        f"resting placements that opened a new price level: {report['new_level_share']:.1%}",
        f"engine {report['build']}; the bare baseline runs as pure Python",
        f"{'':<16}{'messages/s':>14}{'p50 us':>9}{'p90 us':>9}{'p99 us':>9}{'p99.9 us':>9}"
        f"{'max us':>10}",
        row("engine", report["messages_per_s"], report["latency_ns"]),
        row("bare baseline", report["baseline_messages_per_s"], report["baseline_latency_ns"]),
        f"ratio engine/baseline (median of rounds): {report['ratio']:.3f}",
        f"final books agree: {report['books_agree']}",
    ]
    if "bytes_per_resting_order" in report:
        lines.append(
            f"memory: {report['bytes_per_resting_order']} bytes per resting order with "
            f"{report['memory_orders']:,} orders resting"
        )
    return "\n".join(lines)


def main(arguments: argparse.Namespace) -> int:
    return emit(measure(arguments), render, arguments.json)


__all__ = ["BaselineMessage", "main", "measure", "percentile"]
