"""The console's live market data: the public channels of one instrument pushed to a page.

A browser cannot log on to `/ws` (it holds no key), so the console serves the public market
data on its own WebSocket, `/console/market/ws?symbol=S`: on connect, the instrument's book
snapshot and its current `bbo` and `phase`; then every `book`, `bbo`, `trades` and `phase`
message the gateway publishes for it (`exchange.gateway.market_data`, the same messages and
the same CRC-32 `checksum` that brokers get), which the page checks against its rebuilt book.

The console's work on the exchange is bounded as a broker session's is: at most
`viewers_max` open viewers (one more is refused with 503 `busy`), and each viewer's backlog
at most `backlog_bytes_max` bytes: a viewer that falls further behind is closed (1008) and
its backlog freed, and the page reconnects for a new snapshot. A message is encoded once
however many viewers get it, and sent as it is (a binary frame of UTF-8 JSON, without
per-message compression, which would cost the exchange a deflate per viewer). Nothing a
viewer sends is read but the close.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from aiohttp import WSMsgType, web

from exchange.gateway.market_data import MarketData

VIEWERS_MAX: Final = 64
VIEWER_BACKLOG_BYTES_MAX: Final = 1024 * 1024
WS_POLICY_VIOLATION: Final = 1008
WS_GOING_AWAY: Final = 1001


@dataclass(eq=False)
class Viewer:
    """One open page: its instrument and its bounded backlog of encoded messages."""

    symbol: str
    backlog_bytes_max: int
    ws: web.WebSocketResponse | None = None
    queue: deque[bytes] = field(default_factory=deque)
    queued_bytes: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # the queue has a message
    overflowed: bool = False

    def put(self, data: bytes) -> None:
        if self.overflowed:
            return
        if self.queued_bytes + len(data) > self.backlog_bytes_max:
            self.overflowed = True  # closed by its writer; the backlog is freed
            self.queue.clear()
            self.queued_bytes = 0
            self.ready.set()
            return
        self.queue.append(data)
        self.queued_bytes += len(data)
        self.ready.set()

    def take(self) -> bytes:
        data = self.queue.popleft()
        self.queued_bytes -= len(data)
        if not self.queue:
            self.ready.clear()
        return data


class MarketViewers:
    """The open market pages of one exchange, fed by the gateway's published messages."""

    def __init__(
        self,
        market: MarketData,
        *,
        viewers_max: int = VIEWERS_MAX,
        backlog_bytes_max: int = VIEWER_BACKLOG_BYTES_MAX,
    ) -> None:
        assert viewers_max > 0 and backlog_bytes_max > 0, (viewers_max, backlog_bytes_max)
        self.market = market
        self.viewers_max = viewers_max
        self.backlog_bytes_max = backlog_bytes_max
        self.viewers: set[Viewer] = set()
        self.refused = 0  # viewers refused as one too many
        self.overflows = 0  # viewers closed for a full backlog

    def publish(self, messages: list[dict[str, Any]]) -> None:
        """The gateway's listener: one stored block's market-data messages."""
        if not self.viewers:
            return
        for message in messages:
            symbol, data = message["symbol"], None
            for viewer in self.viewers:
                if viewer.symbol == symbol:
                    data = data or orjson.dumps(message)
                    viewer.put(data)

    def first_messages(self, symbol: str) -> list[dict[str, Any]]:
        """What a new viewer starts from: the snapshot, the bbo and the phase."""
        market = self.market
        first = [market.snapshot(symbol)]
        for channel in ("bbo", "phase"):
            current = market.current(symbol, channel)
            if current is not None:
                first.append(current)
        return first

    async def on_socket(self, request: web.Request) -> web.StreamResponse:
        symbol = request.query.get("symbol", "")
        if symbol not in self.market.published:
            raise web.HTTPNotFound(text=f"symbol {symbol[:40]!r} is not listed")
        if len(self.viewers) >= self.viewers_max:
            self.refused += 1
            raise web.HTTPServiceUnavailable(
                text=f"{len(self.viewers)} market viewers are open (at most {self.viewers_max})"
            )
        # no per-message deflate: it would compress every message once per viewer
        ws = web.WebSocketResponse(heartbeat=15.0, max_msg_size=1024, compress=False)
        await ws.prepare(request)
        viewer = Viewer(symbol, self.backlog_bytes_max, ws)
        for message in self.first_messages(symbol):
            viewer.put(orjson.dumps(message))
        self.viewers.add(viewer)
        reader = asyncio.ensure_future(self._read(ws))
        try:
            await self._write(ws, viewer, reader)
        finally:
            self.viewers.discard(viewer)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        return ws

    async def shutdown(self, app: web.Application) -> None:
        """The node is stopping: close every viewer (going away), or the server would wait
        for their handlers."""
        for viewer in list(self.viewers):
            if viewer.ws is not None and not viewer.ws.closed:
                await viewer.ws.close(code=WS_GOING_AWAY, message=b"the exchange is stopping")

    async def _read(self, ws: web.WebSocketResponse) -> None:
        """Read until the page closes (it sends nothing else)."""
        async for message in ws:
            if message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break

    async def _write(self, ws: web.WebSocketResponse, viewer: Viewer, reader: Any) -> None:
        while not ws.closed and not reader.done():
            waiter = asyncio.ensure_future(viewer.ready.wait())
            await asyncio.wait([waiter, reader], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if viewer.overflowed:
                self.overflows += 1
                await ws.close(code=WS_POLICY_VIOLATION, message=b"backlog full: reconnect")
                return
            while viewer.queue and not ws.closed:
                try:
                    await ws.send_bytes(viewer.take())  # binary: the page decodes UTF-8
                except (ConnectionError, RuntimeError):
                    return
