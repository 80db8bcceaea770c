"""An asyncio client of the broker API (docs/api.md), for brokers, the simulator, tests and
notebooks.

    async with Client("127.0.0.1:7400", "broker1", load_private_key(path)) as client:
        report = await client.place(client_order_id="c1", account="10001",
                                    symbol="600000.SH", side="buy", price=1000, quantity=100)
        async for report in client.reports():   # every execution report, in index order
            ...

`Client` logs on with the broker's (or, `member=True`, a member's) Ed25519 key. Each request
returns the reply that echoes its request id (an execution report for order entry) or raises
`RequestError` with the API's code, message and field. Execution reports arrive in index
order without gaps or repeats: after a lost connection the client logs on again and replays
from the last index it saw. `book(symbol)` keeps a local L2 book from the snapshot and the
updates, checks every sequence number and checksum, and resynchronises (a new snapshot) on a
gap or a mismatch.

REST (docs/api.md, "Access"): `await client.get("/receipt/7")` signs the request with the same
key (`authorization`, an `Authorization: Jinlian ...` header valid for one method and path
within the logon window) and returns the JSON body, or raises `RestError` with the status and
the API's code.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Final, Self

import aiohttp
import orjson

from exchange.gateway.api import logon_message
from exchange.gateway.market_data import checksum
from ledger.auth import sign_request
from ledger.keys import PrivateKey

log = logging.getLogger("jinlian.client")

RECONNECT_S: Final = (0.05, 2.0)
QUEUE_MAX: Final = 1_000_000
REQUEST_TIMEOUT_S: Final = 30.0


class RequestError(Exception):
    """The exchange answered a request with an error (`code`, `field` as in docs/api.md)."""

    def __init__(self, reply: dict[str, Any]) -> None:
        self.code = str(reply.get("code"))
        self.field = reply.get("field")
        self.reply = reply
        super().__init__(f"{self.code}: {reply.get('message')}")


class LogonError(RequestError):
    """The exchange refused the logon (and closed the connection)."""


class RestError(RequestError):
    """A REST request answered with an error status (`status`; `code` as in docs/api.md)."""

    def __init__(self, status: int, reply: dict[str, Any]) -> None:
        self.status = status
        super().__init__(reply)


def authorization(
    key: PrivateKey, chain_id: str, identity: str, method: str, path: str, now_ns: int
) -> str:
    """The `Authorization` header value that signs one REST request (`path` with its query
    string, exactly as sent) as `identity` at `now_ns` (`ledger.auth.sign_request`)."""
    return sign_request(key, chain_id, identity, method, path, now_ns)


@dataclass
class Book:
    """A local L2 book of one instrument, rebuilt from a snapshot and checked updates."""

    symbol: str
    seq: int = -1
    bids: dict[int, int] = field(default_factory=dict)
    asks: dict[int, int] = field(default_factory=dict)
    resyncs: int = 0
    updated: asyncio.Event = field(default_factory=asyncio.Event)

    def levels(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        bids = sorted(self.bids.items(), key=lambda level: -level[0])
        return bids, sorted(self.asks.items())

    def _snapshot(self, message: dict[str, Any]) -> bool:
        self.bids = {price: quantity for price, quantity in message["bids"]}
        self.asks = {price: quantity for price, quantity in message["asks"]}
        self.seq = message["seq"]
        return self._checks(message["checksum"])

    def _update(self, message: dict[str, Any]) -> bool:
        """Apply one update; False if it does not follow on (a gap) or the checksum fails."""
        if message["prev_seq"] != self.seq:
            return False
        for side, changes in ((self.bids, message["bids"]), (self.asks, message["asks"])):
            for price, quantity in changes:
                if quantity:
                    side[price] = quantity
                else:
                    side.pop(price, None)
        self.seq = message["seq"]
        return self._checks(message["checksum"])

    def _checks(self, expected: int) -> bool:
        bids, asks = self.levels()
        ok = checksum(bids, asks) == expected
        self.updated.set()
        return ok


class Client:
    def __init__(
        self,
        address: str,
        name: str,
        key: PrivateKey,
        *,
        member: bool = False,
        chain_id: str = "jinlian-local",
        cancel_on_disconnect: bool = False,
        replay_from: int | None = None,
        reconnect: bool = True,
    ) -> None:
        """`replay_from`: the report index to start from (None: only reports from now on)."""
        self.report_index: int | None
        self.address = address
        self.name = name
        self.key = key
        self.member = member
        self.chain_id = chain_id
        self.cancel_on_disconnect = cancel_on_disconnect
        self.reconnect = reconnect
        self.report_index = replay_from
        self.limits: dict[str, Any] = {}
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reports: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_MAX)
        self.finals: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_MAX)
        self.market: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_MAX)  # bbo, trades...
        self.books: dict[str, Book] = {}
        self._channels: set[tuple[str, str]] = set()
        self._reader: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closed = False
        self.reconnects = 0
        self._tasks: set[asyncio.Future[None]] = set()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- connection ----

    async def connect(self) -> None:
        """Connect and log on. Raises `LogonError`, `aiohttp.ClientError`, `OSError`."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        await self._logon()
        self._reader = asyncio.create_task(self._read())

    async def _logon(self) -> None:
        assert self._session is not None
        ws = await self._session.ws_connect(f"http://{self.address}/ws", heartbeat=10.0)
        challenge = await ws.receive_json(loads=orjson.loads)
        timestamp = time.time_ns()
        signature = self.key.sign(
            logon_message(self.chain_id, self.name, challenge["nonce"], timestamp)
        )
        who = "member" if self.member else "broker"
        logon = {"type": "logon", "request": 0, who: self.name, "nonce": challenge["nonce"],
                 "timestamp_ns": timestamp, "signature": signature.hex(),
                 "cancel_on_disconnect": self.cancel_on_disconnect}  # fmt: skip
        await ws.send_str(orjson.dumps(logon).decode())
        reply = await ws.receive_json(loads=orjson.loads)
        if reply.get("type") != "logged_on":
            await ws.close()
            raise LogonError(reply)
        self.limits = reply["limits"]
        self._ws = ws
        if not self.member:
            start = self.report_index
            if start is None:
                self.report_index = reply["next_report"]
            else:
                await ws.send_str(
                    orjson.dumps({"type": "replay", "request": 0, "from": start}).decode()
                )
        for channel, symbol in sorted(self._channels):
            await self._send({"type": "subscribe", "channel": channel, "symbol": symbol})
        self._connected.set()

    async def close(self) -> None:
        self._closed = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        self._fail_waiting(ConnectionError("client closed"))

    async def drop(self) -> None:
        """Close the socket as a network failure would (tests): the client reconnects."""
        if self._ws is not None:
            await self._ws.close()

    def _fail_waiting(self, error: Exception) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(error)
        self._waiting.clear()

    async def _read(self) -> None:
        delay = RECONNECT_S[0]
        while True:
            ws = self._ws
            assert ws is not None
            async for frame in ws:
                if frame.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    self._dispatch(orjson.loads(frame.data))
            self._connected.clear()
            self._fail_waiting(ConnectionError(f"connection to {self.address} lost"))
            if self._closed or not self.reconnect:
                return
            while True:
                await asyncio.sleep(delay)
                try:
                    await self._logon()
                    self.reconnects += 1
                    delay = RECONNECT_S[0]
                    break
                except (aiohttp.ClientError, OSError, LogonError) as error:
                    log.info("reconnecting to %s: %s", self.address, error)
                    delay = min(delay * 2, RECONNECT_S[1])

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "report":
            index = message.get("index")
            expected = self.report_index
            if index is None or expected is None or index == expected:
                if index is not None:
                    self.report_index = index + 1
                self._reports.put_nowait(message)
            elif index > expected and "request" not in message:
                log.warning("reports %d..%d missing", expected, index - 1)
                self.report_index = index + 1
                self._reports.put_nowait(message)
            # else seen already, or a reply ahead of a replay that will bring it in order
        elif kind == "final":
            self.finals.put_nowait(message)
        elif kind in ("book_snapshot", "book"):
            self._book(message)
        elif kind in ("bbo", "trades", "phase"):
            self.market.put_nowait(message)
        request = message.get("request")
        if type(request) is int and request:
            future = self._waiting.pop(request, None)
            if future is not None and not future.done():
                if kind == "error":
                    future.set_exception(RequestError(message))
                else:
                    future.set_result(message)

    def _book(self, message: dict[str, Any]) -> None:
        book = self.books.get(message["symbol"])
        if book is None:
            return
        good = (
            book._snapshot(message) if message["type"] == "book_snapshot" else book._update(message)
        )
        if not good:
            book.resyncs += 1
            book.seq = -1
            task = asyncio.ensure_future(self._resync(book.symbol))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _resync(self, symbol: str) -> None:
        with contextlib.suppress(RequestError, ConnectionError, aiohttp.ClientError):
            await self.request("unsubscribe", channel="book", symbol=symbol)
            await self.request("subscribe", channel="book", symbol=symbol)

    # ---- REST ----

    async def get(self, path: str) -> Any:
        """GET `path` (e.g. `/receipt/7`, with any query string) signed with this client's
        key; the decoded JSON body. Raises `RestError` (status and code), `aiohttp.ClientError`."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        header = authorization(self.key, self.chain_id, self.name, "GET", path, time.time_ns())
        async with self._session.get(
            f"http://{self.address}{path}", headers={"Authorization": header}
        ) as response:
            body = await response.read()
            if response.content_type != "application/json":
                reply: Any = {"code": f"http_{response.status}", "message": body[:200].decode(
                    errors="replace")} if response.status >= 400 else body.decode()  # fmt: skip
            else:
                reply = orjson.loads(body)
            if response.status >= 400:
                raise RestError(response.status, reply if isinstance(reply, dict) else {})
            return reply

    # ---- requests ----

    async def _send(self, message: dict[str, Any]) -> None:
        assert self._ws is not None, "connect first"
        await self._ws.send_str(orjson.dumps(message).decode())

    async def request(
        self, kind: str, *, timeout_s: float = REQUEST_TIMEOUT_S, **fields: Any
    ) -> dict[str, Any]:
        """Send one request; its reply. Raises `RequestError`, `ConnectionError`,
        `TimeoutError` (no reply within `timeout_s`)."""
        async with asyncio.timeout(timeout_s):
            return await self._request(kind, fields)

    async def _request(self, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
        await self._connected.wait()
        request = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request] = future
        try:
            await self._send({"type": kind, "request": request, **fields})
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as error:
            self._waiting.pop(request, None)
            raise ConnectionError(f"sending {kind}: {error}") from error
        return await future

    async def place(self, **order: Any) -> dict[str, Any]:
        """Place an order (`client_order_id`, `account`, `symbol`, `side`, `quantity`,
        `price` for a limit order...); its accepted or rejected report, or the original
        order's state (`"duplicate": true`) for a client order id already used today."""
        return await self.request("place", **order)

    async def cancel(self, **ref: Any) -> dict[str, Any]:
        """`order_id=` or `client_order_id=`; the cancelled (or cancel_rejected) report."""
        return await self.request("cancel", **ref)

    async def amend(self, **fields: Any) -> dict[str, Any]:
        return await self.request("amend", **fields)

    async def cancel_all(self, **where: Any) -> dict[str, Any]:
        return await self.request("cancel_all", **where)

    async def order_status(self, **ref: Any) -> dict[str, Any]:
        return (await self.request("order_status", **ref))["order"]  # type: ignore[no-any-return]

    async def open_orders(self, **where: Any) -> list[dict[str, Any]]:
        return (await self.request("open_orders", **where))["orders"]  # type: ignore[no-any-return]

    async def receipt(self, trade_id: int) -> dict[str, Any]:
        return (await self.request("receipt", trade_id=trade_id))["receipt"]  # type: ignore[no-any-return]

    async def admin(self, command: dict[str, Any]) -> dict[str, Any]:
        """A member's admin command; the `admin_result` with its events once stored."""
        return await self.request("admin", command=command)

    async def participant_command(self, command: Any, key: PrivateKey) -> dict[str, Any]:
        """A bank's session forwards its client's supply-chain command (a
        `settlement.supply_chain_types` participant command with `actor` this bank), signed
        here with the client's `key`; the `admin_result` (docs/supply_chain.md)."""
        from exchange.supply_chain import signed_request  # noqa: PLC0415  (venue codecs, loaded when used)

        return await self.admin(signed_request(command, key))

    async def define_bond(
        self,
        command_id: int,
        bond: str,
        *,
        issuer: str,
        coupon_bps: int,
        start: int,
        coupon_days: list[int],
        maturity: int,
        face_value: int = 10_000,
    ) -> dict[str, Any]:
        """A depository states the terms of the security `bond` it issues (nothing issued or
        listed yet): the `admin_result` (docs/fixed_income.md)."""
        return await self.admin({"type": "define_bond", "command_id": command_id, "bond": bond,
                                 "issuer": issuer, "face_value": face_value,
                                 "coupon_bps": coupon_bps, "start": start,
                                 "coupon_days": coupon_days, "maturity": maturity})  # fmt: skip

    async def declare_dividend(
        self,
        command_id: int,
        security: str,
        *,
        payer: str,
        amount_per_share: int,
        record_day: int,
        pay_day: int,
    ) -> dict[str, Any]:
        """A depository declares a cash dividend on a share it issues: the `admin_result`
        (docs/fixed_income.md)."""
        return await self.admin({"type": "declare_dividend", "command_id": command_id,
                                 "security": security, "payer": payer,
                                 "amount_per_share": amount_per_share,
                                 "record_day": record_day, "pay_day": pay_day})  # fmt: skip

    async def subscribe(self, channel: str, symbol: str) -> None:
        self._channels.add((channel, symbol))
        await self.request("subscribe", channel=channel, symbol=symbol)

    async def book(self, symbol: str) -> Book:
        """The local book of `symbol`, kept up to date from now on."""
        book = self.books.setdefault(symbol, Book(symbol))
        await self.subscribe("book", symbol)
        while book.seq < 0:
            book.updated.clear()
            await book.updated.wait()
        return book

    async def reports(self) -> AsyncIterator[dict[str, Any]]:
        """Every execution report, in index order, forever."""
        while True:
            yield await self._reports.get()

    async def next_report(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next execution report; TimeoutError after `timeout` seconds."""
        return await asyncio.wait_for(self._reports.get(), timeout)
