"""The replication shell: `Proposer` and `Replica` over aiohttp on real sockets.

A member node listens on its genesis address:

| endpoint | what |
|---|---|
| `GET /ledger` (WebSocket) | the exchange's connection: proposals, certificates in; votes out |
| `GET /blocks?from=H&limit=N` | a catch-up page (`blocks` message) for any peer |
| `GET /status` | height, certified height, evidence count |

The exchange listens on its own address (`/blocks`, `/status`, and `/submit`, the sequencer's
feed: a WebSocket taking JSON arrays of commands, answering each batch once its block is
stored and again once that block is final) and dials every voting member's `/ledger`,
reconnecting with backoff. Every frame is one protocol message (`ledger.protocol`); a
malformed frame is dropped and counted, never fatal. All protocol decisions are in the sans-IO
cores; this module only moves bytes, keeps time (block cutting, ticks) and bounds every queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import orjson
from aiohttp import web

from ledger.block import Block, QuorumCertificate
from ledger.genesis import Genesis
from ledger.protocol import (
    MESSAGE_BYTES_MAX,
    Blocks,
    Certified,
    Fetch,
    MalformedMessage,
    Message,
    decode,
    encode,
)
from ledger.replication import Proposer, Refused, Replica, Send
from ledger.store import BLOCKS_PAGE_MAX

log = logging.getLogger("jinlian.node")

TICK_S: Final = 0.05
BLOCK_INTERVAL_S: Final = 0.025  # longest wait of a partial block while blocks are in flight
PIPELINE_BLOCKS: Final = 2  # a partial block is cut at once while fewer await certificates
LINK_QUEUE_MAX: Final = 4096  # messages waiting for one peer; more are dropped (ticks repair)
SUBMIT_BATCH_MAX: Final = 10_000  # commands in one /submit frame
RECONNECT_S: Final = (0.05, 2.0)
FETCH_TIMEOUT_S: Final = 10.0
LATENCY_SAMPLES_MAX: Final = 1_000_000


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


class _Encoded:
    """Encode each message once, however many peers it goes to."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[Message, bytes]] = {}

    def __call__(self, message: Message) -> bytes:
        hit = self._cache.get(id(message))
        if hit is not None and hit[0] is message:
            return hit[1]
        data = encode(message)
        if len(self._cache) > 64:
            self._cache.clear()
        self._cache[id(message)] = (message, data)
        return data


class _Link:
    """One outgoing connection's bounded queue and its writer task."""

    def __init__(self, ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(LINK_QUEUE_MAX)
        self.task = asyncio.create_task(self._write())
        self.dropped = 0

    def put(self, data: bytes) -> None:
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            self.dropped += 1

    async def _write(self) -> None:
        with contextlib.suppress(ConnectionError, aiohttp.ClientError, RuntimeError):
            while True:
                await self.ws.send_bytes(await self.queue.get())

    def close(self) -> None:
        self.task.cancel()


async def _fetch_page(
    session: aiohttp.ClientSession, address: str, fetch: Fetch
) -> Message | MalformedMessage:
    url = f"http://{address}/blocks"
    params = {"from": str(fetch.start), "limit": str(min(fetch.limit, BLOCKS_PAGE_MAX))}
    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
    async with session.get(url, params=params, timeout=timeout) as response:
        if response.status != 200:
            return MalformedMessage(f"{url}: HTTP {response.status}")
        return decode(await response.read())


def _fetch_request(request: web.Request) -> Fetch | web.Response:
    try:
        start = int(request.query.get("from", ""))
        limit = int(request.query.get("limit", str(BLOCKS_PAGE_MAX)))
    except ValueError:
        return _error(400, "from and limit must be integers")
    if start < 1 or not 1 <= limit <= BLOCKS_PAGE_MAX:
        return _error(400, f"from {start} must be >= 1, limit {limit} in 1..{BLOCKS_PAGE_MAX}")
    return Fetch(start, limit)


def _error(status: int, message: str) -> web.Response:
    return web.json_response(
        {"error": message}, status=status, dumps=lambda v: orjson.dumps(v).decode()
    )


def _json(value: Any) -> web.Response:
    return web.Response(body=orjson.dumps(value), content_type="application/json")


class _Shell:
    """What both node kinds share: the HTTP server, catch-up fetches, ticks, routing."""

    def __init__(self, genesis: Genesis, member_id: int, address: str) -> None:
        self.genesis = genesis
        self.member_id = member_id
        self.address = address
        self.addresses = {member.id: member.address for member in genesis.members}
        self.encoded = _Encoded()
        self.links: dict[int, _Link] = {}
        self.malformed = 0
        self.tasks: set[asyncio.Task[Any]] = set()
        self.sockets: set[web.WebSocketResponse] = set()  # accepted, still open
        self.runner: web.AppRunner | None = None
        self.session: aiohttp.ClientSession | None = None
        self.app = web.Application(client_max_size=MESSAGE_BYTES_MAX)
        self.app.router.add_get("/blocks", self._blocks)
        self.app.router.add_get("/status", self._status)

    # the core, provided by the subclass
    def receive(self, sender: int, message: Message) -> list[Send]:
        raise NotImplementedError

    def tick(self) -> list[Send]:
        raise NotImplementedError

    def status(self, after: int = 0) -> dict[str, Any]:
        raise NotImplementedError

    async def start(self) -> None:
        self.session = aiohttp.ClientSession()
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        host, port = split_address(self.address)
        await web.TCPSite(self.runner, host, port, reuse_address=True).start()
        self.spawn(self._ticker())

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for link in list(self.links.values()):
            link.close()
        for ws in list(self.sockets):  # or the server would wait for its handlers
            await ws.close()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.session is not None:
            await self.session.close()

    def spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task failed", exc_info=task.exception())

    def route(self, sends: list[Send]) -> None:
        for send in sends:
            if isinstance(send.message, Fetch):
                self.spawn(self._fetch(send.to, send.message))
                continue
            link = self.links.get(send.to)
            if link is not None:
                link.put(self.encoded(send.message))

    def handle(self, sender: int, data: bytes | str) -> None:
        message = decode(data)
        if isinstance(message, MalformedMessage):
            self.malformed += 1
            log.warning("dropped a message from member %s: %s", sender, message)
            return
        self.route(self.receive(sender, message))

    async def _fetch(self, peer: int, fetch: Fetch) -> None:
        address = self.addresses.get(peer)
        if address is None or self.session is None:
            return
        try:
            message = await _fetch_page(self.session, address, fetch)
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            log.info("catch-up from member %s failed: %s", peer, error)
            return
        if isinstance(message, MalformedMessage) or not isinstance(message, Blocks):
            self.malformed += 1
            return
        self.route(self.receive(peer, message))

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self.route(self.tick())

    async def _blocks(self, request: web.Request) -> web.StreamResponse:
        fetch = _fetch_request(request)
        if isinstance(fetch, web.Response):
            return fetch
        sends = self.receive(-1, fetch)
        return web.Response(body=encode(sends[0].message), content_type="application/json")

    async def _status(self, request: web.Request) -> web.StreamResponse:
        after = request.query.get("after", "0")
        if not after.isdigit():
            return _error(400, f"after {after!r} is not a height")
        return _json(self.status(int(after)))


class ReplicaNode(_Shell):
    """A voting member on the network."""

    def __init__(self, replica: Replica, address: str) -> None:
        super().__init__(replica.genesis, replica.member_id, address)
        self.replica = replica
        self.exchange_id = replica.exchange_id
        self.app.router.add_get("/ledger", self._ledger)

    def receive(self, sender: int, message: Message) -> list[Send]:
        return self.replica.receive(sender, message)

    def tick(self) -> list[Send]:
        return self.replica.tick()

    def status(self, after: int = 0) -> dict[str, Any]:
        store = self.replica.store
        return {
            "member": self.member_id,
            "height": self.replica.height,
            "certified": store.certified_height(),
            "evidence": len(store.evidence()),
            "exchange_connected": self.exchange_id in self.links,
            "malformed": self.malformed,
        }

    async def _ledger(self, request: web.Request) -> web.StreamResponse:
        """The exchange's connection. Messages are signed, so the socket needs no login; a
        newer connection replaces an older one."""
        ws = web.WebSocketResponse(max_msg_size=MESSAGE_BYTES_MAX, heartbeat=5.0)
        await ws.prepare(request)
        old = self.links.pop(self.exchange_id, None)
        if old is not None:
            old.close()
        link = self.links[self.exchange_id] = _Link(ws)
        self.sockets.add(ws)
        try:
            async for frame in ws:
                if frame.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                    self.handle(self.exchange_id, frame.data)
        finally:
            if self.links.get(self.exchange_id) is link:
                del self.links[self.exchange_id]
            link.close()
            self.sockets.discard(ws)
        return ws


@dataclass
class _Pending:
    """A submitted batch waiting for its block: how many of its commands are not yet in a
    stored block, when it was sequenced, and where to answer (a /submit socket; none for the
    gateway, which listens to stored blocks and certificates instead)."""

    ws: web.WebSocketResponse | None  # the /submit socket to answer; None for the gateway's
    request: Any
    count: int
    sequenced_ns: int


@dataclass(frozen=True, slots=True)
class _Part:
    """The commands of one submitted batch in one block: a /submit batch is answered `stored`
    when the block is stored and `final` when its certificate forms."""

    ws: web.WebSocketResponse | None
    request: Any
    count: int
    sequenced_ns: int


@dataclass
class Finality:
    """Sequencing-to-certificate latency of finalized commands: one sample per batch per
    block, weighted by its command count, for `/status`."""

    finalized_commands: int = 0
    samples: deque[tuple[int, int, float]] = field(  # (height, commands, latency ms)
        default_factory=lambda: deque(maxlen=LATENCY_SAMPLES_MAX)
    )

    def add(self, height: int, count: int, latency_ms: float) -> None:
        self.finalized_commands += count
        self.samples.append((height, count, latency_ms))

    def percentile(self, fraction: float, after: int = 0) -> float | None:
        """The latency below which `fraction` of the commands in blocks above `after` were."""
        chosen = sorted((latency, count) for h, count, latency in self.samples if h > after)
        total = sum(count for _, count in chosen)
        if not total:
            return None
        rank, seen = fraction * total, 0
        for latency, count in chosen:
            seen += count
            if seen >= rank:
                return round(latency, 3)
        return round(chosen[-1][0], 3)


class ExchangeNode(_Shell):
    """The exchange on the network: the sequencer's feed, block cutting, proposals."""

    def __init__(
        self,
        proposer: Proposer,
        address: str,
        *,
        block_interval_s: float = BLOCK_INTERVAL_S,
        feed: bool = True,
        pipeline_blocks: int = PIPELINE_BLOCKS,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__(proposer.genesis, proposer.member_id, address)
        self.proposer = proposer
        self.block_interval_s = block_interval_s
        self.pipeline_blocks = pipeline_blocks
        self.clock = clock
        self.waiting: deque[_Pending] = deque()  # in sequence order, as in proposer.queue
        self.queued = 0
        self.sequenced_at: dict[int, list[_Part]] = {}  # height -> the batch parts in it
        self.finality = Finality()
        self.wake = asyncio.Event()
        # called with each block once it is stored, and each certificate once it forms: how
        # the exchange's gateway turns blocks into reports and finality notices
        self.stored_listeners: list[Callable[[Block], None]] = []
        self.final_listeners: list[Callable[[QuorumCertificate], None]] = []
        # called once recovery is over (the gateway settles the orders lost on every copy)
        self.recovered_listeners: list[Callable[[], None]] = []
        self.ready = asyncio.Event()  # set once recovered: sequencing is open
        if feed:
            self.app.router.add_get("/submit", self._submit)

    def receive(self, sender: int, message: Message) -> list[Send]:
        recovering = self.proposer.recovering
        unvoted = self.proposer.unvoted
        before = len(unvoted)
        sends = self.proposer.receive(sender, message)
        if recovering:
            self._recovered()
        if len(unvoted) < before:  # a certificate formed: its commands are final
            self.wake.set()  # room in the pipeline for a partial block
            now = time.monotonic_ns()
            for height in [h for h in self.sequenced_at if h not in unvoted]:
                for part in self.sequenced_at.pop(height):
                    self.finality.add(height, part.count, (now - part.sequenced_ns) / 1e6)
                    self._answer(part.ws, {"type": "final", "request": part.request,
                                           "count": part.count, "height": height})  # fmt: skip
            if self.final_listeners and sends and isinstance(sends[0].message, Certified):
                for listener in self.final_listeners:
                    listener(sends[0].message.certificate)
        return sends

    def tick(self) -> list[Send]:
        recovering = self.proposer.recovering
        sends = self.proposer.tick()
        if recovering:
            self._recovered()
        return sends

    def _recovered(self) -> None:
        """Hand the blocks recovery stored to the listeners, as if cut here, then their
        certificates; once recovery is over, open sequencing."""
        proposer = self.proposer
        blocks, proposer.recovered = proposer.recovered, []
        for block in blocks:
            for listener in self.stored_listeners:
                listener(block)
        for block in blocks:
            certificate = proposer.store.certificate(block.header.height)
            if certificate is not None:
                for final in self.final_listeners:
                    final(certificate)
        if not proposer.recovering and not self.ready.is_set():
            log.warning("recovered at height %s (certified %s) from members %s",
                        proposer.height, proposer.certified,
                        dict(sorted(proposer.recovery_tips.items())))  # fmt: skip
            for recovered in self.recovered_listeners:
                recovered()
            self.ready.set()
            self.wake.set()

    def status(self, after: int = 0) -> dict[str, Any]:
        """`after`: finality percentiles over the blocks above this height only."""
        proposer = self.proposer
        return {
            "member": self.member_id,
            "height": proposer.height,
            "certified": proposer.certified,
            "lag": proposer.lag,
            "degraded": proposer.degraded,
            "recovering": proposer.recovering,
            "queued": len(proposer.queue),
            "members_connected": sorted(self.links),
            "finalized_commands": self.finality.finalized_commands,
            "finality_p50_ms": self.finality.percentile(0.5, after),
            "finality_p99_ms": self.finality.percentile(0.99, after),
            "malformed": self.malformed,
        }

    async def start(self) -> None:
        """Serve, dial every member, and recover (`Proposer.recovering`): nothing is
        sequenced until 2f + 1 members have answered (`ready`)."""
        await super().start()
        for member in self.proposer.voters:
            if member != self.member_id:
                self.spawn(self._dial(member))
        self.spawn(self._cutter())
        self.route(self.tick())  # ask the members at once, not a tick later

    async def _dial(self, member: int) -> None:
        assert self.session is not None
        url = f"http://{self.addresses[member]}/ledger"
        delay = RECONNECT_S[0]
        while True:
            try:
                async with self.session.ws_connect(
                    url, max_msg_size=MESSAGE_BYTES_MAX, heartbeat=5.0
                ) as ws:
                    delay = RECONNECT_S[0]
                    link = self.links[member] = _Link(ws)
                    self.route(self.proposer.tick())  # what it may have missed
                    try:
                        async for frame in ws:
                            if frame.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                                self.handle(member, frame.data)
                    finally:
                        del self.links[member]
                        link.close()
            except (aiohttp.ClientError, OSError) as error:
                log.debug("member %s unreachable: %s", member, error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_S[1])

    async def _cutter(self) -> None:
        while True:
            wait_s = self._cut_wait_s()
            if wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), wait_s)
                self.wake.clear()
                continue
            self.cut()
            await asyncio.sleep(0)  # let votes and submissions in between blocks

    def _cut_wait_s(self) -> float:
        """How long to wait before cutting the next block (0: now). A full block is cut at
        once; a partial one at once while fewer than `pipeline_blocks` blocks await their
        certificates (light load: a command is proposed as soon as it arrives), and otherwise
        once a certificate makes room or its oldest command has waited `block_interval_s`
        (heavy load: fewer, larger blocks, so that the cost of each block, the same at every
        node whatever its size, does not take the CPU that commands need)."""
        proposer = self.proposer
        queued = len(proposer.queue)
        if queued >= proposer.block_commands or (queued and proposer.lag < self.pipeline_blocks):
            return 0.0
        if not queued:
            return self.block_interval_s  # woken by the next submission
        waited_s = (time.monotonic_ns() - self.waiting[0].sequenced_ns) / 1e9
        return max(0.0, self.block_interval_s - waited_s)

    def cut(self) -> None:
        proposer = self.proposer
        block, sends = proposer.cut(self.clock())
        if block is None:
            return
        self.route(sends)
        height, remaining = block.header.height, len(block.commands)
        parts = self.sequenced_at.setdefault(height, [])
        while remaining:
            pending = self.waiting[0]
            taken = min(pending.count, remaining)
            parts.append(_Part(pending.ws, pending.request, taken, pending.sequenced_ns))
            remaining -= taken
            pending.count -= taken
            if pending.count == 0:
                self.waiting.popleft()
        for listener in self.stored_listeners:
            listener(block)
        for part in parts:
            self._answer(part.ws, {"type": "stored", "request": part.request,
                                   "count": part.count, "height": height})  # fmt: skip

    def submit(
        self,
        commands: list[dict[str, Any]],
        ws: web.WebSocketResponse | None = None,
        request: Any = None,
    ) -> Refused | None:
        """Sequence `commands` (whole or not at all: `Refused`). A /submit batch passes its
        socket and request id, to be answered `stored` and `final`; the gateway passes none."""
        refused = self.proposer.submit(commands)
        if refused is not None:
            return refused
        self.waiting.append(_Pending(ws, request, len(commands), time.monotonic_ns()))
        self.wake.set()
        return None

    def _answer(self, ws: web.WebSocketResponse | None, reply: dict[str, Any]) -> None:
        if ws is not None and not ws.closed:
            self.spawn(ws.send_bytes(orjson.dumps(reply)))

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        """The sequencer's feed: `{"request": any, "commands": [...]}` frames; each batch is
        answered `stored` (with its height) once in a stored block, or `refused`."""
        ws = web.WebSocketResponse(max_msg_size=MESSAGE_BYTES_MAX, heartbeat=5.0)
        await ws.prepare(request)
        self.sockets.add(ws)
        try:
            async for frame in ws:
                if frame.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                    continue
                reply = self._sequence(ws, frame.data)
                if reply is not None:
                    await ws.send_bytes(orjson.dumps(reply))
        finally:
            self.sockets.discard(ws)
        return ws

    def _sequence(self, ws: web.WebSocketResponse, data: bytes | str) -> dict[str, Any] | None:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            return {"type": "refused", "code": "malformed", "message": f"not JSON: {error}"}
        request = value.get("request") if isinstance(value, dict) else None
        commands = value.get("commands") if isinstance(value, dict) else None
        if not isinstance(commands, list) or not 1 <= len(commands) <= SUBMIT_BATCH_MAX:
            message = f"commands must be a list of 1..{SUBMIT_BATCH_MAX} objects"
            return {"type": "refused", "request": request, "code": "malformed", "message": message}
        for index, command in enumerate(commands):
            if not isinstance(command, dict):
                return {"type": "refused", "request": request, "code": "malformed",
                        "message": f"commands[{index}] is not an object"}  # fmt: skip
        refused = self.submit(commands, ws, request)
        if refused is not None:
            return {"type": "refused", "request": request, "code": refused.code,
                    "message": refused.message}  # fmt: skip
        return None
