"""Hypothesis-generated garbage on a logged-on broker session of a running consortium: every
frame is answered (a structured error naming what is wrong, or the reply a valid request
gets), the server never crashes, and the session stays usable."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.gateway.api import REQUEST_TYPES, logon_message
from ledger.keys import load_private_key
from tests.gateway_net import RunningVenue

Run = Callable[[Coroutine[Any, Any, Any]], Any]


class Live:
    def __init__(self, venue: RunningVenue, run: Run) -> None:
        self.venue = venue
        self.run = run
        self.http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def connect(self) -> None:
        self.http = aiohttp.ClientSession()
        ws = self.ws = await self.http.ws_connect(f"http://{self.venue.address}/ws")
        nonce = orjson.loads((await ws.receive()).data)["nonce"]
        now = time.time_ns()
        key = load_private_key(self.venue.key_path("broker1"))
        signature = key.sign(logon_message(self.venue.genesis.chain_id, "broker1", nonce, now))
        await ws.send_str(orjson.dumps({"type": "logon", "request": 0, "broker": "broker1",
                                        "nonce": nonce, "timestamp_ns": now,
                                        "signature": signature.hex()}).decode())  # fmt: skip
        assert orjson.loads((await ws.receive()).data)["type"] == "logged_on"

    async def exchange(self, frame: bytes | str) -> list[dict[str, Any]]:
        """Send `frame`, then a ping; every message up to the pong."""
        ws = self.ws
        assert ws is not None
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        else:
            await ws.send_str(frame)
        await ws.send_str('{"type": "ping", "request": "probe"}')
        replies = []
        while True:
            message = await ws.receive(timeout=10)
            assert message.type == aiohttp.WSMsgType.TEXT, message
            reply = orjson.loads(message.data)
            if reply.get("type") == "pong" and reply.get("request") == "probe":
                return replies
            replies.append(reply)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(60)

    venue = RunningVenue(tmp_path_factory.mktemp("fuzz") / "c")
    run(venue.start())
    run(venue.open_market())
    session = Live(venue, run)
    run(session.connect())
    yield session

    async def stop() -> None:
        if session.http is not None:
            await session.http.close()
        await venue.stop()

    run(stop())
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from([
    "request", "client_order_id", "account", "symbol", "side", "kind", "price", "quantity",
    "tif", "post_only", "order_id", "from", "channel", "trade_id", "command", "broker",
    "nonce", "signature", "timestamp_ns", "x",
])  # fmt: skip
requests = st.builds(
    lambda kind, fields: {"type": kind, **fields},
    st.sampled_from([*REQUEST_TYPES, "nope", ""]),
    st.dictionaries(field_names, json_values, max_size=6),
)
frames = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=64),
    json_values.map(json.dumps),
    requests.map(json.dumps),
)
REPLIES = {"error", "report", "order", "open_orders", "cancel_all", "replayed", "subscribed",
           "unsubscribed", "book_snapshot", "bbo", "phase", "book", "trades", "pong",
           "receipt", "final", "result"}  # fmt: skip


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frame=frames)
def test_garbage_gets_a_structured_error_and_the_session_stays_usable(
    live: Live, frame: bytes | str
) -> None:
    replies = live.run(live.exchange(frame))
    assert replies, f"no answer to {frame!r}"
    for reply in replies:
        assert reply.get("type") in REPLIES, reply
        if reply["type"] == "error":
            assert set(reply) >= {"code", "message", "field", "request"}, reply
            assert isinstance(reply["code"], str) and reply["message"], reply
    assert live.venue.exchange is not None and live.venue.gateway is not None
    assert live.venue.gateway.health()["status"] == "ok"
