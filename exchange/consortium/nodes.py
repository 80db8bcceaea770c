"""Member nodes and the exchange as processes: `jinlian node`, `jinlian exchange`, `jinlian up`.

Each node directory (`jinlian init`) holds `node.json` (id, name, address, genesis and store paths
relative to it, `index`) and `key.pem`. A node whose `index` is true opens its store with the
venue's indexer and runs the indexer task (`ledger.node`), which builds the analysts' tables behind
the vote path up to an "indexed up to height" watermark; a node whose `index` is false builds none
(`jinlian index DIR/<member>` builds them on demand). A node rebuilds its venue by replaying the
store from the genesis, and serves until SIGINT or SIGTERM, when it closes its sockets and its store
(exit status 0), or until one of its tasks fails (`ledger.node`, "supervision"), when it answers
what is waiting with an error, stops the same way and exits 1. `jinlian up DIR` starts the exchange
and every voting member as separate processes, restarts one that exits non-zero (with a backoff, at
most 5 times a minute; one more and it stops them all and exits 1) and stops them all on Ctrl-C.

The exchange always starts by recovering (docs/ledger.md, "Recovery"): it sequences nothing
until 2f + 1 members have given back whatever blocks it signed that its store lost.
`jinlian exchange DIR --recover` is the same start for an exchange whose store is gone for
good (a new machine with the old key): it refuses a store that holds blocks, and rebuilds an
empty one from the members.

`JINLIAN_FAULT=<task>:<after_n>[@<node>]`, read once at start, arms the fault seam
(`ledger.node.Fault`) of every node process, or only of the node named (`exchange` or a
member's name): the task kind named raises once after `after_n` passes. For fault drills and
the supervision tests (docs/ledger.md, "Supervision").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Final

import orjson

from exchange import compiled
from exchange.console.metrics import serve_replica_metrics
from exchange.console.mount import mount_console
from exchange.consortium.audit import UsageError, load_node
from exchange.consortium.indexer import VenueIndexer
from exchange.consortium.init import init_consortium, venue_from_genesis
from exchange.gateway.ack_journal import AckJournal, JournalError
from exchange.gateway.server import DEFAULT_LIMITS, Gateway, Limits
from exchange.venue.machine import VenueMachine
from ledger.collector import Collector
from ledger.genesis import Genesis
from ledger.keys import load_private_key
from ledger.node import TASK_POLICIES, ExchangeNode, Fault, ReplicaNode
from ledger.replication import LAG_MAX, Proposer, Replica
from ledger.store import BlockStore, StoreCorruptError, StoreError

STOP_GRACE_S: Final = 5.0
ACK_JOURNAL: Final = "acks.sqlite"  # in the exchange's directory (`exchange.gateway.ack_journal`)
RESTARTS_PER_MINUTE_MAX: Final = 5  # of one process by `jinlian up`; one more stops them all
RESTART_BACKOFF_S: Final = (0.1, 8.0)  # the first restart's delay, doubled up to the second
FAULT_VARIABLE: Final = "JINLIAN_FAULT"
# The nodes' stores survive a crash of the process (kill -9) with every acknowledged block, not
# a power cut: FULL would fsync twice per block (docs/ledger.md, "Durability").
SYNCHRONOUS: Final = "NORMAL"
log = logging.getLogger("jinlian")


@dataclass(frozen=True, slots=True)
class NodeConfig:
    directory: Path
    member_id: int
    name: str
    address: str
    genesis: Genesis
    store_path: Path
    index: bool  # node.json `index`: this node builds the analysts' tables


def load_config(directory: Path) -> NodeConfig:
    """The node directory's config, genesis and identity. Raises `UsageError` naming a bad
    value."""
    node = load_node(directory)
    config = orjson.loads((directory / "node.json").read_bytes())
    member_id = config.get("id")
    member = node.genesis.member(member_id) if type(member_id) is int else None
    if member is None:
        raise UsageError(f"{directory}/node.json: id {member_id!r} is not a genesis member")
    index = config.get("index", member.voting)  # absent (older init): members index
    if type(index) is not bool:
        raise UsageError(f"{directory}/node.json: index {index!r:.80} is not true or false")
    return NodeConfig(
        directory=directory,
        member_id=member.id,
        name=member.name,
        address=member.address,
        genesis=node.genesis,
        store_path=node.store_path,
        index=index,
    )


def new_machine(genesis: Genesis) -> VenueMachine:
    """The venue at height 0, as every node starts it and replays its store onto it."""
    return VenueMachine(venue_from_genesis(genesis))


def open_store(config: NodeConfig) -> BlockStore:
    """The node's store, with the venue's indexer if the node indexes (`config.index`)."""
    indexer = VenueIndexer() if config.index else None
    return BlockStore.open(
        config.store_path, config.genesis.hash, indexer=indexer, synchronous=SYNCHRONOUS
    )


def _start_indexer(node: ReplicaNode | ExchangeNode, store: BlockStore) -> None:
    if store.indexer is not None:
        node.start_indexer(store)


def build_replica(config: NodeConfig) -> ReplicaNode:
    genesis = config.genesis
    member = genesis.member(config.member_id)
    if member is None or not member.voting:
        raise UsageError(f"{config.directory}: member {config.name} is not a voting member")
    key = load_private_key(config.directory / "key.pem")
    replica = Replica(
        genesis=genesis,
        member_id=config.member_id,
        key=key,
        store=open_store(config),
        new_machine=partial(new_machine, genesis),
    )
    node = ReplicaNode(replica, config.address)
    serve_replica_metrics(node)
    mount_console(node)
    _start_indexer(node, replica.store)
    return node


def build_exchange(config: NodeConfig, *, lag_max: int | None = None) -> ExchangeNode:
    """The exchange with the raw sequencer feed on (for the ledger's own tests)."""
    return build_venue(config, lag_max=lag_max, feed=True)[0]


def build_venue(
    config: NodeConfig,
    *,
    lag_max: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
    feed: bool = False,
) -> tuple[ExchangeNode, Gateway]:
    """The exchange node with the broker gateway on it: the proposer's machine is the
    gateway's, so every stored block turns into execution reports and market data. `feed`
    also serves `/submit`, the raw sequencer feed, which takes any command from anyone who can
    reach the port: for benchmarks and tests on a private host, never for brokers."""
    genesis = config.genesis
    if config.member_id != genesis.exchange.id:
        raise UsageError(f"{config.directory}: member {config.name} is not the exchange")
    key = load_private_key(config.directory / "key.pem")
    try:
        journal = AckJournal.open(config.directory / ACK_JOURNAL)
    except JournalError as error:
        raise UsageError(str(error)) from None
    gateway = Gateway(genesis, limits=limits, journal=journal)
    proposer = Proposer(
        genesis=genesis,
        key=key,
        store=open_store(config),
        new_machine=gateway.new_machine,
        lag_max=LAG_MAX if lag_max is None else lag_max,
        recover=True,
    )
    node = ExchangeNode(proposer, config.address, feed=feed)
    gateway.attach(node)
    mount_console(node, gateway)
    _start_indexer(node, proposer.store)
    node.stored_listeners.append(lambda block: node.block_stored())
    return node, gateway


def check_recoverable(config: NodeConfig) -> None:
    """`--recover` rebuilds a lost store: refuse one that holds blocks (`UsageError`)."""
    if not config.store_path.exists():
        return
    with BlockStore.open(config.store_path) as store:
        tip = store.tip()
    if tip is not None:
        raise UsageError(
            f"--recover rebuilds a lost store, but {config.store_path} holds blocks up to "
            f"height {tip[0]}: start without --recover (a restart recovers a lost tail by "
            "itself), or move the store away first"
        )


def fault_from(environment: Mapping[str, str], node: str) -> Fault:
    """The fault seam `JINLIAN_FAULT` arms for `node` (`exchange` or a member's name);
    disarmed if unset or aimed at another node. `UsageError` naming a malformed value."""
    value = environment.get(FAULT_VARIABLE, "")
    if not value:
        return Fault()
    spec, _, target = value.partition("@")
    task, colon, after = spec.partition(":")
    if task not in TASK_POLICIES or not colon or not after.isdigit() or len(after) > 9:
        raise UsageError(f"{FAULT_VARIABLE}={value!r:.80}: expected <task>:<after_n>[@<node>], "
                         f"task one of {', '.join(TASK_POLICIES)}")  # fmt: skip
    return Fault() if target and target != node else Fault(task, int(after))


async def serve(node: ReplicaNode | ExchangeNode, what: str) -> int:
    """Run `node` until SIGINT or SIGTERM (0) or until one of its tasks fails (1: the failure
    was logged on one line, and what was waiting answered with an error)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop.set)
    await node.start()
    status = node.status()
    print(f"{what} listening on {node.address} at height {status['height']}", flush=True)
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(node.failed.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
        await node.stop()
        height = node.status()["height"]
        store = node.replica.store if isinstance(node, ReplicaNode) else node.proposer.store
        store.close()
        print(f"{what} stopped at height {height}", flush=True)
    return 0 if node.failure is None else 1  # the failure is logged once, where it happened


def _report_recovery(node: ExchangeNode) -> None:
    """Say when the exchange sequences: recovery may wait for members to come up."""
    proposer = node.proposer
    tips = dict(sorted(proposer.recovery_tips.items()))
    print(f"exchange recovered at height {proposer.height} (certified {proposer.certified}; "
          f"members' tips {tips}): sequencing", flush=True)  # fmt: skip


def run_node(directory: Path) -> int:
    """`jinlian node`. Raises `UsageError` (one line naming the value) for a node that cannot
    start: a bad config or key, a store of another genesis, a corrupt stored block (its
    height), an unreadable store."""
    config = load_config(directory)
    fault = fault_from(os.environ, config.name)
    with _starting(config):
        node = build_replica(config)
    node.fault = fault
    node.collector = Collector()  # this process is the node's own: no full GC while it works
    return asyncio.run(_serve(node, f"member {config.name}"))


def run_exchange(directory: Path, *, feed: bool = False, recover: bool = False) -> int:
    """`jinlian exchange`; `recover`: its store was lost, rebuild it from the members. Raises
    `UsageError` as `run_node` does."""
    config = load_config(directory / "exchange")
    fault = fault_from(os.environ, "exchange")
    if recover:
        check_recoverable(config)
        print(f"exchange: rebuilding {config.store_path} from the members", flush=True)
    with _starting(config):
        node, _ = build_venue(config, feed=feed)
    node.fault = fault
    node.collector = Collector()
    node.recovered_listeners.append(partial(_report_recovery, node))
    return asyncio.run(_serve(node, "exchange"))


def process_commands(directory: Path, *, feed: bool = False) -> list[tuple[str, list[str]]]:
    """The command line of every voting member's process and of the exchange's (with the raw
    sequencer feed if `feed`), by name."""
    config = load_config(directory / "exchange")
    python = [sys.executable, "-m", "exchange.cli"]
    commands = [
        (member.name, [*python, "node", str(directory / member.name)])
        for member in config.genesis.members
        if member.voting
    ]
    commands.append(("exchange", [*python, "exchange", str(directory),
                                  *(["--feed"] if feed else [])]))  # fmt: skip
    return commands


async def _serve(node: ReplicaNode | ExchangeNode, what: str) -> int:
    """`serve`, closing what a start that failed (a port in use) had opened, so that the error
    is the one line the command prints, not followed by warnings of unclosed sessions."""
    try:
        return await serve(node, what)
    except OSError:
        await node.stop()
        raise


@contextlib.contextmanager
def _starting(config: NodeConfig) -> Iterator[None]:
    """Turn the store's errors while a node opens and replays it into a `UsageError` that
    names the store (and, for a corrupt block, its height) instead of a traceback."""
    try:
        yield
    except StoreCorruptError as error:
        raise UsageError(
            f"{config.store_path}: {error} (`jinlian verify {config.directory}` checks the store)"
        ) from None
    except (StoreError, sqlite3.Error) as error:
        raise UsageError(f"{config.store_path}: {error}") from None


def start_processes(
    directory: Path, *, feed: bool = False
) -> list[tuple[str, subprocess.Popen[bytes]]]:
    """The exchange (with the raw sequencer feed if `feed`) and every voting member of
    `directory` as child processes."""
    return [
        (name, subprocess.Popen(command))
        for name, command in process_commands(directory, feed=feed)
    ]


@dataclass
class Restarts:
    """`jinlian up`'s restart budget for one process: a restart after each non-zero exit,
    with a backoff doubling from RESTART_BACKOFF_S[0], at most RESTARTS_PER_MINUTE_MAX in any
    60 s."""

    times: deque[float] = field(default_factory=deque)  # of the restarts in the last minute

    def delay_s(self, now: float) -> float | None:
        """Count a restart at `now` (monotonic s): how long to wait before it, or None if the
        budget is spent (the process exited too often)."""
        while self.times and self.times[0] <= now - 60.0:
            self.times.popleft()
        if len(self.times) >= RESTARTS_PER_MINUTE_MAX:
            return None
        self.times.append(now)
        return float(min(RESTART_BACKOFF_S[0] * 2 ** (len(self.times) - 1), RESTART_BACKOFF_S[1]))


def supervise(
    commands: list[tuple[str, list[str]]],
    children: list[tuple[str, subprocess.Popen[bytes]]],
    stopping: Callable[[], bool],
) -> str | None:
    """Watch `children` until `stopping()`, restarting one that exits non-zero (`Restarts`),
    each restart logged on stderr. Returns why it gave up (a process exited 0 unasked, or
    too often), or None once `stopping()`; `children` then holds the current processes."""
    lines = dict(commands)
    budgets = {name: Restarts() for name, _ in children}
    due: dict[str, float] = {}  # name -> monotonic time of its restart
    while not stopping():
        time.sleep(0.1)
        now = time.monotonic()
        for index, (name, child) in enumerate(children):
            if name in due:
                if now >= due[name]:
                    del due[name]
                    children[index] = (name, subprocess.Popen(lines[name]))
                continue
            code = child.poll()
            if code is None:
                continue
            if code == 0:
                return f"{name} exited"
            delay_s = budgets[name].delay_s(now)
            if delay_s is None:
                return (f"{name} exited with status {code} after "
                        f"{RESTARTS_PER_MINUTE_MAX} restarts within a minute")  # fmt: skip
            due[name] = now + delay_s
            print(f"jinlian up: {name} exited with status {code}; restart "
                  f"{len(budgets[name].times)} of {RESTARTS_PER_MINUTE_MAX} this minute in "
                  f"{delay_s:.2f} s", file=sys.stderr, flush=True)  # fmt: skip
    return None


def stop_processes(children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for _, child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for _, child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(max(0.0, deadline - time.monotonic()))
        if child.poll() is None:
            child.kill()
            child.wait()


def run_up(directory: Path, *, members: int = 4, brokers: int = 3, demo: bool = False) -> int:
    """Initialise `directory` if it is empty, start the consortium, wait for Ctrl-C. With
    `demo`, a scripted trading session runs once everything is up."""
    if not (directory / "genesis.json").exists():
        init_consortium(directory, members=members, brokers=brokers)
        print(f"initialised a consortium in {directory}")
    config = load_config(directory / "exchange")
    fault_from(os.environ, "up")  # a malformed JINLIAN_FAULT is refused here, not by each child
    # JINLIAN_BUILD too (exit 2 naming it); the children inherit it and this environment
    print(f"core {compiled.describe()}: every process of the consortium runs it", flush=True)
    commands = process_commands(directory)
    children = [(name, subprocess.Popen(command)) for name, command in commands]
    stopping = False

    def stop(number: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(f"brokers connect to ws://{config.address}/ws (docs/api.md; their keys are in "
          f"{directory / 'brokers'})")  # fmt: skip
    print(f"REST: http://{config.address}/instruments, /book/SYMBOL, /health, /metrics")
    print(f"web console: http://{config.address}/console/ (market, health; docs/console.md)")
    for member in config.genesis.members:
        if member.voting:
            print(f"  member {member.name:<12} http://{member.address}/status, "
                  f"console http://{member.address}/console/")  # fmt: skip
    print("Ctrl-C stops every process.", flush=True)
    if demo:
        from exchange.consortium.up_demo import run_session  # noqa: PLC0415 - only for the demo

        try:
            asyncio.run(run_session(directory))
        except (OSError, RuntimeError) as error:
            print(f"jinlian up: the demo session failed: {error}", file=sys.stderr)
    failed = supervise(commands, children, lambda: stopping)
    stop_processes(children)
    if failed is not None:
        print(f"jinlian up: {failed}; stopped the consortium", file=sys.stderr)
        return 1
    print("consortium stopped")
    return 0
