"""The replication shell: `Proposer` and `Replica` over aiohttp on real sockets.

A member node listens on its genesis address:

| endpoint | what |
|---|---|
| `GET /ledger` (WebSocket) | the exchange's connection: proposals, certificates in; votes out |
| `GET /blocks?from=H&limit=N` | a catch-up page (`blocks` message), for members only |
| `GET /status` | heights for anyone; everything (evidence, peers, clocks) for members |
| `GET /health` | `ok` (200) or `failed` (503) with the failed task and its error; task failures |
| `GET /metrics` | Prometheus text: heights, watermark, `jinlian_task_failures_total{task=...}` |

The exchange listens on its own address (`/blocks`, `/status`, and `/submit`, the sequencer's
feed: a WebSocket taking JSON arrays of commands, answering each batch once its block is
stored and again once that block is final) and dials every voting member's `/ledger`,
reconnecting with backoff. Every peer link starts with `ledger.auth.PeerHandshake` (both sides
prove their genesis key over the other's nonce); nothing else flows before it, and only an
authenticated link replaces another. `/blocks` and the members' part of `/status` need a
member's signed `Authorization` header (`ledger.auth`), which catch-up fetches carry. The
exchange redials a member that is linked but has not voted for `VOTE_SILENCE_S` while blocks
await its vote. Every frame is one protocol message (`ledger.protocol`); a
malformed frame is dropped and counted, never fatal. All protocol decisions are in the sans-IO
cores; this module only moves bytes, keeps time (block cutting, ticks) and bounds every queue.

Every background task is supervised (`_Shell.spawn`, the table `TASK_POLICIES`, documented in
docs/ledger.md, "Supervision"): an exception raised by the core (the cutter, the ticker, a message
handed to the `Proposer` or `Replica`) is an invariant failure: the node records it (`failure`),
logs one line naming the task and the error, answers what is waiting with an error
(`stop_listeners`) and sets `failed`, on which `jinlian node`/`jinlian exchange` stop with exit
status 1. An exception in an I/O task (a fetch, a link writer, a dial, a reply) is counted, logged
and retried or its connection closed. `fault` is a test seam (`Fault`): armed, it raises inside one
task kind.

A node that indexes (`start_indexer`) runs the `indexer` task: woken whenever a block is stored, it
calls `BlockStore.index_blocks` in batches (INDEX_BATCH_BLOCKS blocks, fewer once they hold
INDEX_BATCH_COMMANDS commands) until the watermark reaches the tip, yielding to the event loop
between batches. It is off the vote path: a member votes as soon as the block is stored, and its
derived tables follow behind the watermark, which `/status` shows as `indexed` and `/metrics` as
`jinlian_indexed_height`. Its failures are restarted with a backoff (`restart`); more than
RESTARTS_PER_MINUTE_MAX in a minute fail the node (/health `failed`, exit status 1), and the next
start resumes from the watermark.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import traceback
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, NamedTuple

import aiohttp
import orjson
from aiohttp import web

from ledger import auth
from ledger.auth import AuthError, PeerHandshake, PeerIdentity
from ledger.block import Block, QuorumCertificate
from ledger.collector import Collector
from ledger.cutting import (
    BLOCK_COMMANDS_MIN,
    BLOCK_INTERVAL_S,
    PIPELINE_BLOCKS,
    CutPolicy,
    cut_wait_s,
)
from ledger.genesis import Genesis
from ledger.keys import PrivateKey
from ledger.protocol import (
    MESSAGE_BYTES_MAX,
    Blocks,
    Certified,
    Fetch,
    MalformedMessage,
    Message,
    VoteMessage,
    decode,
    encode,
)
from ledger.replication import Proposer, Refused, Replica, Send
from ledger.store import BLOCKS_PAGE_MAX, BlockStore, StoreError

log = logging.getLogger("jinlian.node")

TICK_S: Final = 0.05
LINK_QUEUE_MAX: Final = 4096  # messages waiting for one peer; more are dropped (ticks repair)
SUBMIT_BATCH_MAX: Final = 10_000  # commands in one /submit frame
RECONNECT_S: Final = (0.05, 2.0)
FETCH_TIMEOUT_S: Final = 10.0
LATENCY_SAMPLES_MAX: Final = 1_000_000
# stored blocks whose reports (the stored listeners) are not yet built; the cutter waits for
# room beyond this (backpressure: a block's reports are never dropped)
REPORTS_BLOCKS_MAX: Final = 8
RESTARTS_PER_MINUTE_MAX: Final = 5  # of one restarted task; one more is a failure of the node
STOP_FLUSH_S: Final = 1.0  # how long `stop` lets error replies and session writers drain
# what the indexer derives in one transaction before it yields to the event loop: at most this
# many blocks, ending once they hold INDEX_BATCH_COMMANDS commands (at least one block). At about
# 12-16 us of CPU per command (docs/performance.md) a batch holds the loop for ~15 ms, or for
# one block if a block is larger (BLOCK_COMMANDS, 2,000: ~30 ms)
INDEX_BATCH_BLOCKS: Final = 8
INDEX_BATCH_COMMANDS: Final = 1_000

# What an unhandled exception in each kind of task does (docs/ledger.md, "Supervision"):
# `stop`: the node fails and its process exits 1; `restart`: the task runs again after a
# backoff (more than RESTARTS_PER_MINUTE_MAX in a minute: the node fails); `close`: the task's
# connection is closed (its peer reconnects, or its client sees the loss); `retry`: nothing to
# undo, the core asks again (a fetch is re-sent after FETCH_TICKS).
TASK_POLICIES: Final[dict[str, str]] = {
    "ticker": "stop",
    "cutter": "stop",
    "reports": "stop",
    "proposer": "stop",
    "replica": "stop",
    "dial": "restart",
    "link": "close",
    "fetch": "retry",
    "reply": "close",
    "session": "close",
    "replay": "close",
    "indexer": "restart",
    "collector": "restart",
}
# returning is a failure too
FOREVER_TASKS: Final = frozenset({"ticker", "cutter", "reports", "dial", "indexer", "collector"})
_AFTER: Final = {
    "restart": "restarting it",
    "close": "closed its connection",
    "retry": "retried by the next tick",
    "stop": "stopping",
}


class InjectedFaultError(Exception):
    """Raised by an armed `Fault` inside the task it names (tests and fault drills)."""


@dataclass
class Fault:
    """The fault seam: armed with a task kind of `TASK_POLICIES` and `after_n`, `point(task)`
    lets that task pass `after_n` times, then raises `InjectedFaultError` once. `jinlian node` and
    `jinlian exchange` arm it from `JINLIAN_FAULT=<task>:<after_n>`
    (exchange/consortium/nodes.py)."""

    task: str | None = None
    after_n: int = 0
    passed: int = 0
    fired: bool = False

    def point(self, task: str) -> None:
        if task != self.task or self.fired:
            return
        if self.passed < self.after_n:
            self.passed += 1
            return
        self.fired = True
        raise InjectedFaultError(f"fault injected into task {task} after {self.after_n} passes")


class TaskFailure(NamedTuple):
    """Why a node stopped doing its job: the task kind and the error, one line."""

    task: str
    error: str

    def to_dict(self) -> dict[str, str]:
        return {"task": self.task, "error": self.error}


def describe(error: BaseException | str) -> str:
    """`error` on one line: its type, message and the innermost frame that raised it."""
    if isinstance(error, str):
        return error
    text = f"{type(error).__name__}: {error}".replace("\n", " ")[:300]
    frames = traceback.extract_tb(error.__traceback__)
    if frames:
        frame = frames[-1]
        where = "/".join(frame.filename.split("/")[-2:])
        text += f" (at {where}:{frame.lineno} in {frame.name})"
    return text


HANDSHAKE_TIMEOUT_S: Final = 5.0  # a peer link not authenticated by then is closed
HANDSHAKES_PENDING_MAX: Final = 8  # unauthenticated /ledger sockets at once; more get 503
# a linked member that sends no vote for this long while a stored block awaits its vote is
# redialled (its link may be broken in a way the socket does not show)
VOTE_SILENCE_S: Final = 5.0
SILENCE_CHECK_S: Final = 10 * TICK_S
PUBLIC_STATUS: Final = (  # what /health shows anyway
    "member",
    "status",
    "height",
    "certified",
    "indexed",
    "lag",
    "degraded",
    "recovering",
)
WS_GOING_AWAY: Final = 1001
WS_POLICY_VIOLATION: Final = 1008


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def task_metrics(shell: _Shell) -> str:
    """Prometheus lines for a node's supervision: failures by task kind, and 1 while failed."""
    lines = [
        "# HELP jinlian_task_failures_total unhandled exceptions by task kind\n",
        "# TYPE jinlian_task_failures_total counter\n",
    ]
    lines += [
        f'jinlian_task_failures_total{{task="{task}"}} {shell.task_failures[task]}\n'
        for task in TASK_POLICIES
    ]
    lines.append("# HELP jinlian_failed 1 once a task failure stopped the node\n")
    lines.append(f"# TYPE jinlian_failed gauge\njinlian_failed {int(shell.failure is not None)}\n")
    indexed = shell.indexed()
    if indexed is not None:
        lines.append("# HELP jinlian_indexed_height derived tables hold blocks 1..this\n")
        lines.append(f"# TYPE jinlian_indexed_height gauge\njinlian_indexed_height {indexed}\n")
    return "".join(lines)


_Socket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


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
    """One outgoing connection's bounded queue and its writer task. A writer that ends (its
    socket failed, or an error) closes the socket, so that the connection's reader ends too
    and the peer is redialled; `_Links` reports an error to the shell."""

    def __init__(self, ws: _Socket) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(LINK_QUEUE_MAX)
        self.task = asyncio.create_task(self._write())
        self.task.add_done_callback(self._ended)
        self.dropped = 0
        self.shell: _Shell | None = None  # set when stored in the shell's `links`

    def put(self, data: bytes) -> None:
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            self.dropped += 1

    async def _write(self) -> None:
        with contextlib.suppress(ConnectionError, aiohttp.ClientError, RuntimeError):
            while True:
                data = await self.queue.get()
                if self.shell is not None:
                    self.shell.fault.point("link")
                await self.ws.send_bytes(data)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if self.shell is None:  # not a shell's link: whoever holds it closes it
            return
        if error is not None:
            self.shell.task_failed("link", error)
        if not self.ws.closed:
            self.shell.spawn(self.ws.close(), "reply")

    def close(self) -> None:
        self.task.cancel()

    async def replaced(self) -> None:
        """Close the socket of a link a newer authenticated one replaced."""
        self.close()
        with contextlib.suppress(ConnectionError, aiohttp.ClientError, RuntimeError):
            await self.ws.close(code=WS_GOING_AWAY, message=b"replaced by a newer link")


@dataclass
class PeerState:
    """What the exchange knows of one voting member's link, for /status, /health, /metrics."""

    connected: bool = False  # a socket is open (authenticated or not yet)
    authenticated: bool = False
    last_vote_height: int = 0
    last_vote_ns: int | None = None  # monotonic
    owed_since_ns: int | None = None  # monotonic: since when a block awaits its vote, none came
    height_at_link: int = 0  # the exchange's height when the current link was authenticated
    auth_error: str | None = None  # why the last handshake failed, naming the member
    clock_offset_ns: int | None = None  # its clock minus ours, from the last handshake
    redials: int = 0  # links closed because the member was silent

    def to_dict(self, now_ns: int) -> dict[str, Any]:
        last_vote = self.last_vote_ns
        return {
            "connected": self.connected,
            "authenticated": self.authenticated,
            "last_vote_height": self.last_vote_height,
            "last_vote_age_ms": None if last_vote is None else (now_ns - last_vote) // 10**6,
            "auth_error": self.auth_error,
            "clock_offset_ms": None
            if self.clock_offset_ns is None
            else self.clock_offset_ns // 10**6,
            "silent_redials": self.redials,
        }


class _Links(dict[int, _Link]):
    """The shell's open links by peer: a link stored here is supervised by the shell (its
    writer's failure is counted and logged, and its fault point armed)."""

    def __init__(self, shell: _Shell) -> None:
        super().__init__()
        self.shell = shell

    def __setitem__(self, peer: int, link: _Link) -> None:
        link.shell = self.shell
        super().__setitem__(peer, link)


async def _fetch_page(
    session: aiohttp.ClientSession,
    address: str,
    fetch: Fetch,
    authorization: Callable[[str], str],
) -> Message | MalformedMessage:
    """One catch-up page from a peer's `/blocks`, the request signed by `authorization(path)`."""
    path = f"/blocks?from={fetch.start}&limit={min(fetch.limit, BLOCKS_PAGE_MAX)}"
    url = f"http://{address}{path}"  # digits only: sent as signed, nothing to re-quote
    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
    headers = {"Authorization": authorization(path)}
    async with session.get(url, headers=headers, timeout=timeout) as response:
        if response.status != 200:
            body = (await response.content.read(400)).decode(errors="replace")
            return MalformedMessage(f"{url}: HTTP {response.status} {body}")
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


def _error(status: int, message: str, code: str = "invalid_request") -> web.Response:
    """A JSON error: `code` (stable) and `error` (a message naming the offending value)."""
    return web.json_response(
        {"code": code, "error": message}, status=status, dumps=lambda v: orjson.dumps(v).decode()
    )


def _json(value: Any) -> web.Response:
    return web.Response(body=orjson.dumps(value), content_type="application/json")


class _Shell:
    """What both node kinds share: the HTTP server, catch-up fetches, ticks, routing, and the
    supervision of every background task."""

    core_task = "core"  # the task kind of messages handed to the core: proposer or replica

    def __init__(self, genesis: Genesis, member_id: int, address: str, key: PrivateKey) -> None:
        self.genesis = genesis
        self.member_id = member_id
        self.address = address
        self.key = key
        self.clock: Callable[[], int] = time.time_ns  # wall clock, ns
        self.addresses = {member.id: member.address for member in genesis.members}
        member = genesis.member(member_id)
        self.name = f"member {member_id}" if member is None else member.name  # for the logs
        self.identity = PeerIdentity(
            genesis.chain_id,
            genesis.hash,
            member_id,
            key,
            {member.id: (member.name, member.public_key) for member in genesis.members},
        )
        # who may sign HTTP requests: members (and brokers, to be told 403 rather than 401)
        self.member_names = frozenset(member.name for member in genesis.members)
        self.http_keys = {broker.name: broker.public_key for broker in genesis.brokers}
        self.http_keys.update((member.name, member.public_key) for member in genesis.members)
        self.handshakes_pending = 0
        self.auth_failures = 0
        self.last_auth_failure: str | None = None
        self.encoded = _Encoded()
        self.links: dict[int, _Link] = _Links(self)
        self.malformed = 0
        self.tasks: set[asyncio.Task[Any]] = set()
        self.sockets: set[web.WebSocketResponse] = set()  # accepted, still open
        self.runner: web.AppRunner | None = None
        self.session: aiohttp.ClientSession | None = None
        self.fault = Fault()  # disarmed unless a test or JINLIAN_FAULT arms it
        self.failure: TaskFailure | None = None  # set once: the node can no longer do its job
        self.failed = asyncio.Event()  # set with `failure`: the process stops, exit status 1
        self.task_failures: Counter[str] = Counter()  # by task kind, for /health and /metrics
        # called once, when the node fails or stops, before its sockets close: each answers
        # the requests it holds with an error naming the reason, never leaves them unanswered
        self.stop_listeners: list[Callable[[str], None]] = []
        self._stop_reason: str | None = None
        self.index_store: BlockStore | None = None  # set by `start_indexer`: this node indexes
        self.index_wake = asyncio.Event()  # set when a block is stored
        # the process's garbage-collection policy (ledger/collector.py), set by a node's own
        # process before `start`; None inside another program (a test, the simulator)
        self.collector: Collector | None = None
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

    def height(self) -> int:
        """The stored tip's height."""
        raise NotImplementedError

    async def drain(self) -> None:
        """Before a graceful stop: finish the work in flight that is not cancelled."""

    async def start(self) -> None:
        self.session = aiohttp.ClientSession()
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        host, port = split_address(self.address)
        await web.TCPSite(self.runner, host, port, reuse_address=True).start()
        self.spawn(self._ticker(), "ticker")
        if self.index_store is not None:
            self.spawn(self.restarting("indexer", self._indexer), "indexer")
        if self.collector is not None:
            self.collector.start()
            run = partial(self.collector.run, self.height)
            self.spawn(self.restarting("collector", run), "collector")

    async def stop(self) -> None:
        """Answer what is waiting (`stop_listeners`), let the replies drain for at most
        STOP_FLUSH_S, then cancel every task and close every socket."""
        await self.drain()
        self._stopping(self.failure.error if self.failure else "the node is stopping")
        draining = [t for t in self.tasks if t.get_name() in ("reply", "session")]
        if draining:
            await asyncio.wait(draining, timeout=STOP_FLUSH_S)
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

    # ---- the indexer ----

    def start_indexer(self, store: BlockStore) -> None:
        """Index `store` (opened with an indexer) behind its watermark from now on: call
        before `start`, which spawns the task."""
        assert store.indexer is not None, "the store has no indexer"
        self.index_store = store

    def indexed(self) -> int | None:
        """The index watermark, or None if this node does not index."""
        return None if self.index_store is None else self.index_store.indexed_height()

    def block_stored(self) -> None:
        """Wake the indexer: a block was stored (a no-op if this node does not index)."""
        self.index_wake.set()

    async def _indexer(self) -> None:
        """Index every stored block, batch by batch, yielding between batches; then wait to be
        woken. Runs forever (supervised, restarted: `restarting`)."""
        store = self.index_store
        assert store is not None
        while True:
            self.index_wake.clear()
            while True:
                tip = store.tip()
                indexed = store.indexed_height()
                if tip is None or indexed >= tip[0]:
                    break
                self.fault.point("indexer")
                if store.index_blocks(INDEX_BATCH_BLOCKS, INDEX_BATCH_COMMANDS) <= indexed:
                    raise StoreError(f"index watermark {indexed} does not move below tip {tip[0]}")
                await asyncio.sleep(0)  # let votes and messages through between batches
            await self.index_wake.wait()

    # ---- supervision ----

    def spawn(
        self,
        coroutine: Awaitable[Any],
        task: str = "reply",
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> asyncio.Future[Any]:
        """Run `coroutine` as a supervised task of kind `task` (a key of TASK_POLICIES):
        cancelled by `stop`, and on an unhandled exception handled as its policy says, after
        `on_failure` (the task's own clean-up: close its connection, answer its request)."""
        assert task in TASK_POLICIES, task
        future = asyncio.ensure_future(coroutine)
        if isinstance(future, asyncio.Task):
            future.set_name(task)
        self.tasks.add(future)
        future.add_done_callback(partial(self._done, task, on_failure))
        return future

    def _done(
        self,
        task: str,
        on_failure: Callable[[BaseException], None] | None,
        future: asyncio.Future[Any],
    ) -> None:
        self.tasks.discard(future)
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            if task in FOREVER_TASKS and self.failure is None:
                self.fail(task, "the task returned")
            return
        if on_failure is not None:
            try:
                on_failure(error)
            except Exception as cleanup:  # its clean-up's failure: logged
                log.error("task %s: its clean-up failed: %s", task, describe(cleanup))
        if TASK_POLICIES[task] == "stop":
            self.fail(task, error)
        else:
            self.task_failed(task, error)

    def task_failed(self, task: str, error: BaseException | str) -> None:
        """A task that is retried or whose connection is closed failed: count it and log one
        line; the node goes on."""
        self.task_failures[task] += 1
        log.error("%s: task %s failed: %s; %s", self.name, task, describe(error),
                  _AFTER[TASK_POLICIES[task]])  # fmt: skip

    def fail(self, task: str, error: BaseException | str) -> None:
        """The node can no longer do its job: record why (the first failure), log it on one
        line, answer what is waiting, and set `failed` (the process exits 1)."""
        self.task_failures[task] += 1
        if self.failure is not None:
            return
        self.failure = TaskFailure(task, describe(error))
        log.critical("%s: task %s failed: %s; stopping", self.name, task, self.failure.error)
        self._stopping(f"task {task} failed: {self.failure.error}")
        self.failed.set()

    def _stopping(self, reason: str) -> None:
        if self._stop_reason is not None:
            return
        self._stop_reason = reason
        for listener in self.stop_listeners:
            try:
                listener(reason)
            except Exception as error:  # one must not silence the next
                log.error("answering waiting requests failed: %s", describe(error))

    async def restarting(self, task: str, run: Callable[[], Awaitable[None]]) -> None:
        """Run `run()` again after each unhandled exception, with a backoff, at most
        RESTARTS_PER_MINUTE_MAX times a minute; one more failure stops the node."""
        delay = RECONNECT_S[0]
        restarts: deque[float] = deque()
        while True:
            try:
                self.fault.point(task)
                await run()
                return
            except Exception as error:  # supervised: counted, restarted
                now = time.monotonic()
                while restarts and restarts[0] < now - 60.0:
                    restarts.popleft()
                if len(restarts) >= RESTARTS_PER_MINUTE_MAX:
                    self.fail(task, f"{describe(error)}; {len(restarts) + 1} failures in a minute")
                    return
                restarts.append(now)
                self.task_failed(task, error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_S[1])

    def health(self) -> dict[str, Any]:
        """`status`: ok, or failed (with `failure`: the task and its error)."""
        health = {
            "status": "ok" if self.failure is None else "failed",
            "failure": None if self.failure is None else self.failure.to_dict(),
            "task_failures": dict(self.task_failures),
        }
        if self.collector is not None:
            health["gc"] = self.collector.figures()
        return health

    # ---- routing ----

    def route(self, sends: list[Send]) -> None:
        for send in sends:
            if isinstance(send.message, Fetch):
                self.spawn(self._fetch(send.to, send.message), "fetch")
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
        self.deliver(sender, message)

    def deliver(self, sender: int, message: Message) -> None:
        """Hand `message` to the core and route its answer. The core raises only on a broken
        invariant: the node fails (`fail`), and takes no message after that."""
        if self.failure is not None:
            return
        try:
            self.fault.point(self.core_task)
            sends = self.receive(sender, message)
        except Exception as error:  # a broken invariant: stop
            self.fail(self.core_task, error)
            return
        self.route(sends)

    async def _fetch(self, peer: int, fetch: Fetch) -> None:
        address = self.addresses.get(peer)
        if address is None or self.session is None:
            return
        self.fault.point("fetch")
        try:
            message = await _fetch_page(self.session, address, fetch, self.authorization)
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            log.info("catch-up from member %s failed: %s", peer, error)
            return
        if isinstance(message, MalformedMessage) or not isinstance(message, Blocks):
            log.info("catch-up from member %s: %s", peer, message)
            self.malformed += 1
            return
        self.deliver(peer, message)

    def authorization(self, path: str, method: str = "GET") -> str:
        """This node's signed `Authorization` value for one request to a peer."""
        return auth.sign_request(
            self.key, self.genesis.chain_id, self.name, method, path, self.clock()
        )

    def _caller(self, request: web.Request) -> str | web.Response | None:
        """The member a request's `Authorization` header proves (None: no header), or the
        401/403 answer naming why not."""
        header = request.headers.get("Authorization")
        if header is None:
            return None
        identity = auth.authenticate(
            header,
            chain_id=self.genesis.chain_id,
            keys=self.http_keys,
            method=request.method,
            path=request.raw_path,
            now_ns=self.clock(),
        )
        if isinstance(identity, AuthError):
            return _error(401, identity.message, identity.code)
        if identity not in self.member_names:
            return _error(403, f"{identity} is not a member: peers' endpoints are for members "
                          "only", auth.FORBIDDEN)  # fmt: skip
        return identity

    async def _handshake(self, ws: _Socket, handshake: PeerHandshake) -> None:
        """Run `handshake` on `ws` until it ends, at most HANDSHAKE_TIMEOUT_S; a socket that
        closes or stalls ends it with an error."""
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
                for frame in handshake.start(self.clock()):
                    await ws.send_bytes(frame)
                while not handshake.done:
                    message = await ws.receive()
                    if message.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                        handshake.error = AuthError(
                            auth.CLOSED, f"the socket closed during the handshake ({message.type})"
                        )
                        return
                    for frame in handshake.receive(message.data, self.clock()):
                        await ws.send_bytes(frame)
        except TimeoutError:
            handshake.error = AuthError(
                auth.HANDSHAKE_TIMEOUT, f"no handshake within {HANDSHAKE_TIMEOUT_S} s"
            )
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as error:
            handshake.error = AuthError(auth.CLOSED, f"the socket failed: {error!r:.200}")

    def _auth_failed(self, who: str, error: AuthError) -> str:
        self.auth_failures += 1
        self.last_auth_failure = f"{who}: {error.code}: {error.message}"
        return self.last_auth_failure

    async def _ticker(self) -> None:
        while self.failure is None:
            await asyncio.sleep(TICK_S)
            self.fault.point("ticker")
            self.route(self.tick())
            if self.index_store is not None:
                self.block_stored()  # a backstop: the indexer checks its watermark each tick

    async def _blocks(self, request: web.Request) -> web.StreamResponse:
        """A catch-up page, for members only: blocks hold every broker's orders."""
        caller = self._caller(request)
        if isinstance(caller, web.Response):
            return caller
        if caller is None:
            return _error(401, "no Authorization header: /blocks is for members, sign the "
                          "request with a member's key (docs/ledger.md)", auth.MISSING)  # fmt: skip
        fetch = _fetch_request(request)
        if isinstance(fetch, web.Response):
            return fetch
        sends = self.receive(-1, fetch)
        return web.Response(body=encode(sends[0].message), content_type="application/json")

    async def _status(self, request: web.Request) -> web.StreamResponse:
        """Heights for anyone; the whole status for a member's signed request."""
        caller = self._caller(request)
        if isinstance(caller, web.Response):
            return caller
        after = request.query.get("after", "0")
        if not after.isdigit() or len(after) > 18:
            return _error(400, f"after {after[:40]!r} is not a height")
        status = self.status(int(after))
        if caller is None:
            status = {name: status[name] for name in PUBLIC_STATUS if name in status}
        return _json(status)


class ReplicaNode(_Shell):
    """A voting member on the network."""

    core_task = "replica"

    def __init__(
        self, replica: Replica, address: str, *, clock: Callable[[], int] = time.time_ns
    ) -> None:
        super().__init__(replica.genesis, replica.member_id, address, replica.key)
        self.replica = replica
        self.exchange_id = replica.exchange_id
        self.clock = clock
        self.exchange_clock_offset_ns: int | None = None  # from the last handshake
        self.app.router.add_get("/ledger", self._ledger)
        self.app.router.add_get("/health", self._health)
        self.app.router.add_get("/metrics", self._metrics)

    def receive(self, sender: int, message: Message) -> list[Send]:
        height = self.replica.height
        sends = self.replica.receive(sender, message, now_ns=self.clock())
        if self.replica.height != height:
            self.block_stored()
        return sends

    def tick(self) -> list[Send]:
        return self.replica.tick(now_ns=self.clock())

    def height(self) -> int:
        return self.replica.height

    def status(self, after: int = 0) -> dict[str, Any]:
        store = self.replica.store
        offset = self.exchange_clock_offset_ns
        held = self.replica.held
        return {
            "member": self.member_id,
            "status": "ok" if self.failure is None else "failed",
            "height": self.replica.height,
            "certified": store.certified_height(),
            "evidence": len(store.evidence()),
            "exchange_connected": self.exchange_id in self.links,  # only authenticated links
            "exchange_clock_offset_ms": None if offset is None else offset // 10**6,
            "held_block": None if held is None else held.header.height,  # ahead of our clock
            "indexed": self.indexed(),  # the index watermark; None: this node does not index
            "auth_failures": self.auth_failures,
            "last_auth_failure": self.last_auth_failure,
            "malformed": self.malformed,
        }

    async def _health(self, request: web.Request) -> web.StreamResponse:
        health = {**self.health(), "height": self.replica.height}
        return web.Response(body=orjson.dumps(health), status=200 if self.failure is None
                            else 503, content_type="application/json")  # fmt: skip

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        store = self.replica.store
        text = (
            "# HELP jinlian_height stored height\n# TYPE jinlian_height gauge\n"
            f"jinlian_height {self.replica.height}\n"
            "# HELP jinlian_certified_height highest final block\n"
            f"# TYPE jinlian_certified_height gauge\njinlian_certified_height "
            f"{store.certified_height()}\n{task_metrics(self)}"
        )
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    async def _ledger(self, request: web.Request) -> web.StreamResponse:
        """The exchange's connection. It must authenticate as the exchange first
        (`PeerHandshake`); only then does it replace an older link, whose socket is closed."""
        if self.handshakes_pending >= HANDSHAKES_PENDING_MAX:
            return _error(503, f"{self.handshakes_pending} peer handshakes are in progress (at "
                          f"most {HANDSHAKES_PENDING_MAX}): try again", "busy")  # fmt: skip
        ws = web.WebSocketResponse(max_msg_size=MESSAGE_BYTES_MAX, heartbeat=5.0)
        await ws.prepare(request)
        self.sockets.add(ws)
        try:
            if not await self._authenticate_exchange(ws, request.remote):
                await ws.close(code=WS_POLICY_VIOLATION, message=b"authentication failed")
                return ws
            old = self.links.get(self.exchange_id)
            link = self.links[self.exchange_id] = _Link(ws)
            if old is not None:
                await old.replaced()
            try:
                async for frame in ws:
                    if frame.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                        self.handle(self.exchange_id, frame.data)
            finally:
                if self.links.get(self.exchange_id) is link:
                    del self.links[self.exchange_id]
                link.close()
        finally:
            self.sockets.discard(ws)
        return ws

    async def _authenticate_exchange(self, ws: web.WebSocketResponse, remote: str | None) -> bool:
        handshake = PeerHandshake(
            self.identity,
            nonce=secrets.token_bytes(auth.NONCE_BYTES),
            dialer=False,
            allowed=(self.exchange_id,),
        )
        self.handshakes_pending += 1
        try:
            await self._handshake(ws, handshake)
        finally:
            self.handshakes_pending -= 1
        if handshake.error is not None:
            claimed = handshake.claimed
            who = f"/ledger from {remote} as " + (
                "nobody yet" if claimed is None else self.identity.name(claimed)
            )
            log.warning("peer authentication failed: %s", self._auth_failed(who, handshake.error))
            return False
        self.exchange_clock_offset_ns = handshake.clock_offset_ns
        return True


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


class _After(NamedTuple):
    """One step of the reports task, in the order the exchange took them: a block stored
    (`block`), a certificate formed (`certificate`, None when it only makes /submit parts
    final), or recovery over (`recovered`, at the tip `height`). `parts`: the /submit batch
    parts to answer `stored` or `final` with their heights, after the listeners."""

    kind: str  # stored, final, recovered
    height: int
    block: Block | None = None
    certificate: QuorumCertificate | None = None
    parts: tuple[tuple[int, _Part], ...] = ()


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
    """The exchange on the network: the sequencer's feed, block cutting, proposals.

    The cutter's path is consensus work only: cut, execute, sign, store, hand the proposal to
    the links, and go on. Everything a stored block or a certificate means to others (the
    gateway's reports, market data, acknowledgement journal and finality notices, the /submit
    answers) runs after it, in the supervised `reports` task, fed in order by a bounded queue
    (`after`): at most `reports_blocks_max` stored blocks wait there; beyond that the cutter
    waits for room (`reports_waits` counts those waits), and nothing is ever dropped."""

    core_task = "proposer"

    def __init__(
        self,
        proposer: Proposer,
        address: str,
        *,
        block_interval_s: float = BLOCK_INTERVAL_S,
        feed: bool = True,
        pipeline_blocks: int = PIPELINE_BLOCKS,
        block_commands_min: int = BLOCK_COMMANDS_MIN,
        reports_blocks_max: int = REPORTS_BLOCKS_MAX,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__(proposer.genesis, proposer.member_id, address, proposer.key)
        self.proposer = proposer
        self.peers = {member: PeerState() for member in proposer.voters if member != self.member_id}
        self.vote_silence_s = VOTE_SILENCE_S
        self.recovered_height = 0  # the tip when recovery ended: no member owes a vote below
        self.block_interval_s = block_interval_s
        self.pipeline_blocks = pipeline_blocks
        self.block_commands_min = block_commands_min
        self.clock = clock
        self.waiting: deque[_Pending] = deque()  # in sequence order, as in proposer.queue
        self.queued = 0
        self.sequenced_at: dict[int, list[_Part]] = {}  # height -> the batch parts in it
        self.finality = Finality()
        self.wake = asyncio.Event()
        # called by the `reports` task, in order, with each block once it is stored (after the
        # cutter has proposed it), and each certificate once it forms: how the gateway turns
        # blocks into reports and finality notices. A listener may return an awaitable (the
        # gateway's journal fsync): the next item waits for it, the cutter does not.
        self.stored_listeners: list[Callable[[Block], Awaitable[None] | None]] = []
        self.final_listeners: list[Callable[[QuorumCertificate], Awaitable[None] | None]] = []
        # called by the `reports` task once recovery is over and the recovered blocks are
        # folded (the gateway settles the orders lost on every copy); then sequencing opens
        self.recovered_listeners: list[Callable[[], None]] = []
        self.ready = asyncio.Event()  # set once recovered: sequencing is open
        self.reports_blocks_max = reports_blocks_max
        self.after: deque[_After] = deque()  # for the reports task, in order
        self.after_blocks = 0  # stored blocks in `after`: at most reports_blocks_max from cuts
        self.after_ready = asyncio.Event()  # `after` has an item
        self.after_room = asyncio.Event()  # a stored block left `after`
        self.after_empty = asyncio.Event()  # the reports task has done everything
        self.after_empty.set()
        self.reports_waits = 0  # times the cutter waited for the reports task (backpressure)
        self.cutting = True  # off once stopping: nothing more is cut
        self.recovery_over = False  # the end of recovery is queued for the reports task
        self.stop_listeners.append(self._refuse_waiting)
        if feed:
            self.app.router.add_get("/submit", self._submit)

    def receive(self, sender: int, message: Message) -> list[Send]:
        proposer = self.proposer
        recovering = proposer.recovering
        unvoted = proposer.unvoted
        before = len(unvoted)
        sends = proposer.receive(sender, message)
        if recovering:
            self._recovered()
        if len(unvoted) < before:  # a certificate formed: its commands are final
            self.wake.set()  # room in the pipeline for a partial block
            now = time.monotonic_ns()
            finals: list[tuple[int, _Part]] = []
            for height in [h for h in self.sequenced_at if h not in unvoted]:
                for part in self.sequenced_at.pop(height):
                    self.finality.add(height, part.count, (now - part.sequenced_ns) / 1e6)
                    finals.append((height, part))
            certificate = None
            if sends and isinstance(sends[0].message, Certified):
                certificate = sends[0].message.certificate
            if finals or (certificate is not None and self.final_listeners):
                height = proposer.certified if certificate is None else certificate.height
                self._after(_After("final", height, certificate=certificate, parts=(*finals,)))
        return sends

    def tick(self) -> list[Send]:
        recovering = self.proposer.recovering
        sends = self.proposer.tick()
        if recovering:
            self._recovered()
        return sends

    def _recovered(self) -> None:
        """Hand the blocks recovery stored to the reports task, as if cut here, then their
        certificates; once recovery is over, the end of recovery, after which the reports
        task opens sequencing. Not bounded by `reports_blocks_max` (no cut waits here): by
        what recovery stores, the lost tail of the store."""
        proposer = self.proposer
        blocks, proposer.recovered = proposer.recovered, []
        for block in blocks:
            self._after(_After("stored", block.header.height, block=block))
        for block in blocks:
            certificate = proposer.store.certificate(block.header.height)
            if certificate is not None and self.final_listeners:
                self._after(_After("final", certificate.height, certificate=certificate))
        if not proposer.recovering and not self.recovery_over:
            self.recovery_over = True
            level = logging.INFO if proposer.height == 0 else logging.WARNING  # 0: a fresh start
            log.log(level, "recovered at height %s (certified %s) from members %s",
                    proposer.height, proposer.certified,
                    dict(sorted(proposer.recovery_tips.items())))  # fmt: skip
            self.recovered_height = proposer.height  # no member owes a vote below
            self._after(_After("recovered", proposer.height))

    def height(self) -> int:
        return self.proposer.height

    def status(self, after: int = 0) -> dict[str, Any]:
        """`after`: finality percentiles over the blocks above this height only."""
        proposer = self.proposer
        return {
            "member": self.member_id,
            "status": "failed" if self.failure else "degraded" if proposer.degraded else "ok",
            "height": proposer.height,
            "certified": proposer.certified,
            "lag": proposer.lag,
            "degraded": proposer.degraded,
            "recovering": proposer.recovering,
            "indexed": self.indexed(),  # the index watermark; None: this node does not index
            "queued": len(proposer.queue),
            "members_connected": sorted(self.links),
            "peers": self.peer_status(),
            "finalized_commands": self.finality.finalized_commands,
            "finality_p50_ms": self.finality.percentile(0.5, after),
            "finality_p99_ms": self.finality.percentile(0.99, after),
            "reports_queued": self.after_blocks,
            "reports_waits": self.reports_waits,
            "malformed": self.malformed,
        }

    async def start(self) -> None:
        """Serve, dial every member, and recover (`Proposer.recovering`): nothing is
        sequenced until 2f + 1 members have answered (`ready`)."""
        await super().start()
        for member in self.proposer.voters:
            if member != self.member_id:
                self.spawn(self.restarting("dial", partial(self._dial, member)), "dial")
        self.spawn(self._cutter(), "cutter")
        self.spawn(self._reports(), "reports")
        self.route(self.tick())  # ask the members at once, not a tick later

    def peer_status(self) -> dict[str, dict[str, Any]]:
        """Per voting member, by name: connected, authenticated, last vote, clock offset."""
        now = time.monotonic_ns()
        return {
            self.identity.members[member][0]: {"id": member, **peer.to_dict(now)}
            for member, peer in sorted(self.peers.items())
        }

    async def _dial(self, member: int) -> None:
        """Keep an authenticated link to `member`: dial, authenticate, serve, and redial (with
        backoff) when it closes, fails authentication or falls silent."""
        assert self.session is not None
        url = f"http://{self.addresses[member]}/ledger"
        peer = self.peers[member]
        delay = RECONNECT_S[0]
        while True:
            try:
                async with self.session.ws_connect(
                    url, max_msg_size=MESSAGE_BYTES_MAX, heartbeat=5.0
                ) as ws:
                    peer.connected = True
                    try:
                        if await self._authenticate_member(member, ws):
                            delay = RECONNECT_S[0]
                            await self._serve_link(member, ws)
                    finally:
                        peer.connected = peer.authenticated = False
            except (aiohttp.ClientError, OSError) as error:
                log.debug("member %s unreachable: %s", member, error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_S[1])

    async def _authenticate_member(self, member: int, ws: aiohttp.ClientWebSocketResponse) -> bool:
        peer = self.peers[member]
        handshake = PeerHandshake(
            self.identity, nonce=secrets.token_bytes(auth.NONCE_BYTES), dialer=True, expect=member
        )
        await self._handshake(ws, handshake)
        if handshake.clock_offset_ns is not None:
            peer.clock_offset_ns = handshake.clock_offset_ns
        if handshake.error is None:
            peer.auth_error = None
            return True
        failure = self._auth_failed(self.identity.name(member), handshake.error)
        # the first failure of a kind is a warning; its repeats (every redial) are not
        level = logging.WARNING if failure != peer.auth_error else logging.DEBUG
        log.log(level, "peer authentication failed: %s", failure)
        peer.auth_error = failure
        with contextlib.suppress(ConnectionError, aiohttp.ClientError, RuntimeError):
            await ws.close(code=WS_POLICY_VIOLATION, message=b"authentication failed")
        return False

    async def _serve_link(self, member: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        """An authenticated link: read its frames, and close it if the member falls silent."""
        peer = self.peers[member]
        peer.authenticated = True
        peer.height_at_link = self.proposer.height
        peer.owed_since_ns = None
        link = self.links[member] = _Link(ws)
        self.route(self.proposer.tick())  # what it may have missed
        reader = asyncio.ensure_future(self._read_link(member, ws))
        try:
            while not reader.done():
                await asyncio.wait({reader}, timeout=SILENCE_CHECK_S)
                if not reader.done() and self._silent(member):
                    peer.redials += 1
                    log.warning(
                        "member %s is linked but sent no vote for %.1f s while blocks up to %d "
                        "await it (last vote at height %d): redialling",
                        self.identity.name(member), self.vote_silence_s, self.proposer.height,
                        peer.last_vote_height)  # fmt: skip
                    await ws.close(code=WS_GOING_AWAY, message=b"silent: redialling")
            reader.result()  # its failure is ours
        finally:
            reader.cancel()
            if self.links.get(member) is link:
                del self.links[member]
            link.close()

    async def _read_link(self, member: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for frame in ws:
            if frame.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                self._member_frame(member, frame.data)

    def _member_frame(self, member: int, data: bytes | str) -> None:
        """`handle` for a member's link, noting its votes (height and time) for liveness."""
        message = decode(data)
        if isinstance(message, MalformedMessage):
            self.malformed += 1
            log.warning("dropped a message from member %s: %s", member, message)
            return
        if not isinstance(message, VoteMessage) or message.vote.member != member:
            self.deliver(member, message)
            return
        proposer = self.proposer
        height = proposer.proposed.get(message.vote.header_hash)
        self.deliver(member, message)
        if self.failure is not None:
            return
        if height is None:  # late: its block is certified already, or noise
            rows = proposer.store.read(
                "SELECT height FROM blocks WHERE hash = ?", (message.vote.header_hash,)
            )
            height = int(rows[0][0]) if rows else None
        elif height in proposer.unvoted and member not in proposer.votes[height]:
            height = None  # not counted: its signature did not verify
        if height is not None:
            peer = self.peers[member]
            peer.last_vote_height = max(peer.last_vote_height, height)
            peer.last_vote_ns = time.monotonic_ns()
            peer.owed_since_ns = None

    def _silent(self, member: int) -> bool:
        """Whether `member` owes a vote and sent none for `vote_silence_s`. It owes one for
        every block proposed on its current link above its last vote (a block certified before
        the link came up, or recovered at start, gets no vote from it: it takes that one with
        its certificate, or votes when it is re-proposed)."""
        peer, proposer = self.peers[member], self.proposer
        if proposer.recovering:  # recovered blocks come with certificates or are re-proposed
            return False
        owed_above = max(peer.last_vote_height, peer.height_at_link, self.recovered_height)
        if proposer.height <= owed_above:
            peer.owed_since_ns = None
            return False
        now = time.monotonic_ns()
        if peer.owed_since_ns is None:
            peer.owed_since_ns = now
        return (now - peer.owed_since_ns) / 1e9 >= self.vote_silence_s

    async def _cutter(self) -> None:
        while self.failure is None:
            if self.after_blocks >= self.reports_blocks_max or not self.cutting:
                # backpressure: the reports task is `reports_blocks_max` blocks behind
                self.reports_waits += self.cutting
                self.after_room.clear()
                await self.after_room.wait()
                continue
            wait_s = self._cut_wait_s()
            if wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), wait_s)
                self.wake.clear()
                continue
            self.cut()
            await asyncio.sleep(0)  # let votes and submissions in between blocks

    def _cut_wait_s(self) -> float:
        """How long to wait before cutting the next block (0: now): `ledger.cutting.cut_wait_s`
        of the queue, the blocks awaiting their certificates and the oldest command's wait
        (idle: at once; under load: fewer, larger blocks, so that the cost of each block, the
        same at every node whatever its size, does not take the CPU that commands need)."""
        proposer = self.proposer
        queued = len(proposer.queue)
        waited_s = (time.monotonic_ns() - self.waiting[0].sequenced_ns) / 1e9 if queued else 0.0
        policy = CutPolicy(proposer.block_commands, self.block_commands_min,
                           self.pipeline_blocks, self.block_interval_s)  # fmt: skip
        return cut_wait_s(queued, proposer.lag, waited_s, policy)

    def cut(self) -> None:
        proposer = self.proposer
        if proposer.queue:
            self.fault.point("cutter")
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
        self._after(_After("stored", height, block=block, parts=tuple((height, p) for p in parts)))

    def _after(self, item: _After) -> None:
        """Queue `item` for the reports task (the cutter keeps `after` bounded)."""
        self.after.append(item)
        if item.kind == "stored":
            self.after_blocks += 1
        self.after_empty.clear()
        self.after_ready.set()

    async def _reports(self) -> None:
        """The work that follows a block or a certificate, off the cutter's path: each item
        of `after` in order, its listeners (awaiting what they return), then its /submit
        answers. An exception is an invariant failure (the reports are a pure function of
        the ledger): the node stops."""
        after = self.after
        while self.failure is None:
            if not after:
                self.after_empty.set()
                self.after_ready.clear()
                await self.after_ready.wait()
                continue
            item = after[0]  # left in `after` until done: a stop answers its parts
            if item.kind == "stored":
                self.fault.point("reports")
                assert item.block is not None
                for stored in self.stored_listeners:
                    pending = stored(item.block)
                    if pending is not None:
                        await pending
            elif item.kind == "final" and item.certificate is not None:
                for final in self.final_listeners:
                    pending = final(item.certificate)
                    if pending is not None:
                        await pending
            if not after or after[0] is not item:  # a stop answered its parts meanwhile
                continue
            after.popleft()
            self._answer_parts(item)
            if item.kind == "stored":
                self.after_blocks -= 1
                self.after_room.set()
            elif item.kind == "recovered":
                for recovered in self.recovered_listeners:
                    recovered()
                self.ready.set()
                self.wake.set()

    def _answer_parts(self, item: _After) -> None:
        kind = "final" if item.kind == "final" else "stored"
        for height, part in item.parts:
            self._answer(part.ws, {"type": kind, "request": part.request,
                                   "count": part.count, "height": height})  # fmt: skip

    async def drain(self) -> None:
        """Stop cutting and let the reports task finish what is queued, at most
        STOP_FLUSH_S (a graceful stop: the stored blocks' reports go out)."""
        self.cutting = False
        if self.failure is None and self.after:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.after_empty.wait(), STOP_FLUSH_S)

    def submit(
        self,
        commands: list[dict[str, Any]],
        ws: web.WebSocketResponse | None = None,
        request: Any = None,
        *,
        encoded: Sequence[bytes] | None = None,
    ) -> Refused | None:
        """Sequence `commands` (whole or not at all: `Refused`). A /submit batch passes its
        socket and request id, to be answered `stored` and `final`; the gateway passes none.
        Once the node has failed, everything is refused `unavailable`. `encoded`: as for
        `Proposer.submit`."""
        if self._stop_reason is not None:
            return Refused("unavailable", f"the exchange is not sequencing: {self._stop_reason}")
        if not self.ready.is_set() and not self.proposer.recovering:
            return Refused("recovering", "recovery is over; its blocks' reports are being built")
        refused = self.proposer.submit(commands, self.clock(), encoded=encoded)
        if refused is not None:
            return refused
        self.waiting.append(_Pending(ws, request, len(commands), time.monotonic_ns()))
        self.wake.set()
        return None

    def _answer(self, ws: web.WebSocketResponse | None, reply: dict[str, Any]) -> None:
        if ws is not None and not ws.closed:
            self.spawn(self._reply(ws, reply), "reply", partial(self._reply_failed, ws))

    async def _reply(self, ws: web.WebSocketResponse, reply: dict[str, Any]) -> None:
        self.fault.point("reply")
        with contextlib.suppress(ConnectionError, RuntimeError):  # closed: its client knows
            await ws.send_bytes(orjson.dumps(reply))

    def _reply_failed(self, ws: web.WebSocketResponse, error: BaseException) -> None:
        """A reply was lost: close the feed socket, so that its client sees the loss instead
        of waiting for an answer that will never come."""
        self.spawn(ws.close(code=aiohttp.WSCloseCode.INTERNAL_ERROR,
                            message=b"a reply could not be sent"), "reply")  # fmt: skip

    def _refuse_waiting(self, reason: str) -> None:
        """The node stops or failed: every /submit batch not in a stored block is refused
        `unavailable` (it will not be sequenced: the queue is not durable). Batches already
        answered `stored` are in the store; their `final` comes after a restart, if the
        client still listens."""
        for item in self.after:  # stored (or final) already: say so, as the task would have
            self._answer_parts(item)
        self.after.clear()
        self.after_blocks = 0
        waiting, self.waiting = self.waiting, deque()
        message = f"the exchange stopped before this batch was stored: {reason}"
        for pending in waiting:
            self._answer(pending.ws, {"type": "refused", "request": pending.request,
                                      "code": "unavailable", "message": message})  # fmt: skip

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
