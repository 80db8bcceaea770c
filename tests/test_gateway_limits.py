"""Memory bounds of the broker gateway (docs/api.md, "Limits"): sessions per broker capped at
logon, frames over the message limit refused from their header, and, with the exchange as
its own process, the exchange's RSS bounded while one broker's sessions never read."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil
import pytest

from exchange.consortium.nodes import load_config
from exchange.gateway.api import logon_message
from exchange.gateway.client import LogonError
from exchange.gateway.server import DEFAULT_LIMITS, FRAME_SLACK_BYTES, Limits
from ledger.feed import Feed, wait_until_up
from ledger.genesis import Genesis, load_genesis
from ledger.keys import load_private_key
from tests.consortium_net import SYMBOL, make_consortium, opening, orders, until
from tests.gateway_net import RunningVenue, order

PYTHON = [sys.executable, "-m", "exchange.cli"]
MEMBERS = ("bank1", "depository1", "regulator1", "broker-node1")


@dataclass(frozen=True, slots=True)
class _Processes:
    """What `logged_on` needs of a consortium run as processes."""

    address: str
    directory: Path
    genesis: Genesis

    def key_path(self, name: str) -> Path:
        return self.directory / "brokers" / name / "key.pem"


async def logged_on(
    http: aiohttp.ClientSession, venue: RunningVenue | _Processes, name: str, **ws_options: Any
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    """A raw WebSocket logged on as broker `name`, and the logon's reply."""
    ws = await http.ws_connect(f"http://{venue.address}/ws", **ws_options)
    challenge = orjson.loads((await ws.receive(timeout=5)).data)
    now = time.time_ns()
    key = load_private_key(venue.key_path(name))
    signature = key.sign(logon_message(venue.genesis.chain_id, name, challenge["nonce"], now))
    await ws.send_str(orjson.dumps({"type": "logon", "request": 1, "broker": name,
                                    "nonce": challenge["nonce"], "timestamp_ns": now,
                                    "signature": signature.hex()}).decode())  # fmt: skip
    return ws, orjson.loads((await ws.receive(timeout=5)).data)


async def test_sessions_per_broker_are_capped_at_logon(tmp_path: Path) -> None:
    venue = RunningVenue(tmp_path / "c", Limits(sessions_per_broker_max=2))
    await venue.start()
    try:
        first = await venue.client("broker1")
        await venue.client("broker1")
        assert first.limits["sessions_per_broker_max"] == 2
        with pytest.raises(LogonError) as refused:
            await venue.client("broker1")
        assert refused.value.code == "too_many_sessions" and refused.value.field == "broker"
        assert "broker1 has 2 sessions" in str(refused.value)
        await venue.client("broker2")  # another broker's budget is its own
        await venue.client("bank1", member=True)
        await venue.client("bank1", member=True)
        with pytest.raises(LogonError, match="too_many_sessions"):
            await venue.client("bank1", member=True)
        await first.close()  # a session that ends frees its place
        gateway = venue.gateway
        assert gateway is not None

        async def freed() -> bool:
            return sum(s.broker == "broker1" for s in gateway.sessions.values()) < 2

        await until(freed, 10, "the closed session to go")
        await venue.client("broker1")
    finally:
        await venue.stop()


async def test_a_frame_over_the_limit_is_refused_from_its_header(tmp_path: Path) -> None:
    """Up to FRAME_SLACK_BYTES over `message_bytes_max` a frame is answered with
    `message_too_large` and the session goes on; longer, the connection closes with 1009."""
    limits = Limits()
    venue = RunningVenue(tmp_path / "c", limits)
    await venue.start()
    try:
        async with aiohttp.ClientSession() as http:
            ws, reply = await logged_on(http, venue, "broker1")
            assert reply["type"] == "logged_on", reply
            await ws.send_str('{"type": "ping", "pad": "' + "x" * limits.message_bytes_max + '"}')
            error = orjson.loads((await ws.receive(timeout=5)).data)
            assert error["code"] == "message_too_large", error
            await ws.send_str(orjson.dumps({"type": "ping", "request": "still"}).decode())
            assert orjson.loads((await ws.receive(timeout=5)).data)["type"] == "pong"
            await ws.send_bytes(b" " * (limits.message_bytes_max + FRAME_SLACK_BYTES + 1))
            closed = await ws.receive(timeout=5)
            assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), closed
            assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
            huge, _ = await logged_on(http, venue, "broker1")
            with contextlib.suppress(ConnectionError):  # the exchange may close mid-send
                await huge.send_bytes(b" " * 10_000_000)
            closed = await huge.receive(timeout=5)
            assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), closed
            # 1009 is sent, but a peer closing on unread bytes resets the connection (1006)
            assert huge.close_code in (aiohttp.WSCloseCode.MESSAGE_TOO_BIG, 1006)
    finally:
        await venue.stop()


def _small_receive_buffer(addr_info: Any) -> socket.socket:
    """A client socket whose kernel buffer holds little: what the exchange sends to a client
    that never reads queues up in the exchange, not in the test's kernel."""
    family, kind, proto, _, _ = addr_info
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    return sock


def resting(first_id: int, count: int) -> list[dict[str, Any]]:
    """broker1's buys below the market, which stay open (open_orders replies grow)."""
    return [{"type": "place", "broker": "broker1", "order_id": order_id, "symbol": SYMBOL,
             "account": "10001", "side": "buy", "kind": "limit",
             "price": 900 + order_id % 90, "quantity": 100, "tif": "day",
             "client_order_id": f"rest-{order_id}"}
            for order_id in range(first_id, first_id + count)]  # fmt: skip


async def test_sessions_that_never_read_and_a_huge_frame_grow_the_exchange_boundedly(
    tmp_path: Path,
) -> None:
    """The exchange as its own process (`jinlian exchange`, members as processes too): one
    broker opens every session it may, asks for its open orders many times in each and never
    reads, while orders and market data flow and another session sends a 10 MB frame. The
    exchange's RSS grows by at most sessions x per-session byte budget + 20 MB, every such
    session is closed as a slow consumer, and one session more is refused at logon."""
    await _silent_sessions(tmp_path, rounds=1, batches=40)


@pytest.mark.skipif(os.environ.get("JINLIAN_CHECK_ALL") != "1", reason="JINLIAN_CHECK_ALL=1")
async def test_rounds_of_silent_sessions_leave_the_exchange_within_the_same_bound(
    tmp_path: Path,
) -> None:
    """The same, 15 rounds in a row on one exchange (about 30 s), with less flow per round
    (the report logs it grows are the broker's history, not its sessions'): what the closed
    sessions held is given back, so the bound holds over the whole run, not only once."""
    await _silent_sessions(tmp_path, rounds=15, batches=8)


async def _silent_sessions(tmp_path: Path, rounds: int, batches: int) -> None:
    limits = DEFAULT_LIMITS
    sessions, budget = limits.sessions_per_broker_max, limits.backlog_bytes_max
    directory = tmp_path / "c"
    make_consortium(directory)
    children = [
        subprocess.Popen([*PYTHON, "node", str(directory / name)], stderr=subprocess.DEVNULL)
        for name in MEMBERS
    ]
    log = (tmp_path / "exchange.log").open("wb")
    exchange = subprocess.Popen([*PYTHON, "exchange", str(directory), "--feed"], stderr=log)
    children.insert(0, exchange)  # stopped first: its member links do not fail loudly
    venue = _Processes(
        load_config(directory / "exchange").address,
        directory,
        load_genesis(directory / "genesis.json"),
    )
    try:
        await wait_until_up([load_config(directory / n).address for n in MEMBERS], timeout_s=30)
        await wait_until_up([venue.address], timeout_s=30)
        async with Feed(venue.address) as feed:
            await feed.submit(opening())
            await feed.pipeline([resting(100_000 + 100 * k, 100) for k in range(4)], window=2)
            await feed.pipeline([orders(1 + 50 * k, 50) for k in range(20)], window=4)
            process = psutil.Process(exchange.pid)
            baseline = process.memory_info().rss
            connector = aiohttp.TCPConnector(socket_factory=_small_receive_buffer)
            async with aiohttp.ClientSession(connector=connector) as http:
                for round_ in range(rounds):
                    first_id = 10_001 + 2_000 * round_
                    flow = [orders(first_id + 50 * k, 50) for k in range(batches)]
                    peak = await _silent_round(http, venue, feed, process, flow, sessions)
                    growth = peak - baseline
                    assert growth <= sessions * budget + 20 * 2**20, (round_, growth, budget)
    finally:
        for child in children:
            child.kill()
            child.wait()
        log.close()
    assert b"Traceback" not in (tmp_path / "exchange.log").read_bytes()


async def _logon_when_free(
    http: aiohttp.ClientSession, venue: _Processes, name: str
) -> aiohttp.ClientWebSocketResponse:
    """Log on, retrying while the sessions of the last round are still going away."""
    deadline = time.monotonic() + 10
    while True:
        ws, reply = await logged_on(http, venue, name)
        if reply["type"] == "logged_on":
            return ws
        assert reply["code"] == "too_many_sessions" and time.monotonic() < deadline, reply
        await asyncio.sleep(0.05)


async def _silent_round(
    http: aiohttp.ClientSession,
    venue: _Processes,
    feed: Feed,
    process: psutil.Process,
    flow: list[list[dict[str, Any]]],
    sessions: int,
) -> int:
    """One round: the sessions that never read, the huge frame and the flow; the peak RSS."""
    peak = process.memory_info().rss
    silent = [await _logon_when_free(http, venue, "broker1") for _ in range(sessions)]
    _, refused = await logged_on(http, venue, "broker1")
    assert refused["code"] == "too_many_sessions", refused
    ask = orjson.dumps({"type": "open_orders", "request": 9}).decode()
    for ws in silent:  # replies of ~90 KB each, never read
        for _ in range(150):
            await ws.send_str(ask)
    huge, _ = await logged_on(http, venue, "broker2")
    with contextlib.suppress(ConnectionError):
        await huge.send_bytes(b" " * 10_000_000)
    flowing = asyncio.ensure_future(feed.pipeline(flow, window=4))
    while not flowing.done():  # sample while the load runs
        peak = max(peak, process.memory_info().rss)
        await asyncio.sleep(0.02)
    await flowing
    peak = max(peak, process.memory_info().rss)
    for ws in silent:  # now read: what was queued, then the close
        while (message := await ws.receive(timeout=10)).type is aiohttp.WSMsgType.TEXT:
            pass
        assert message.data == aiohttp.WSCloseCode.POLICY_VIOLATION, message
        assert "slow consumer" in str(message.extra), message
        await ws.close()
    await huge.close()
    return peak


async def test_a_replay_longer_than_the_byte_budget_streams_as_the_client_reads(
    tmp_path: Path,
) -> None:
    """A replay fills the outbox to half of `backlog_bytes_max` and waits for the writer to
    drain it, so replaying many times the budget neither closes the session nor queues it."""
    limits = Limits(backlog_bytes_max=8 * 1024)
    venue = RunningVenue(tmp_path / "c", limits)
    await venue.start()
    try:
        await venue.open_market()
        one = await venue.client("broker1")
        count = 60  # accepted reports of ~400 bytes: three times the budget
        for first in range(0, count, 5):  # a few at a time: their live reports fit the budget
            await asyncio.gather(*(one.place(**order(f"o{n}", "10001", "buy", 990 - n, 100))
                                   for n in range(first, first + 5)))  # fmt: skip
        again = await venue.client("broker1", replay_from=1)
        replayed = [await again.next_report() for _ in range(count)]
        assert [r["index"] for r in replayed] == list(range(1, count + 1))
        assert all(r.get("replayed") for r in replayed) and again.reconnects == 0
        gateway = venue.gateway
        assert gateway is not None
        assert all(s.closing is None for s in gateway.sessions.values())
    finally:
        await venue.stop()


async def test_connections_waiting_to_log_on_are_capped(tmp_path: Path) -> None:
    """Connections that have not logged on (each may hold its challenge, errors and pongs
    until the logon timeout) are at most `pending_sessions_max`; past it the upgrade is
    answered 503 `busy`, and a connection that logs on frees its place."""
    venue = RunningVenue(tmp_path / "c", Limits(pending_sessions_max=2))
    await venue.start()
    try:
        async with aiohttp.ClientSession() as http:
            first = await http.ws_connect(f"http://{venue.address}/ws")
            second = await http.ws_connect(f"http://{venue.address}/ws")  # kept open
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(f"http://{venue.address}/ws")
            assert refused.value.status == 503
            async with http.get(f"http://{venue.address}/ws") as response:
                body = await response.json(loads=orjson.loads)
            assert body["code"] == "busy" and "pending_sessions_max 2" in body["message"]
            await first.close()
            gateway = venue.gateway
            assert gateway is not None

            async def freed() -> bool:
                return len(gateway.sessions) < 2

            await until(freed, 10, "the closed connection to go")
            logged, reply = await logged_on(http, venue, "broker1")  # logged on: not pending
            assert reply["type"] == "logged_on", reply
            third = await http.ws_connect(f"http://{venue.address}/ws")
            assert not (second.closed or third.closed or logged.closed)
    finally:
        await venue.stop()
