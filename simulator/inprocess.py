"""The in-process driver: agents' intents applied to the real venue state machine, in blocks.

`InProcessDriver` writes a consortium directory (`exchange.consortium.init.init_consortium`) whose
genesis lists the scenario's instruments and gives every agent's broker funded accounts, then
turns each intent into the canonical JSON command a broker would send and applies it at once
to a `VenueMachine` (`apply_observed`, so the venue's events reach the agents before their next
arrival, with no decoding). Commands accumulate into a block that is cut every
`block_interval_ms` of virtual time, or at `block_commands`; each block is sealed with the
exchange's key (`ledger.machine.seal`), voted by every voting member, certified and appended to
one member's block store with the venue's indexer. The output directory is therefore a real
node directory: `jinlian verify DIR/bank1` re-executes it from the genesis.

Every key is derived from the seed (`derived_key`), block times are virtual and nothing else in
the ledger depends on the machine, so the same seed and scenario give a byte-identical ledger.
Such keys protect nothing: a simulation's consortium is for analysis, not for trading.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from exchange.consortium.indexer import VenueIndexer
from exchange.consortium.init import Market, init_consortium, venue_from_genesis
from exchange.venue import wire
from exchange.venue.machine import VenueMachine
from exchange.venue.types import OrderRefused, OrderUnfunded
from ledger.block import certify, sign_vote
from ledger.canonical import canonical_bytes, sha256
from ledger.genesis import Genesis
from ledger.keys import PrivateKey, private_key_from_bytes
from ledger.machine import executed, seal
from ledger.store import BlockStore
from matching.events import (
    OrderCancelled,
    OrderExpired,
    OrderRejected,
    TradeExecuted,
)
from matching.types import Phase, Side
from simulator.agents import ORDER_IDS_PER_AGENT, Agent, Cancel, Intent, Place
from simulator.scenario import Scenario

NODE: Final = "bank1"  # the member whose store the run writes
MEMBERS: Final = 4
BASE_PORT: Final = 7400  # the nodes' addresses in the genesis: 127.0.0.1:7400...
SIDE_NAMES: Final = {Side.BUY: "buy", Side.SELL: "sell"}
DONE_EVENTS: Final = (OrderCancelled, OrderExpired, OrderRejected, OrderRefused, OrderUnfunded)
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
    return init_consortium(
        directory,
        members=MEMBERS,
        brokers=scenario.brokers,
        base_port=base_port,
        market=Market(
            instruments=tuple(instrument.listing() for instrument in scenario.instruments),
            accounts_per_broker=scenario.accounts_per_broker(),
            cash_per_account=scenario.cash_per_account,
            shares_per_account=scenario.shares_per_account,
        ),
        new_key=lambda name: derived_key(seed, name),
        chain_id=f"jinlian-sim-{scenario.name}",
    )


@dataclass(slots=True)
class Tables:
    """What the run did, as columns (lists) for Parquet: one entry per row."""

    orders: dict[str, list[Any]] = field(default_factory=dict)
    trades: dict[str, list[Any]] = field(default_factory=dict)
    blocks: dict[str, list[Any]] = field(default_factory=dict)


ORDER_COLUMNS: Final = ("time_ns", "order_id", "agent_id", "action", "account", "symbol", "side",
                        "price", "quantity", "ioc", "outcome")  # fmt: skip
TRADE_COLUMNS: Final = ("trade_id", "time_ns", "height", "symbol", "price", "quantity",
                        "buy_order_id", "sell_order_id", "buy_account", "sell_account",
                        "buy_agent_id", "sell_agent_id", "aggressor")  # fmt: skip
BLOCK_COLUMNS: Final = ("height", "time_ns", "commands", "events", "wall_s")


class VenueView:
    """The market as agents see it in process: the venue's books, the last trade, the phase."""

    def __init__(self, machine: VenueMachine, scenario: Scenario) -> None:
        self._engine = machine.venue.matching
        self.last: dict[str, int] = {i.symbol: i.reference_price for i in scenario.instruments}
        self.phases: dict[str, Phase] = {i.symbol: Phase.CLOSED for i in scenario.instruments}

    def best_bid(self, symbol: str) -> int | None:
        return self._engine.best_bid(symbol)

    def best_ask(self, symbol: str) -> int | None:
        return self._engine.best_ask(symbol)

    def last_price(self, symbol: str) -> int:
        return self.last[symbol]

    def phase(self, symbol: str) -> Phase:
        return self.phases[symbol]


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
    ) -> None:
        self.scenario = scenario
        self.directory = directory
        self.genesis: Genesis = write_consortium(scenario, seed, directory)
        genesis = self.genesis
        self._exchange_key = derived_key(seed, genesis.exchange.name)
        self._voter_keys = {
            member.id: derived_key(seed, member.name) for member in genesis.members if member.voting
        }
        self.store = BlockStore.open(
            directory / NODE / "ledger.sqlite",
            genesis.hash,
            indexer=VenueIndexer(),
            synchronous="NORMAL",
        )
        self.machine = VenueMachine(venue_from_genesis(genesis))
        self._apply = self.machine.apply_observed
        self._view = VenueView(self.machine, scenario)
        self._agents = agents
        self._brokers = brokers
        self._symbols = [instrument.symbol for instrument in scenario.instruments]
        self._start_ns = day_start_ns(scenario.day)
        self._interval_ns = scenario.block_interval_ns
        self._next_cut_ns = self._interval_ns
        self._block_commands = scenario.block_commands
        self._commands: list[dict[str, Any]] = []
        self._encoded: list[bytes] = []  # their canonical bytes, what the block carries
        self._times: list[int] = []  # each command's sequencing time
        self._events: list[list[bytes]] = []  # each command's events
        self._parent = genesis.hash
        self.height = 0
        self.kept_commands: list[list[dict[str, Any]]] | None = [] if keep_commands else None
        self.messages = 0
        self.events = 0
        self.state_hash = b""
        self._clock = clock
        self._clock_start = clock()
        self.tables = Tables(
            orders={name: [] for name in ORDER_COLUMNS},
            trades={name: [] for name in TRADE_COLUMNS},
            blocks={name: [] for name in BLOCK_COLUMNS},
        )
        self._event_names: dict[type, str] = {}

    @property
    def market(self) -> VenueView:
        return self._view

    # -- the Driver protocol --------------------------------------------------------------

    def begin(self, now_ns: int) -> None:
        self._run(now_ns, {"type": "begin_day", "day": self.scenario.day})

    def set_phase(self, now_ns: int, phase: str) -> None:
        for symbol in self._symbols:
            self._run(now_ns, {"type": "set_phase", "symbol": symbol, "phase": phase})
            self._view.phases[symbol] = PHASES[phase]

    def advance(self, now_ns: int) -> None:
        if now_ns >= self._next_cut_ns:
            self._cut(now_ns)
            self._next_cut_ns = (now_ns // self._interval_ns + 1) * self._interval_ns

    def submit(self, now_ns: int, agent: Agent, intents: Sequence[Intent]) -> None:
        orders = self.tables.orders
        for intent in intents:
            if type(intent) is Place:
                command: dict[str, Any] = {
                    "type": "place", "broker": self._brokers[intent.account],
                    "order_id": intent.order_id, "symbol": intent.symbol,
                    "account": intent.account, "side": SIDE_NAMES[intent.side],
                    "price": intent.price, "quantity": intent.quantity,
                }  # fmt: skip
                if intent.ioc:
                    command["tif"] = "ioc"
                events = self._run(now_ns, command)
                row: tuple[object, ...] = (
                    now_ns, intent.order_id, agent.agent_id, "place", intent.account,
                    intent.symbol, SIDE_NAMES[intent.side], intent.price, intent.quantity,
                    intent.ioc,
                )  # fmt: skip
            else:
                assert type(intent) is Cancel
                command = {"type": "cancel", "broker": self._brokers[intent.account],
                           "order_id": intent.order_id, "symbol": intent.symbol}  # fmt: skip
                events = self._run(now_ns, command)
                row = (now_ns, intent.order_id, agent.agent_id, "cancel", intent.account,
                       intent.symbol, None, None, None, None)  # fmt: skip
            for name, value in zip(ORDER_COLUMNS, row, strict=False):
                orders[name].append(value)
            orders["outcome"].append(self._event_name(events[0]) if events else "error")

    def end(self, now_ns: int) -> None:
        self._run(now_ns, {"type": "end_day", "day": self.scenario.day})
        self._cut(now_ns)
        self.state_hash = self.machine.state_hash()

    def close(self) -> None:
        self.store.close()

    # -- commands, feedback and blocks ----------------------------------------------------

    def _run(self, now_ns: int, command: dict[str, Any]) -> list[Any]:
        encoded = canonical_bytes(command)
        time_ns = max(self._start_ns + now_ns, self._times[-1] if self._times else 0)
        observed, data = self._apply(encoded, time_ns)
        events: list[Any] = observed  # dispatched on their exact type below
        self._commands.append(command)
        self._encoded.append(encoded)
        self._times.append(time_ns)
        self._events.append(data)
        for event in events:
            kind = type(event)
            if kind is TradeExecuted:
                self._trade(now_ns, event)
            elif kind in DONE_EVENTS:
                owner = self._owner(event.order_id)
                if owner is not None:
                    owner.on_done(event.order_id)
        if len(self._commands) >= self._block_commands:
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
        row = (trade.trade_id, now_ns, self.height + 1, trade.symbol, trade.price, trade.quantity,
               trade.buy_order_id, trade.sell_order_id, trade.buy_account, trade.sell_account,
               -1 if buyer is None else buyer.agent_id, -1 if seller is None else seller.agent_id,
               None if trade.aggressor is None else SIDE_NAMES[trade.aggressor])  # fmt: skip
        trades = self.tables.trades
        for name, value in zip(TRADE_COLUMNS, row, strict=True):
            trades[name].append(value)

    def _event_name(self, event: Any) -> str:
        kind = type(event)
        name = self._event_names.get(kind)
        if name is None:
            name = str(wire.event_to_dict(event)["type"])
            self._event_names[kind] = name
        return name

    def _cut(self, now_ns: int) -> None:
        """Seal, certify and store the pending commands as the next block (none: no block)."""
        commands, events = self._commands, self._events
        if not commands:
            return
        times = self._times
        execution = executed(self._encoded, times, events, self.machine.state_hash())
        block = seal(
            self._exchange_key,
            proposer=self.genesis.exchange.id,
            height=self.height + 1,
            parent_hash=self._parent,
            time_ns=max(self._start_ns + now_ns, times[-1]),
            commands=self._encoded,
            times_ns=times,
            execution=execution,
        )
        self.store.append(block, execution.events)
        self.store.index_blocks(1)  # the analysts' tables, as an indexing member builds them
        votes = [sign_vote(key, member, block.header) for member, key in self._voter_keys.items()]
        self.store.add_certificate(certify(block.header, votes))
        self.height += 1
        self._parent = block.header.hash
        self.messages += len(commands)
        event_count = execution.event_count
        self.events += event_count
        if self.kept_commands is not None:
            self.kept_commands.append(commands)
        blocks = self.tables.blocks
        for name, value in zip(
            BLOCK_COLUMNS,
            (self.height, now_ns, len(commands), event_count, self._clock() - self._clock_start),
            strict=True,
        ):
            blocks[name].append(value)
        self._commands, self._events, self._encoded, self._times = [], [], [], []
