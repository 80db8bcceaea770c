"""The network mode: the scenario's agents trade with a running consortium over the broker API.

    parent                               client process k (spawn), brokers b with b % K == k
    ------                               ---------------------------------------------------
    write the scenario's consortium      build the same `Simulation` (same seed: same agents,
    (`write_consortium`, same genesis    same arrival schedule); keep the arrivals of the
    as in-process) and start it          agents whose broker is its own
    (`consortium.nodes.start_processes`) one `gateway.client.Client` session per broker;
    or `--connect` to a running one      books, trades and phase of every symbol -> MarketView
                               <-- ready
    each trading day k (operator session):
    begin_day, the phases due at 0;
    start_at = now + 0.5
                               start_at -->
    set_phase at start_at + at/speed     at start_at + (now - k x duration)/speed, for each
                                         arrival of day k: agent.act, each intent sent as its
                                         own task, without waiting (open loop); latency =
                                         reply time - scheduled time -> HDR histogram (no
                                         coordinated omission)
    at start_at + duration/speed, once                 <-- sent (every order of the day answered)
    every client is done: settle_cycle
    (if net), end_day
    after the last day: the blocks up to
    the last end_day (GET /block), re-
    executed: days, positions, cycles
                               finish -->
                                         reports until quiet, then the results
                               <-- result
    merge histograms and tables,
    stop the consortium, verify a member's store

The agents are the in-process mode's, unchanged: they act on a `MarketView` and learn what
happened only from `on_fill` / `on_done`, here called from the broker's execution reports
(the `report` stream, in index order), while best bid and ask come from the local L2 book the
client keeps (`Client.book`, with gap detection), and the last price and the phase from the
`trades` and `phase` channels. A simulator order id travels as the `client_order_id` (its
decimal string); the exchange's `order_id` comes back in the reports and is kept beside it.

Unlike the in-process mode this is not reproducible: feedback arrives when the network and
the exchange deliver it, so agents may decide differently from run to run. The seed still
fixes the arrival schedule and each agent's draws. The walk over the schedule is an asyncio
loop in each client process rather than `Simulation.run` with a `Driver`: replies and market
data arrive concurrently with the schedule, and the agents' state is touched only from that
one loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogWriter

from exchange.consortium.audit import verify_node
from exchange.consortium.init import venue_from_genesis
from exchange.consortium.nodes import load_config, start_processes, stop_processes
from exchange.gateway.client import Client, RequestError, RestError
from exchange.venue import wire_fast
from exchange.venue.machine import VenueMachine
from exchange.venue.types import BeginDay, EndDay
from ledger.feed import wait_until_up
from ledger.genesis import Genesis, load_genesis
from ledger.keys import load_private_key
from matching.types import Phase, Side
from settlement.commands import SettleCycle
from simulator.agents import ORDER_IDS_PER_AGENT, Agent, Amend, Intent, Place
from simulator.inprocess import (
    BASE_PORT,
    COMMAND_ID_BASE,
    CYCLE_COLUMNS,
    DAY_COLUMNS,
    NODE,
    ORDER_COLUMNS,
    POSITION_COLUMNS,
    SIDE_NAMES,
    amend_command,
    columns,
    cycle_row,
    day_start_ns,
    place_command,
    position_rows,
    write_consortium,
)
from simulator.outputs import write_tables
from simulator.run import LABEL_COLUMNS, code_version, label_schema, typed
from simulator.scenario import Scenario
from simulator.simulation import AgentSpec, Simulation, assign_accounts

HISTOGRAM: Final = (1, 120_000_000, 3)  # microseconds: 1 us .. 120 s, 3 significant digits
NETWORK_ORDER_COLUMNS: Final = (*ORDER_COLUMNS, "exchange_order_id", "latency_us")
TRADE_SIDE_COLUMNS: Final = ("trade_id", "time_ns", "height", "symbol", "price", "quantity",
                             "side", "order_id", "account", "agent_id", "liquidity")  # fmt: skip
DONE_REPORTS: Final = frozenset({"cancelled", "expired", "rejected"})
ENDS_ORDER: Final = DONE_REPORTS | {"order_not_open", "unknown_order"}  # replies: the order is done
ENDS_AMEND: Final = frozenset({"order_not_open", "unknown_order"})  # replies to an amend: done
START_DELAY_S: Final = 0.5  # from the start signal to the first scheduled send
READY_TIMEOUT_S: Final = 120.0
QUIET_S: Final = 0.5  # after the day ends: no report for this long and the run is over
DRAIN_MAX_S: Final = 15.0
PERCENTILES: Final = (50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0)


class NetworkError(Exception):
    """The network run could not start or a client process failed (message says which)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What one client process needs (pickled to it by `spawn`)."""

    scenario: Scenario
    seed: int
    address: str
    chain_id: str
    keys: dict[str, str]  # broker -> path of its key
    speed: float


# ---- the client process ------------------------------------------------------------------


class NetworkView:
    """The market as agents see it over the wire: best levels of the client's local L2 books,
    the last trade price and the phase from the market data channels."""

    def __init__(self, scenario: Scenario) -> None:
        self.books: dict[str, Any] = {}  # symbol -> exchange.gateway.client.Book
        self.last: dict[str, int] = {i.symbol: i.reference_price for i in scenario.instruments}
        self.phases: dict[str, Phase] = {i.symbol: Phase.CLOSED for i in scenario.instruments}

    def best_bid(self, symbol: str) -> int | None:
        book = self.books.get(symbol)
        return max(book.bids) if book is not None and book.bids else None

    def best_ask(self, symbol: str) -> int | None:
        book = self.books.get(symbol)
        return min(book.asks) if book is not None and book.asks else None

    def last_price(self, symbol: str) -> int:
        return self.last[symbol]

    def phase(self, symbol: str) -> Phase:
        return self.phases[symbol]

    def on_market(self, message: dict[str, Any]) -> None:
        symbol = message.get("symbol")
        if symbol not in self.last:
            return
        kind = message["type"]
        if kind == "trades" and message["trades"]:
            self.last[symbol] = int(message["trades"][-1]["price"])
        elif kind == "phase":
            with contextlib.suppress(KeyError):
                self.phases[symbol] = Phase[str(message["phase"]).upper()]


@dataclass(slots=True)
class _Session:
    """One client process's run: its agents, sessions, and what it measured."""

    plan: Plan
    agents: dict[int, Agent]  # the process's own agents, by agent id
    view: NetworkView
    clients: dict[str, Client] = field(default_factory=dict)
    origin: float = 0.0  # perf_counter at the start of the first day: wall figures count from it
    day_origin: float = 0.0  # perf_counter at the start of the current trading day
    day_start_ns: int = 0  # the current day's virtual start (day k starts at k x duration)
    histogram: HdrHistogram = field(default_factory=lambda: HdrHistogram(*HISTOGRAM))
    orders: dict[str, list[Any]] = field(
        default_factory=lambda: {name: [] for name in NETWORK_ORDER_COLUMNS}
    )
    trade_sides: list[tuple[Any, ...]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    sent_s: list[float] = field(default_factory=list)  # wall s from origin, per message
    replied_s: list[float] = field(default_factory=list)
    last_report: float = 0.0
    reports: int = 0
    cancelling: set[int] = field(default_factory=set)  # agents' order ids with a cancel in flight
    cancels_held: int = 0

    def virtual_ns(self, wall: float) -> int:
        """The virtual time of a wall instant, within the current day (a report that arrives
        after its day's wall span keeps to the day's last ns)."""
        elapsed_ns = int((wall - self.day_origin) * self.plan.speed * 1e9)
        return self.day_start_ns + max(0, min(elapsed_ns, self.plan.scenario.duration_ns - 1))

    async def send(
        self, client: Client, agent: Agent, intent: Intent, now_ns: int, scheduled: float
    ) -> None:
        cancel = type(intent) is not Place
        if cancel:
            if intent.order_id in self.cancelling:
                self.cancels_held += 1  # the agent does not know yet: a broker would not resend
                return
            self.cancelling.add(intent.order_id)
        self.sent_s.append(time.perf_counter() - self.origin)
        client_order_id = str(intent.order_id)
        exchange_order_id = None
        try:
            if type(intent) is Place:
                order = place_command("", intent)
                for name in ("type", "broker", "order_id"):
                    del order[name]
                reply = await client.place(client_order_id=client_order_id, **order)
            elif type(intent) is Amend:
                change = amend_command("", intent)
                for name in ("type", "broker", "order_id", "symbol"):
                    del change[name]
                reply = await client.amend(client_order_id=client_order_id, **change)
            else:
                reply = await client.cancel(client_order_id=client_order_id)
            if reply.get("type") == "report":
                outcome = str(reply.get("report"))
                exchange_order_id = reply.get("order_id")
            else:
                outcome = "duplicate" if reply.get("duplicate") else str(reply.get("type"))
        except RequestError as error:
            outcome = error.code
            self.errors[error.code] += 1
        except (ConnectionError, TimeoutError) as error:
            outcome = type(error).__name__
            self.errors[outcome] += 1
            self._row(agent, intent, now_ns, outcome, None, None)
            return
        finally:
            if cancel:
                self.cancelling.discard(intent.order_id)
        # the reply is feedback too, ahead of the report stream; a refused amend leaves the
        # order as it was
        if outcome in (ENDS_AMEND if type(intent) is Amend else ENDS_ORDER):
            agent.on_done(intent.order_id)
        replied = time.perf_counter()
        self.replied_s.append(replied - self.origin)
        latency_us = max(1, int((replied - scheduled) * 1e6))
        self.histogram.record_value(min(latency_us, HISTOGRAM[1]))
        self._row(agent, intent, now_ns, outcome, exchange_order_id, latency_us)

    def _row(self, agent: Agent, intent: Intent, now_ns: int, outcome: str,
             exchange_order_id: Any, latency_us: int | None) -> None:  # fmt: skip
        if type(intent) is Place:
            row: tuple[object, ...] = (
                now_ns, intent.order_id, agent.agent_id, "place", intent.account, intent.symbol,
                SIDE_NAMES[intent.side], intent.price, intent.quantity, intent.ioc, outcome,
                intent.tif, intent.post_only,
            )  # fmt: skip
        elif type(intent) is Amend:
            row = (now_ns, intent.order_id, agent.agent_id, "amend", intent.account,
                   intent.symbol, None, intent.price, intent.quantity, None, outcome, None,
                   None)  # fmt: skip
        else:
            row = (now_ns, intent.order_id, agent.agent_id, "cancel", intent.account,
                   intent.symbol, None, None, None, None, outcome, None, None)  # fmt: skip
        row += (exchange_order_id if type(exchange_order_id) is int else None, latency_us)
        for name, value in zip(NETWORK_ORDER_COLUMNS, row, strict=True):
            self.orders[name].append(value)

    def on_report(self, report: dict[str, Any]) -> None:
        """Feedback to the agent that owns the order, and a trade side for the trades table."""
        now = time.perf_counter()
        self.last_report = now
        self.reports += 1
        client_order_id = report.get("client_order_id")
        if not isinstance(client_order_id, str) or not client_order_id.isdigit():
            return
        order_id = int(client_order_id)
        agent = self.agents.get(order_id // ORDER_IDS_PER_AGENT - 1)
        if agent is None:
            return
        kind = report.get("report")
        if kind == "trade":
            side = Side.BUY if report["side"] == "buy" else Side.SELL
            agent.on_fill(order_id, report["symbol"], side, int(report["quantity"]))
            self.trade_sides.append((
                report["trade_id"], self.virtual_ns(now), report.get("height"), report["symbol"],
                report["price"], report["quantity"], report["side"], order_id, report["account"],
                agent.agent_id, report.get("liquidity"),
            ))  # fmt: skip
        elif kind in DONE_REPORTS:
            agent.on_done(order_id)


async def _reader(client: Client, session: _Session) -> None:
    async for report in client.reports():
        session.on_report(report)


async def _market_reader(client: Client, view: NetworkView) -> None:
    while True:
        view.on_market(await client.market.get())


Arrival = tuple[int, int]  # virtual ns, agent index


async def _walk_day(
    session: _Session,
    broker_of: dict[str, str],
    mine: set[int],
    pending: Arrival | None,
    arrivals: Iterator[Arrival],
    tasks: set[asyncio.Task[None]],
) -> Arrival | None:
    """Send the process's arrivals of the current day at their wall times (open loop: each
    intent its own task, in `tasks`); the first arrival of a later day, or None."""
    end_ns = session.day_start_ns + session.plan.scenario.duration_ns
    wall_per_ns = 1e-9 / session.plan.speed
    while pending is not None and pending[0] < end_ns:
        now_ns, index = pending
        pending = next(arrivals, None)
        if index not in mine:
            continue
        scheduled = session.day_origin + (now_ns - session.day_start_ns) * wall_per_ns
        wait = scheduled - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        agent = session.agents[index]
        for intent in agent.act(now_ns, session.view):
            client = session.clients[broker_of[intent.account]]
            task = asyncio.create_task(session.send(client, agent, intent, now_ns, scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    return pending


async def _drive(connection: Connection, plan: Plan, brokers: list[str]) -> dict[str, Any]:
    scenario = plan.scenario
    simulation = Simulation(scenario, plan.seed)
    mine = {spec.agent_id for spec in simulation.specs if spec.broker in brokers}
    session = _Session(
        plan=plan,
        agents={i: simulation.agents[i] for i in mine},
        view=NetworkView(scenario),
    )
    broker_of = {account: spec.broker for spec in simulation.specs for account in spec.accounts}
    tasks: set[asyncio.Task[None]] = set()
    try:
        for broker in brokers:
            client = Client(plan.address, broker, load_private_key(Path(plan.keys[broker])),
                            chain_id=plan.chain_id)  # fmt: skip
            await client.connect()
            session.clients[broker] = client
        watcher = session.clients[brokers[0]]
        for instrument in scenario.instruments:
            symbol = instrument.symbol
            session.view.books[symbol] = await watcher.book(symbol)
            await watcher.subscribe("trades", symbol)
            await watcher.subscribe("phase", symbol)
        readers = [asyncio.create_task(_reader(client, session))
                   for client in session.clients.values()]  # fmt: skip
        readers.append(asyncio.create_task(_market_reader(watcher, session.view)))
        connection.send("ready")
        arrivals = zip(simulation.schedule_ns.tolist(), simulation.schedule_agents.tolist(),
                       strict=True)  # fmt: skip
        pending = next(arrivals, None)
        for number in range(len(scenario.trading_days)):  # the parent opens each day
            start_at: float = await asyncio.to_thread(connection.recv)
            session.day_origin = time.perf_counter() + (start_at - time.time())
            session.day_start_ns = number * scenario.duration_ns
            if number == 0:
                session.origin = session.day_origin
            pending = await _walk_day(session, broker_of, mine, pending, arrivals, tasks)
            if tasks:
                await asyncio.gather(*list(tasks))
            connection.send("sent")  # every order of the day answered: the parent ends it
        await asyncio.to_thread(connection.recv)  # finish: the last day has ended
        deadline = time.perf_counter() + DRAIN_MAX_S
        session.last_report = max(session.last_report, time.perf_counter())
        while (now := time.perf_counter()) < deadline and now - session.last_report < QUIET_S:
            await asyncio.sleep(0.05)
        for reader in readers:
            reader.cancel()
    finally:
        for task in tasks:
            task.cancel()
        for client in session.clients.values():
            await client.close()
    labels = [label for agent in session.agents.values() for label in agent.labels]
    return {
        "brokers": brokers,
        "agents": len(mine),
        "orders": session.orders,
        "trade_sides": session.trade_sides,
        "labels": [
            (label.time_ns, label.agent_id, label.label, label.role, label.order_id, label.symbol)
            for label in labels
        ],
        "histogram": session.histogram.encode().decode(),
        "errors": dict(session.errors),
        "sent_s": session.sent_s,
        "replied_s": session.replied_s,
        "reports": session.reports,
        "resyncs": sum(book.resyncs for book in session.view.books.values()),
        "cancels_held": session.cancels_held,
    }


def _client_process(connection: Connection, plan: Plan, brokers: list[str]) -> None:
    try:
        result = asyncio.run(_drive(connection, plan, brokers))
    except BaseException as error:  # reported to the parent, which fails the run
        connection.send({"failed": f"{type(error).__name__}: {error}\n{traceback.format_exc()}"})
    else:
        connection.send(result)
    connection.close()


# ---- the parent --------------------------------------------------------------------------


@dataclass(kw_only=True)
class NetworkResult:
    scenario: Scenario
    seed: int
    directory: Path
    address: str
    speed: float
    local: bool  # the run started (and stopped) its own consortium
    processes: int
    sessions: int
    messages: int  # sent
    replies: int
    orders: int
    cancels: int
    trades: int
    arrivals: int
    errors: dict[str, int]
    wall_s: float
    schedule_wall_s: float  # the schedule's span in wall time: duration / speed
    reply_span_s: float  # from the start to the last reply
    histogram: HdrHistogram
    tables: dict[str, pa.Table]
    sent_s: list[float]
    replied_s: list[float]
    state_hash: str | None
    verified: str | None  # the member store's audit ("OK: ..." or the failure)
    resyncs: int
    cancels_held: int  # agents' cancels not sent: a cancel of that order was still in flight

    @property
    def offered_per_s(self) -> float:
        return self.messages / self.schedule_wall_s if self.schedule_wall_s > 0 else 0.0

    @property
    def achieved_per_s(self) -> float:
        span = max(self.reply_span_s, self.schedule_wall_s)
        return self.replies / span if span > 0 else 0.0

    def latency_ms(self, percentile: float) -> float:
        return float(self.histogram.get_value_at_percentile(percentile)) / 1000


def check_funding(scenario: Scenario, genesis: Genesis, specs: list[AgentSpec]) -> None:
    """Refuse a consortium whose genesis does not list the scenario's instruments or hold every
    agent's account at the agent's broker."""
    listed = {str(instrument.get("symbol")) for instrument in genesis.instruments}
    for instrument in scenario.instruments:
        if instrument.symbol not in listed:
            raise NetworkError(f"the consortium does not list {instrument.symbol}")
    accounts = {broker.name: {str(a) for a in broker.accounts} for broker in genesis.brokers}
    for spec in specs:
        for account in spec.accounts:
            if account not in accounts.get(spec.broker, set()):
                raise NetworkError(f"the consortium has no account {account} at {spec.broker} "
                                   f"(agent {spec.name}): write one for the scenario with "
                                   "--init-only")  # fmt: skip


def run_network(
    scenario: Scenario,
    seed: int,
    directory: Path,
    *,
    speed: float = 1.0,
    connect: str | None = None,
    consortium: Path | None = None,
    processes: int = 2,
    base_port: int = BASE_PORT,
    progress: Callable[[int], None] | None = None,
) -> NetworkResult:
    """Run `scenario` over the wire. Without `connect`: write the scenario's consortium into
    `directory` (empty or absent), start it, run, stop it and verify a member's store. With
    `connect` (the exchange's address): `consortium` is the directory with its genesis and the
    brokers' and operator's keys, and `directory` gets only the outputs."""
    if not 0 < speed <= 1000:
        raise ValueError(f"speed must be in (0, 1000], got {speed}")
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    started = time.perf_counter()
    simulation = Simulation(scenario, seed)
    children: list[tuple[str, Any]] = []
    local = connect is None
    if local:
        genesis = write_consortium(scenario, seed, directory, base_port=base_port)
        consortium = directory
        address = load_config(directory / "exchange").address
    else:
        assert connect is not None
        if consortium is None:
            raise NetworkError("--connect needs --consortium DIR (its genesis and keys)")
        directory.mkdir(parents=True, exist_ok=True)
        genesis = load_genesis(consortium / "genesis.json")
        address = connect
    check_funding(scenario, genesis, simulation.specs)
    used = sorted({spec.broker for spec in simulation.specs},
                  key=lambda name: int(name.removeprefix("broker")))  # fmt: skip
    keys = {broker: str(consortium / "brokers" / broker / "key.pem") for broker in used}
    plan = Plan(scenario=scenario, seed=seed, address=address, chain_id=genesis.chain_id,
                keys=keys, speed=speed)  # fmt: skip
    count = min(processes, len(used))
    partitions = [used[k::count] for k in range(count)]
    try:
        if local:
            children = list(start_processes(directory))
            voters = [m.address for m in genesis.members if m.voting]
            asyncio.run(wait_until_up([address, *voters]))
        results, calendar = asyncio.run(
            _orchestrate(plan, partitions, consortium / "exchange" / "key.pem", genesis, progress)
        )
    finally:
        if children:
            stop_processes(children)
    state_hash = verified = None
    if local:
        audit = verify_node(directory / NODE)
        verified = (f"OK: {audit.blocks} blocks, {audit.commands} commands" if audit.ok
                    else f"height {audit.failed_height}: {audit.failure}")  # fmt: skip
        state_hash = None if audit.state_hash is None else audit.state_hash.hex()
    return _merge(simulation, plan, directory, results, calendar, local=local, address=address,
                  wall_s=time.perf_counter() - started, state_hash=state_hash,
                  verified=verified)  # fmt: skip


async def _orchestrate(
    plan: Plan,
    partitions: list[list[str]],
    operator_key: Path,
    genesis: Genesis,
    progress: Callable[[int], None] | None,
) -> tuple[list[dict[str, Any]], Calendar]:
    """Start the client processes, run the days through the operator's session, collect."""
    context = multiprocessing.get_context("spawn")
    pipes: list[Connection] = []
    workers = []
    try:
        for brokers in partitions:
            ours, theirs = context.Pipe()
            worker = context.Process(target=_client_process, args=(theirs, plan, brokers),
                                     daemon=True)  # fmt: skip
            worker.start()
            theirs.close()
            pipes.append(ours)
            workers.append(worker)
        for pipe in pipes:
            _expect(await _receive(pipe, READY_TIMEOUT_S), "ready")
        calendar = await _run_days(plan, pipes, operator_key, genesis, progress)
        for pipe in pipes:
            pipe.send("finish")
        results = []
        for pipe in pipes:
            result = await _receive(pipe, READY_TIMEOUT_S)
            if not isinstance(result, dict) or "failed" in result:
                _expect(result, "result")
            results.append(result)
        for worker in workers:
            worker.join(10)
        if progress is not None:
            progress(plan.scenario.run_ns)
        return results, calendar
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
                worker.join(5)


@dataclass(slots=True)
class Calendar:
    """What the days did, as `inprocess`'s DAY_COLUMNS, POSITION_COLUMNS and CYCLE_COLUMNS rows."""

    days: list[tuple[object, ...]] = field(default_factory=list)
    positions: list[tuple[object, ...]] = field(default_factory=list)
    cycles: list[tuple[object, ...]] = field(default_factory=list)


async def _run_days(
    plan: Plan,
    pipes: list[Connection],
    operator_key: Path,
    genesis: Genesis,
    progress: Callable[[int], None] | None,
) -> Calendar:
    """The operator's session, day by day: begin the day and the phases due at 0, release the
    client processes, every later phase at its wall time; once the day's wall span is over and
    every client has had its orders of the day answered, the net settlement cycle (if the
    scenario runs one) and the end of the day. Then the days' positions and cycles, from a
    re-execution of the chain the exchange serves (`calendar_of`)."""
    scenario = plan.scenario
    symbols = [instrument.symbol for instrument in scenario.instruments]
    key = load_private_key(operator_key)
    cycle = scenario.settle_cycle == "end_of_day" and any(
        instrument.settlement != "gross" for instrument in scenario.instruments
    )
    height = 0
    async with Client(plan.address, "exchange", key, member=True,
                      chain_id=plan.chain_id) as operator:  # fmt: skip
        for number, day in enumerate(scenario.trading_days):
            await _admin(operator, {"type": "begin_day", "day": day})
            start_ns = number * scenario.duration_ns
            phases = list(scenario.phases)
            while phases and phases[0].at_ns == 0:
                phase = phases.pop(0).phase
                for symbol in symbols:
                    await _admin(operator, {"type": "set_phase", "symbol": symbol,
                                            "phase": phase})  # fmt: skip
            start_at = time.time() + START_DELAY_S
            origin = time.perf_counter() + START_DELAY_S
            for pipe in pipes:
                pipe.send(start_at)
            events = [(change.at_ns, change.phase) for change in phases]
            events.append((scenario.duration_ns, ""))  # the day's end
            for at_ns, phase in events:
                due = origin + at_ns / 1e9 / plan.speed
                while (wait := due - time.perf_counter()) > 0:
                    await asyncio.sleep(min(wait, 0.25))
                    if progress is not None:
                        elapsed_ns = int((time.perf_counter() - origin) * plan.speed * 1e9)
                        progress(start_ns + max(0, min(elapsed_ns, scenario.duration_ns)))
                for symbol in symbols if phase else ():
                    await _admin(operator, {"type": "set_phase", "symbol": symbol,
                                            "phase": phase})  # fmt: skip
            for pipe in pipes:
                _expect(await _receive(pipe, READY_TIMEOUT_S), "sent")
            if cycle:  # one command id per trading date: unique on a consortium run once a day
                await _admin(operator, {"type": "settle_cycle",
                                        "command_id": COMMAND_ID_BASE + day})  # fmt: skip
            ended = await _admin(operator, {"type": "end_day", "day": day})
            height = int(ended["height"])
        blocks = [await _block(operator, number) for number in range(1, height + 1)]
    return calendar_of(scenario, genesis, blocks)


async def _block(operator: Client, height: int) -> tuple[tuple[bytes, ...], tuple[int, ...]]:
    """A stored block's commands (canonical bytes) and their times, from the exchange."""
    try:
        body = await operator.get(f"/block/{height}")
    except RestError as error:
        raise NetworkError(f"the exchange did not serve block {height}: {error}") from error
    block = body["block"]
    commands = tuple(str(command).encode() for command in block["commands"])
    return commands, tuple(int(time_ns) for time_ns in block["times_ns"])


def calendar_of(
    scenario: Scenario,
    genesis: Genesis,
    blocks: Iterable[tuple[Sequence[bytes], Sequence[int]]],
) -> Calendar:
    """The days, positions and cycles tables of a run, by re-executing its chain from the
    genesis (`blocks`: each block's commands and times, from height 1): at each `begin_day` a
    day row (its virtual span in the scenario's schedule: day k from k x duration, and its
    09:30 in Shanghai on its date), the agents' accounts' positions before the day's first
    `settle_cycle` or `end_day`, a cycle row for each `settle_cycle`. The same rows the
    in-process driver records as it runs."""
    machine = VenueMachine(venue_from_genesis(genesis))
    symbols = [instrument.symbol for instrument in scenario.instruments]
    accounts = sorted(account for spec in assign_accounts(scenario) for account in spec.accounts)
    duration_ns = scenario.duration_ns
    calendar = Calendar()
    day, end_ns, recorded = 0, 0, True
    for commands, times_ns in blocks:
        for command, time_ns in zip(commands, times_ns, strict=True):
            parsed = wire_fast.parse_venue_command(json.loads(command))
            kind = type(parsed)
            if kind is BeginDay:
                assert isinstance(parsed, BeginDay)
                number = len(calendar.days)
                day, end_ns, recorded = parsed.day, (number + 1) * duration_ns, False
                calendar.days.append((number, day, number * duration_ns, end_ns,
                                      day_start_ns(day)))  # fmt: skip
            elif kind in (SettleCycle, EndDay) and not recorded:
                calendar.positions.extend(
                    position_rows(machine.venue, symbols, accounts, day, end_ns)
                )
                recorded = True
            _, events, _ = machine.apply_parsed(command, time_ns)
            if kind is SettleCycle:
                calendar.cycles.append(cycle_row(day, end_ns, events))
    return calendar


async def _receive(pipe: Connection, timeout_s: float) -> Any:
    ready = await asyncio.to_thread(pipe.poll, timeout_s)
    if not ready:
        raise NetworkError(f"a client process sent nothing for {timeout_s:.0f} s")
    try:
        return pipe.recv()
    except EOFError:
        raise NetworkError("a client process exited without a result") from None


def _expect(message: Any, what: str) -> None:
    if isinstance(message, dict) and "failed" in message:
        raise NetworkError(f"a client process failed: {message['failed']}")
    if message != what:
        raise NetworkError(f"a client process sent {str(message)[:200]!r}, expected {what!r}")


async def _admin(operator: Client, command: dict[str, Any]) -> dict[str, Any]:
    try:
        return await operator.admin(command)
    except RequestError as error:
        raise NetworkError(f"the operator's {command} was refused: {error}") from error


def _merge(simulation: Simulation, plan: Plan, directory: Path, results: list[dict[str, Any]],
           calendar: Calendar, *, local: bool, address: str, wall_s: float, state_hash: str | None,
           verified: str | None) -> NetworkResult:  # fmt: skip
    histogram = HdrHistogram(*HISTOGRAM)
    errors: Counter[str] = Counter()
    orders: dict[str, list[Any]] = {name: [] for name in NETWORK_ORDER_COLUMNS}
    sides: list[tuple[Any, ...]] = []
    labels: list[tuple[Any, ...]] = []
    sent_s: list[float] = []
    replied_s: list[float] = []
    for result in results:
        histogram.add(HdrHistogram.decode(result["histogram"].encode()))
        errors.update(result["errors"])
        for name in NETWORK_ORDER_COLUMNS:
            orders[name].extend(result["orders"][name])
        sides.extend(result["trade_sides"])
        labels.extend(result["labels"])
        sent_s.extend(result["sent_s"])
        replied_s.extend(result["replied_s"])
    order_table = pa.table(orders).sort_by([("time_ns", "ascending"), ("order_id", "ascending")])
    labels.sort()
    label_table = pa.table(
        {name: [row[k] for row in labels] for k, name in enumerate(LABEL_COLUMNS)},
        schema=label_schema(),
    )
    specs = simulation.specs
    agents = pa.table({
        "agent_id": [spec.agent_id for spec in specs], "name": [spec.name for spec in specs],
        "kind": [spec.kind for spec in specs], "broker": [spec.broker for spec in specs],
        "accounts": [list(spec.accounts) for spec in specs],
    })  # fmt: skip
    trades = trades_table(sides)
    actions = orders["action"]
    scenario = plan.scenario
    return NetworkResult(
        scenario=scenario, seed=simulation.seed, directory=directory, address=address,
        speed=plan.speed, local=local, processes=len(results),
        sessions=sum(len(result["brokers"]) for result in results),
        messages=len(actions), replies=len(replied_s), orders=actions.count("place"),
        cancels=actions.count("cancel"), trades=trades.num_rows, arrivals=simulation.arrivals,
        errors=dict(errors), wall_s=wall_s,
        schedule_wall_s=scenario.run_ns / 1e9 / plan.speed,
        reply_span_s=max(replied_s, default=0.0), histogram=histogram,
        tables={"orders": order_table, "trades": trades, "labels": label_table,
                "agents": agents, **calendar_tables(calendar)},
        sent_s=sent_s, replied_s=replied_s, state_hash=state_hash, verified=verified,
        resyncs=sum(int(result["resyncs"]) for result in results),
        cancels_held=sum(int(result["cancels_held"]) for result in results),
    )  # fmt: skip


def calendar_tables(calendar: Calendar) -> dict[str, pa.Table]:
    """The days, positions and cycles tables, typed as the in-process run's."""
    text = pa.string()
    return {
        "days": pa.table(columns(DAY_COLUMNS, calendar.days), schema=typed(DAY_COLUMNS, {})),
        "positions": pa.table(
            columns(POSITION_COLUMNS, calendar.positions),
            schema=typed(POSITION_COLUMNS, {"account": text, "symbol": text}),
        ),
        "cycles": pa.table(
            columns(CYCLE_COLUMNS, calendar.cycles), schema=typed(CYCLE_COLUMNS, {"status": text})
        ),
    }


def trades_table(sides: list[tuple[Any, ...]]) -> pa.Table:
    """One row per trade from its two sides' reports (either may be missing if an account is
    not the run's): the in-process mode's columns, agents' order ids, and the aggressor."""
    by_trade: dict[int, dict[str, tuple[Any, ...]]] = {}
    for side in sides:
        by_trade.setdefault(int(side[0]), {})[str(side[6])] = side
    columns: dict[str, list[Any]] = {name: [] for name in (
        "trade_id", "time_ns", "height", "symbol", "price", "quantity", "buy_order_id",
        "sell_order_id", "buy_account", "sell_account", "buy_agent_id", "sell_agent_id",
        "aggressor")}  # fmt: skip
    for trade_id in sorted(by_trade):
        pair = by_trade[trade_id]
        buy, sell = pair.get("buy"), pair.get("sell")
        any_side = buy or sell
        assert any_side is not None
        aggressor = None
        for name, report in (("buy", buy), ("sell", sell)):
            if report is not None and report[10] == "taker":
                aggressor = name
        values = (
            trade_id, min(s[1] for s in (buy, sell) if s is not None), any_side[2], any_side[3],
            any_side[4], any_side[5], None if buy is None else buy[7],
            None if sell is None else sell[7], None if buy is None else buy[8],
            None if sell is None else sell[8], -1 if buy is None else buy[9],
            -1 if sell is None else sell[9], aggressor,
        )  # fmt: skip
        for name, value in zip(columns, values, strict=True):
            columns[name].append(value)
    schema = pa.schema([("trade_id", pa.int64()), ("time_ns", pa.int64()), ("height", pa.int64()),
                        ("symbol", pa.string()), ("price", pa.int64()), ("quantity", pa.int64()),
                        ("buy_order_id", pa.int64()), ("sell_order_id", pa.int64()),
                        ("buy_account", pa.string()), ("sell_account", pa.string()),
                        ("buy_agent_id", pa.int64()), ("sell_agent_id", pa.int64()),
                        ("aggressor", pa.string())])  # fmt: skip
    return pa.table(columns, schema=schema)


# ---- outputs -----------------------------------------------------------------------------

CHART_PERCENTILES: Final = (50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99)


def report(result: NetworkResult) -> dict[str, Any]:
    """The network run's report.json."""
    return {
        "scenario": result.scenario.name,
        "scenario_sha256": result.scenario.sha256,
        "seed": result.seed,
        "mode": "network",
        "code_version": code_version(),
        "address": result.address,
        "local_consortium": result.local,
        "speed": result.speed,
        "client_processes": result.processes,
        "sessions": result.sessions,
        "node": NODE if result.local else None,
        "messages": result.messages,
        "replies": result.replies,
        "orders": result.orders,
        "cancels": result.cancels,
        "trades": result.trades,
        "arrivals": result.arrivals,
        "days": list(result.scenario.trading_days),
        "cycles": result.tables["cycles"].column("status").to_pylist(),
        "labels": result.tables["labels"].num_rows,
        "agents": result.tables["agents"].num_rows,
        "errors": result.errors,
        "book_resyncs": result.resyncs,
        "cancels_held": result.cancels_held,
        "wall_s": round(result.wall_s, 3),
        "schedule_wall_s": round(result.schedule_wall_s, 3),
        "offered_messages_per_s": round(result.offered_per_s, 1),
        "achieved_messages_per_s": round(result.achieved_per_s, 1),
        "latency_ms": {f"p{p:g}": result.latency_ms(p) for p in PERCENTILES},
        "final_state_hash": result.state_hash,
        "verified": result.verified,
    }


def write_outputs(result: NetworkResult) -> dict[str, Any]:
    """Write report.json, the Parquet tables, the latency histogram (HDR log and percentile
    table) and the charts into the run's directory."""
    from simulator import charts  # noqa: PLC0415 - matplotlib is slow to import: only here

    directory = result.directory
    write_tables(result.tables, directory, day_start_ns(result.scenario.day))
    histogram = result.histogram
    with (directory / "latency.hlog").open("w") as log:
        writer = HistogramLogWriter(log)
        writer.output_comment(
            "jinlian simulate --mode network: latency in microseconds from the scheduled send "
            "to the reply, one interval for the run"
        )
        writer.output_log_format_version()
        writer.output_legend()
        writer.output_interval_histogram(histogram, 0, result.wall_s, 1000.0)  # max in ms
    with (directory / "latency_percentiles.txt").open("wb") as table:
        histogram.output_percentile_distribution(table, 1000)  # values in ms
    charts.price_volume(result.tables["trades"], directory / "price_volume.png")
    charts.network_throughput(result.sent_s, result.replied_s, directory / "throughput.png")
    charts.latency_percentiles({p: result.latency_ms(p) for p in CHART_PERCENTILES},
                               directory / "latency.png")  # fmt: skip
    document = report(result)
    (directory / "report.json").write_text(json.dumps(document, indent=2) + "\n")
    return document
