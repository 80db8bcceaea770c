"""Open market viewers as load: N pages' worth of `/console/market/ws` sockets that read and
count what the exchange pushes, for the benchmarks (`jinlian bench ledger --viewers N`,
`exchange.bench.console_bench`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp


@dataclass
class ViewerLoad:
    messages: list[int] = field(default_factory=list)  # per viewer
    bytes_read: list[int] = field(default_factory=list)
    closed_early: int = 0  # sockets the exchange closed (backlog full) during the run


@contextlib.asynccontextmanager
async def market_viewers(address: str, symbol: str, count: int) -> AsyncIterator[ViewerLoad]:
    """`count` viewers of `symbol` on the exchange at `address`, reading until the block
    ends; each has had its first message (the snapshot) when this yields."""
    load = ViewerLoad([0] * count, [0] * count)
    url = f"http://{address}/console/market/ws?symbol={symbol}"
    async with aiohttp.ClientSession() as session:
        sockets = [await session.ws_connect(url, max_msg_size=0) for _ in range(count)]

        async def read(index: int, ws: aiohttp.ClientWebSocketResponse) -> None:
            async for message in ws:
                load.messages[index] += 1
                load.bytes_read[index] += len(message.data)
            if ws.close_code not in (None, 1000):
                load.closed_early += 1

        readers = [asyncio.ensure_future(read(i, ws)) for i, ws in enumerate(sockets)]
        while min(load.messages, default=1) == 0:
            await asyncio.sleep(0.01)
        try:
            yield load
        finally:
            for reader in readers:
                reader.cancel()
            for ws in sockets:
                await ws.close()
