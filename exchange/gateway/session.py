"""A broker's or member's WebSocket session at the gateway, and the limits every session has.

A `Session` holds what the gateway knows about one connection: who logged on, its token
bucket (messages per second), its subscriptions, the order ids entered on it (for
`cancel_on_disconnect`) and its outbox, bounded in messages and in bytes. The session's writer
task (`Session.write`) drains the outbox to the socket; a consumer that falls past the bound
is closed and its backlog freed (`exchange.gateway.sessions` runs the endpoint; docs/api.md,
"Limits").
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import orjson
from aiohttp import web

from ledger.genesis import Member
from ledger.node import Fault

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
