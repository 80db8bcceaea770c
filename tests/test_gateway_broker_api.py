"""Broker API fixes of issue #15 item 12, end to end on loopback against a running consortium:
replay from past the end, account checks of `cancel_all` and `open_orders`, the reason of a
cancel-on-disconnect, and the documented edges of the WebSocket protocol."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from exchange.consortium.init import init_consortium, venue_from_genesis
from exchange.gateway.api import logon_message
from exchange.gateway.client import Client, RequestError
from exchange.gateway.market_data import MarketData
from exchange.gateway.server import Limits
from ledger.keys import load_private_key
from matching.events import TradeExecuted
from tests.gateway_net import SYMBOL, RunningVenue, order


async def test_replay_from_past_the_end_answers_the_real_next_index(venue: RunningVenue) -> None:
    await venue.open_market()
    one = await venue.client("broker1")
    await one.place(**order("p1", "10001", "buy", 990, 100))  # report 1
    replayed = await one.request("replay", **{"from": 1001})
    assert (replayed["type"], replayed["from"], replayed["next"]) == ("replayed", 1001, 2)
    placed = await one.place(**order("p2", "10001", "buy", 991, 100))
    assert placed["index"] == 2  # what `next` said
    at_end = await one.request("replay", **{"from": 3})
    assert at_end["next"] == 3
    fresh = await venue.client("broker2")  # no report yet
    assert (await fresh.request("replay", **{"from": 2**40}))["next"] == 1


async def test_cancel_all_and_open_orders_refuse_another_brokers_account(
    venue: RunningVenue,
) -> None:
    await venue.open_market()
    one = await venue.client("broker1")
    two = await venue.client("broker2")
    placed = await one.place(**order("mine", "10001", "buy", 990, 100))
    for ask in (two.cancel_all, two.open_orders):
        for account in ("10001", "99999"):  # broker1's, and nobody's
            with pytest.raises(RequestError) as error:
                await ask(account=account)
            assert (error.value.code, error.value.field) == ("not_your_account", "account")
            assert repr(account) in str(error.value) and "broker2" in str(error.value)
    assert [o["order_id"] for o in await one.open_orders(account="10001")] == [placed["order_id"]]
    assert (await two.cancel_all(account="20001"))["orders"] == []
    assert await two.open_orders(account="20002") == []


async def test_cancel_on_disconnect_reports_its_own_reason_also_after_a_restart(
    venue: RunningVenue,
) -> None:
    await venue.open_market()
    watcher = await venue.client("broker1")
    leaving = await venue.client("broker1", cancel_on_disconnect=True, reconnect=False)
    for n in range(2):
        await leaving.place(**order(f"cod{n}", "10001", "buy", 990 + n, 100))
    asked = await watcher.place(**order("asked", "10002", "buy", 980, 100))
    cancelled = await watcher.cancel(order_id=asked["order_id"])
    assert cancelled["reason"] == "requested"
    await leaving.close()
    reasons = {}
    while len(reasons) < 2:
        report = await watcher.next_report()
        if report["report"] == "cancelled" and report["client_order_id"] != "asked":
            reasons[report["client_order_id"]] = report["reason"]
    assert reasons == {"cod0": "cancel_on_disconnect", "cod1": "cancel_on_disconnect"}
    await venue.stop_exchange()  # the reason is in the ledger: a rebuilt exchange reports it
    await venue.start_exchange()
    again = Client(venue.address, "broker1", load_private_key(venue.key_path("broker1")),
                   replay_from=1)  # fmt: skip
    await again.connect()
    venue.clients.append(again)
    replayed = [await again.next_report() for _ in range(6)]  # 3 accepted, 3 cancelled
    assert [r["index"] for r in replayed] == list(range(1, 7))
    rebuilt = {r["client_order_id"]: r["reason"] for r in replayed if r["report"] == "cancelled"}
    assert rebuilt == {**reasons, "asked": "requested"}


async def next_of(client: Client, kind: str) -> dict[str, Any]:
    while True:
        message = await asyncio.wait_for(client.market.get(), 10)
        if message["type"] == kind:
            return message


async def test_bbo_and_trades_carry_contiguous_seqs_and_a_gap_is_closed_by_from_seq(
    venue: RunningVenue,
) -> None:
    await venue.open_market()
    watcher = await venue.client("broker2")
    subscribed = {}
    for channel in ("bbo", "trades"):
        subscribed[channel] = await watcher.request("subscribe", channel=channel, symbol=SYMBOL)
    assert subscribed["trades"]["seq"] == 0  # no trade yet: the first will be 1
    current = await next_of(watcher, "bbo")  # the current bbo, sent at once
    assert current["seq"] == subscribed["bbo"]["seq"] >= 1
    one = await venue.client("broker1")
    for n in range(3):  # each a block of its own: a new best bid, then a trade against it
        await one.place(**order(f"bid{n}", "10001", "buy", 990 + n, 100))
        await watcher.place(**order(f"hit{n}", "20001", "sell", 990 + n, 100))
    seen: dict[str, list[dict[str, Any]]] = {"bbo": [], "trades": []}
    while len(seen["bbo"]) < 6 or len(seen["trades"]) < 3:
        message = await asyncio.wait_for(watcher.market.get(), 10)
        seen[message["type"]].append(message)
    bbos, trades = [m["seq"] for m in seen["bbo"]], seen["trades"]
    assert bbos == list(range(current["seq"] + 1, current["seq"] + 7))
    assert [t["seq"] for t in trades] == [1, 2, 3]
    assert [t["trades"][0]["price"] for t in trades] == [990, 991, 992]
    # A client that saw seq 1 and then 3 has missed 2: it subscribes again from 2.
    late = await venue.client("broker1")
    again = await late.request("subscribe", channel="trades", symbol=SYMBOL, from_seq=2)
    assert again["seq"] == 3
    assert [await next_of(late, "trades") for _ in range(2)] == trades[1:]
    for bad, field in (({"channel": "bbo", "from_seq": 1}, "from_seq"),
                       ({"channel": "trades", "from_seq": 0}, "from_seq")):  # fmt: skip
        with pytest.raises(RequestError) as error:
            await late.request("subscribe", symbol=SYMBOL, **bad)
        assert (error.value.code, error.value.field) == ("invalid_field", field)


def test_held_trades_are_bounded_and_older_seqs_are_gone(tmp_path: Path) -> None:
    genesis = init_consortium(tmp_path / "net", members=4, brokers=2)
    venue = venue_from_genesis(genesis)
    market = MarketData(venue, trades_held_max=5)
    symbol = str(genesis.instruments[0]["symbol"])
    for n in range(1, 13):  # 12 blocks of 2 trades each
        trades = [
            TradeExecuted(
                trade_id=2 * n + k,
                symbol=symbol,
                price=1000,
                quantity=100,
                buy_order_id=1,
                sell_order_id=2,
                aggressor=None,
                buy_account="10001",
                sell_account="20001",
            )
            for k in range(2)
        ]
        (message,) = [m for m in market.block([symbol], trades) if m["type"] == "trades"]
        assert message["seq"] == n
        held = market.published[symbol]
        assert held.trades_held == sum(len(m["trades"]) for m in held.trades) <= 5
    assert market.seq(symbol, "trades") == 12
    assert [m["seq"] for m in market.trades_since(symbol, 11) or []] == [11, 12]
    assert market.trades_since(symbol, 13) == []
    assert market.trades_since(symbol, 10) is None  # at most 5 trades held: 11 and 12


async def test_admin_command_ids_are_per_member_and_a_retry_returns_the_first_outcome(
    venue: RunningVenue,
) -> None:
    """Members number their admin commands themselves: the same `command_id` from two members
    is two commands (before, the second was refused `command_id_reused`: a member could burn
    another's ids), and a member's retry gets its first outcome without a second effect."""
    assert venue.gateway is not None and venue.gateway.machine is not None
    settlement = venue.gateway.machine.venue.settlement
    bank = await venue.client("bank1", member=True)
    depository = await venue.client("depository1", member=True)
    cash, shares = settlement.available("CNY", "10001"), settlement.available(SYMBOL, "10001")
    deposit = {"type": "deposit", "command_id": 5_000, "asset": "CNY", "account": "10001",
               "amount": 700}  # fmt: skip
    first = await bank.admin(deposit)
    assert [e["type"] for e in first["events"]] == ["deposited"], first
    issue = {"type": "issue", "command_id": 5_000, "asset": SYMBOL, "account": "10001",
             "amount": 300}  # fmt: skip
    issued = await depository.admin(issue)
    assert [e["type"] for e in issued["events"]] == ["issued"], issued
    retry = await bank.admin(deposit)
    assert retry["events"] == first["events"] and retry["height"] > first["height"]
    changed = await bank.admin({**deposit, "amount": 1})
    assert [(e["type"], e["reason"]) for e in changed["events"]] == [
        ("command_rejected", "command_id_reused")
    ]
    assert settlement.available("CNY", "10001") == cash + 700  # once
    assert settlement.available(SYMBOL, "10001") == shares + 300


async def logged_on_raw(
    venue: RunningVenue, http: aiohttp.ClientSession, **options: Any
) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(f"http://{venue.address}/ws", **options)
    nonce = orjson.loads((await ws.receive(timeout=5)).data)["nonce"]
    now = time.time_ns()
    key = load_private_key(venue.key_path("broker1"))
    signature = key.sign(logon_message(venue.genesis.chain_id, "broker1", nonce, now)).hex()
    logon = {"type": "logon", "request": 1, "broker": "broker1", "nonce": nonce,
             "timestamp_ns": now, "signature": signature}  # fmt: skip
    await ws.send_str(orjson.dumps(logon).decode())
    assert orjson.loads((await ws.receive(timeout=5)).data)["type"] == "logged_on"
    return ws


async def test_the_heartbeat_is_a_ping_and_a_client_that_misses_it_is_dropped_with_1006(
    tmp_path: Path,
) -> None:
    venue = RunningVenue(tmp_path / "c", limits=Limits(heartbeat_s=0.4))
    await venue.start()
    try:
        async with aiohttp.ClientSession() as http:
            answering = await logged_on_raw(venue, http, autoping=False)
            for _ in range(3):  # the exchange pings; the client answers every ping
                ping = await answering.receive(timeout=5)
                assert ping.type is aiohttp.WSMsgType.PING
                await answering.pong(ping.data)
            await answering.send_str('{"type": "ping", "request": "alive"}')
            message = await answering.receive(timeout=5)
            while message.type is aiohttp.WSMsgType.PING:
                await answering.pong(message.data)
                message = await answering.receive(timeout=5)
            assert orjson.loads(message.data)["type"] == "pong"

            silent = await logged_on_raw(venue, http, autoping=False)
            started = time.monotonic()
            assert (await silent.receive(timeout=5)).type is aiohttp.WSMsgType.PING
            closed = await silent.receive(timeout=5)  # no pong: the exchange drops the socket
            assert closed.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR), closed
            assert silent.close_code == 1006  # no close frame: an abnormal closure
            assert time.monotonic() - started < 4.0
    finally:
        await venue.stop()


async def test_binary_frames_are_json_and_invalid_utf8_is_refused(venue: RunningVenue) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await logged_on_raw(venue, http)
        await ws.send_bytes(b'{"type": "ping", "request": "binary"}')
        reply = await ws.receive(timeout=5)
        assert reply.type is aiohttp.WSMsgType.TEXT  # replies are always text frames
        assert orjson.loads(reply.data)["request"] == "binary"
        await ws.send_bytes(b'{"type": "ping", "request": "\xff"}')  # not UTF-8
        error = orjson.loads((await ws.receive(timeout=5)).data)
        assert (error["code"], error["field"]) == ("malformed", None), error
        assert "UTF-8" in error["message"]
        await ws.send_str('{"type": "ping", "request": "still"}')  # the session goes on
        assert orjson.loads((await ws.receive(timeout=5)).data)["request"] == "still"
        await ws.send_frame(b'{"type": "ping", "request": "\xff"}', aiohttp.WSMsgType.TEXT)
        closing = await ws.receive(timeout=5)  # a text frame must be UTF-8 (RFC 6455)
        assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 1007, closing


async def test_numbers_outside_their_documented_ranges_are_refused(venue: RunningVenue) -> None:
    place = {"type": "place", "client_order_id": "n", "account": "10001", "symbol": SYMBOL,
             "side": "buy", "price": 1000, "quantity": 100}  # fmt: skip
    cases = [
        ({**place, "price": 0}, "price", "price must be in 1..1000000000000, got 0"),
        ({**place, "price": 10**12 + 1}, "price", "got 1000000000001"),
        ({**place, "quantity": 10**9 + 1}, "quantity", "quantity must be in 1..1000000000"),
        ({**place, "price": 1000.0}, "price", "price must be an integer, got 1000.0"),
        ({**place, "price": True}, "price", "price must be an integer, got True"),
        ({**place, "quantity": 2**64}, "quantity", "quantity must be an integer"),
        (
            {"type": "cancel", "order_id": 0},
            "order_id",
            "order_id must be in 1..9223372036854775807",
        ),
        ({"type": "replay", "from": 2**62 + 1}, "from", "from must be in 1..4611686018427387904"),
        ({"type": "receipt", "trade_id": -1}, "trade_id", "got -1"),
        (
            {"type": "subscribe", "channel": "trades", "symbol": SYMBOL, "from_seq": 0},
            "from_seq",
            "got 0",
        ),
    ]
    async with aiohttp.ClientSession() as http:
        ws = await logged_on_raw(venue, http)
        for request, (message, field, words) in enumerate(cases, start=1):
            await ws.send_str(json.dumps({**message, "request": request}))  # 2**64 too
            error = orjson.loads((await ws.receive(timeout=5)).data)
            assert (error["code"], error["request"], error["field"]) == (
                "invalid_field", request, field), error  # fmt: skip
            assert words in error["message"], error
        await ws.send_str('{"type": "ping", "request": 1e3}')
        error = orjson.loads((await ws.receive(timeout=5)).data)
        assert (error["field"], error["request"]) == ("request", None), error


async def test_rest_responses_have_the_documented_shapes(venue: RunningVenue) -> None:
    base = f"http://{venue.address}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/instruments") as response:
            assert response.status == 200 and response.content_type == "application/json"
            instruments = (await response.json())["instruments"]
        assert {row["symbol"] for row in instruments} >= {SYMBOL}
        assert set(instruments[0]) >= {"symbol", "tick_size", "lot", "reference_price",
                                       "price_limit_pct", "t_plus", "settlement", "phase",
                                       "lower_limit", "upper_limit"}  # fmt: skip
        async with http.get(f"{base}/book/{SYMBOL}") as response:
            book = await response.json()
        assert set(book) == {"type", "symbol", "seq", "bids", "asks", "checksum"}
        assert book["type"] == "book_snapshot"
        async with http.get(f"{base}/book/NOPE") as response:
            assert response.status == 404
            error = await response.json()
        assert error == {"type": "error", "request": None, "code": "unknown_symbol",
                         "message": "symbol 'NOPE' is not listed", "field": None}  # fmt: skip
        async with http.get(f"{base}/health") as response:
            assert response.status == 200
            health = await response.json()
        assert health["status"] == "ok"
        assert set(health) >= {"status", "height", "certified", "lag", "members_connected",
                               "sessions"}  # fmt: skip
        async with http.get(f"{base}/metrics") as response:
            assert response.content_type == "text/plain"
            text = await response.text()
        assert "# TYPE jinlian_blocks_total counter\njinlian_blocks_total " in text
