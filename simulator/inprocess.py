"""The in-process driver: agents' intents through the ledger's own cores, with a virtual clock.

`InProcessDriver` writes a consortium directory (`exchange.consortium.init.init_consortium`) whose
genesis lists the scenario's instruments and gives every agent's broker funded accounts, then
turns each intent into the canonical JSON command a broker would send. `CertifiedLedger` (the
one place this module reaches the ledger) has the exchange's `Proposer` sequence it and applies
it at once to the exchange's `VenueMachine` (`apply_observed`, so the venue's events reach the
agents before their next arrival, with no decoding). A block is cut every `block_interval_ms`
of virtual time, or at `block_commands`: the proposer executes, signs and stores it; member
bank1, a `Replica` on its own venue, checks, re-executes, stores and votes for it and indexes
it; the other members' votes are signed without re-execution; the certificate is stored by
both. The output directory is therefore a real consortium directory: `jinlian verify DIR/bank1`
(or `DIR/exchange`) re-executes the ledger from the genesis.

Every key is derived from the seed (`derived_key`), block times are virtual and nothing else in
the ledger depends on the machine, so the same seed and scenario give a byte-identical ledger.
Such keys protect nothing: a simulation's consortium is for analysis, not for trading.
"""

from __future__ import annotations

import datetime
import multiprocessing
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

from exchange.consortium.audit import load_node
from exchange.consortium.indexer import VenueIndexer
from exchange.consortium.init import (
    Market,
    consortium_genesis,
    init_consortium,
    venue_from_genesis,
)
from exchange.venue import wire
from exchange.venue.machine import VenueMachine
from exchange.venue.types import BrokerCommand, OrderRefused, OrderUnfunded
from exchange.venue.venue import Venue
from exchange.venue.wire_fast import parse_venue_command
from ledger.block import Block, sign_vote
from ledger.canonical import canonical_bytes, sha256
from ledger.genesis import Genesis, Member, load_genesis
from ledger.keys import PrivateKey, private_key_from_bytes
from ledger.protocol import MalformedMessage, Message, Propose, VoteMessage, decode, encode
from ledger.replication import Proposer, Replica
from ledger.store import BlockStore
from matching.commands import AmendOrder, CancelOrder, PlaceOrder
from matching.events import (
    OrderCancelled,
    OrderExpired,
    OrderRejected,
    TradeExecuted,
)
from matching.types import OrderKind, Phase, Side, TimeInForce
from settlement.events import CycleFailed, CycleSettled
from simulator.agents import ORDER_IDS_PER_AGENT, Agent, Amend, Cancel, Intent, Place
from simulator.scenario import Scenario

NODE: Final = "bank1"  # the member whose store the run writes
MEMBERS: Final = 4
BASE_PORT: Final = 7400  # the nodes' addresses in the genesis: 127.0.0.1:7400...
SIDE_NAMES: Final = {Side.BUY: "buy", Side.SELL: "sell"}
DONE_EVENTS: Final = (OrderCancelled, OrderExpired, OrderRejected, OrderRefused, OrderUnfunded)
LEDGER: Final = (  # what `CertifiedLedger` builds, for reports
    "exchange (Proposer) sequences and executes; bank1 (Replica, its own process) re-executes, "
    "stores, votes and indexes; bank2-bank4's votes signed without re-execution"
)
IN_FLIGHT_MAX: Final = 4  # blocks proposed to bank1 whose votes are not in yet
MEMBER_POLL_S: Final = 1.0  # how often a wait for bank1's answer checks that it is alive
MEMBER_TIMEOUT_S: Final = 30.0  # for bank1's process to exit once done or stopped
PHASES: Final = {"call_auction": Phase.CALL_AUCTION, "continuous": Phase.CONTINUOUS,
                 "closing_auction": Phase.CLOSING_AUCTION, "closed": Phase.CLOSED}  # fmt: skip


def derived_key(seed: int, name: str) -> PrivateKey:
    """The simulation's key for `name`: a function of the seed only (see the module doc)."""
    return private_key_from_bytes(
        sha256(b"jinlian-simulator-key\x00" + seed.to_bytes(8, "big") + name.encode())
    )


def day_start_ns(day: int) -> int:
    """09:30 in Shanghai (01:30 UTC) on `day` (yyyymmdd), in ns since the epoch."""
    moment = datetime.datetime(day // 10_000, day // 100 % 100, day % 100, 1, 30,
                               tzinfo=datetime.UTC)  # fmt: skip
    return int(moment.timestamp()) * 1_000_000_000


def write_consortium(
    scenario: Scenario, seed: int, directory: Path, *, base_port: int = BASE_PORT
) -> Genesis:
    """Write the scenario's consortium into `directory` (empty or absent): its instruments,
    every agent's account funded, keys derived from the seed. The in-process and the network
    modes start from this same genesis (with the default `base_port`, byte for byte)."""
    return init_consortium(directory, **_consortium(scenario, seed, base_port))


def scenario_genesis(scenario: Scenario, seed: int) -> Genesis:
    """The genesis `write_consortium` writes, in memory (the run without a ledger)."""
    return consortium_genesis(**_consortium(scenario, seed, BASE_PORT))[0]


def _consortium(scenario: Scenario, seed: int, base_port: int) -> dict[str, Any]:
    """The scenario's consortium as `init_consortium`'s and `consortium_genesis`'s keywords."""
    return {
        "members": MEMBERS,
        "brokers": scenario.brokers,
        "base_port": base_port,
        "market": Market(
            instruments=tuple(instrument.listing() for instrument in scenario.instruments),
            accounts_per_broker=scenario.accounts_per_broker(),
            cash_per_account=scenario.cash_per_account,
            shares_per_account=scenario.shares_per_account,
        ),
        "new_key": lambda name: derived_key(seed, name),
        "chain_id": f"jinlian-sim-{scenario.name}",
    }


@dataclass(slots=True)
class Tables:
    """What the run did, as columns (lists) for Parquet: one entry per row."""

    orders: dict[str, list[Any]] = field(default_factory=dict)
    trades: dict[str, list[Any]] = field(default_factory=dict)
    blocks: dict[str, list[Any]] = field(default_factory=dict)
    quotes: dict[str, list[Any]] = field(default_factory=dict)
    days: dict[str, list[Any]] = field(default_factory=dict)
    cycles: dict[str, list[Any]] = field(default_factory=dict)
    positions: dict[str, list[Any]] = field(default_factory=dict)


ORDER_COLUMNS: Final = ("time_ns", "order_id", "agent_id", "action", "account", "symbol", "side",
                        "price", "quantity", "ioc", "outcome", "tif", "post_only")  # fmt: skip
TRADE_COLUMNS: Final = ("trade_id", "time_ns", "height", "symbol", "price", "quantity",
                        "buy_order_id", "sell_order_id", "buy_account", "sell_account",
                        "buy_agent_id", "sell_agent_id", "aggressor")  # fmt: skip
BLOCK_COLUMNS: Final = ("height", "time_ns", "commands", "events", "wall_s")
QUOTE_COLUMNS: Final = ("time_ns", "symbol", "bid", "ask")
# one row a trading day: its number from 0, date, virtual span and its start in epoch ns
DAY_COLUMNS: Final = ("day_number", "day", "start_ns", "end_ns", "start_epoch_ns")
# one row a net settlement cycle run at a day's end
CYCLE_COLUMNS: Final = ("day", "time_ns", "cycle_id", "status", "trade_count", "gross_value",
                        "net_value", "failures")  # fmt: skip
# at each day's end, before its cycle: every agent account's shares per instrument
POSITION_COLUMNS: Final = ("day", "time_ns", "account", "symbol", "sellable", "bought_today",
                           "net_pending")  # fmt: skip
COMMAND_ID_BASE: Final = 10**9  # the run's settlement command ids: above the genesis's
QUOTE_INTERVAL_NS: Final = 1_000_000_000  # the best bid and ask are sampled every virtual second
# a block's time (ns), its commands' canonical bytes and their times (ns)
KeptBlock = tuple[int, tuple[bytes, ...], tuple[int, ...]]


def place_command(broker: str, intent: Place) -> dict[str, Any]:
    """The venue's `place` command (as a broker's, without a client order id) for `intent`."""
    command: dict[str, Any] = {
        "type": "place", "broker": broker, "order_id": intent.order_id,
        "symbol": intent.symbol, "account": intent.account, "side": SIDE_NAMES[intent.side],
        "quantity": intent.quantity,
    }  # fmt: skip
    if intent.price is None:
        command["kind"] = "market"
    else:
        command["price"] = intent.price
    if intent.tif != ("day" if intent.price is not None else "ioc"):
        command["tif"] = intent.tif
    if intent.post_only:
        command["post_only"] = True
    return command


TIME_IN_FORCE: Final = {"day": TimeInForce.DAY, "ioc": TimeInForce.IOC, "fok": TimeInForce.FOK}
LIMIT: Final = OrderKind.LIMIT
MARKET: Final = OrderKind.MARKET


def place_object(broker: str, intent: Place) -> BrokerCommand:
    """The venue command `place_command`'s object parses to, built directly (no ledger: no
    bytes to make); `tests/test_simulator_sweep.py` checks that both runs give one state."""
    kind = OrderKind.LIMIT if intent.price is not None else OrderKind.MARKET
    order = PlaceOrder(intent.order_id, intent.symbol, intent.account, intent.side, kind,
                       intent.price, intent.quantity, TIME_IN_FORCE[intent.tif],
                       intent.post_only)  # fmt: skip
    return BrokerCommand(broker=broker, command=order)


def amend_command(broker: str, intent: Amend) -> dict[str, Any]:
    command: dict[str, Any] = {"type": "amend", "broker": broker, "order_id": intent.order_id,
                               "symbol": intent.symbol}  # fmt: skip
    if intent.price is not None:
        command["price"] = intent.price
    if intent.quantity is not None:
        command["quantity"] = intent.quantity
    return command


def event_name(event: Any) -> str:
    """An event's wire name (`accepted`, `cycle_settled`...)."""
    return str(wire.event_to_dict(event)["type"])


def position_rows(venue: Venue, symbols: Sequence[str], accounts: Sequence[str], day: int,
                  now_ns: int) -> list[tuple[object, ...]]:  # fmt: skip
    """`POSITION_COLUMNS` rows: every account's shares per instrument at a day's end,
    `sellable` now, `bought_today` (T+1: sellable from the next day) and `net_pending` (bought
    under net settlement, not delivered until the cycle)."""
    bought, pending = venue.shares_today()
    rows: list[tuple[object, ...]] = []
    for symbol in symbols:
        bought_of, pending_of = bought.get(symbol, {}), pending.get(symbol, {})
        for account in accounts:
            rows.append((day, now_ns, account, symbol, venue.sellable(symbol, account),
                         bought_of.get(account, 0), pending_of.get(account, 0)))  # fmt: skip
    return rows


def cycle_row(day: int, now_ns: int, events: Sequence[Any]) -> tuple[object, ...]:
    """The `CYCLE_COLUMNS` row of a `settle_cycle` command's events."""
    settled = [event for event in events if type(event) is CycleSettled]
    failed = [event for event in events if type(event) is CycleFailed]
    if settled:
        done = settled[0]
        return (day, now_ns, done.cycle_id, "settled", done.trade_count, done.gross_value,
                done.net_value, 0)  # fmt: skip
    if failed:
        return (day, now_ns, failed[0].cycle_id, "failed", None, None, None, len(failed))
    return (day, now_ns, None, ",".join(event_name(e) for e in events) or "none", None, None,
            None, 0)  # fmt: skip


class VenueView:
    """The market as agents see it in process: the venue's books, the last trade, the phase.
    Its questions (`MarketView`'s) are the matching engine's and the dicts' own methods, bound
    once: an agent's question is one call."""

    __slots__ = ("best_ask", "best_bid", "last", "last_price", "phase", "phases")

    def __init__(self, machine: VenueMachine, scenario: Scenario) -> None:
        engine = machine.venue.matching
        self.last: dict[str, int] = {i.symbol: i.reference_price for i in scenario.instruments}
        self.phases: dict[str, Phase] = {i.symbol: Phase.CLOSED for i in scenario.instruments}
        self.best_bid: Callable[[str], int | None] = engine.best_bid
        self.best_ask: Callable[[str], int | None] = engine.best_ask
        self.last_price: Callable[[str], int] = self.last.__getitem__
        self.phase: Callable[[str], Phase] = self.phases.__getitem__


class AppliedVenue:
    """The exchange's state machine in the run (what `Proposer` executes blocks on): the venue,
    to which the driver applies each command as soon as the proposer has sequenced it, because
    the agents must see its events before their next arrival. When the proposer executes the
    block at its cut, `apply` hands back, in order, the events each command produced then, and
    `state_hash` is the venue's after the last: the same results as applying the commands at
    the cut, since nothing else touches the venue between the two. Holds at most one block's
    commands (the proposer cuts at `block_commands`)."""

    __slots__ = ("_applied", "last_data", "machine")

    def __init__(self, machine: VenueMachine) -> None:
        self.machine = machine
        self._applied: deque[tuple[bytes, list[bytes]]] = deque()
        self.last_data: list[bytes] = []  # the last applied command's events

    def apply_now(self, command: bytes, time_ns: int) -> list[Any]:
        """Apply a sequenced command to the venue; its events as objects, for the agents."""
        events, data = self.machine.apply_observed(command, time_ns)
        self._applied.append((command, data))
        self.last_data = data
        return events

    def apply(self, command: bytes, time_ns: int) -> list[bytes]:
        applied, data = self._applied.popleft()
        assert applied is command, "the proposer executes commands in the order they applied"
        return data

    def state_hash(self) -> bytes:
        assert not self._applied, f"{len(self._applied)} applied commands left out of the block"
        return self.machine.state_hash()


class DivergenceError(Exception):
    """The re-executing member refused a block the exchange made: the venue the driver applies
    commands to and a fresh one disagree (a bug in the venue or the driver, never the seed's)."""

    def __init__(self, height: int, evidence: str) -> None:
        super().__init__(f"block {height}: member {NODE} refused it and did not vote: {evidence}")
        self.height = height


class MemberProcessError(Exception):
    """The re-executing member's process failed or exited: the run cannot be certified."""


class CertifiedLedger:
    """The ledger a run writes, made by the ledger's own cores: the only place the simulator
    reaches the ledger (`Proposer`, `Replica`, `BlockStore` and the member protocol's messages,
    through their public functions).

    - The exchange is a `Proposer` (the consortium's exchange member and key), in this process:
      it sequences each command (`submit`), executes each block on `AppliedVenue`, signs it and
      stores it in its own node's store (`DIR/exchange/ledger.sqlite`); the exchange's indexer
      (an indexing node by default, as `jinlian init` writes it) derives its analysts' tables
      while this process waits for bank1, and up to the tip at the end.
    - Member `NODE` (bank1) is a `Replica` on its own `VenueMachine` in a child process
      (`_member_process`), as on a member's machine: it gets each proposal as the protocol's
      bytes (`ledger.protocol.encode`), checks the block (signature, parent link, commands
      root), re-executes it, compares receipts root and state hash, stores it
      (`DIR/bank1/ledger.sqlite`) and votes; while no message waits, and at the end, its
      indexer derives the analysts' tables behind the votes, as an indexing member does.
    - The other voting members do not re-execute: their votes are signed with their keys
      once bank1's vote is in, only as many as make the quorum, in member order. So every
      certificate is bank1's vote and the next members' in order, the same for the same seed
      whatever the processes' timing, and no block bank1 refused is certified
      (`DivergenceError`). The certificate goes to bank1, which stores it.

    At most `IN_FLIGHT_MAX` blocks wait for bank1's vote (then `cut` waits for the oldest), so
    the pipe holds a bounded number of blocks. `finish` waits for every vote, has bank1 and the
    exchange index up to the tip and checks that bank1 holds the whole certified chain; `close`
    stops the member process if it is still running (an error path)."""

    def __init__(
        self, genesis: Genesis, seed: int, directory: Path, *, block_commands: int
    ) -> None:
        exchange = genesis.exchange
        self.member = _member_named(genesis, NODE)
        self.venue = AppliedVenue(VenueMachine(venue_from_genesis(genesis)))
        self.proposer = Proposer(
            genesis=genesis,
            key=derived_key(seed, exchange.name),
            store=_open_store(directory / exchange.name, genesis, indexer=VenueIndexer()),
            new_machine=lambda: self.venue,
            block_commands=block_commands,
        )
        assert self.proposer.lag_max > IN_FLIGHT_MAX, "the exchange never becomes degraded"
        self._signers = [
            (other.id, derived_key(seed, other.name))
            for other in genesis.members
            if other.voting and other.id != self.member.id
        ]
        self.pending = 0  # commands sequenced and applied, not yet in a block
        self.pending_events = 0  # the events they produced
        self.block_events = 0  # the events of the last block cut
        self._in_flight: deque[Block] = deque()  # proposed to the member, its vote not in
        context = multiprocessing.get_context("spawn")
        self._connection, theirs = context.Pipe()
        self._process = context.Process(
            target=_member_process, args=(theirs, str(directory), seed),
            name=f"jinlian-simulate-{NODE}", daemon=True,
        )  # fmt: skip
        self._process.start()
        theirs.close()

    @property
    def height(self) -> int:
        return self.proposer.height

    @property
    def member_pid(self) -> int | None:
        """The process id of bank1's process."""
        return self._process.pid

    def apply(self, command: bytes, time_ns: int) -> list[Any]:
        """Sequence `command` (its canonical bytes) at `time_ns` and apply it to the venue; its
        events as objects."""
        refused = self.proposer.submit_encoded((command,), time_ns)
        # the run cuts a block every `block_commands` and certifies it within IN_FLIGHT_MAX
        # blocks, so the queue is never full nor the exchange degraded, and the driver's
        # commands are canonical
        assert refused is None, f"the exchange refused {command!r}: {refused}"
        self.pending += 1
        events = self.venue.apply_now(command, time_ns)
        self.pending_events += len(self.venue.last_data)
        return events

    def cut(self, time_ns: int) -> Block | None:
        """Make, sign and store the next block of the pending commands (none: None) and send
        it to bank1; certify the blocks whose votes are in (all but IN_FLIGHT_MAX, waiting)."""
        block, proposals = self.proposer.cut(time_ns)
        if block is None:
            return None
        self.pending = 0
        self.block_events, self.pending_events = self.pending_events, 0
        for send in proposals:
            if send.to == self.member.id:
                self._send(send.message)
        self._in_flight.append(block)
        connection = self._connection
        while len(self._in_flight) > IN_FLIGHT_MAX or (self._in_flight and connection.poll()):
            self._certify_oldest()
        return block

    def finish(self) -> None:
        """Certify every block, have bank1 and the exchange index them all, check that bank1
        holds them."""
        while self._in_flight:
            self._certify_oldest()
        self._connection.send(("finish", b""))
        height, certified, indexed = self._receive("done")
        tip, store = self.proposer.height, self.proposer.store
        while store.index_blocks(1) < tip:
            pass
        if not height == certified == indexed == tip == self.proposer.certified:
            raise MemberProcessError(
                f"{NODE} holds blocks to {height}, certified to {certified}, indexed to "
                f"{indexed}; the exchange's tip is {tip}, certified to {self.proposer.certified}"
            )
        self._process.join(MEMBER_TIMEOUT_S)

    def close(self) -> None:
        self.proposer.store.close()
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(MEMBER_TIMEOUT_S)
        self._connection.close()

    def _send(self, message: Message) -> None:
        try:
            self._connection.send(("message", encode(message)))
        except OSError as error:
            self._process.join(MEMBER_POLL_S)
            raise MemberProcessError(
                f"{NODE}'s process is gone ({error}; exit code {self._process.exitcode})"
            ) from None

    def _certify_oldest(self) -> None:
        block = self._in_flight.popleft()
        header = block.header
        data = self._receive("vote", header.height)
        vote = decode(data)
        assert isinstance(vote, VoteMessage) and vote.vote.header_hash == header.hash, vote
        proposer = self.proposer
        certified = proposer.receive(self.member.id, vote)
        signers = iter(self._signers)
        while not certified:  # the quorum is at most every voting member
            member, key = next(signers)
            certified = proposer.receive(member, VoteMessage(sign_vote(key, member, header)))
        for send in certified:
            if send.to == self.member.id:
                self._send(send.message)

    def _receive(self, kind: str, height: int = 0) -> Any:
        """The member's next answer, which must be `kind`; waits while the process lives,
        indexing the exchange's stored blocks meanwhile."""
        connection, process = self._connection, self._process
        store, proposer = self.proposer.store, self.proposer
        while not connection.poll():
            if store.indexed_height() < proposer.height:
                store.index_blocks(1)  # one block a call (see `_serve_member`)
            elif connection.poll(MEMBER_POLL_S):
                break
            elif not process.is_alive():
                raise MemberProcessError(f"{NODE}'s process exited (code {process.exitcode})")
        try:
            answer, value = connection.recv()
        except (EOFError, OSError) as error:  # closed, or reset by a process killed mid-write
            process.join(MEMBER_POLL_S)
            raise MemberProcessError(
                f"{NODE}'s process is gone ({error!r}; exit code {process.exitcode})"
            ) from None
        if answer == "refused":
            raise DivergenceError(height, str(value))
        if answer != kind:
            raise MemberProcessError(f"{NODE} answered {answer} instead of {kind}: {value}")
        return value


def _member_process(connection: Connection, directory: str, seed: int) -> None:
    """The child process of member `NODE` (see `CertifiedLedger`): answers each proposal with
    its vote (or `refused` and the evidence), stores certificates, indexes while idle."""
    try:
        _serve_member(connection, Path(directory), seed)
    except BaseException:
        connection.send(("error", traceback.format_exc()))
        raise
    finally:
        connection.close()


def _serve_member(connection: Connection, directory: Path, seed: int) -> None:
    genesis = load_genesis(directory / "genesis.json")
    member = _member_named(genesis, NODE)
    exchange_id = genesis.exchange.id
    store = _open_store(directory / NODE, genesis, indexer=VenueIndexer())
    try:
        replica = Replica(
            genesis=genesis,
            member_id=member.id,
            key=derived_key(seed, member.name),
            store=store,
            new_machine=lambda: VenueMachine(venue_from_genesis(genesis)),
        )
        while True:
            if store.indexed_height() < replica.height and not connection.poll():
                store.index_blocks(1)  # behind the votes, while no message waits
                continue
            kind, data = connection.recv()
            if kind == "finish":
                # one block a call: `index_blocks` reads a page of `blocks_max` blocks whatever
                # its `commands_max` lets it index
                while store.index_blocks(1) < replica.height:
                    pass
                heights = (replica.height, store.certified_height(), store.indexed_height())
                connection.send(("done", heights))
                return
            message = decode(data)
            assert not isinstance(message, MalformedMessage), message
            sends = replica.receive(exchange_id, message)
            if not isinstance(message, Propose):
                continue
            votes = [send.message for send in sends if isinstance(send.message, VoteMessage)]
            if votes:
                connection.send(("vote", encode(votes[0])))
            else:
                height = message.block.header.height
                found = [e.payload.decode() for e in store.evidence() if e.height == height]
                connection.send(("refused", found[-1] if found else "no evidence recorded"))
    finally:
        store.close()


def _member_named(genesis: Genesis, name: str) -> Member:
    member = next((member for member in genesis.members if member.name == name), None)
    assert member is not None, f"the simulation's genesis lists no member {name}"
    return member


def columns(names: Sequence[str], rows: list[tuple[object, ...]]) -> dict[str, list[Any]]:
    """Rows of len(names) values as one list per column."""
    if not rows:
        return {name: [] for name in names}
    return {name: list(column) for name, column in zip(names, zip(*rows, strict=True), strict=True)}


def _open_store(node: Path, genesis: Genesis, *, indexer: VenueIndexer | None) -> BlockStore:
    """The block store of the node in directory `node`, where its node.json says."""
    return BlockStore.open(
        load_node(node).store_path, genesis.hash, indexer=indexer, synchronous="NORMAL"
    )


class InProcessDriver:
    """See the module doc. `keep_commands` keeps every block's commands (for the benchmark's
    baseline replay)."""

    def __init__(
        self,
        scenario: Scenario,
        seed: int,
        directory: Path,
        agents: Sequence[Agent],
        brokers: dict[str, str],  # account -> broker
        *,
        keep_commands: bool = False,
        clock: Callable[[], float] = time.perf_counter,
        ledger: bool = True,
    ) -> None:
        self.scenario = scenario
        self.directory = directory
        self.ledger: CertifiedLedger | None = None
        if ledger:
            self.genesis: Genesis = write_consortium(scenario, seed, directory)
            self.ledger = CertifiedLedger(
                self.genesis, seed, directory, block_commands=scenario.block_commands
            )
            self.machine = self.ledger.venue.machine
        else:  # the same genesis, in memory: no consortium is written
            self.genesis = scenario_genesis(scenario, seed)
            self.machine = VenueMachine(venue_from_genesis(self.genesis))
        self._venue_apply = self.machine.venue.apply
        self._pending = 0  # without a ledger: commands applied since the last cut
        self._pending_events = 0
        self._cuts = 0
        self._view = VenueView(self.machine, scenario)
        self._agents = agents
        self._brokers = brokers
        self._symbols = [instrument.symbol for instrument in scenario.instruments]
        self._offset_ns = day_start_ns(scenario.day)  # the current day's 09:30 - its start
        self._day = scenario.day
        self._nets = any(i.settlement != "gross" for i in scenario.instruments)
        self._command_ids = COMMAND_ID_BASE  # the operator's settlement commands
        self._accounts = sorted(brokers)
        self._interval_ns = scenario.block_interval_ns
        self._next_cut_ns = self._interval_ns
        self._block_commands = scenario.block_commands
        self.kept_commands: list[KeptBlock] | None = [] if keep_commands and ledger else None
        # without a ledger: every command object applied to the venue, for the benchmark's
        # replay of `Venue.apply` alone
        self.kept_objects: list[Any] | None = [] if keep_commands and not ledger else None
        if not ledger:  # agents' intents straight to the venue: no bytes, no dicts
            self.submit = self._submit_direct  # type: ignore[method-assign]
        self.messages = 0
        self.events = 0
        self.state_hash = b""
        self.tip_hash = b""  # the last block's header hash
        self._clock = clock
        self._clock_start = clock()
        # one tuple a row, turned into columns once (`tables`): cheaper than an append to each
        # column for every row, which the profile showed as the driver's largest own cost
        self._order_rows: list[tuple[object, ...]] = []
        self._trade_rows: list[tuple[object, ...]] = []
        self._block_rows: list[tuple[object, ...]] = []
        self._event_names: dict[type, str] = {}
        self._quote_rows: list[tuple[object, ...]] = []
        self._day_rows: list[tuple[object, ...]] = []
        self._cycle_rows: list[tuple[object, ...]] = []
        self._position_rows: list[tuple[object, ...]] = []
        self._next_quote_ns = 0

    @property
    def market(self) -> VenueView:
        return self._view

    @property
    def tables(self) -> Tables:
        """What the run did so far, as columns (built at each call: O(rows))."""
        return Tables(
            orders=columns(ORDER_COLUMNS, self._order_rows),
            trades=columns(TRADE_COLUMNS, self._trade_rows),
            blocks=columns(BLOCK_COLUMNS, self._block_rows),
            quotes=columns(QUOTE_COLUMNS, self._quote_rows),
            days=columns(DAY_COLUMNS, self._day_rows),
            cycles=columns(CYCLE_COLUMNS, self._cycle_rows),
            positions=columns(POSITION_COLUMNS, self._position_rows),
        )

    @property
    def height(self) -> int:
        return self.ledger.height if self.ledger is not None else self._cuts

    # -- the Driver protocol --------------------------------------------------------------

    def begin(self, now_ns: int, day: int | None = None) -> None:
        # the day's commands are timed from 09:30 in Shanghai on its date (by default the first)
        day = self.scenario.day if day is None else day
        self._offset_ns = day_start_ns(day) - now_ns
        self._day = day
        self._day_rows.append((len(self._day_rows), day, now_ns, now_ns + self.scenario.duration_ns,
                               self._offset_ns + now_ns))  # fmt: skip
        self._run(now_ns, {"type": "begin_day", "day": day})

    def set_phase(self, now_ns: int, phase: str) -> None:
        for symbol in self._symbols:
            self._run(now_ns, {"type": "set_phase", "symbol": symbol, "phase": phase})
            self._view.phases[symbol] = PHASES[phase]

    def advance(self, now_ns: int) -> None:
        if now_ns >= self._next_quote_ns:
            self._sample_quotes(now_ns)
        if now_ns >= self._next_cut_ns:
            self._cut(now_ns)
            self._next_cut_ns = (now_ns // self._interval_ns + 1) * self._interval_ns

    def submit(self, now_ns: int, agent: Agent, intents: Sequence[Intent]) -> None:
        rows = self._order_rows
        ledger = self.ledger is not None
        command: dict[str, Any] | BrokerCommand
        for intent in intents:
            kind = type(intent)
            broker = self._brokers[intent.account]
            if kind is Place:
                assert isinstance(intent, Place)
                command = place_command(broker, intent) if ledger else place_object(broker, intent)
                events = self._run(now_ns, command)
                rows.append((
                    now_ns, intent.order_id, agent.agent_id, "place", intent.account,
                    intent.symbol, SIDE_NAMES[intent.side], intent.price, intent.quantity,
                    intent.tif == "ioc", self._event_name(events[0]) if events else "error",
                    intent.tif, intent.post_only,
                ))  # fmt: skip
            elif kind is Cancel:
                if ledger:
                    command = {"type": "cancel", "broker": broker,
                               "order_id": intent.order_id, "symbol": intent.symbol}  # fmt: skip
                else:
                    command = BrokerCommand(
                        broker=broker, command=CancelOrder(intent.order_id, intent.symbol)
                    )
                events = self._run(now_ns, command)
                rows.append((now_ns, intent.order_id, agent.agent_id, "cancel", intent.account,
                             intent.symbol, None, None, None, None,
                             self._event_name(events[0]) if events else "error", None,
                             None))  # fmt: skip
            else:
                assert isinstance(intent, Amend)
                command = (
                    amend_command(broker, intent)
                    if ledger
                    else BrokerCommand(
                        broker=broker,
                        command=AmendOrder(
                            intent.order_id, intent.symbol, intent.price, intent.quantity
                        ),
                    )
                )
                # a refused or unfunded amend leaves the order as it was: not done
                events = self._run(now_ns, command, done=False)
                rows.append((now_ns, intent.order_id, agent.agent_id, "amend", intent.account,
                             intent.symbol, None, intent.price, intent.quantity, None,
                             self._event_name(events[0]) if events else "error", None,
                             None))  # fmt: skip

    def _submit_direct(self, now_ns: int, agent: Agent, intents: Sequence[Intent]) -> None:
        """`submit` without a ledger: each intent as the venue command object the broker's
        JSON would parse to (`place_object`), applied to the venue at once; the same rows and
        feedback. Written out, as the no-ledger run's one per-message path."""
        rows = self._order_rows
        apply = self._venue_apply
        brokers = self._brokers
        names = self._event_names
        kept = self.kept_objects
        agent_id = agent.agent_id
        for intent in intents:
            kind = type(intent)
            if type(intent) is Place:
                order = PlaceOrder(intent.order_id, intent.symbol, intent.account, intent.side,
                                   LIMIT if intent.price is not None else MARKET, intent.price,
                                   intent.quantity, TIME_IN_FORCE[intent.tif],
                                   intent.post_only)  # fmt: skip
                command = BrokerCommand(broker=brokers[intent.account], command=order)
            elif type(intent) is Cancel:
                cancel = CancelOrder(intent.order_id, intent.symbol)
                command = BrokerCommand(broker=brokers[intent.account], command=cancel)
            else:
                assert type(intent) is Amend
                amend = AmendOrder(intent.order_id, intent.symbol, intent.price, intent.quantity)
                command = BrokerCommand(broker=brokers[intent.account], command=amend)
            if kept is not None:
                kept.append(command)
            events: list[Any] = apply(command)
            self._pending += 1
            self._pending_events += len(events)
            for event in events:
                event_type = type(event)
                if event_type is TradeExecuted:
                    self._trade(now_ns, event)
                elif event_type in DONE_EVENTS and kind is not Amend:
                    # a refused or unfunded amend leaves the order as it was: not done
                    owner = self._owner(event.order_id)
                    if owner is not None:
                        owner.on_done(event.order_id)
            if events:
                outcome = names.get(type(events[0])) or self._event_name(events[0])
            else:
                outcome = "error"
            if type(intent) is Place:
                rows.append((now_ns, intent.order_id, agent_id, "place", intent.account,
                             intent.symbol, SIDE_NAMES[intent.side], intent.price,
                             intent.quantity, intent.tif == "ioc", outcome, intent.tif,
                             intent.post_only))  # fmt: skip
            elif type(intent) is Cancel:
                rows.append((now_ns, intent.order_id, agent_id, "cancel", intent.account,
                             intent.symbol, None, None, None, None, outcome, None,
                             None))  # fmt: skip
            else:
                assert type(intent) is Amend
                rows.append((now_ns, intent.order_id, agent_id, "amend", intent.account,
                             intent.symbol, None, intent.price, intent.quantity, None, outcome,
                             None, None))  # fmt: skip
            if self._pending >= self._block_commands:
                self._cut(now_ns)

    def _sample_quotes(self, now_ns: int) -> None:
        """The best bid and ask of every instrument at each whole virtual second (the book as
        it stands when the run first reaches or passes it)."""
        second = QUOTE_INTERVAL_NS
        at = self._next_quote_ns
        engine = self.machine.venue.matching
        for symbol in self._symbols:
            self._quote_rows.append((at, symbol, engine.best_bid(symbol), engine.best_ask(symbol)))
        self._next_quote_ns = (now_ns // second + 1) * second

    def end_day(self, now_ns: int, day: int) -> None:
        """The day's positions (T+1 and net deliveries pending), its net settlement cycle if
        the scenario runs one and an instrument settles net, then `end_day`."""
        self._position_rows.extend(
            position_rows(self.machine.venue, self._symbols, self._accounts, day, now_ns)
        )
        if self.scenario.settle_cycle == "end_of_day" and self._nets:
            self._command_ids += 1
            command = {"type": "settle_cycle", "command_id": self._command_ids,
                       "actor": self.genesis.exchange.name}  # fmt: skip
            events = self._run(now_ns, command)
            self._cycle_rows.append(cycle_row(day, now_ns, events))
        self._run(now_ns, {"type": "end_day", "day": day})
        for symbol in self._symbols:
            self._view.phases[symbol] = Phase.CLOSED

    def end(self, now_ns: int) -> None:
        self._cut(now_ns)
        if self.ledger is not None:
            self.ledger.finish()
        self.state_hash = self.machine.state_hash()

    def close(self) -> None:
        if self.ledger is not None:
            self.ledger.close()

    # -- commands, feedback and blocks ----------------------------------------------------

    def _run(
        self, now_ns: int, command: dict[str, Any] | BrokerCommand, *, done: bool = True
    ) -> list[Any]:
        """Execute `command`: its JSON object through the ledger, or without one the venue
        command itself (an agent's order, built by `place_object`) or parsed from its object."""
        ledger = self.ledger
        if ledger is not None:
            assert type(command) is dict
            # its time is its place in the virtual day (the proposer keeps times from going back)
            events = ledger.apply(canonical_bytes(command), self._offset_ns + now_ns)
            full = ledger.pending >= self._block_commands
        else:
            # what VenueMachine.apply does, minus the bytes: the command to the venue (whose
            # state commitment records the changes all the same), its events as objects
            parsed = command if type(command) is BrokerCommand else parse_venue_command(command)
            assert type(parsed) is not wire.WireError, f"{parsed} in {command}"
            if self.kept_objects is not None:
                self.kept_objects.append(parsed)
            events = self._venue_apply(parsed)
            self._pending += 1
            self._pending_events += len(events)
            full = self._pending >= self._block_commands
        for event in events:
            kind = type(event)
            if kind is TradeExecuted:
                self._trade(now_ns, event)
            elif done and kind in DONE_EVENTS:
                owner = self._owner(event.order_id)
                if owner is not None:
                    owner.on_done(event.order_id)
        if full:
            self._cut(now_ns)
        return events

    def _owner(self, order_id: int) -> Agent | None:
        index = order_id // ORDER_IDS_PER_AGENT - 1
        return self._agents[index] if 0 <= index < len(self._agents) else None

    def _trade(self, now_ns: int, trade: TradeExecuted) -> None:
        self._view.last[trade.symbol] = trade.price
        buyer, seller = self._owner(trade.buy_order_id), self._owner(trade.sell_order_id)
        if buyer is not None:
            buyer.on_fill(trade.buy_order_id, trade.symbol, Side.BUY, trade.quantity)
        if seller is not None:
            seller.on_fill(trade.sell_order_id, trade.symbol, Side.SELL, trade.quantity)
        self._trade_rows.append(
            (trade.trade_id, now_ns, self.height + 1, trade.symbol, trade.price, trade.quantity,
             trade.buy_order_id, trade.sell_order_id, trade.buy_account, trade.sell_account,
             -1 if buyer is None else buyer.agent_id, -1 if seller is None else seller.agent_id,
             None if trade.aggressor is None else SIDE_NAMES[trade.aggressor])
        )  # fmt: skip

    def _event_name(self, event: Any) -> str:
        kind = type(event)
        name = self._event_names.get(kind)
        if name is None:
            name = event_name(event)
            self._event_names[kind] = name
        return name

    def _cut(self, now_ns: int) -> None:
        """Make, certify and store the pending commands as the next block (none: no block);
        without a ledger, count them as a block would."""
        ledger = self.ledger
        if ledger is None:
            if self._pending:
                self._cuts += 1
                self.messages += self._pending
                self.events += self._pending_events
                self._block_rows.append((self._cuts, now_ns, self._pending, self._pending_events,
                                         self._clock() - self._clock_start))  # fmt: skip
                self._pending = self._pending_events = 0
            return
        block = ledger.cut(self._offset_ns + now_ns)
        if block is None:
            return
        commands, events = block.header.command_count, ledger.block_events
        self.tip_hash = block.header.hash
        self.messages += commands
        self.events += events
        if self.kept_commands is not None:
            self.kept_commands.append((block.header.time_ns, block.commands, block.times_ns))
        self._block_rows.append(
            (self.height, now_ns, commands, events, self._clock() - self._clock_start)
        )
