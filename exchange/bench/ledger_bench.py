"""`jinlian bench ledger`: the seeded flow through a real consortium on localhost.

It writes a consortium in a temporary directory whose genesis lists the flow's instrument and
funds the flow's 200 accounts (10 brokers of 20), starts the exchange and 4 voting members as
separate processes, builds the book through the exchange's sequencer feed, and then measures:

- **Saturation** (closed loop): `--messages` commands fed with `WINDOW` batches of `BATCH` in
  flight, as fast as the exchange takes them. Commands finalized per second is the commands
  over the time from the first send until the exchange holds a certificate for the block with
  the last of them: the consortium's peak. Its latency is mostly queueing (the feed keeps the
  pipeline full) and is reported as such. Over this run the CPU time of every process is read
  (psutil): CPU microseconds per command per process, and the ceiling they imply on this
  machine's cores, `cores * 10**6 / sum of us per command`.
- **Open loop** (`--rate N`, and the sweep): a batch every `SEND_INTERVAL_S` at a fixed rate
  for `--seconds`, sent on schedule whatever the answers. A command's finality latency runs
  from its batch's *scheduled* send time to the exchange's `final` notice for the last block
  holding it, so a late send, a queue or a refused-and-retried batch all count in full: no
  coordinated omission. A rate is sustained when finality p99 stays under `P99_GOAL_MS` and
  the commands are finalized at least at `SUSTAINED_FRACTION` of the offered rate.
- **The sweep** (the default): `--steps` open-loop runs bisecting between 0 and the saturated
  rate for the highest sustained rate. A rate counts as sustained only if its run lasted at
  least `SUSTAINED_MIN_S` (30 s; shorter `--seconds` runs are reported but never sustained) and
  every indexing node's watermark (`/status` `indexed`, the nodes `jinlian init` makes index)
  reached the height that node held at the end of the run within `INDEX_LAG_MAX_S` (1 s).
- **CPU per node**: over the saturation run, the CPU microseconds per finalized command of
  every process and of each of its threads (main thread, and the worker threads such as the
  store's and the ack journal's), and each node's own ceiling `10**6 / us per command`: what
  that node would sustain on a core of its own.
- **Memory** (`--memory N`, its own run): N commands fed closed loop, then the store's bytes
  per command (the SQLite files of an indexing and of a non-indexing member) and the RSS of
  the exchange and of the members.

`finalized_commands_per_s` and `finality_p50_ms` / `finality_p99_ms` are those of the highest
sustained rate (of the `--rate` run with `--rate`): the goal of the issue is both at once.
The saturation figures are `peak_*`. Beside them, in the same run, the first `--messages`
command dicts of the flow (the saturation run's) go through one in-process `VenueMachine`:
what one node could do alone, with no ledger.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import os
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import psutil

from exchange.bench.flow import ACCOUNTS, REFERENCE_PRICE, SYMBOL, Flow, make_flow
from exchange.bench.report import emit
from exchange.console.load import ViewerLoad, market_viewers
from exchange.consortium.init import Market, init_consortium, venue_from_genesis
from exchange.consortium.nodes import load_config, start_processes, stop_processes
from exchange.venue.machine import VenueMachine
from exchange.venue.types import BrokerCommand
from exchange.venue.wire import venue_command_to_dict
from ledger.auth import request_signer
from ledger.feed import Feed, FeedError, status, wait_until_up
from ledger.keys import load_private_key
from ledger.machine import encode_commands
from matching.commands import AmendOrder, CancelOrder, Command, PlaceOrder

ACCOUNTS_PER_BROKER: Final = 20
BATCH: Final = 500
WINDOW: Final = 8
SEND_INTERVAL_S: Final = 0.005  # open loop: one batch per interval
RETRY_S: Final = (0.01, 0.2)  # open loop: first and longest pause before re-sending a batch
# refused busy or degraded (doubling: hundreds of batches retrying every 10 ms would only add
# to the overload they meet)
P99_GOAL_MS: Final = 100.0
SUSTAINED_FRACTION: Final = 0.95
SWEEP_COMMANDS_MAX: Final = 1_500_000  # commands the sweep may use, all steps together
SUSTAINED_MIN_S: Final = 30.0  # a shorter run is reported, never counted as sustained
INDEX_LAG_MAX_S: Final = 1.0  # every indexer's watermark within this of its tip after a run
INDEX_WAIT_MAX_S: Final = 60.0  # how long a run waits for the indexers before giving up
RATE_STEP: Final = 100  # sweep rates are multiples of this
INSTRUMENT: Final[dict[str, object]] = {
    "symbol": SYMBOL, "tick_size": 1, "lot": 100, "reference_price": REFERENCE_PRICE,
    "price_limit_pct": 10, "t_plus": 0, "settlement": "gross",
    "commission_bps": 3, "stamp_duty_bps": 5,
}  # fmt: skip
MARKET: Final = Market(
    instruments=(INSTRUMENT,),
    accounts_per_broker=ACCOUNTS_PER_BROKER,
    cash_per_account=10**13,
    shares_per_account=10**9,
)
Commands = list[dict[str, Any]]
Children = list[tuple[str, subprocess.Popen[bytes]]]
Signer = Callable[[str], str]  # a member's signed Authorization for a GET of this path
Indexers = Callable[[], Awaitable[float | None]]  # seconds the indexers took to reach the tip


def genesis_account(flow_account: str) -> tuple[str, str]:
    """(broker, account) in the bench genesis for one of the flow's accounts."""
    index = ACCOUNTS.index(flow_account)
    broker = index // ACCOUNTS_PER_BROKER + 1
    return f"broker{broker}", str(broker * 10_000 + index % ACCOUNTS_PER_BROKER + 1)


def session_commands(flow: Flow) -> tuple[Commands, Commands]:
    """The bench flow as the sequencer receives it: the day's opening and the flow's resting
    orders (setup), then its timed commands, each from its account's broker."""
    accounts: dict[int, str] = {}
    opening: Commands = [
        {"type": "begin_day", "day": 20261123},
        {"type": "set_phase", "symbol": SYMBOL, "phase": "continuous"},
    ]
    setup = opening + as_dicts(flow.setup[2:], accounts)
    return setup, as_dicts(flow.commands, accounts)


def as_dicts(commands: list[Command], accounts: dict[int, str]) -> Commands:
    """The flow's order commands as their brokers send them to the sequencer."""
    wrapped: Commands = []
    for command in commands:
        sent: PlaceOrder | CancelOrder | AmendOrder
        if isinstance(command, PlaceOrder):
            broker, account = genesis_account(command.account)
            accounts[command.order_id] = command.account
            sent = command._replace(account=account)
        else:
            assert isinstance(command, CancelOrder | AmendOrder)
            broker, _ = genesis_account(accounts[command.order_id])
            sent = command
        wrapped.append(venue_command_to_dict(BrokerCommand(broker=broker, command=sent)))
    return wrapped


def batches(commands: Commands, size: int = BATCH) -> list[Commands]:
    return [commands[i : i + size] for i in range(0, len(commands), size)]


class CpuClock:
    """CPU seconds (user + system) of each child process, and of each of its threads, since
    `start()`."""

    def __init__(self, children: Children) -> None:
        self.processes = [(name, psutil.Process(child.pid)) for name, child in children]
        self.started: list[float] = []
        self.started_threads: list[dict[int, float]] = []

    @staticmethod
    def _seconds(process: psutil.Process) -> float:
        times = process.cpu_times()
        return float(times.user + times.system)

    @staticmethod
    def _threads(process: psutil.Process) -> dict[int, float]:
        return {thread.id: thread.user_time + thread.system_time for thread in process.threads()}

    def start(self) -> None:
        self.started = [self._seconds(process) for _, process in self.processes]
        self.started_threads = [self._threads(process) for _, process in self.processes]

    def elapsed(self) -> dict[str, float]:
        return {
            name: self._seconds(process) - before
            for (name, process), before in zip(self.processes, self.started, strict=True)
        }

    def elapsed_threads(self) -> dict[str, dict[str, float]]:
        """Per process: CPU seconds of its main thread and of each other thread that ran
        (named by thread id; a thread started during the run counts from zero)."""
        result: dict[str, dict[str, float]] = {}
        for (name, process), before in zip(self.processes, self.started_threads, strict=True):
            threads: dict[str, float] = {}
            for tid, seconds in sorted(self._threads(process).items()):
                spent = seconds - before.get(tid, 0.0)
                if spent > 0:
                    threads["main" if tid == process.pid else f"thread {tid}"] = spent
            result[name] = threads
        return result


async def indexer_lag_s(addresses: Sequence[str], signer: Signer) -> float | None:
    """How long after now the slowest indexing node's watermark (`indexed`) took to reach the
    height it held now; None if no node indexes. `INDEX_WAIT_MAX_S` at most (then that)."""
    targets = {}
    for address in addresses:
        value = await status(address, 0, signer)
        if value.get("indexed") is not None:
            targets[address] = value["height"]
    if not targets:
        return None
    start = time.perf_counter()
    while targets and (waited := time.perf_counter() - start) < INDEX_WAIT_MAX_S:
        for address, height in list(targets.items()):
            if (await status(address, 0, signer))["indexed"] >= height:
                del targets[address]
        if targets:
            await asyncio.sleep(0.02)
    return round(time.perf_counter() - start if targets else waited, 3)


@dataclasses.dataclass
class Remaining:
    """The flow's commands not sent yet, in order."""

    commands: Commands
    taken: int = 0

    def take(self, count: int) -> Commands:
        part = self.commands[self.taken : self.taken + count]
        self.taken += len(part)
        return part

    @property
    def left(self) -> int:
        return len(self.commands) - self.taken


def weighted_percentile(latencies_ms: Sequence[float], counts: Sequence[int], q: float) -> float:
    """The latency below which `q` percent of the commands were (each batch weighs its size)."""
    return float(np.percentile(np.repeat(latencies_ms, counts), q, method="inverted_cdf"))


async def open_loop(
    feed: Feed, commands: Commands, rate: int, cpu: CpuClock, indexers: Indexers
) -> dict[str, Any]:
    """Offer `commands` at `rate` per second, one batch per `SEND_INTERVAL_S`, on schedule;
    each command's latency is from its batch's scheduled send to its `final` notice. Then
    how long the indexers took to reach their tips (`indexers()`)."""
    size = max(1, round(rate * SEND_INTERVAL_S))
    loop = asyncio.get_running_loop()
    refused = 0

    async def finality(batch: Commands, final: asyncio.Future[None], scheduled: float) -> float:
        nonlocal refused
        pause_s = RETRY_S[0]
        while True:
            try:
                await final
                return loop.time() - scheduled
            except FeedError as error:
                if error.code not in ("busy", "degraded"):
                    raise
                refused += 1
                await asyncio.sleep(pause_s)
                pause_s = min(2 * pause_s, RETRY_S[1])
                _, final = await feed.send_final(batch)

    parts = batches(commands, size)
    waits: list[asyncio.Task[float]] = []
    cpu.start()
    start = loop.time() + SEND_INTERVAL_S
    for index, batch in enumerate(parts):
        scheduled = start + index * size / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        _, final = await feed.send_final(batch)
        waits.append(asyncio.create_task(finality(batch, final, scheduled)))
    latencies_s = await asyncio.gather(*waits)
    seconds = max(s + start + i * size / rate for i, s in enumerate(latencies_s)) - start
    cpu_s = sum(cpu.elapsed().values())
    latencies_ms = [1000 * s for s in latencies_s]
    counts = [len(batch) for batch in parts]
    p99 = weighted_percentile(latencies_ms, counts, 99)
    finalized = len(commands) / seconds
    index_lag_s = await indexers()
    return {
        "offered_commands_per_s": rate,
        "commands": len(commands),
        "finalized_commands_per_s": round(finalized),
        "finality_p50_ms": round(weighted_percentile(latencies_ms, counts, 50), 1),
        "finality_p99_ms": round(p99, 1),
        "finality_max_ms": round(max(latencies_ms), 1),
        "refused": refused,
        "cpu_percent": round(100 * cpu_s / seconds),
        "seconds": round(seconds, 1),
        "index_lag_s": index_lag_s,
        "sustained": p99 < P99_GOAL_MS
        and finalized >= SUSTAINED_FRACTION * rate
        and seconds >= SUSTAINED_MIN_S
        and (index_lag_s is None or index_lag_s <= INDEX_LAG_MAX_S),
    }


async def saturate(
    feed: Feed, exchange: str, commands: Commands, cpu: CpuClock, signer: Signer
) -> dict[str, Any]:
    """Feed `commands` with `WINDOW` batches in flight; finalized rate, the exchange's own
    finality percentiles, and CPU microseconds per command per process."""
    before = await status(exchange)
    cpu.start()
    start = time.perf_counter()
    tip = max(await feed.pipeline(batches(commands), WINDOW))
    while (after := await status(exchange, before["height"], signer))["certified"] < tip:
        await asyncio.sleep(0.002)
    seconds = time.perf_counter() - start
    cpu_us = {name: round(1e6 * s / len(commands), 1) for name, s in cpu.elapsed().items()}
    thread_us = {
        name: {thread: round(1e6 * s / len(commands), 1) for thread, s in threads.items()}
        for name, threads in cpu.elapsed_threads().items()
    }
    return {
        "finalized_commands_per_s": round(len(commands) / seconds),
        "finality_p50_ms": after["finality_p50_ms"],
        "finality_p99_ms": after["finality_p99_ms"],
        "blocks": after["height"] - before["height"],
        "cpu_us_per_command": cpu_us,
        "thread_us_per_command": thread_us,
    }


async def sweep(
    feed: Feed,
    remaining: Remaining,
    high: int,
    steps: int,
    seconds: float,
    cpu: CpuClock,
    indexers: Indexers,
) -> list[dict[str, Any]]:
    """Bisect between 0 and `high` commands/s for the highest sustained rate."""
    low, runs = 0, list[dict[str, Any]]()
    for step in range(steps):
        rate = max(RATE_STEP, (low + high) // 2 // RATE_STEP * RATE_STEP)
        if any(rate == run["offered_commands_per_s"] for run in runs):
            break  # the bisection is down to the rate step
        share = remaining.left // (steps - step)
        commands = remaining.take(min(share, round(rate * seconds)))
        if not commands:
            break
        run = await open_loop(feed, commands, rate, cpu, indexers)
        runs.append(run)
        if run["sustained"]:
            low = rate
        else:
            high = rate
    return runs


async def _drive(
    addresses: list[str],
    children: Children,
    setup: Commands,
    timed: Commands,
    extra: Remaining,
    arguments: argparse.Namespace,
    signer: Signer,
    directory: Path,
) -> dict[str, Any]:
    exchange = addresses[0]
    await wait_until_up(addresses)
    while len((await status(exchange, 0, signer))["members_connected"]) < len(addresses) - 1:
        await asyncio.sleep(0.05)
    cpu = CpuClock(children)
    result: dict[str, Any] = {}

    async def indexers() -> float | None:
        return await indexer_lag_s(addresses, signer)

    async with Feed(exchange) as feed, market_viewers(exchange, SYMBOL, arguments.viewers) as load:
        tip = max(await feed.pipeline(batches(setup), WINDOW))
        while (await status(exchange))["certified"] < tip:
            await asyncio.sleep(0.05)
        result["viewers"] = load  # open web console market pages, during the whole run
        if arguments.rate is not None:
            result["runs"] = [await open_loop(feed, timed, arguments.rate, cpu, indexers)]
        elif arguments.memory is not None:
            result["saturated"] = await saturate(feed, exchange, timed, cpu, signer)
            result["runs"] = []
            result["memory"] = memory(children, directory, len(setup) + len(timed))
        else:
            result["saturated"] = await saturate(feed, exchange, timed, cpu, signer)
            high = result["saturated"]["finalized_commands_per_s"]
            result["runs"] = await sweep(
                feed, extra, high, arguments.steps, arguments.seconds, cpu, indexers
            )
    after = await status(exchange)
    members = [await status(address, 0, signer) for address in addresses[1:]]
    result["tip"] = after["height"]
    viewers: ViewerLoad = result.pop("viewers")
    result["viewers"] = {
        "count": arguments.viewers,
        "messages": sum(viewers.messages),
        "bytes": sum(viewers.bytes_read),
        "closed_early": viewers.closed_early,
    }
    result["members_at_tip"] = sum(m["height"] >= after["height"] for m in members)
    result["evidence"] = sum(m["evidence"] for m in members)
    return result


def memory(children: Children, directory: Path, commands: int) -> dict[str, Any]:
    """RSS of every process and the store's bytes per command of each node (its SQLite files,
    write-ahead log included), after `commands` commands."""
    rss = {name: psutil.Process(child.pid).memory_info().rss for name, child in children}
    store_bytes = {}
    for name, _ in children:
        store = load_config(directory / name).store_path
        files = [store, *store.parent.glob(store.name + "-*")]
        store_bytes[name] = sum(path.stat().st_size for path in files if path.exists())
    return {
        "commands": commands,
        "rss_mib": {name: round(value / 2**20, 1) for name, value in rss.items()},
        "store_bytes_per_command": {
            name: round(value / commands, 1) for name, value in store_bytes.items()
        },
    }


def time_inprocess(genesis: Any, setup: Commands, timed: Commands) -> float:
    machine = VenueMachine(venue_from_genesis(genesis))
    for command in encode_commands(setup):
        machine.apply(command, 0)
    apply = machine.apply
    encoded = encode_commands(timed)  # as a block carries them: parsed by `apply`
    gc.collect()
    start = time.perf_counter()
    for command in encoded:
        apply(command, 0)
    machine.state_hash()
    return time.perf_counter() - start


def measure(arguments: argparse.Namespace) -> dict[str, Any]:
    if arguments.rate is not None:
        timed_count, extra_count = round(arguments.rate * arguments.seconds), 0
    elif arguments.memory is not None:
        timed_count, extra_count = arguments.memory, 0
    else:
        timed_count, extra_count = arguments.messages, SWEEP_COMMANDS_MAX
    baseline_count = max(timed_count, arguments.messages)  # in-process: never a tiny sample
    flow = make_flow(
        arguments.seed, max(timed_count + extra_count, baseline_count), arguments.depth
    )
    setup, flowing = session_commands(flow)
    timed, extra = flowing[:timed_count], Remaining(flowing[timed_count:])
    with tempfile.TemporaryDirectory(prefix="jinlian-bench-") as scratch:
        directory = Path(scratch) / "consortium"
        genesis = init_consortium(
            directory, members=4, brokers=len(ACCOUNTS) // ACCOUNTS_PER_BROKER,
            base_port=arguments.base_port, market=MARKET,
        )  # fmt: skip
        baseline = flowing[:baseline_count]
        inprocess_seconds = time_inprocess(genesis, setup, baseline)
        config = load_config(directory / "exchange")
        addresses = [config.address] + [m.address for m in genesis.members if m.voting]
        children = start_processes(directory, feed=True)
        try:
            signer = request_signer(
                load_private_key(directory / "exchange" / "key.pem"),
                config.genesis.chain_id, "exchange", time.time_ns,
            )  # fmt: skip
            run = asyncio.run(
                _drive(addresses, children, setup, timed, extra, arguments, signer, directory)
            )
        finally:
            stop_processes(children)
    return report(arguments, run, len(baseline) / inprocess_seconds)


def report(arguments: argparse.Namespace, run: dict[str, Any], inprocess: float) -> dict[str, Any]:
    runs: list[dict[str, Any]] = run["runs"]
    sustained = [r for r in runs if r["sustained"]]
    best = max(sustained, key=lambda r: r["offered_commands_per_s"], default=None)
    if arguments.rate is not None:
        best = runs[0]
    value: dict[str, Any] = {
        "seed": arguments.seed,
        "members": 4,
        "cores": os.cpu_count(),
        "finalized_commands_per_s": 0 if best is None else best["finalized_commands_per_s"],
        "finality_p50_ms": None if best is None else best["finality_p50_ms"],
        "finality_p99_ms": None if best is None else best["finality_p99_ms"],
        "max_sustained_rate": max((r["offered_commands_per_s"] for r in sustained), default=0),
        "p99_goal_ms": P99_GOAL_MS,
        "inprocess_commands_per_s": round(inprocess),
        "runs": runs,
    }
    saturated = run.get("saturated")
    if saturated is not None:
        cpu_us = saturated["cpu_us_per_command"]
        value |= {
            "commands": arguments.messages,
            "peak_finalized_commands_per_s": saturated["finalized_commands_per_s"],
            "peak_finality_p50_ms": saturated["finality_p50_ms"],
            "peak_finality_p99_ms": saturated["finality_p99_ms"],
            "blocks": saturated["blocks"],
            "cpu_us_per_command": cpu_us,
            "cpu_ceiling_commands_per_s": round((os.cpu_count() or 1) * 1e6 / sum(cpu_us.values())),
            "thread_us_per_command": saturated["thread_us_per_command"],
            "node_ceiling_commands_per_s": {
                name: round(1e6 / us) if us else None for name, us in cpu_us.items()
            },
        }
    if "memory" in run:
        value["memory"] = run["memory"]
    value["viewers"] = run["viewers"]
    value |= {
        "members_at_tip": run["members_at_tip"],
        "evidence": run["evidence"],
        "books_agree": run["members_at_tip"] == 4 and run["evidence"] == 0,
    }
    return value


def render(report: dict[str, Any]) -> str:
    viewers = report["viewers"]
    lines = [
        f"ledger benchmark: seed {report['seed']}, exchange + {report['members']} members as "
        f"processes on localhost, {report['cores']} cores; {viewers['count']} web console "
        f"market viewers open ({viewers['messages']:,} messages, {viewers['bytes']:,} bytes, "
        f"{viewers['closed_early']} closed early)",
        "  open loop: a batch every 5 ms; finality from scheduled send to certificate; sustained:"
        f" p99 < {P99_GOAL_MS:.0f} ms, >= {SUSTAINED_MIN_S:.0f} s, indexers at their tips within "
        f"{INDEX_LAG_MAX_S:.0f} s",
        "     offered/s  finalized/s   p50 ms   p99 ms   max ms  refused  cpu  seconds  index lag",
    ]
    for run in report["runs"]:
        lag = run["index_lag_s"]
        lines.append(
            f"    {run['offered_commands_per_s']:>10,} {run['finalized_commands_per_s']:>12,} "
            f"{run['finality_p50_ms']:>8.1f} {run['finality_p99_ms']:>8.1f} "
            f"{run['finality_max_ms']:>8.1f} {run['refused']:>8} {run['cpu_percent']:>4}% "
            f"{run['seconds']:>8.1f} "
            + ("      none" if lag is None else f"{lag:>8.2f} s")
            + "  "
            + ("sustained" if run["sustained"] else "-")
        )
    p50, p99 = report["finality_p50_ms"], report["finality_p99_ms"]
    lines.append(
        f"  highest rate with finality p99 < {report['p99_goal_ms']:.0f} ms: "
        f"{report['max_sustained_rate']:,} commands/s "
        + ("" if p99 is None else f"(finalized {report['finalized_commands_per_s']:,}/s, "
           f"p50 {p50:.1f} ms, p99 {p99:.1f} ms)")
    )  # fmt: skip
    if "peak_finalized_commands_per_s" in report:
        cpu = report["cpu_us_per_command"]
        lines += [
            f"  saturated, {report['commands']:,} commands with {WINDOW} batches of {BATCH} in "
            f"flight: {report['peak_finalized_commands_per_s']:,} commands/s finalized, "
            f"p50 {report['peak_finality_p50_ms']:.1f} ms, p99 {report['peak_finality_p99_ms']:.1f}"
            " ms (queueing)",
            "  CPU per command: "
            + ", ".join(f"{name} {us:.0f} us" for name, us in cpu.items())
            + f"; sum {sum(cpu.values()):.0f} us -> at most "
            f"{report['cpu_ceiling_commands_per_s']:,} commands/s on {report['cores']} cores",
            "  each node on a core of its own (10**6 / its us per command): "
            + ", ".join(
                f"{name} {ceiling:,}/s"
                for name, ceiling in report["node_ceiling_commands_per_s"].items()
                if ceiling is not None
            ),
            "  CPU per command by thread: "
            + "; ".join(
                f"{name} " + ", ".join(f"{thread} {us:.1f}" for thread, us in threads.items())
                for name, threads in report["thread_us_per_command"].items()
            )
            + " (us)",
        ]
    if "memory" in report:
        memory = report["memory"]
        lines += [
            f"  after {memory['commands']:,} commands: RSS "
            + ", ".join(f"{name} {mib:,.0f} MiB" for name, mib in memory["rss_mib"].items()),
            "  store bytes per command: "
            + ", ".join(
                f"{name} {value:,.0f}" for name, value in memory["store_bytes_per_command"].items()
            ),
        ]
    lines += [
        f"  one venue machine in-process, same run: {report['inprocess_commands_per_s']:,} "
        "commands/s",
        f"  members at the tip: {report['members_at_tip']} of {report['members']}, "
        f"evidence recorded: {report['evidence']}",
    ]
    return "\n".join(lines)


def main(arguments: argparse.Namespace) -> int:
    return emit(measure(arguments), render, arguments.json)
