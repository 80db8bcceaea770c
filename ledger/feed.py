"""A client of the exchange's sequencer feed (`/submit`) and status endpoints.

`submit` sends one batch and waits for its answer; `pipeline` keeps up to `window` batches in
flight, which is how a load generator reaches the exchange's throughput. A batch is answered
`stored` (its commands are in a stored block: acknowledged) or `refused` (`busy`,
`degraded`, `malformed`), possibly in several `stored` parts when it spans blocks; then
`final` once the certificate of each of those blocks has formed. `send(..., final=True)` gives
a second future for that moment (an open-loop load generator times it against the batch's
scheduled send time).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import aiohttp
import orjson

from ledger.protocol import MESSAGE_BYTES_MAX


class FeedError(Exception):
    """The exchange refused a batch: `code` is busy, degraded or malformed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def _future() -> asyncio.Future[Any]:
    return asyncio.get_running_loop().create_future()


@dataclass
class _Batch:
    count: int
    stored: int = 0
    final: int = 0
    heights: list[int] = field(default_factory=list)
    done: asyncio.Future[list[int]] = field(default_factory=_future)
    finalized: asyncio.Future[None] | None = None  # when the caller asked to be told


class Feed:
    """`async with Feed("127.0.0.1:7400") as feed: heights = await feed.submit([...])`."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._batches: dict[int, _Batch] = {}
        self._next = 0
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(
            f"http://{self.address}/submit", max_msg_size=MESSAGE_BYTES_MAX
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()

    async def submit(self, commands: Sequence[dict[str, Any]]) -> list[int]:
        """Sequence `commands`; the heights of the blocks that store them. Raises FeedError."""
        return await (await self.send(commands))

    async def send(self, commands: Sequence[dict[str, Any]]) -> asyncio.Future[list[int]]:
        """Send a batch without waiting for its answer; the future of its heights."""
        return (await self._send(commands, final=False))[0]

    async def send_final(
        self, commands: Sequence[dict[str, Any]]
    ) -> tuple[asyncio.Future[list[int]], asyncio.Future[None]]:
        """Send a batch; the futures of its heights (stored) and of its finality (every
        block holding it certified). Both raise FeedError if the batch is refused."""
        stored, final = await self._send(commands, final=True)
        assert final is not None
        return stored, final

    async def _send(
        self, commands: Sequence[dict[str, Any]], *, final: bool
    ) -> tuple[asyncio.Future[list[int]], asyncio.Future[None] | None]:
        assert self._ws is not None, "use Feed as an async context manager"
        self._next += 1
        batch = self._batches[self._next] = _Batch(len(commands))
        if final:
            batch.finalized = _future()
        await self._ws.send_bytes(orjson.dumps({"request": self._next, "commands": commands}))
        return batch.done, batch.finalized

    async def pipeline(
        self, batches: Iterable[Sequence[dict[str, Any]]], window: int = 8
    ) -> list[int]:
        """Send every batch with up to `window` unanswered; the heights, in order. A batch
        refused as busy or degraded is retried after a pause."""
        heights: list[int] = []
        inflight: list[tuple[Sequence[dict[str, Any]], asyncio.Future[list[int]]]] = []

        async def settle(
            oldest: tuple[Sequence[dict[str, Any]], asyncio.Future[list[int]]],
        ) -> None:
            commands, future = oldest
            while True:
                try:
                    heights.extend(await future)
                    return
                except FeedError as error:
                    if error.code not in ("busy", "degraded"):
                        raise
                    await asyncio.sleep(0.01)
                    future = await self.send(commands)

        for commands in batches:
            inflight.append((commands, await self.send(commands)))
            if len(inflight) >= window:
                await settle(inflight.pop(0))
        for oldest in inflight:
            await settle(oldest)
        return heights

    async def _read(self) -> None:
        assert self._ws is not None
        async for frame in self._ws:
            if frame.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                continue
            reply = orjson.loads(frame.data)
            request = reply.get("request")
            batch = self._batches.get(request)
            if batch is None:
                continue
            kind = reply["type"]
            if kind == "refused":
                del self._batches[request]
                error = FeedError(reply["code"], reply["message"])
                batch.done.set_exception(error)
                if batch.finalized is not None:
                    batch.finalized.set_exception(error)
                    batch.finalized.exception()  # retrieved: the caller may await only one
                    batch.done.exception()
                continue
            if kind == "stored":
                batch.stored += reply["count"]
                batch.heights.append(reply["height"])
                if batch.stored >= batch.count:
                    batch.done.set_result(batch.heights)
            elif kind == "final" and batch.finalized is not None:
                batch.final += reply["count"]
                if batch.final >= batch.count:
                    batch.finalized.set_result(None)
            if batch.done.done() and (batch.finalized is None or batch.finalized.done()):
                del self._batches[request]
        closed = ConnectionError("the exchange closed the feed")
        for batch in self._batches.values():
            for future in (batch.done, batch.finalized):
                if future is not None and not future.done():
                    future.set_exception(closed)


async def wait_until_up(addresses: Iterable[str], timeout_s: float = 60.0) -> None:
    """Return once every node answers `/status` (the exchange: once it has recovered, so it
    sequences); RuntimeError naming the first that does not within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    for address in addresses:
        while True:
            try:
                if not (await status(address)).get("recovering", False):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{address} did not start") from None
            await asyncio.sleep(0.05)


async def status(
    address: str, after: int = 0, authorization: Callable[[str], str] | None = None
) -> dict[str, Any]:
    """A node's `/status` (finality percentiles over the blocks above `after`): its heights
    only, unless `authorization(path)` signs the request as a member (`ledger.auth`)."""
    path = f"/status?after={after}"
    headers = {} if authorization is None else {"Authorization": authorization(path)}
    url = f"http://{address}{path}"  # digits only: sent as signed, nothing to re-quote
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as r:
        value: dict[str, Any] = orjson.loads(await r.read())
        return value
