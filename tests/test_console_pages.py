"""The web console over HTTP (issue #20): every page answers, every query parameter is
validated with an error page naming the value, and the live market viewers are bounded in
number and in backlog bytes."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
import pytest

from exchange.console.live import MarketViewers, Viewer
from exchange.gateway.market_data import checksum
from tests.gateway_net import SYMBOL, RunningVenue, order


async def _get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, response.content_type, await response.text()


async def test_the_pages_answer_on_the_exchange_and_on_a_member(venue: RunningVenue) -> None:
    base = f"http://{venue.address}/console"
    for path in ("/", "/health", f"/market?symbol={SYMBOL}", "/market", "/static/market.js"):
        status, _, body = await _get(base + path)
        assert status == 200, (path, body[:300])
    status, kind, body = await _get(base + "/api/health")
    assert status == 200 and kind == "application/json"
    assert orjson.loads(body)["members"]["bank1"]["authenticated"] is True
    member = venue.members[0]
    status, _, body = await _get(f"http://{member.address}/console/health")
    assert status == 200 and "exchange connected" in body
    status, _, body = await _get(f"http://{member.address}/console/market")
    assert status == 404 and "not_found" in body  # the market is the exchange's
    assert venue.genesis.hash.hex() in (await _get(base + "/"))[2]


@pytest.mark.parametrize(
    ("path", "status", "code", "named"),
    [
        ("/market?symbol=NOPE", 404, "unknown_symbol", "NOPE"),
        ("/market?symbol=%3Cscript%3E", 404, "unknown_symbol", "&#x27;&lt;script&gt;&#x27;"),
        ("/market?symbol=600000.SH&depth=5", 400, "unknown_parameter", "depth"),
        ("/health?x=1", 400, "unknown_parameter", "x"),
        ("/nowhere", 404, "not_found", "/console/nowhere"),
    ],
)
async def test_bad_input_gets_an_error_page_naming_it(
    venue: RunningVenue, path: str, status: int, code: str, named: str
) -> None:
    got, kind, body = await _get(f"http://{venue.address}/console{path}")
    assert (got, kind) == (status, "text/html"), body[:300]
    assert f'data-code="{code}"' in body and named in body, body
    assert "<script>" not in body


async def test_the_market_socket_starts_with_a_snapshot_and_follows_trades(
    venue: RunningVenue,
) -> None:
    await venue.open_market()
    url = f"http://{venue.address}/console/market/ws?symbol={SYMBOL}"
    buyer = await venue.client("broker1")
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        first = orjson.loads((await ws.receive()).data)
        assert first["type"] == "book_snapshot" and first["checksum"] == checksum([], [])
        await buyer.place(**order("w-1", "10001", "buy", 996, 200))
        while True:
            message = orjson.loads((await ws.receive(timeout=10)).data)
            if message["type"] == "book":
                break
        assert message["bids"] == [[996, 200]]
        assert message["checksum"] == checksum([(996, 200)], [])
    async with aiohttp.ClientSession() as http:
        for query in ("symbol=NOPE", ""):
            async with http.get(f"http://{venue.address}/console/market/ws?{query}") as r:
                assert r.status == 404


async def test_viewers_are_bounded_in_number(venue: RunningVenue) -> None:
    gateway = venue.gateway
    assert gateway is not None and gateway.market is not None
    viewers = next(
        listener.__self__
        for listener in gateway.state.market_listeners
        if isinstance(getattr(listener, "__self__", None), MarketViewers)
    )
    viewers.viewers_max = 2
    url = f"http://{venue.address}/console/market/ws?symbol={SYMBOL}"
    async with aiohttp.ClientSession() as http:
        first, second = await http.ws_connect(url), await http.ws_connect(url)
        await first.receive()
        await second.receive()
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url)
        assert refused.value.status == 503 and viewers.refused == 1
        await first.close()
        await second.close()


def test_a_viewer_past_its_backlog_is_cut_off_and_its_backlog_freed() -> None:
    viewer = Viewer(SYMBOL, backlog_bytes_max=100)
    viewer.put(b"x" * 60)
    assert viewer.queued_bytes == 60 and not viewer.overflowed
    viewer.put(b"y" * 60)  # 120 > 100
    assert viewer.overflowed and viewer.queued_bytes == 0 and not viewer.queue
    viewer.put(b"z")
    assert not viewer.queue  # nothing more is held for it


async def test_an_open_viewer_does_not_hold_up_the_exchange_stopping(
    venue: RunningVenue,
) -> None:
    url = f"http://{venue.address}/console/market/ws?symbol={SYMBOL}"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.receive()
        started = time.monotonic()
        await asyncio.wait_for(venue.stop_exchange(), 10)
        assert time.monotonic() - started < 5
        kinds = [(await ws.receive(timeout=5)).type for _ in range(3)]  # the bbo, the phase
        assert {aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED} & set(kinds), kinds
