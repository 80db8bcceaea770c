"""The broker gateway: WebSocket sessions and a small REST surface on the exchange's server.

Brokers connect to `/ws`. The gateway sends a `challenge` (a fresh nonce); the broker logs on
by signing the nonce, its clock's time and its name with the Ed25519 key the genesis holds
for it (`exchange.api.logon_message`). Until then only `logon` and `ping` are accepted; a
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
stored `exchange.broker_reports` folds them into execution reports (numbered per broker,
replayable from any index) and `exchange.market_data` into the public channels. When a block
becomes final, every broker with reports in it gets a `final` notice with the certificate.
Start-up rebuilds all of it by replaying the exchange's store.

Every session has limits: frame size, messages per second (a token bucket; the limit is in the
logon reply and in each `rate_limited` error), open orders per account, and a bounded backlog
of outgoing messages (a consumer that falls further behind is disconnected, not buffered).
Heartbeats run both ways (WebSocket pings); `cancel_on_disconnect` at logon cancels the
session's open orders when it goes away.

REST: `/instruments`, `/book/{symbol}`, `/block/{height}`, `/receipt/{trade_id}`, `/health`,
`/metrics` (Prometheus text). The protocol is documented in docs/api.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import orjson
from aiohttp import web

from exchange import api
from exchange.api import ApiError, Request
from exchange.broker_reports import OrderView, Reports
from exchange.consortium import venue_from_genesis
from exchange.ledger_audit import find_trade
from exchange.market_data import MarketData
from exchange.venue_machine import VenueMachine
from exchange.venue_types import BrokerCommand
from exchange.wire import VENUE_PARSERS, WireError, event_to_dict, parse_command
from ledger.block import Block, QuorumCertificate
from ledger.genesis import Genesis, Member, Role
from ledger.keys import PublicKey
from ledger.node import ExchangeNode
from ledger.receipt import ReceiptError, build_receipt
from ledger.store import StoreError
from matching.events import TradeExecuted

log = logging.getLogger("jinlian.gateway")

BLOCKS_AWAITING_MAX: Final = 10_000  # blocks with reports whose finality notice is pending
WS_FRAME_BYTES_MAX: Final = 1 << 20  # aiohttp closes (1009) above this; below, our own limit


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    message_bytes_max: int = 16 * 1024
    messages_per_s: int = 5_000  # per session, with a burst of as many
    open_orders_per_account: int = 10_000
    backlog_max: int = 20_000  # messages queued to one session before it is disconnected
    logon_window_ms: int = 30_000  # how far the broker's clock may be from ours
    logon_timeout_s: float = 10.0
    heartbeat_s: float = 10.0


DEFAULT_LIMITS: Final = Limits()
BROKER_REQUESTS: Final = frozenset(
    {"place", "cancel", "amend", "cancel_all", "order_status", "open_orders", "replay"}
)  # a member session may not send these
ADMIN_COMMANDS: Final[dict[Role, frozenset[str]]] = {
    Role.EXCHANGE: frozenset(
        {
            "begin_day",
            "end_day",
            "set_phase",
            "list_instrument",
            "settle_cycle",
            "define_asset",
            "open_account",
            "set_fee_schedule",
        }
    ),
    Role.BANK: frozenset({"deposit", "withdraw", "transfer"}),
    Role.DEPOSITORY: frozenset({"issue", "redeem", "transfer"}),
    Role.REGULATOR: frozenset({"freeze", "unfreeze"}),
    Role.BROKER: frozenset(),
}


class ObservedVenueMachine(VenueMachine):
    """The exchange's venue machine, which also hands every executed command and its events
    to the gateway (the replicas run the plain `VenueMachine`)."""

    __slots__ = ("observe",)

    def __init__(self, genesis: Genesis, observe: Callable[[Any, Any, list[Any]], None]) -> None:
        super().__init__(venue_from_genesis(genesis))
        self.observe = observe

    def apply(self, command: Mapping[str, Any]) -> list[bytes]:
        parsed, events, data = self.apply_parsed(command)
        self.observe(command, parsed, events)
        return data


@dataclass(slots=True)
class _Awaiting:
    """A sequenced request waiting for its block: who asked, and how to answer."""

    session: Session
    request: Any
    kind: str  # place, cancel, amend, admin
    order_id: int = 0


@dataclass(eq=False)
class Session:
    id: int
    ws: web.WebSocketResponse
    limits: Limits
    nonce: str = field(default_factory=lambda: secrets.token_hex(16))
    broker: str | None = None
    member: Member | None = None
    cancel_on_disconnect: bool = False
    tokens: float = 0.0
    refilled: float = field(default_factory=time.monotonic)
    outbox: deque[bytes] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    reports_live: bool = True  # off while a replay is streaming
    subscriptions: set[tuple[str, str]] = field(default_factory=set)
    placed: set[int] = field(default_factory=set)  # order ids entered in this session
    closing: str | None = None

    @property
    def logged_on(self) -> bool:
        return self.broker is not None or self.member is not None

    def send(self, message: Mapping[str, Any]) -> None:
        self.send_bytes(orjson.dumps(message))

    def send_bytes(self, data: bytes) -> None:
        if self.closing is not None:
            return
        if len(self.outbox) >= self.limits.backlog_max:
            self.closing = f"slow consumer: more than {self.limits.backlog_max} messages behind"
            self.wake.set()
            return
        self.outbox.append(data)
        self.wake.set()

    def allow(self) -> bool:
        """Take a token for one message; False if over the rate."""
        rate = self.limits.messages_per_s
        now = time.monotonic()
        self.tokens = min(float(rate), self.tokens + (now - self.refilled) * rate)
        self.refilled = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    async def write(self) -> None:
        """Drain the outbox to the socket; close it when the session is closing."""
        with contextlib.suppress(ConnectionError, aiohttp.ClientError, RuntimeError):
            while True:
                while self.outbox:  # JSON goes out as text frames
                    await self.ws.send_frame(self.outbox.popleft(), aiohttp.WSMsgType.TEXT)
                if self.closing is not None:
                    await self.ws.close(code=aiohttp.WSCloseCode.POLICY_VIOLATION,
                                        message=self.closing.encode()[:120])  # fmt: skip
                    return
                self.wake.clear()
                await self.wake.wait()


class Gateway:
    """Broker sessions, order entry, reports and market data on an `ExchangeNode`."""

    def __init__(
        self,
        genesis: Genesis,
        *,
        limits: Limits = DEFAULT_LIMITS,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.genesis = genesis
        self.limits = limits
        self.clock = clock
        self.brokers = {broker.name: broker for broker in genesis.brokers}
        self.members = {member.name: member for member in genesis.members}
        self.accounts = {
            str(account): broker.name for broker in genesis.brokers for account in broker.accounts
        }
        self.reports = Reports(self.accounts)
        self.executed: list[tuple[Any, Any, list[Any]]] = []  # since the last stored block
        self.awaiting: dict[int, tuple[dict[str, Any], _Awaiting]] = {}  # id(command) -> ...
        self.sessions: dict[int, Session] = {}
        self.session_ids = itertools.count(1)
        self.block_brokers: dict[int, set[str]] = {}  # height -> brokers with reports in it
        self.node: ExchangeNode | None = None
        self.market: MarketData | None = None
        self.machine: ObservedVenueMachine | None = None
        self.counters = {"orders": 0, "reports": 0, "errors": 0, "logons": 0, "rejected_logons": 0}
        self.order_times: deque[float] = deque(maxlen=100_000)
        self.tasks: set[asyncio.Future[None]] = set()
        # identity -> its clock minus ours at its last logon with a valid signature (bounded by
        # the genesis): what /health shows when a logon is refused for its time
        self.logon_clock_offsets_ns: dict[str, int] = {}

    # ---- wiring ----

    def new_machine(self) -> ObservedVenueMachine:
        """The factory the exchange's `Proposer` builds (and replays) its machine with."""
        self.machine = ObservedVenueMachine(self.genesis, self._observe)
        return self.machine

    def _observe(self, command: Any, parsed: Any, events: list[Any]) -> None:
        self.executed.append((command, parsed, events))

    def attach(self, node: ExchangeNode) -> None:
        """Serve on `node` (before it starts), after folding the blocks its store replayed."""
        assert self.machine is not None, "build the Proposer with gateway.new_machine"
        self.node = node
        self._rebuild()
        self.market = MarketData(self.machine.venue)
        node.stored_listeners.append(self._stored)
        node.final_listeners.append(self._final)
        router = node.app.router
        router.add_get("/ws", self._session)
        router.add_get("/instruments", self._instruments)
        router.add_get("/book/{symbol}", self._book)
        router.add_get("/block/{height}", self._block)
        router.add_get("/receipt/{trade_id}", self._receipt)
        router.add_get("/health", self._health)
        router.add_get("/metrics", self._metrics)

    def _rebuild(self) -> None:
        """Fold what the store replayed into reports, block by block, sending nothing."""
        assert self.node is not None
        store = self.node.proposer.store
        executed, self.executed = self.executed, []
        position = 0
        for height in range(1, self.node.proposer.height + 1):
            header = store.header(height)
            assert header is not None, f"stored height {height} has no header"
            for _, parsed, events in executed[position : position + header.command_count]:
                self.reports.apply(height, parsed, events)
            position += header.command_count
        assert position == len(executed), "replayed commands do not add up to the stored blocks"

    # ---- blocks ----

    def _stored(self, block: Block) -> None:
        """A block is stored: answer its requests, send its reports and market data."""
        assert self.market is not None
        height = block.header.height
        executed, self.executed = self.executed, []
        assert len(executed) == len(block.commands), "executed commands are not the block's"
        symbols: set[str] = set()
        trades: list[TradeExecuted] = []
        touched: set[str] = set()
        awaiting = self.awaiting
        for command, parsed, events in executed:
            deliveries = self.reports.apply(height, parsed, events)
            waiting = awaiting.pop(id(command), None) if awaiting else None
            if waiting is not None:
                self._answer(waiting[1], height, events, deliveries)
            for broker, report in deliveries:
                touched.add(broker)
                self._deliver(broker, report)
            self.counters["reports"] += len(deliveries)
            symbol = command.get("symbol") if isinstance(command, dict) else None
            if isinstance(symbol, str):
                symbols.add(symbol)
            for event in events:
                if type(event) is TradeExecuted:
                    trades.append(event)
                    symbols.add(event.symbol)
        if touched:
            self.block_brokers[height] = touched
            if len(self.block_brokers) > BLOCKS_AWAITING_MAX:  # certificates lost for good
                del self.block_brokers[min(self.block_brokers)]
        messages = self.market.block(symbols, trades)  # kept current for later snapshots
        if self.sessions:
            self._publish(messages)

    def _answer(
        self, waiting: _Awaiting, height: int, events: list[Any], deliveries: list[Any]
    ) -> None:
        session = waiting.session
        if waiting.kind == "admin":
            session.send({"type": "admin_result", "request": waiting.request, "height": height,
                          "events": [event_to_dict(e) for e in events]})  # fmt: skip
            return
        for broker, report in deliveries:  # the first report about the order answers
            if broker == session.broker and report.get("order_id") == waiting.order_id:
                session.send({**report, "request": waiting.request})
                if session.reports_live:  # else its replay will deliver it again, in order
                    report["_answered"] = session.id
                return
        session.send({"type": "result", "request": waiting.request, "height": height,
                      "events": [event_to_dict(e) for e in events]})  # fmt: skip

    def _deliver(self, broker: str, report: dict[str, Any]) -> None:
        answered = report.pop("_answered", None)
        data = None
        for session in self.sessions.values():
            if session.broker == broker and session.reports_live and session.id != answered:
                data = data or orjson.dumps(report)
                session.send_bytes(data)

    def _publish(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            key = (message["type"], message["symbol"])  # the channel is the message type
            data = None
            for session in self.sessions.values():
                if key in session.subscriptions:
                    data = data or orjson.dumps(message)
                    session.send_bytes(data)

    def _final(self, certificate: QuorumCertificate) -> None:
        brokers = self.block_brokers.pop(certificate.height, None)
        if not brokers:
            return
        notice = orjson.dumps({"type": "final", "height": certificate.height,
                               "header_hash": certificate.header_hash.hex(),
                               "certificate": certificate.to_dict()})  # fmt: skip
        for session in self.sessions.values():
            if session.broker in brokers:
                session.send_bytes(notice)

    # ---- sessions ----

    async def _session(self, request: web.Request) -> web.StreamResponse:
        limits = self.limits
        ws = web.WebSocketResponse(max_msg_size=WS_FRAME_BYTES_MAX, heartbeat=limits.heartbeat_s)
        await ws.prepare(request)
        assert self.node is not None
        self.node.sockets.add(ws)
        session = Session(next(self.session_ids), ws, limits, tokens=float(limits.messages_per_s))
        self.sessions[session.id] = session
        writer = asyncio.ensure_future(session.write())
        session.send({"type": "challenge", "nonce": session.nonce, "server_time_ns": self.clock(),
                      "window_ms": limits.logon_window_ms})  # fmt: skip
        timeout = asyncio.get_running_loop().call_later(
            limits.logon_timeout_s, self._logon_timeout, session
        )
        try:
            async for frame in ws:
                if frame.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    continue
                if session.closing is not None:
                    break
                self._handle(session, frame.data)
                if session.logged_on:
                    timeout.cancel()
        finally:
            timeout.cancel()
            del self.sessions[session.id]
            self.node.sockets.discard(ws)
            if session.cancel_on_disconnect:
                self._cancel_orders(self._session_orders(session))
            session.closing = session.closing or "closed"
            session.wake.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(writer, 1.0)
        return ws

    def _logon_timeout(self, session: Session) -> None:
        if not session.logged_on and session.closing is None:
            self._fail(session, None, ApiError(api.LOGON_TIMEOUT, "no logon within "
                                               f"{self.limits.logon_timeout_s} s"))  # fmt: skip

    def _fail(self, session: Session, request: Any, error: ApiError) -> None:
        """Answer `error` and close the connection (logon failures)."""
        self.counters["rejected_logons"] += 1
        session.send(error.to_dict(request))
        session.closing = f"{error.code}: {error.message}"[:120]
        session.wake.set()

    def _error(self, session: Session, request: Any, error: ApiError, **extra: Any) -> None:
        self.counters["errors"] += 1
        session.send(error.to_dict(request, **extra))

    def _handle(self, session: Session, data: bytes | str) -> None:
        parsed = api.parse_request(data, self.limits.message_bytes_max)
        if not session.allow():
            limit = self.limits.messages_per_s
            request_id = parsed.request if isinstance(parsed, Request) else parsed[1]
            self._error(session, request_id, ApiError(api.RATE_LIMITED,
                        f"more than {limit} messages per second"), limit=limit)  # fmt: skip
            return
        if not isinstance(parsed, Request):
            error, request_id = parsed
            if not session.logged_on:
                self._fail(session, request_id, error)
            else:
                self._error(session, request_id, error)
            return
        if parsed.type == "ping":
            session.send({"type": "pong", "request": parsed.request, "time_ns": self.clock()})
            return
        if parsed.type == "logon":
            self._logon(session, parsed)
            return
        if not session.logged_on:
            self._fail(session, parsed.request, ApiError(
                api.NOT_LOGGED_ON, f"{parsed.type} before logon: only logon and ping are "
                "accepted until then", "type"))  # fmt: skip
            return
        if parsed.type in BROKER_REQUESTS and session.broker is None:
            error = ApiError(api.NOT_ALLOWED, f"{parsed.type} needs a broker logon", "type")
            self._error(session, parsed.request, error)
            return
        handler = self._handlers.get(parsed.type)
        assert handler is not None, parsed.type
        failure = handler(self, session, parsed)
        if failure is not None:
            self._error(session, parsed.request, failure)

    def _logon(self, session: Session, request: Request) -> None:
        args = request.args
        if session.logged_on:
            self._error(session, request.request,
                        ApiError(api.ALREADY_LOGGED_ON, "this session is logged on"))  # fmt: skip
            return
        name = args["broker"] or args["member"]
        if args["broker"] is not None:
            broker = self.brokers.get(name)
            key = None if broker is None else broker.public_key
            identity = "broker"
        else:
            member = self.members.get(name)
            key = None if member is None else member.public_key
            identity = "member"
        if key is None:
            self._fail(
                session,
                request.request,
                ApiError(api.UNKNOWN_IDENTITY, f"no {identity} {name!r} in the genesis", identity),
            )
            return  # fmt: skip
        if args["nonce"] != session.nonce:
            self._fail(session, request.request, ApiError(
                api.BAD_NONCE, f"nonce {args['nonce']!r:.80} is not this connection's challenge",
                "nonce"))  # fmt: skip
            return
        skew_ms = abs(self.clock() - args["timestamp_ns"]) / 1e6
        self._note_logon_clock(key, name, session.nonce, args)
        if skew_ms > self.limits.logon_window_ms:
            self._fail(session, request.request, ApiError(
                api.STALE_TIMESTAMP, f"timestamp_ns {args['timestamp_ns']} is {skew_ms:.0f} ms "
                f"from the exchange's clock (window {self.limits.logon_window_ms} ms)",
                "timestamp_ns"))  # fmt: skip
            return
        message = api.logon_message(self.genesis.chain_id, name, session.nonce,
                                    args["timestamp_ns"])  # fmt: skip
        try:
            signature = bytes.fromhex(args["signature"])
        except ValueError:
            signature = b""
        if not key.verify(message, signature):
            self._fail(session, request.request, ApiError(
                api.BAD_SIGNATURE, f"the signature does not verify with {name}'s key in the "
                "genesis", "signature"))  # fmt: skip
            return
        session.nonce = ""  # used: a replayed logon on this connection fails too
        if identity == "broker":
            session.broker = name
            session.cancel_on_disconnect = args["cancel_on_disconnect"]
        else:
            session.member = self.members[name]
        self.counters["logons"] += 1
        log_ = self.reports.log(name) if identity == "broker" else None
        session.send({"type": "logged_on", "request": request.request, identity: name,
                      "session": session.id,
                      "next_report": None if log_ is None else log_.next_index,
                      "limits": {"messages_per_s": self.limits.messages_per_s,
                                 "message_bytes_max": self.limits.message_bytes_max,
                                 "open_orders_per_account":
                                     self.limits.open_orders_per_account,
                                 "backlog_max": self.limits.backlog_max},
                      "cancel_on_disconnect": session.cancel_on_disconnect})  # fmt: skip

    def _note_logon_clock(
        self, key: PublicKey, name: str, nonce: str, args: dict[str, Any]
    ) -> None:
        """Remember how far a logon's clock is from ours, if the signature proves the time
        (a refused logon's too: /health shows who is outside the window, and by how much)."""
        message = api.logon_message(self.genesis.chain_id, name, nonce, args["timestamp_ns"])
        try:
            signature = bytes.fromhex(args["signature"])
        except ValueError:
            return
        if key.verify(message, signature):
            self.logon_clock_offsets_ns[name] = args["timestamp_ns"] - self.clock()

    # ---- requests ----

    def _submit(self, commands: list[dict[str, Any]]) -> ApiError | None:
        assert self.node is not None
        refused = self.node.submit(commands)
        if refused is None:
            return None
        return ApiError(api.BUSY if refused.code == "busy" else api.DEGRADED, refused.message)

    def _place(self, session: Session, request: Request) -> ApiError | None:
        broker = session.broker
        assert broker is not None
        args = request.args
        account, symbol = args["account"], args["symbol"]
        if self.accounts.get(account) != broker:
            return ApiError(
                api.NOT_YOUR_ACCOUNT,
                f"account {account!r} is not an account of {broker}",
                "account",
            )
        if self.market is not None and symbol not in self.market.published:
            return ApiError(api.UNKNOWN_SYMBOL, f"symbol {symbol!r} is not listed", "symbol")
        client_order_id = args["client_order_id"]
        existing = self.reports.by_client_id(broker, client_order_id)
        if existing is not None:
            session.send({"type": "order", "request": request.request, "duplicate": True,
                          "order": existing.to_dict()})  # fmt: skip
            return None
        limit = self.limits.open_orders_per_account
        if self.reports.open_orders.get(account, 0) >= limit:
            return ApiError(
                api.TOO_MANY_OPEN_ORDERS,
                f"account {account} has {limit} open orders (the limit)",
                "account",
            )
        order = self.reports.reserve(broker, args)
        command = {"type": "place", "broker": broker, "order_id": order.order_id,
                   "symbol": symbol, "account": account, "side": args["side"],
                   "kind": args["kind"], "quantity": args["quantity"], "tif": args["tif"],
                   "client_order_id": client_order_id}  # fmt: skip
        if "price" in args:
            command["price"] = args["price"]
        if args["post_only"]:
            command["post_only"] = True
        error = self._submit([command])
        if error is not None:
            self.reports.release(order)
            return error
        self.awaiting[id(command)] = (command, _Awaiting(session, request.request, "place",
                                                         order.order_id))  # fmt: skip
        session.placed.add(order.order_id)
        self.counters["orders"] += 1
        self.order_times.append(time.monotonic())
        return None

    def _own_order(self, session: Session, args: Mapping[str, Any]) -> OrderView | ApiError:
        broker = session.broker
        assert broker is not None
        if args["client_order_id"] is not None:
            order = self.reports.by_client_id(broker, args["client_order_id"])
            if order is None:
                unknown = args["client_order_id"]
                return ApiError(api.UNKNOWN_ORDER, f"no order with client_order_id "
                                f"{unknown!r} today", "client_order_id")  # fmt: skip
            return order
        order = self.reports.orders.get(args["order_id"])
        if order is None:
            return ApiError(api.UNKNOWN_ORDER, f"no order {args['order_id']}", "order_id")
        if order.broker != broker:
            return ApiError(
                api.NOT_YOUR_ORDER,
                f"order {args['order_id']} is not an order of {broker}",
                "order_id",
            )
        return order

    def _cancel(self, session: Session, request: Request) -> ApiError | None:
        return self._change(session, request, "cancel")

    def _amend(self, session: Session, request: Request) -> ApiError | None:
        return self._change(session, request, "amend")

    def _change(self, session: Session, request: Request, kind: str) -> ApiError | None:
        order = self._own_order(session, request.args)
        if isinstance(order, ApiError):
            return order
        if not order.is_open:
            return ApiError(api.ORDER_NOT_OPEN, f"order {order.order_id} is {order.status}",
                            "order_id")  # fmt: skip
        command: dict[str, Any] = {
            "type": kind,
            "broker": order.broker,
            "order_id": order.order_id,
            "symbol": order.symbol,
        }
        if kind == "amend":
            for name in ("price", "quantity"):
                if request.args[name] is not None:
                    command[name] = request.args[name]
        error = self._submit([command])
        if error is None:
            self.awaiting[id(command)] = (command, _Awaiting(session, request.request, kind,
                                                             order.order_id))  # fmt: skip
        return error

    def _matching(self, session: Session, args: Mapping[str, Any]) -> list[OrderView]:
        assert session.broker is not None
        return [
            order
            for order in self.reports.open_of(session.broker)
            if args["account"] in (None, order.account) and args["symbol"] in (None, order.symbol)
        ]

    def _cancel_all(self, session: Session, request: Request) -> ApiError | None:
        orders = self._matching(session, request.args)
        error = self._cancel_orders(orders)
        if error is None:
            session.send({"type": "cancel_all", "request": request.request,
                          "orders": [o.order_id for o in orders]})  # fmt: skip
        return error

    def _cancel_orders(self, orders: list[OrderView]) -> ApiError | None:
        commands = [{"type": "cancel", "broker": o.broker, "order_id": o.order_id,
                     "symbol": o.symbol} for o in orders]  # fmt: skip
        return self._submit(commands) if commands else None

    def _session_orders(self, session: Session) -> list[OrderView]:
        orders = self.reports.orders
        return [orders[i] for i in session.placed if i in orders and orders[i].is_open]

    def _order_status(self, session: Session, request: Request) -> ApiError | None:
        order = self._own_order(session, request.args)
        if isinstance(order, ApiError):
            return order
        session.send({"type": "order", "request": request.request, "order": order.to_dict()})
        return None

    def _open_orders(self, session: Session, request: Request) -> ApiError | None:
        orders = [order.to_dict() for order in self._matching(session, request.args)]
        session.send({"type": "open_orders", "request": request.request, "orders": orders})
        return None

    def _replay(self, session: Session, request: Request) -> ApiError | None:
        assert session.broker is not None
        report_log = self.reports.log(session.broker)
        start = request.args["from"]
        if start < report_log.first:
            return ApiError(api.REPLAY_GONE, f"report {start} is no longer held; the earliest "
                            f"is {report_log.first}", "from")  # fmt: skip
        session.reports_live = False
        task = asyncio.ensure_future(self._stream(session, request.request, start))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return None

    async def _stream(self, session: Session, request: Any, start: int) -> None:
        """Replay reports from `start` at the pace the session drains them, then go live."""
        report_log = self.reports.log(session.broker or "")
        index = start
        chunk = max(1, self.limits.backlog_max // 4)
        while session.closing is None:
            sent = 0
            for report in report_log.since(index):
                session.send({**report, "replayed": True})
                index, sent = report["index"] + 1, sent + 1
                if sent >= chunk:
                    break
            if index >= report_log.next_index:
                session.reports_live = True  # atomically: nothing appended since the check
                session.send({"type": "replayed", "request": request, "from": start,
                              "next": index})  # fmt: skip
                return
            while len(session.outbox) > chunk and session.closing is None:
                await asyncio.sleep(0.005)

    def _subscribe(self, session: Session, request: Request) -> ApiError | None:
        assert self.market is not None
        channel, symbol = request.args["channel"], request.args["symbol"]
        if symbol not in self.market.published:
            return ApiError(api.UNKNOWN_SYMBOL, f"symbol {symbol!r} is not listed", "symbol")
        key = (channel, symbol)
        if request.type == "unsubscribe":
            session.subscriptions.discard(key)
            session.send({"type": "unsubscribed", "request": request.request,
                          "channel": channel, "symbol": symbol})  # fmt: skip
            return None
        session.subscriptions.add(key)
        session.send({"type": "subscribed", "request": request.request, "channel": channel,
                      "symbol": symbol})  # fmt: skip
        first = (
            self.market.snapshot(symbol)
            if channel == "book"
            else self.market.current(symbol, channel)
        )
        if first is not None:
            session.send(first)
        return None

    def _receipt_request(self, session: Session, request: Request) -> ApiError | None:
        receipt = self.receipt(request.args["trade_id"], session.broker)
        if isinstance(receipt, ApiError):
            return receipt
        session.send({"type": "receipt", "request": request.request, "receipt": receipt})
        return None

    def receipt(self, trade_id: int, broker: str | None) -> dict[str, Any] | ApiError:
        """The trade's receipt (`ledger.receipt`), for a party to it (`broker` None: anyone)."""
        assert self.node is not None
        store = self.node.proposer.store
        try:
            where = find_trade(store, trade_id)
            if where is None:
                return ApiError(api.UNKNOWN_TRADE, f"no trade {trade_id}", "trade_id")
            height, index = where
            event = orjson.loads((store.events(height) or [])[index])
            parties = {self.accounts.get(event["buy_account"]),
                       self.accounts.get(event["sell_account"])}  # fmt: skip
            if broker is not None and broker not in parties:
                return ApiError(api.NOT_YOUR_ORDER, f"trade {trade_id} is not a trade of "
                                f"{broker}", "trade_id")  # fmt: skip
            return {**build_receipt(store, height, index), "trade_id": trade_id}
        except ReceiptError as error:
            return ApiError(api.NOT_FINAL, str(error), "trade_id")
        except StoreError as error:
            return ApiError(api.UNKNOWN_TRADE, str(error), "trade_id")

    def _admin(self, session: Session, request: Request) -> ApiError | None:
        member = session.member
        if member is None:
            return ApiError(api.NOT_ALLOWED, "admin commands need a member logon", "type")
        command = dict(request.args["command"])
        kind = command.get("type")
        allowed = ADMIN_COMMANDS.get(member.role, frozenset())
        if kind not in allowed:
            return ApiError(api.NOT_ALLOWED, f"{member.name} ({member.role.value}) may not send "
                            f"{kind!r:.40}; allowed: {', '.join(sorted(allowed)) or 'none'}",
                            "command.type")  # fmt: skip
        if "actor" in command and command["actor"] != member.name:
            return ApiError(api.NOT_ALLOWED, f"actor {command['actor']!r:.40} is not "
                            f"{member.name}", "command.actor")  # fmt: skip
        parsed = parse_command({**command, "actor": member.name}, VENUE_PARSERS)
        if isinstance(parsed, WireError):  # a command without an actor field
            parsed = parse_command(command, VENUE_PARSERS)
        else:
            command["actor"] = member.name
        if isinstance(parsed, WireError):
            return ApiError(api.INVALID_FIELD, parsed.message, f"command.{parsed.field}")
        if isinstance(parsed, BrokerCommand):
            return ApiError(api.NOT_ALLOWED, "orders go through place/cancel/amend", "command")
        error = self._submit([command])
        if error is None:
            self.awaiting[id(command)] = (command, _Awaiting(session, request.request, "admin"))
        return error

    _handlers: Final[dict[str, Callable[[Gateway, Session, Request], ApiError | None]]] = {
        "place": _place,
        "cancel": _cancel,
        "amend": _amend,
        "cancel_all": _cancel_all,
        "order_status": _order_status,
        "open_orders": _open_orders,
        "replay": _replay,
        "subscribe": _subscribe,
        "unsubscribe": _subscribe,
        "receipt": _receipt_request,
        "admin": _admin,
    }

    # ---- REST ----

    async def _instruments(self, request: web.Request) -> web.StreamResponse:
        assert self.machine is not None and self.market is not None
        venue = self.machine.venue
        rows = []
        for instrument in self.genesis.instruments:
            symbol = str(instrument["symbol"])
            book = venue.matching.book(symbol)
            rows.append({**instrument, "phase": book.phase.name.lower(),
                         "lower_limit": book.lower_limit,
                         "upper_limit": book.upper_limit})  # fmt: skip
        return _json({"instruments": rows})

    async def _book(self, request: web.Request) -> web.StreamResponse:
        assert self.market is not None
        symbol = request.match_info["symbol"]
        if symbol not in self.market.published:
            return _error(404, ApiError(api.UNKNOWN_SYMBOL, f"symbol {symbol!r} is not listed"))
        return _json(self.market.snapshot(symbol))

    async def _block(self, request: web.Request) -> web.StreamResponse:
        assert self.node is not None
        height = _positive(request.match_info["height"])
        store = self.node.proposer.store
        block = None if height is None else store.block(height)
        if block is None:
            return _error(
                404, ApiError("unknown_block", f"no block {request.match_info['height']!r:.40}")
            )
        certificate = store.certificate(block.header.height)
        return _json(
            {
                "block": block.to_dict(),
                "certificate": None if certificate is None else certificate.to_dict(),
            }
        )

    async def _receipt(self, request: web.Request) -> web.StreamResponse:
        trade_id = _positive(request.match_info["trade_id"])
        if trade_id is None:
            return _error(400, ApiError(api.INVALID_FIELD, "trade_id must be a positive integer",
                                        "trade_id"))  # fmt: skip
        receipt = self.receipt(trade_id, None)
        if isinstance(receipt, ApiError):
            return _error(404 if receipt.code == api.UNKNOWN_TRADE else 409, receipt)
        return _json(receipt)

    def health(self) -> dict[str, Any]:
        assert self.node is not None
        proposer = self.node.proposer
        members = self.node.peer_status()
        clock = self.clock_health(members)
        status = "degraded" if proposer.degraded else "ok"
        if status == "ok" and clock["exchange_clock_suspect"]:
            status = "clock_skew"
        return {
            "status": status,
            "height": proposer.height,
            "certified": proposer.certified,
            "lag": proposer.lag,
            "members_connected": len(self.node.links),
            "members": {
                name: {field: peer[field] for field in HEALTH_MEMBER_FIELDS}
                for name, peer in members.items()
            },
            "clock": clock,
            "sessions": len(self.sessions),
        }

    def clock_health(self, members: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """Whose clock is further from ours than the logon window (members: from the peer-link
        handshake; brokers and members: from their last signed logon), in ms. When a quorum of
        members is, ours is the likely wrong one: every logon would be refused for its time."""
        window_ms = self.limits.logon_window_ms
        skewed: dict[str, int] = {}
        for name, offset_ns in self.logon_clock_offsets_ns.items():
            if abs(offset_ns) > window_ms * 10**6:
                skewed[name] = offset_ns // 10**6
        for name, peer in members.items():
            offset_ms = peer["clock_offset_ms"]
            if offset_ms is not None and abs(offset_ms) > window_ms:
                skewed[name] = offset_ms
        suspect = sum(name in skewed for name in members) >= self.genesis.quorum()
        return {"window_ms": window_ms, "skewed_ms": skewed, "exchange_clock_suspect": suspect}

    async def _health(self, request: web.Request) -> web.StreamResponse:
        health = self.health()
        return _json(health, 200 if health["status"] == "ok" else 503)

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        assert self.node is not None
        proposer = self.node.proposer
        now = time.monotonic()
        recent = sum(1 for t in self.order_times if t > now - 10.0) / 10.0
        finality = self.node.finality
        lines = [
            ("jinlian_orders_total", "counter", "orders accepted for sequencing",
             self.counters["orders"]),
            ("jinlian_orders_per_second", "gauge", "orders sequenced per second, last 10 s",
             recent),
            ("jinlian_blocks_total", "counter", "blocks stored", proposer.height),
            ("jinlian_certified_height", "gauge", "highest final block", proposer.certified),
            ("jinlian_finality_lag_blocks", "gauge", "stored blocks not yet final", proposer.lag),
            ("jinlian_finality_p99_ms", "gauge", "sequencing-to-certificate latency p99",
             finality.percentile(0.99) or 0),
            ("jinlian_degraded", "gauge", "1 while refusing orders", int(proposer.degraded)),
            ("jinlian_sessions", "gauge", "open broker and member sessions", len(self.sessions)),
            ("jinlian_reports_total", "counter", "execution reports sent",
             self.counters["reports"]),
            ("jinlian_errors_total", "counter", "requests answered with an error",
             self.counters["errors"]),
            ("jinlian_logons_total", "counter", "successful logons", self.counters["logons"]),
            ("jinlian_rejected_logons_total", "counter", "failed logons",
             self.counters["rejected_logons"]),
        ]  # fmt: skip
        text = "".join(
            f"# HELP {name} {help_}\n# TYPE {name} {kind}\n{name} {value}\n"
            for name, kind, help_, value in lines
        ) + _member_metrics(self.node.peer_status())
        return web.Response(text=text, content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})  # fmt: skip


# per voting member in /health's "members"
HEALTH_MEMBER_FIELDS: Final = (
    "connected", "authenticated", "last_vote_height", "last_vote_age_ms", "auth_error",
    "clock_offset_ms", "silent_redials",
)  # fmt: skip
_MEMBER_METRICS: Final = (
    ("connected", "jinlian_member_connected", "1 while a socket to the member is open"),
    ("authenticated", "jinlian_member_authenticated", "1 while its link is authenticated"),
    ("last_vote_height", "jinlian_member_last_vote_height", "height of its latest vote"),
    ("clock_offset_ms", "jinlian_member_clock_offset_ms", "its clock minus ours, at handshake"),
    ("silent_redials", "jinlian_member_silent_redials_total", "links closed as silent"),
)


def _member_metrics(members: Mapping[str, Mapping[str, Any]]) -> str:
    """Prometheus lines, one series per voting member (label `member`)."""
    text = []
    for field_name, metric, help_ in _MEMBER_METRICS:
        kind = "counter" if metric.endswith("_total") else "gauge"
        text.append(f"# HELP {metric} {help_}\n# TYPE {metric} {kind}\n")
        for name, peer in members.items():
            value = peer[field_name]
            if value is not None:
                text.append(f'{metric}{{member="{name}"}} {int(value)}\n')
    return "".join(text)


def _positive(text: str) -> int | None:
    return int(text) if text.isdigit() and 0 < len(text) <= 18 and int(text) > 0 else None


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(value), status=status, content_type="application/json")


def _error(status: int, error: ApiError) -> web.Response:
    return _json(error.to_dict(), status)
