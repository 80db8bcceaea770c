"""The broker gateway: WebSocket sessions and a small REST surface on the exchange's server.

Brokers connect to `/ws`. The gateway sends a `challenge` (a fresh nonce); the broker logs on
by signing the nonce, its clock's time and its name with the Ed25519 key the genesis holds
for it (`exchange.gateway.api.logon_message`). Until then only `logon` and `ping` are accepted; a
wrong key, unknown broker, reused nonce or a timestamp outside the receive window is answered
with an error and the connection closes. Members log on the same way with their node keys and
may then send the `admin` commands their role allows (the operator: the trading calendar and
phases; the cash issuer: deposits and withdrawals; the depository: issues and redemptions; the
regulator: freezes).

A logged-on broker acts only on its own accounts and orders; the gateway assigns order ids,
keeps client order ids unique per broker per trading day (a repeated one answers the original
order's state: retries are safe), and sequences the venue commands through the exchange
(`ExchangeNode.submit`). Nothing is answered before the block holding it is stored: the
gateway's machine records every command it executes with its events, and when a block is
stored `exchange.gateway.broker_reports` folds them into execution reports (numbered per broker,
replayable from any index) and `exchange.gateway.market_data` into the public channels: in the
exchange's `reports` task, after the cutter has proposed the block and gone on (block by
block, in order; docs/ledger.md, "The exchange's pipeline"). When a block
becomes final, every broker with reports in it gets a `final` notice with the certificate.
Start-up rebuilds all of it by replaying the exchange's store, then from the blocks the
exchange recovers from the members (docs/ledger.md, "Recovery"): report indexes and order ids
continue from the recovered tip. Until recovery is over, requests that sequence are answered
`recovering` and `/health` is 503. An acknowledged order whose block was lost on every copy
is reported `lost` (`exchange.gateway.ack_journal`: the gateway journals every order durably before
acknowledging it).

Every session has limits: frame size (a frame far over it is refused from its header, never
read), messages per second (a token bucket; the limit is in the logon reply and in each
`rate_limited` error), open orders per account, and an outgoing backlog bounded in messages
and in bytes (a consumer that falls further behind is disconnected and its backlog freed, not
buffered); a broker holds at most `sessions_per_broker_max` sessions, so what one broker can
make the exchange hold is bounded by that times `backlog_bytes_max`. Heartbeats run both ways
(WebSocket pings); `cancel_on_disconnect` at logon cancels the session's open orders when it
goes away.

REST: `/instruments`, `/book/{symbol}`, `/health`, `/metrics` (Prometheus text) are public;
`/block/{height}` is for members and `/receipt/{trade_id}` for the trade's parties' brokers
and members, each caller proving who it is with a `ledger.auth` Authorization header. The
protocol and the access model are documented in docs/api.md.

The gateway is one shared state (`exchange.gateway.state`) and four parts, each a module:
`exchange.gateway.sessions` (the `/ws` endpoint, logon, request dispatch; a connection is an
`exchange.gateway.session.Session`), `exchange.gateway.order_entry` (the requests that sequence
commands, the order queries, the acknowledgement path), `exchange.gateway.report_pump` (stored
blocks and certificates into reports, answers, market data and `final` notices; replays and
subscriptions) and `exchange.gateway.rest` (the REST handlers, health and metrics). `Gateway`
builds them and wires them to the exchange node.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from exchange.consortium.init import venue_from_genesis
from exchange.gateway.ack_journal import AckJournal
from exchange.gateway.broker_reports import Reports
from exchange.gateway.market_data import MarketData
from exchange.gateway.order_entry import OrderEntry
from exchange.gateway.report_pump import ReportPump
from exchange.gateway.rest import Rest
from exchange.gateway.session import (
    DEFAULT_LIMITS,
    FRAME_SLACK_BYTES,
    MESSAGE_OVERHEAD_BYTES,
    PENDING_BACKLOG_BYTES_MAX,
    PLACED_PRUNE_MIN,
    Limits,
    Session,
)
from exchange.gateway.sessions import Handler, Sessions
from exchange.gateway.state import GatewayState
from exchange.venue.machine import VenueMachine
from ledger.genesis import Genesis
from ledger.node import ExchangeNode

__all__ = [  # the session's names, where the tests and the node processes import them
    "DEFAULT_LIMITS",
    "FRAME_SLACK_BYTES",
    "MESSAGE_OVERHEAD_BYTES",
    "PENDING_BACKLOG_BYTES_MAX",
    "PLACED_PRUNE_MIN",
    "Gateway",
    "Limits",
    "ObservedVenueMachine",
    "Session",
]


class ObservedVenueMachine(VenueMachine):
    """The exchange's venue machine, which also hands every executed command and its events
    to the gateway (the replicas run the plain `VenueMachine`): the command object the gateway
    submitted (`submitted`, keyed by the identity of the bytes it encoded), else the command
    parsed from its bytes (a member's /submit batch, a replayed or recovered block)."""

    __slots__ = ("observe", "submitted")

    def __init__(self, genesis: Genesis, observe: Callable[[Any, Any, list[Any]], None]) -> None:
        super().__init__(venue_from_genesis(genesis))
        self.observe = observe
        # id(bytes) -> (those bytes, the command): bounded by the proposer's queue
        self.submitted: dict[int, tuple[bytes, dict[str, Any]]] = {}

    def apply(self, command: bytes, time_ns: int) -> list[bytes]:
        parsed, events, data = self.apply_parsed(command, time_ns)
        entry = self.submitted.pop(id(command), None) if self.submitted else None
        if entry is not None:
            self.observe(entry[1], parsed, events)
        else:  # bytes that parsed to a command are a JSON object; others carry no symbol
            self.observe(None if parsed is None else orjson.loads(command), parsed, events)
        return data


class Gateway:
    """Broker sessions, order entry, reports and market data on an `ExchangeNode`: the
    parts, built on one shared state and wired to the node by `attach`."""

    def __init__(
        self,
        genesis: Genesis,
        *,
        limits: Limits = DEFAULT_LIMITS,
        clock: Callable[[], int] = time.time_ns,
        journal: AckJournal | None = None,
    ) -> None:
        self.state = state = GatewayState(genesis, limits=limits, clock=clock, journal=journal)
        self.orders = orders = OrderEntry(state)
        self.pump = pump = ReportPump(state, orders)
        handlers: dict[str, Handler] = {
            "place": orders.place,
            "cancel": orders.cancel,
            "amend": orders.amend,
            "cancel_all": orders.cancel_all,
            "order_status": orders.order_status,
            "open_orders": orders.open_orders,
            "replay": pump.replay,
            "subscribe": pump.subscribe,
            "unsubscribe": pump.subscribe,
            "admin": orders.admin,
        }
        self.endpoint = Sessions(state, handlers, orders.cancel_on_disconnect)
        self.rest = Rest(state, self.endpoint, orders, pump)
        self.endpoint.handlers["receipt"] = self.rest.receipt_request  # one rule, WS and REST
        state.metrics.read_figures(self.rest.figures)

    def new_machine(self) -> ObservedVenueMachine:
        """The factory the exchange's `Proposer` builds (and replays) its machine with."""
        self.state.machine = ObservedVenueMachine(self.state.genesis, self.pump.observe)
        return self.state.machine

    def attach(self, node: ExchangeNode) -> None:
        """Serve on `node` (before it starts), after folding the blocks its store replayed."""
        state = self.state
        assert state.machine is not None, "build the Proposer with gateway.new_machine"
        state.node = node
        self.pump.rebuild()
        state.market = MarketData(state.machine.venue)
        node.stored_listeners.append(self.pump.stored)
        node.final_listeners.append(self.pump.final)
        node.recovered_listeners.append(self.pump.recovered)
        node.final_listeners.append(lambda certificate: state.metrics.observe_finality(node))
        node.stop_listeners.append(self._unavailable)
        router, rest = node.app.router, self.rest
        router.add_get("/ws", self.endpoint.on_socket)
        router.add_get("/instruments", rest.on_instruments)
        router.add_get("/book/{symbol}", rest.on_book)
        router.add_get("/block/{height}", rest.on_block)
        router.add_get("/receipt/{trade_id}", rest.on_receipt)
        router.add_get("/health", rest.on_health)
        router.add_get("/metrics", rest.on_metrics)

    def _unavailable(self, reason: str) -> None:
        """The exchange failed or is stopping: answer every request waiting for its block
        with `unavailable`, then close every session once its replies are written."""
        self.orders.abandon(reason)
        assert self.state.node is not None
        self.endpoint.close_all(failed=self.state.node.failure is not None)

    # ---- what callers read (the tests, the node processes, the benchmarks) ----

    @property
    def clock(self) -> Callable[[], int]:
        return self.state.clock

    @clock.setter
    def clock(self, clock: Callable[[], int]) -> None:
        self.state.clock = clock

    @property
    def genesis(self) -> Genesis:
        return self.state.genesis

    @property
    def limits(self) -> Limits:
        return self.state.limits

    @property
    def journal(self) -> AckJournal:
        return self.state.journal

    @property
    def reports(self) -> Reports:
        return self.state.reports

    @property
    def sessions(self) -> dict[int, Session]:
        return self.state.sessions

    @property
    def node(self) -> ExchangeNode | None:
        return self.state.node

    @property
    def machine(self) -> ObservedVenueMachine | None:
        return self.state.machine

    @property
    def market(self) -> MarketData | None:
        return self.state.market

    @property
    def awaiting(self) -> dict[int, Any]:
        """Sequenced requests waiting for their blocks, by id(command)."""
        return self.orders.awaiting

    def health(self) -> dict[str, Any]:
        """What `/health` answers."""
        return self.rest.health()
