"""Member nodes and the exchange as processes: `jinlian node`, `jinlian exchange`, `jinlian up`.

Each node directory (`jinlian init`) holds `node.json` (id, name, address, genesis and store
paths relative to it) and `key.pem`. A node opens its store with the venue's indexer (so the
analysts' tables are written with every block), rebuilds its venue by replaying the store
from the genesis, and serves until SIGINT or SIGTERM, when it closes its sockets and its store.
`jinlian up DIR` starts the exchange and every voting member as separate processes and stops
them all on Ctrl-C.

The exchange always starts by recovering (docs/ledger.md, "Recovery"): it sequences nothing
until 2f + 1 members have given back whatever blocks it signed that its store lost.
`jinlian exchange DIR --recover` is the same start for an exchange whose store is gone for
good (a new machine with the old key): it refuses a store that holds blocks, and rebuilds an
empty one from the members.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final

import orjson

from exchange.ack_journal import AckJournal, JournalError
from exchange.consortium import init_consortium, venue_from_genesis
from exchange.gateway import DEFAULT_LIMITS, Gateway, Limits
from exchange.ledger_audit import UsageError, load_node
from exchange.ledger_index import VenueIndexer
from exchange.venue_machine import VenueMachine
from ledger.genesis import Genesis
from ledger.keys import load_private_key
from ledger.node import ExchangeNode, ReplicaNode
from ledger.replication import LAG_MAX, Proposer, Replica
from ledger.store import BlockStore

STOP_GRACE_S: Final = 5.0
ACK_JOURNAL: Final = "acks.sqlite"  # in the exchange's directory (`exchange.ack_journal`)
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


def load_config(directory: Path) -> NodeConfig:
    """The node directory's config, genesis and identity. Raises `UsageError` naming a bad
    value."""
    node = load_node(directory)
    config = orjson.loads((directory / "node.json").read_bytes())
    member_id = config.get("id")
    member = node.genesis.member(member_id) if type(member_id) is int else None
    if member is None:
        raise UsageError(f"{directory}/node.json: id {member_id!r} is not a genesis member")
    return NodeConfig(
        directory=directory,
        member_id=member.id,
        name=member.name,
        address=member.address,
        genesis=node.genesis,
        store_path=node.store_path,
    )


def new_machine(genesis: Genesis) -> VenueMachine:
    """The venue at height 0, as every node starts it and replays its store onto it."""
    return VenueMachine(venue_from_genesis(genesis))


def open_store(config: NodeConfig) -> BlockStore:
    return BlockStore.open(
        config.store_path, config.genesis.hash, indexer=VenueIndexer(), synchronous=SYNCHRONOUS
    )


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
    return ReplicaNode(replica, config.address)


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


async def serve(node: ReplicaNode | ExchangeNode, what: str) -> None:
    """Run `node` until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop.set)
    await node.start()
    status = node.status()
    print(f"{what} listening on {node.address} at height {status['height']}", flush=True)
    try:
        await stop.wait()
    finally:
        await node.stop()
        height = node.status()["height"]
        store = node.replica.store if isinstance(node, ReplicaNode) else node.proposer.store
        store.close()
        print(f"{what} stopped at height {height}", flush=True)


def _report_recovery(node: ExchangeNode) -> None:
    """Say when the exchange sequences: recovery may wait for members to come up."""
    proposer = node.proposer
    tips = dict(sorted(proposer.recovery_tips.items()))
    print(f"exchange recovered at height {proposer.height} (certified {proposer.certified}; "
          f"members' tips {tips}): sequencing", flush=True)  # fmt: skip


def run_node(directory: Path) -> int:
    config = load_config(directory)
    node = build_replica(config)
    asyncio.run(serve(node, f"member {config.name}"))
    return 0


def run_exchange(directory: Path, *, feed: bool = False, recover: bool = False) -> int:
    """Run the exchange of `directory`; `recover`: its store was lost, rebuild it."""
    config = load_config(directory / "exchange")
    if recover:
        check_recoverable(config)
        print(f"exchange: rebuilding {config.store_path} from the members", flush=True)
    node, _ = build_venue(config, feed=feed)
    node.recovered_listeners.append(partial(_report_recovery, node))
    asyncio.run(serve(node, "exchange"))
    return 0


def start_processes(
    directory: Path, *, feed: bool = False
) -> list[tuple[str, subprocess.Popen[bytes]]]:
    """The exchange (with the raw sequencer feed if `feed`) and every voting member of
    `directory` as child processes."""
    config = load_config(directory / "exchange")
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    python = [sys.executable, "-m", "exchange.cli"]
    for member in config.genesis.members:
        if member.voting:
            command = [*python, "node", str(directory / member.name)]
            children.append((member.name, subprocess.Popen(command)))
    exchange = [*python, "exchange", str(directory), *(["--feed"] if feed else [])]
    children.append(("exchange", subprocess.Popen(exchange)))
    return children


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
    children = start_processes(directory)
    stopping = False

    def stop(number: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(f"brokers connect to ws://{config.address}/ws (docs/api.md; their keys are in "
          f"{directory / 'brokers'})")  # fmt: skip
    print(f"REST: http://{config.address}/instruments, /book/SYMBOL, /health, /metrics")
    for member in config.genesis.members:
        if member.voting:
            print(f"  member {member.name:<12} http://{member.address}/status")
    print("Ctrl-C stops every process.", flush=True)
    if demo:
        from exchange.up_demo import run_session  # noqa: PLC0415 - only for the demo

        try:
            asyncio.run(run_session(directory))
        except (OSError, RuntimeError) as error:
            print(f"jinlian up: the demo session failed: {error}", file=sys.stderr)
    failed = None
    while not stopping and failed is None:
        time.sleep(0.2)
        failed = next((name for name, child in children if child.poll() is not None), None)
    stop_processes(children)
    if failed is not None and not stopping:
        print(f"jinlian up: {failed} exited; stopped the consortium", file=sys.stderr)
        return 1
    print("consortium stopped")
    return 0
