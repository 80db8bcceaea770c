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
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

import aiohttp
import orjson
from aiohttp import web

from exchange.consortium.audit import find_trade, trade_in
from exchange.consortium.init import venue_from_genesis
from exchange.gateway import api
from exchange.gateway.ack_journal import AckJournal
from exchange.gateway.api import ApiError, Request
from exchange.gateway.broker_reports import OrderView, Reports
from exchange.gateway.market_data import MarketData
from exchange.venue.machine import VenueMachine
from exchange.venue.types import BrokerCommand
from exchange.venue.wire import VENUE_PARSERS, WireError, event_to_dict, parse_command
from ledger import auth
from ledger.block import Block, QuorumCertificate
from ledger.canonical import canonical_bytes
from ledger.genesis import Genesis, Member, Role
from ledger.keys import PublicKey
from ledger.node import ExchangeNode, Fault, describe, task_metrics
from ledger.receipt import ReceiptError, build_receipt
from ledger.store import StoreError
from matching.events import TradeExecuted

log = logging.getLogger("jinlian.gateway")

BLOCKS_AWAITING_MAX: Final = 10_000  # blocks with reports whose finality notice is pending
# A frame up to this far over `message_bytes_max` is read and answered `message_too_large`;
# a longer one is refused from its header, before its payload is read (close code 1009).
FRAME_SLACK_BYTES: Final = 16 * 1024
# What a queued message costs besides its bytes (object header, deque slot, allocator
# rounding), counted against `backlog_bytes_max` so that many tiny messages are bounded too.
MESSAGE_OVERHEAD_BYTES: Final = 96
# A session's outgoing budget until it logs on: the challenge, pongs and errors.
PENDING_BACKLOG_BYTES_MAX: Final = 64 * 1024
PLACED_PRUNE_MIN: Final = 1024  # a session's entered-order ids are pruned above this


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    message_bytes_max: int = 16 * 1024
    messages_per_s: int = 5_000  # per session, with a burst of as many
    open_orders_per_account: int = 10_000
    backlog_max: int = 20_000  # messages queued to one session before it is disconnected
    backlog_bytes_max: int = 4 * 1024 * 1024  # bytes queued to one session, likewise
    sessions_per_broker_max: int = 8  # sessions one broker (or member) may hold at once
    pending_sessions_max: int = 256  # connections not yet logged on, all callers together
    logon_window_ms: int = 30_000  # how far the broker's clock may be from ours
    logon_timeout_s: float = 10.0
    heartbeat_s: float = 10.0

    @property
    def frame_bytes_max(self) -> int:
        """The largest frame read at all (aiohttp's `max_msg_size`)."""
        return self.message_bytes_max + FRAME_SLACK_BYTES


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


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated REST caller: a member (`member` set) or a broker."""

    identity: str
    member: Member | None


_RECEIPT_STATUS: Final = {api.UNKNOWN_TRADE: 404, api.NOT_YOUR_TRADE: 403, api.NOT_FINAL: 409}


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
    outbox_bytes: int = 0  # each queued message's length + MESSAGE_OVERHEAD_BYTES
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    space: asyncio.Event = field(default_factory=asyncio.Event)  # the outbox went down
    reports_live: bool = True  # off while a replay is streaming
    subscriptions: set[tuple[str, str]] = field(default_factory=set)
    placed: set[int] = field(default_factory=set)  # order ids entered in this session
    placed_prune_at: int = PLACED_PRUNE_MIN
    closing: str | None = None
    close_code: int = aiohttp.WSCloseCode.POLICY_VIOLATION
    fault: Fault = field(default_factory=Fault)  # the node's fault seam ("session")

    @property
    def logged_on(self) -> bool:
        return self.broker is not None or self.member is not None

    @property
    def identity(self) -> str | None:
        return self.broker if self.member is None else self.member.name

    def send(self, message: Mapping[str, Any]) -> None:
        self.send_bytes(orjson.dumps(message))

    def send_bytes(self, data: bytes) -> None:
        """Queue `data`; past `backlog_max` messages or the byte budget the session closes
        as a slow consumer and its outbox is freed at once (the broker replays after it
        reconnects). O(1)."""
        if self.closing is not None:
            return
        cost = len(data) + MESSAGE_OVERHEAD_BYTES
        budget = self.limits.backlog_bytes_max if self.logged_on else PENDING_BACKLOG_BYTES_MAX
        if len(self.outbox) >= self.limits.backlog_max or self.outbox_bytes + cost > budget:
            self.closing = (
                f"slow consumer: {len(self.outbox)} messages, {self.outbox_bytes} bytes "
                f"behind (limits {self.limits.backlog_max}, {budget})"
            )
            self.outbox = deque()  # the writer may hold one frame; the rest is freed now
            self.outbox_bytes = 0
            self.wake.set()
            self.space.set()
            return
        self.outbox.append(data)
        self.outbox_bytes += cost
        self.wake.set()

    def remember(self, order_id: int, is_open: Callable[[int], bool]) -> None:
        """Note an order entered in this session (for cancel_on_disconnect). Whenever the set
        has doubled since it was last pruned, the orders no longer open are forgotten, so it
        follows the session's open orders, not its history. Amortized O(1)."""
        self.placed.add(order_id)
        if len(self.placed) > self.placed_prune_at:
            self.placed = {known for known in self.placed if is_open(known)}
            self.placed_prune_at = max(PLACED_PRUNE_MIN, 2 * len(self.placed))

    def _low(self) -> bool:
        limits = self.limits
        return (
            self.outbox_bytes <= limits.backlog_bytes_max // 4
            and len(self.outbox) <= limits.backlog_max // 4
        )

    async def drained(self) -> None:
        """Until the outbox is down to a quarter of its limits, or the session is closing."""
        while self.closing is None and not self._low():
            self.space.clear()
            await self.space.wait()

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
        try:
            with contextlib.suppress(ConnectionError, aiohttp.ClientError, RuntimeError):
                while True:
                    while self.outbox:  # JSON goes out as text frames
                        self.fault.point("session")
                        data = self.outbox.popleft()
                        self.outbox_bytes -= len(data) + MESSAGE_OVERHEAD_BYTES
                        if self._low():
                            self.space.set()
                        await self.ws.send_frame(data, aiohttp.WSMsgType.TEXT)
                    if self.closing is not None:
                        await self.ws.close(code=self.close_code,
                                            message=self.closing.encode()[:120])  # fmt: skip
                        return
                    self.wake.clear()
                    await self.wake.wait()
        finally:
            self.space.set()  # a replay waiting for room stops


class Gateway:
    """Broker sessions, order entry, reports and market data on an `ExchangeNode`."""

    def __init__(
        self,
        genesis: Genesis,
        *,
        limits: Limits = DEFAULT_LIMITS,
        clock: Callable[[], int] = time.time_ns,
        journal: AckJournal | None = None,
    ) -> None:
        self.genesis = genesis
        self.limits = limits
        self.clock = clock
        self.journal = AckJournal.open(None) if journal is None else journal
        self.brokers = {broker.name: broker for broker in genesis.brokers}
        self.members = {member.name: member for member in genesis.members}
        self.accounts = {
            str(account): broker.name for broker in genesis.brokers for account in broker.accounts
        }
        # who may call the REST endpoints that are not public
        self.member_keys: dict[str, PublicKey] = {m.name: m.public_key for m in genesis.members}
        self.broker_keys: dict[str, PublicKey] = {b.name: b.public_key for b in genesis.brokers}
        self.reports = Reports(self.accounts)
        self.executed: list[tuple[Any, Any, list[Any]]] = []  # since the last stored block
        self.awaiting: dict[int, tuple[dict[str, Any], _Awaiting]] = {}  # id(command) -> ...
        self.sessions: dict[int, Session] = {}
        self.upgrading = 0  # connections between the upgrade request and their session
        self.session_ids = itertools.count(1)
        self.block_brokers: dict[int, set[str]] = {}  # height -> brokers with reports in it
        self.node: ExchangeNode | None = None
        self.market: MarketData | None = None
        self.machine: ObservedVenueMachine | None = None
        self.counters = {"orders": 0, "reports": 0, "errors": 0, "logons": 0, "rejected_logons": 0}
        self.lost_orders = 0  # acknowledged, then lost on every copy (`ack_journal`)
        self.journalled_height = 0  # the orders of the blocks up to here are in the journal
        self.lost_after: dict[int, list[dict[str, Any]]] = {}  # height -> their lost orders
        self.order_times: deque[float] = deque(maxlen=100_000)
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
        node.recovered_listeners.append(self._recovered)
        node.stop_listeners.append(self._unavailable)
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
        lost = self.journal.lost()  # each goes after the block it was lost after
        self.lost_orders = len(lost)
        for record in lost:
            self.lost_after.setdefault(record["after_height"], []).append(record)
        self._lose(0)
        for height in range(1, self.node.proposer.height + 1):
            header = store.header(height)
            assert header is not None, f"stored height {height} has no header"
            for _, parsed, events in executed[position : position + header.command_count]:
                self.reports.apply(height, parsed, events)
            position += header.command_count
            self._lose(height)
        assert position == len(executed), "replayed commands do not add up to the stored blocks"
        self.reports.next_order_id = max(
            self.reports.next_order_id, self.journal.max_order_id() + 1
        )

    def _recovered(self) -> None:
        """Recovery is over: the journalled orders above the recovered tip were lost on every
        copy. Each is reported `lost` to its broker."""
        assert self.node is not None
        height = self.node.proposer.height
        lost = self.journal.settle(height)
        if lost:
            log.warning("orders lost on every copy: %s", [r["order_id"] for r in lost])
            self.lost_orders += len(lost)
            self.lost_after.setdefault(height, []).extend(lost)
            for broker, report in self._lose(height):
                self._deliver(broker, report)

    def _lose(self, height: int) -> list[tuple[str, dict[str, Any]]]:
        """The `lost` reports that go after the block at `height` (a lost store's tail may
        hold blocks after which earlier recoveries put some: they come back by recovery)."""
        records = self.lost_after.pop(height, None) if self.lost_after else None
        return [self.reports.lost(height, record) for record in records or ()]

    # ---- blocks ----

    def _stored(self, block: Block) -> Awaitable[None] | None:
        """A block is stored (called by the exchange's reports task, after the cutter has
        proposed it; later blocks may be stored already): answer its requests, send its
        reports and market data. The orders about to be acknowledged are journalled first,
        in a worker thread (the fsync blocks neither the event loop nor the cutter): the
        awaitable returned is that write, then the rest."""
        height = block.header.height
        count = len(block.commands)
        if len(self.executed) == count:
            executed, self.executed = self.executed, []
        else:  # the executed commands of the later stored blocks follow, in order
            executed = self.executed[:count]
            del self.executed[:count]
        assert len(executed) == count, "executed commands are not the block's"
        if self.awaiting and height > self.journalled_height:  # durable before any ack
            group, through = self._to_journal(height, executed)
            if group:
                return self._journalled(group, through, executed)
        self._fold(height, executed)
        return None

    def _to_journal(
        self, height: int, executed: list[tuple[Any, Any, Any]]
    ) -> tuple[list[tuple[int, list[dict[str, Any]]]], int]:
        """The orders to journal before the block at `height` is acknowledged (none: no
        write), by height: its own and, in the same write (a group commit: one fsync however
        far the reports task is behind), those of the blocks stored after it that wait for
        the reports task, whose commands follow in `executed`. With the last height covered."""
        awaiting = self.awaiting

        def placed(commands: list[tuple[Any, Any, Any]]) -> list[dict[str, Any]]:
            return [c for c, _, _ in commands if id(c) in awaiting and c["type"] == "place"]

        own = placed(executed)
        if not own:
            return [], height
        group, through, position = [(height, own)], height, 0
        assert self.node is not None
        for item in self.node.after:
            if item.kind != "stored" or item.block is None or item.height <= height:
                continue
            count = len(item.block.commands)
            later = placed(self.executed[position : position + count])
            position += count
            if later:
                group.append((item.height, later))
            through = item.height
        assert position <= len(self.executed), "queued blocks hold more commands than executed"
        return group, through

    async def _journalled(
        self,
        group: list[tuple[int, list[dict[str, Any]]]],
        through: int,
        executed: list[tuple[Any, Any, Any]],
    ) -> None:
        await asyncio.to_thread(self.journal.record_blocks, group)
        self.journalled_height = max(self.journalled_height, through)
        self._fold(group[0][0], executed)

    def _fold(self, height: int, executed: list[tuple[Any, Any, Any]]) -> None:
        """Fold a stored block's commands into reports and market data, and send them."""
        assert self.market is not None
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
        for broker, report in self._lose(height):
            self._deliver(broker, report)
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

    def _final(self, certificate: QuorumCertificate) -> Awaitable[None] | None:
        """A certificate formed (after its block's reports: the reports task keeps the
        order): a `final` notice to the brokers with reports in it; the journal forgets the
        final blocks' orders (a write with an fsync, in a worker thread, every PRUNE_BLOCKS)."""
        self._notify_final(certificate)
        if self.journal.prune_due(certificate.height):
            return asyncio.to_thread(self.journal.prune, certificate.height)
        return None

    def _notify_final(self, certificate: QuorumCertificate) -> None:
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
        pending = self.upgrading + sum(not s.logged_on for s in self.sessions.values())
        if pending >= limits.pending_sessions_max:  # each may hold a little until its timeout
            return _error(503, ApiError(api.BUSY, f"{pending} connections are waiting to log "
                                        f"on (pending_sessions_max {limits.pending_sessions_max})"
                                        "; retry later"))  # fmt: skip
        ws = web.WebSocketResponse(
            max_msg_size=limits.frame_bytes_max, heartbeat=limits.heartbeat_s
        )  # a longer frame is refused from its header (1009), never read
        self.upgrading += 1  # counted as pending while the handshake is written
        try:
            await ws.prepare(request)
        finally:
            self.upgrading -= 1
        assert self.node is not None
        self.node.sockets.add(ws)
        session = Session(next(self.session_ids), ws, limits, tokens=float(limits.messages_per_s),
                          fault=self.node.fault)  # fmt: skip
        self.sessions[session.id] = session
        writer = self.node.spawn(session.write(), "session", partial(self._writer_failed, session))
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
                self._cancel_orders(self._session_orders(session), "cancel_on_disconnect")
            session.closing = session.closing or "closed"
            session.wake.set()
            session.space.set()
            await asyncio.wait([writer], timeout=1.0)  # its failure is the supervisor's
            writer.cancel()
        return ws

    def _writer_failed(self, session: Session, error: BaseException) -> None:
        """The session's writer died: close its socket (code 1011), so that the broker
        reconnects instead of waiting for replies that would never be written."""
        assert self.node is not None
        session.closing = f"internal error: {describe(error)}"[:120]
        self.node.spawn(session.ws.close(code=aiohttp.WSCloseCode.INTERNAL_ERROR,
                                         message=session.closing.encode()), "reply")  # fmt: skip

    def _unavailable(self, reason: str) -> None:
        """The exchange failed or is stopping: answer every request waiting for its block
        with `unavailable` (its outcome is unknown until the exchange is back: ask
        `order_status`), then close every session once its replies are written."""
        awaiting, self.awaiting = self.awaiting, {}
        message = (
            f"the exchange stopped before this request was answered ({reason:.300}); "
            "its outcome is unknown until the exchange is back: ask order_status"
        )
        for _, waiting in awaiting.values():
            self._error(waiting.session, waiting.request, ApiError(api.UNAVAILABLE, message))
        assert self.node is not None
        failed = self.node.failure is not None
        for session in self.sessions.values():
            if session.closing is None:
                session.close_code = (aiohttp.WSCloseCode.INTERNAL_ERROR if failed
                                      else aiohttp.WSCloseCode.GOING_AWAY)  # fmt: skip
                session.closing = "exchange failed" if failed else "exchange stopping"
                session.wake.set()

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
        held = sum(1 for other in self.sessions.values() if other.identity == name)
        if held >= self.limits.sessions_per_broker_max:
            self._fail(session, request.request, ApiError(
                api.TOO_MANY_SESSIONS, f"{name} has {held} sessions open, the limit "
                f"(sessions_per_broker_max {self.limits.sessions_per_broker_max})",
                identity))  # fmt: skip
            return
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
                                 "backlog_max": self.limits.backlog_max,
                                 "backlog_bytes_max": self.limits.backlog_bytes_max,
                                 "sessions_per_broker_max":
                                     self.limits.sessions_per_broker_max},
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
        encoded = [canonical_bytes(command) for command in commands]  # the gateway's: valid
        refused = self.node.submit(commands, encoded=encoded)
        if refused is None:
            assert self.machine is not None
            submitted = self.machine.submitted
            for data, command in zip(encoded, commands, strict=True):
                submitted[id(data)] = (data, command)
            return None
        codes = {"busy": api.BUSY, "recovering": api.RECOVERING, "unavailable": api.UNAVAILABLE}
        return ApiError(codes.get(refused.code, api.DEGRADED), refused.message)

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
        session.remember(order.order_id, self._is_open)
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

    def _matching(self, session: Session, args: Mapping[str, Any]) -> list[OrderView] | ApiError:
        """The broker's open orders the filters select; an account filter must name one of its
        own accounts, as `place` requires."""
        broker = session.broker
        assert broker is not None
        account = args["account"]
        if account is not None and self.accounts.get(account) != broker:
            return ApiError(api.NOT_YOUR_ACCOUNT, f"account {account!r} is not an account of "
                            f"{broker}", "account")  # fmt: skip
        return [
            order
            for order in self.reports.open_of(broker)
            if account in (None, order.account) and args["symbol"] in (None, order.symbol)
        ]

    def _cancel_all(self, session: Session, request: Request) -> ApiError | None:
        orders = self._matching(session, request.args)
        if isinstance(orders, ApiError):
            return orders
        error = self._cancel_orders(orders)
        if error is None:
            session.send({"type": "cancel_all", "request": request.request,
                          "orders": [o.order_id for o in orders]})  # fmt: skip
        return error

    def _cancel_orders(self, orders: list[OrderView], reason: str = "") -> ApiError | None:
        """Sequence a cancel of each of `orders`; `reason` (the venue's cancel command's, e.g.
        `cancel_on_disconnect`) goes into the ledger and onto each `cancelled` report."""
        commands: list[dict[str, Any]] = [{"type": "cancel", "broker": o.broker,
                                           "order_id": o.order_id, "symbol": o.symbol}
                                          for o in orders]  # fmt: skip
        if reason:
            for command in commands:
                command["reason"] = reason
        return self._submit(commands) if commands else None

    def _is_open(self, order_id: int) -> bool:
        order = self.reports.orders.get(order_id)
        return order is not None and order.is_open

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
        matching = self._matching(session, request.args)
        if isinstance(matching, ApiError):
            return matching
        orders = [order.to_dict() for order in matching]
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
        assert self.node is not None
        self.node.spawn(self._stream(session, request.request, start), "replay",
                        partial(self._replay_failed, session, request.request))  # fmt: skip
        return None

    def _replay_failed(self, session: Session, request: Any, error: BaseException) -> None:
        """The replay stream died: answer the replay with an error and close the session
        (code 1011): its reports have a gap, which a new session's replay fills."""
        self._error(session, request, ApiError(api.UNAVAILABLE, "the replay failed: "
                                               f"{describe(error)}"[:300], "from"))  # fmt: skip
        session.close_code = aiohttp.WSCloseCode.INTERNAL_ERROR
        session.closing = session.closing or "replay failed"
        session.wake.set()

    async def _stream(self, session: Session, request: Any, start: int) -> None:
        """Replay reports from `start` at the pace the session drains them, then go live."""
        report_log = self.reports.log(session.broker or "")
        index = start
        limits = self.limits
        while session.closing is None:  # fill the outbox to half its limits, wait, go on
            for report in report_log.since(index):
                session.fault.point("replay")
                session.send({**report, "replayed": True})
                index = report["index"] + 1
                if (session.outbox_bytes >= limits.backlog_bytes_max // 2
                        or len(session.outbox) >= limits.backlog_max // 2):  # fmt: skip
                    break
            if index >= report_log.next_index:
                session.reports_live = True  # atomically: nothing appended since the check
                # from past the end: nothing was replayed, and the next report is the log's
                session.send({"type": "replayed", "request": request, "from": start,
                              "next": report_log.next_index})  # fmt: skip
                return
            await session.drained()

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
        from_seq = request.args.get("from_seq")
        missed = None if from_seq is None else self.market.trades_since(symbol, from_seq)
        if from_seq is not None and missed is None:
            return ApiError(api.REPLAY_GONE, f"trades of {symbol} from seq {from_seq} are no "
                            "longer held", "from_seq")  # fmt: skip
        session.subscriptions.add(key)
        subscribed = {"type": "subscribed", "request": request.request, "channel": channel,
                      "symbol": symbol}  # fmt: skip
        if channel in ("bbo", "trades"):  # the last seq sent: the next message has seq + 1
            subscribed["seq"] = self.market.seq(symbol, channel)
        session.send(subscribed)
        for message in missed or ():
            session.send(message)
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
        """The trade's receipt (`ledger.receipt`), for a party to it (`broker` None: a
        member, who may read any). The one access rule for receipts, WebSocket and REST."""
        assert self.node is not None
        store = self.node.proposer.store
        try:
            where = find_trade(store, trade_id)
            if where is None:
                return ApiError(api.UNKNOWN_TRADE, f"no trade {trade_id}", "trade_id")
            receipt = build_receipt(store, *where)  # the receipt of the command that traded
            event = trade_in(receipt["leaf"], trade_id)
            if event is None:
                return ApiError(api.UNKNOWN_TRADE, f"no trade {trade_id} in its receipt",
                                "trade_id")  # fmt: skip
            parties = {self.accounts.get(event["buy_account"]),
                       self.accounts.get(event["sell_account"])}  # fmt: skip
            if broker is not None and broker not in parties:
                return ApiError(api.NOT_YOUR_TRADE, f"trade {trade_id} is not a trade of "
                                f"{broker}", "trade_id")  # fmt: skip
            return {**receipt, "trade_id": trade_id}
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

    def _caller(self, request: web.Request) -> Caller | web.Response:
        """Who signed `request` (`ledger.auth`, against the genesis keys, within the logon
        window of the injected clock), or the 401 answer naming what was wrong."""
        header, now_ns = request.headers.get("Authorization"), self.clock()
        found: list[str | auth.AuthError] = []
        for keys in (self.member_keys, self.broker_keys):  # a name may be both (two keys)
            found.append(auth.authenticate(
                header, chain_id=self.genesis.chain_id, keys=keys, method=request.method,
                path=request.raw_path, now_ns=now_ns,
                window_ns=self.limits.logon_window_ms * 1_000_000))  # fmt: skip
            if isinstance(found[-1], str):
                member = self.members[found[-1]] if keys is self.member_keys else None
                return Caller(found[-1], member)
        error = found[0]  # the member check's reason, unless the name is only a broker's
        assert isinstance(error, auth.AuthError) and isinstance(found[1], auth.AuthError)
        if error.code == auth.UNKNOWN_IDENTITY:
            error = found[1]
        response = _error(401, ApiError(error.code, error.message, "Authorization"))
        response.headers["WWW-Authenticate"] = (
            f'{auth.SCHEME} realm="{self.genesis.chain_id}", {auth.TOKEN_SCHEME}'
        )
        return response

    async def _block(self, request: web.Request) -> web.StreamResponse:
        """Members only: a block holds every broker's commands (see docs/api.md, Access)."""
        assert self.node is not None
        caller = self._caller(request)
        if isinstance(caller, web.Response):
            return caller
        text = request.match_info["height"]
        if caller.member is None:
            return _error(403, ApiError(api.NOT_ALLOWED, f"broker {caller.identity} may not "
                                        f"read block {text!r:.40}: blocks are for members; "
                                        "use reports and receipts", "Authorization"))  # fmt: skip
        height = _positive(text)
        store = self.node.proposer.store
        block = None if height is None else store.block(height)
        if block is None:
            return _error(404, ApiError("unknown_block", f"no block {text!r:.40}", "height"))
        certificate = store.certificate(block.header.height)
        return _json(
            {
                "block": block.to_dict(),
                "certificate": None if certificate is None else certificate.to_dict(),
            }
        )

    async def _receipt(self, request: web.Request) -> web.StreamResponse:
        """The parties' brokers and members, as the WebSocket `receipt` (one rule: `receipt`)."""
        caller = self._caller(request)
        if isinstance(caller, web.Response):
            return caller
        trade_id = _positive(request.match_info["trade_id"])
        if trade_id is None:
            return _error(400, ApiError(api.INVALID_FIELD, "trade_id must be a positive integer, "
                                        f"got {request.match_info['trade_id']!r:.40}",
                                        "trade_id"))  # fmt: skip
        receipt = self.receipt(trade_id, None if caller.member else caller.identity)
        if isinstance(receipt, ApiError):
            return _error(_RECEIPT_STATUS.get(receipt.code, 409), receipt)
        return _json(receipt)

    def health(self) -> dict[str, Any]:
        assert self.node is not None
        proposer = self.node.proposer
        supervision = self.node.health()  # `failed` (with the failed task) beats the rest
        failed = supervision["status"] == "failed"
        members = self.node.peer_status()
        clock = self.clock_health(members)
        status = "recovering" if proposer.recovering else "degraded" if proposer.degraded else "ok"
        if clock["exchange_clock_suspect"]:  # the likely cause: members refuse our signed fetches
            status = "clock_skew"
        return {
            "status": "failed" if failed else status,
            "lost_orders": self.lost_orders,
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
            "failure": supervision["failure"],
            "task_failures": supervision["task_failures"],
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
        text = (
            "".join(
                f"# HELP {name} {help_}\n# TYPE {name} {kind}\n{name} {value}\n"
                for name, kind, help_, value in lines
            )
            + task_metrics(self.node)
            + _member_metrics(self.node.peer_status())
        )
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
