"""`jinlian bench gateway`: brokers' orders over real WebSockets into a running consortium.

It writes a consortium in a temporary directory (4 voting members, one broker per client
session, accounts funded for any run length), starts the exchange and the members as separate
processes, opens the market through the operator's session, then drives it from client
processes with open-loop load: each session sends its orders at fixed scheduled times
(`offered / sessions` per second each, whatever the replies do), and an order's ack latency is
from its scheduled send time to its reply (the `accepted` report, sent once the order's block
is stored), recorded in an HDR histogram. Measuring from the schedule, not from the actual
send, keeps a stalled exchange from hiding its stall (no coordinated omission).

The offered rate steps up until a step is not sustained (fewer than 99% of the orders acked
without error, or acks arriving at under 95% of the offered rate). The headline is the highest
sustained rate whose ack p99 is also under `ACK_P99_GOAL_MS` (20 ms): the latency condition is
part of the figure. Two baselines in the same run: the ping round trip on the same sessions at
the lowest rate (the cost of the socket and the event loops alone, without sequencing,
matching and storing), and `jinlian bench ledger` on its own consortium (a short sweep:
`--ledger-messages`, `--ledger-steps`), whose highest rate with finality p99 under 100 ms the
headline is divided by (goal: `RATIO_GOAL`, 0.6x that ledger rate).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import tempfile
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

import orjson
from hdrh.histogram import HdrHistogram

from exchange.bench import ledger_bench
from exchange.consortium.init import SAMPLE_INSTRUMENTS, Market, init_consortium
from exchange.consortium.nodes import load_config, start_processes, stop_processes
from exchange.gateway.client import Client, RequestError
from ledger.feed import wait_until_up
from ledger.keys import load_private_key

SYMBOL: Final = str(SAMPLE_INSTRUMENTS[0]["symbol"])
PRICE: Final = int(str(SAMPLE_INSTRUMENTS[0]["reference_price"]))
RATES: Final = (1_000, 2_000, 4_000, 7_000, 10_000, 14_000)
ACK_P99_GOAL_MS: Final = 20.0
RATIO_GOAL: Final = 0.6  # the headline over the same run's `bench ledger` sustained rate
LEDGER_PORTS_OFFSET: Final = 10  # the ledger baseline's consortium: base port + this
HISTOGRAM: Final = (1, 60_000_000, 3)  # microseconds, 1 us .. 60 s, 3 significant digits
MARKET: Final = Market(instruments=SAMPLE_INSTRUMENTS[:1], cash_per_account=10**14,
                       shares_per_account=10**10)  # fmt: skip


async def _drive(
    address: str, directory: str, broker: str, rate: float, duration_s: float, start_at: float,
    kind: str,
) -> dict[str, Any]:  # fmt: skip
    key = load_private_key(Path(directory) / "brokers" / broker / "key.pem")
    histogram = HdrHistogram(*HISTOGRAM)
    errors: Counter[str] = Counter()
    number = int(broker.removeprefix("broker"))
    buyer, seller = str(number * 10_000 + 1), str(number * 10_000 + 2)
    acked = 0
    last = 0.0
    async with Client(address, broker, key, reconnect=False) as client:
        count = int(rate * duration_s)
        tasks = []
        delay = start_at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        origin = time.perf_counter()

        async def send(index: int, scheduled: float) -> None:
            nonlocal acked, last
            try:
                if kind == "ping":
                    await client.request("ping")
                else:
                    buy = index % 2 == 0
                    await client.place(client_order_id=f"{kind}-{index}",
                                       account=buyer if buy else seller, symbol=SYMBOL,
                                       side="buy" if buy else "sell", price=PRICE,
                                       quantity=100)  # fmt: skip
            except RequestError as error:
                errors[error.code] += 1
                return
            except (ConnectionError, TimeoutError) as error:
                errors[type(error).__name__] += 1
                return
            now = time.perf_counter()
            acked, last = acked + 1, max(last, now - origin)
            histogram.record_value(max(1, int((now - scheduled) * 1e6)))

        for index in range(count):
            scheduled = origin + index / rate
            wait = scheduled - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(send(index, scheduled)))
        await asyncio.gather(*tasks)
    return {"sent": count, "acked": acked, "elapsed_s": last, "errors": dict(errors),
            "histogram": histogram.encode().decode()}  # fmt: skip


def _driver(connection: Connection, *arguments: Any) -> None:
    result = asyncio.run(_drive(*arguments))
    connection.send(result)
    connection.close()


def _step(address: str, directory: Path, brokers: list[str], rate: int, duration_s: float,
          kind: str) -> dict[str, Any]:  # fmt: skip
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 1.5  # every process connected and waiting
    children = []
    for broker in brokers:
        ours, theirs = context.Pipe(duplex=False)
        process = context.Process(target=_driver, args=(theirs, address, str(directory), broker,
                                  rate / len(brokers), duration_s, start_at, kind))  # fmt: skip
        process.start()
        children.append((process, ours))
    results = []
    for process, ours in children:
        results.append(ours.recv())
        process.join()
    histogram = HdrHistogram(*HISTOGRAM)
    errors: Counter[str] = Counter()
    for result in results:
        histogram.add(HdrHistogram.decode(result["histogram"].encode()))
        errors.update(result["errors"])
    sent = sum(r["sent"] for r in results)
    acked = sum(r["acked"] for r in results)
    elapsed = max(r["elapsed_s"] for r in results) or duration_s
    achieved = acked / max(elapsed, duration_s)
    return {
        "offered_per_s": rate,
        "achieved_per_s": round(achieved),
        "sent": sent,
        "acked": acked,
        "errors": dict(errors),
        "p50_ms": histogram.get_value_at_percentile(50) / 1000,
        "p99_ms": histogram.get_value_at_percentile(99) / 1000,
        "p999_ms": histogram.get_value_at_percentile(99.9) / 1000,
        "sustained": acked >= 0.99 * sent and achieved >= 0.95 * rate,
    }


def run(arguments: argparse.Namespace) -> dict[str, Any]:
    sessions = arguments.sessions
    with tempfile.TemporaryDirectory(prefix="jinlian-bench-gateway-") as temporary:
        directory = Path(temporary) / "consortium"
        init_consortium(directory, members=4, brokers=sessions, base_port=arguments.base_port,
                        market=MARKET)  # fmt: skip
        config = load_config(directory / "exchange")
        genesis = config.genesis
        children = start_processes(directory)
        try:
            addresses = [config.address] + [m.address for m in genesis.members if m.voting]
            asyncio.run(wait_until_up(addresses))
            asyncio.run(_open(config.address, directory, genesis.chain_id))
            brokers = [broker.name for broker in genesis.brokers]
            baseline = _step(config.address, directory, brokers, min(arguments.rates),
                             arguments.seconds, "ping")  # fmt: skip
            steps = []
            for rate in sorted(arguments.rates):
                step = _step(config.address, directory, brokers, rate, arguments.seconds, "o")
                steps.append(step)
                print(_row(step), flush=True)
                if not step["sustained"]:
                    break
        finally:
            stop_processes(children)
    ledger = _ledger_baseline(arguments)
    return summarize(sessions, arguments.seconds, steps, baseline, ledger)


def summarize(
    sessions: int,
    seconds: float,
    steps: list[dict[str, Any]],
    baseline: dict[str, Any],
    ledger: dict[str, Any],
) -> dict[str, Any]:
    """The report: the headline is the highest achieved rate of a step that was sustained with
    ack p99 under `ACK_P99_GOAL_MS`, and its ratio to the same run's ledger rate."""
    sustained = [step for step in steps if step["sustained"] and step["p99_ms"] < ACK_P99_GOAL_MS]
    best = max(sustained, key=lambda step: step["achieved_per_s"]) if sustained else None
    headline = 0 if best is None else best["achieved_per_s"]
    ledger_rate = ledger["max_sustained_rate"]
    return {
        "sessions": sessions,
        "seconds_per_step": seconds,
        "steps": steps,
        "ping_baseline": baseline,
        "ack_p99_goal_ms": ACK_P99_GOAL_MS,
        "max_sustained_orders_per_s": headline,
        "ack_p99_ms_at_max": None if best is None else best["p99_ms"],
        "ack_p99_over_ping_p99": None
        if best is None
        else round(best["p99_ms"] / max(baseline["p99_ms"], 0.001), 1),
        "ledger_baseline": ledger,
        "ratio_to_ledger": round(headline / ledger_rate, 2) if ledger_rate else None,
        "ratio_goal": RATIO_GOAL,
        "books_agree": True,
    }


def ledger_options(arguments: argparse.Namespace) -> argparse.Namespace:
    """The same-run `bench ledger`'s options: its sweep, on its own ports, no memory run and no
    console viewers (every option `jinlian bench ledger` has, which `measure` reads)."""
    return argparse.Namespace(
        seed=1, messages=arguments.ledger_messages, depth=arguments.ledger_depth, rate=None,
        seconds=arguments.ledger_seconds, steps=arguments.ledger_steps, memory=None, viewers=0,
        base_port=arguments.base_port + LEDGER_PORTS_OFFSET, json=arguments.json,
    )  # fmt: skip


def _ledger_baseline(arguments: argparse.Namespace) -> dict[str, Any]:
    """`jinlian bench ledger` in the same run (a short sweep on its own consortium): its
    highest rate with finality p99 under 100 ms, that run's p99, its sweep (offered rate and
    finality p99 of each step), its saturated and its in-process venue rates."""
    report = ledger_bench.measure(ledger_options(arguments))
    keys = ("max_sustained_rate", "finality_p50_ms", "finality_p99_ms",
            "peak_finalized_commands_per_s", "inprocess_commands_per_s")  # fmt: skip
    sweep = [(run["offered_commands_per_s"], run["finality_p99_ms"]) for run in report["runs"]]
    return {key: report.get(key) for key in keys} | {"steps": arguments.ledger_steps,
                                                     "sweep": sweep}  # fmt: skip


async def _open(address: str, directory: Path, chain_id: str) -> None:
    key = load_private_key(directory / "exchange" / "key.pem")
    async with Client(address, "exchange", key, member=True, chain_id=chain_id) as operator:
        await operator.admin({"type": "begin_day", "day": 20261123})
        await operator.admin({"type": "set_phase", "symbol": SYMBOL, "phase": "continuous"})


def _row(step: dict[str, Any]) -> str:
    errors = ", ".join(f"{k} {v}" for k, v in step["errors"].items()) or "none"
    return (f"  offered {step['offered_per_s']:>7,}/s  achieved {step['achieved_per_s']:>7,}/s  "
            f"ack p50 {step['p50_ms']:7.2f} ms  p99 {step['p99_ms']:8.2f} ms  "
            f"p99.9 {step['p999_ms']:8.2f} ms  errors: {errors}"
            f"{'' if step['sustained'] else '  (not sustained)'}")  # fmt: skip


def render(report: dict[str, Any]) -> str:
    baseline, ledger = report["ping_baseline"], report["ledger_baseline"]
    goal_ms, ratio = report["ack_p99_goal_ms"], report["ratio_to_ledger"]
    ledger_p99 = ledger["finality_p99_ms"]
    shown = "n/a (no ledger rate sustained)" if ratio is None else f"{ratio}x"
    lines = [
        f"jinlian bench gateway: exchange + 4 members as processes, {report['sessions']} broker "
        f"sessions in their own processes, open-loop, {report['seconds_per_step']} s per step",
        f"  baseline (same run): ping round trip at {baseline['offered_per_s']:,}/s p50 "
        f"{baseline['p50_ms']:.2f} ms p99 {baseline['p99_ms']:.2f} ms",
        *(_row(step) for step in report["steps"]),
        f"  max sustained with ack p99 < {goal_ms:.0f} ms: "
        f"{report['max_sustained_orders_per_s']:,} orders/s"
        + ("" if report["ack_p99_ms_at_max"] is None else
           f", ack p99 {report['ack_p99_ms_at_max']} ms "
           f"({report['ack_p99_over_ping_p99']}x the ping p99)"),
        f"  bench ledger (same run, {ledger['steps']}-step sweep): highest rate with finality p99 "
        f"< 100 ms {ledger['max_sustained_rate']:,} commands/s"
        + ("" if ledger_p99 is None else f" (finality p99 {ledger_p99:.1f} ms)")
        + f", saturated {ledger['peak_finalized_commands_per_s']:,}/s, in-process venue "
        f"{ledger['inprocess_commands_per_s']:,}/s",
        "    its sweep, offered/s and finality p99: "
        + (", ".join(f"{rate:,}/s {p99:.0f} ms" for rate, p99 in ledger.get("sweep", ()))
           or "none"),
        f"  gateway / ledger: {shown}; "
        f"goal: at least {report['ratio_goal']}x with ack p99 < {goal_ms:.0f} ms",
    ]  # fmt: skip
    return "\n".join(lines)


def main(arguments: argparse.Namespace) -> int:
    report = run(arguments)
    if arguments.json:
        print(orjson.dumps({k: v for k, v in report.items() if k != "books_agree"}).decode())
    else:
        print(render(report))
    return 0
