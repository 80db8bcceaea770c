"""The broker gateway end to end, on loopback against a running consortium (the exchange with
its gateway and four member nodes): logon and its failures, authorization, idempotent client
order ids, report replay after a lost connection and after an exchange restart, market data
rebuilt from snapshot and deltas, cancel-on-disconnect, limits, REST."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from exchange.consortium.audit import trade_in
from exchange.gateway.api import logon_message
from exchange.gateway.client import Client, LogonError, RequestError, authorization
from exchange.gateway.server import Limits
from ledger.keys import load_private_key
from tests.gateway_net import SYMBOL, RunningVenue, order


async def raw(
    venue: RunningVenue,
) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse, str]:
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(f"http://{venue.address}/ws")
    challenge = orjson.loads((await ws.receive()).data)
    assert challenge["type"] == "challenge" and len(challenge["nonce"]) == 32
    return session, ws, challenge["nonce"]


def signed_logon(venue: RunningVenue, name: str, key_of: str, nonce: str,
                 timestamp_ns: int | None = None) -> dict[str, Any]:  # fmt: skip
    timestamp = time.time_ns() if timestamp_ns is None else timestamp_ns
    key = load_private_key(venue.key_path(key_of))
    signature = key.sign(logon_message(venue.genesis.chain_id, name, nonce, timestamp))
    return {"type": "logon", "request": 1, "broker": name, "nonce": nonce,
            "timestamp_ns": timestamp, "signature": signature.hex()}  # fmt: skip


async def answer_then_closed(ws: aiohttp.ClientWebSocketResponse, message: Any) -> dict[str, Any]:
    await ws.send_str(orjson.dumps(message).decode())
    reply = orjson.loads((await ws.receive(timeout=5)).data)
    closing = await ws.receive(timeout=5)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), closing
    return reply  # type: ignore[no-any-return]


async def test_logon_succeeds_with_the_brokers_key_and_fails_clearly_otherwise(
    venue: RunningVenue,
) -> None:
    session, ws, nonce = await raw(venue)
    good = signed_logon(venue, "broker1", "broker1", nonce)
    await ws.send_str(orjson.dumps(good).decode())
    reply = orjson.loads((await ws.receive(timeout=5)).data)
    assert reply["type"] == "logged_on" and reply["broker"] == "broker1"
    assert reply["limits"]["messages_per_s"] == Limits().messages_per_s
    assert reply["next_report"] == 1
    # the same logon again on this connection: the challenge is used up
    await ws.send_str(orjson.dumps(good).decode())
    assert orjson.loads((await ws.receive(timeout=5)).data)["code"] == "already_logged_on"
    await ws.close()

    failures = {
        "unknown_identity": lambda n: signed_logon(venue, "broker9", "broker1", n),
        "bad_signature": lambda n: signed_logon(venue, "broker1", "broker2", n),
        "bad_nonce": lambda n: good,  # a captured logon replayed on a new connection
        "stale_timestamp": lambda n: signed_logon(
            venue, "broker1", "broker1", n, time.time_ns() - 120 * 10**9
        ),
        "invalid_field": lambda n: {
            **signed_logon(venue, "broker1", "broker1", n),
            "signature": "zz",
        },
        "not_logged_on": lambda n: {"type": "open_orders", "request": 7},
    }
    for code, make in failures.items():
        _, ws, nonce = await raw(venue)
        reply = await answer_then_closed(ws, make(nonce))
        assert reply["type"] == "error" and reply["code"] == code, (code, reply)
        assert reply["message"]
    await session.close()
    with pytest.raises(LogonError, match="bad_signature"):
        await Client(
            venue.address, "broker1", load_private_key(venue.key_path("broker2"))
        ).connect()


async def test_a_broker_acts_only_on_its_own_accounts_and_orders(venue: RunningVenue) -> None:
    await venue.open_market()
    one = await venue.client("broker1")
    two = await venue.client("broker2")
    placed = await one.place(**order("b1-1", "10001", "buy", 990, 100))
    assert placed["report"] == "accepted"
    with pytest.raises(RequestError) as error:
        await two.place(**order("b2-1", "10001", "buy", 990, 100))
    assert (error.value.code, error.value.field) == ("not_your_account", "account")
    with pytest.raises(RequestError) as error:
        await two.cancel(order_id=placed["order_id"])
    assert (error.value.code, error.value.field) == ("not_your_order", "order_id")
    with pytest.raises(RequestError) as error:
        await two.cancel(client_order_id="b1-1")  # client ids are per broker
    assert error.value.code == "unknown_order"
    with pytest.raises(RequestError) as error:
        await two.admin({"type": "begin_day", "day": 20261124})
    assert error.value.code == "not_allowed"
    regulator = await venue.client("regulator1", member=True)
    with pytest.raises(RequestError) as error:
        await regulator.admin({"type": "begin_day", "day": 20261124})
    assert error.value.code == "not_allowed" and "freeze" in str(error.value)
    with pytest.raises(RequestError) as error:
        await regulator.place(**order("reg-1", "10001", "buy", 990, 100))
    assert (error.value.code, error.value.field) == ("not_allowed", "type")
    frozen = await regulator.admin({"type": "freeze", "command_id": 900, "account": "20002"})
    assert frozen["events"][0]["type"] == "account_frozen", frozen
    refused = await two.place(**order("b2-2", "20002", "sell", 1000, 100))
    assert (refused["report"], refused["reason"]) == ("rejected", "account_frozen")
    assert (await one.order_status(order_id=placed["order_id"]))["status"] == "new"


async def test_a_repeated_client_order_id_returns_the_original_order(venue: RunningVenue) -> None:
    await venue.open_market()
    one = await venue.client("broker1")
    first = await one.place(**order("same", "10001", "buy", 995, 200))
    again = await one.place(**order("same", "10001", "buy", 995, 200))
    assert again["duplicate"] is True and again["order"]["order_id"] == first["order_id"]
    different = await one.place(**order("same", "10002", "sell", 1005, 900))
    assert different["order"]["order_id"] == first["order_id"]  # still the original
    assert [o["order_id"] for o in await one.open_orders()] == [first["order_id"]]


async def reports_until(client: Client, count: int) -> list[dict[str, Any]]:
    return [await client.next_report() for _ in range(count)]


async def test_reports_are_replayed_after_a_lost_connection_and_an_exchange_restart(
    venue: RunningVenue,
) -> None:
    await venue.open_market()
    one = await venue.client("broker1", replay_from=1)
    two = await venue.client("broker2")
    for n in range(3):
        await one.place(**order(f"r{n}", "10001", "buy", 1000 - n, 100))
    await one.drop()  # the network fails; broker2 trades against broker1's bids meanwhile
    await two.place(**order("hit", "20001", "sell", 998, 300))
    seen = await reports_until(one, 3 + 3)  # 3 accepted, then 3 trades
    assert [r["index"] for r in seen] == list(range(1, 7))
    assert [r["report"] for r in seen] == ["accepted"] * 3 + ["trade"] * 3
    assert one.reconnects >= 1

    await venue.stop_exchange()  # reports are rebuilt from the exchange's store
    await venue.start_exchange()
    again = Client(venue.address, "broker1", load_private_key(venue.key_path("broker1")),
                   replay_from=1)  # fmt: skip
    await again.connect()
    venue.clients.append(again)
    replayed = await reports_until(again, 6)
    strip = ("request", "replayed")
    assert [{k: v for k, v in r.items() if k not in strip} for r in replayed] == [
        {k: v for k, v in r.items() if k not in strip} for r in seen
    ]
    duplicate = await again.place(**order("r0", "10001", "buy", 1000, 100))
    assert duplicate["duplicate"] and duplicate["order"]["status"] == "filled"


async def test_the_book_rebuilt_from_snapshot_and_deltas_equals_the_exchanges(
    venue: RunningVenue,
) -> None:
    await venue.open_market()
    watcher = await venue.client("broker1")
    book = await watcher.book(SYMBOL)
    traders = [await venue.client("broker1"), await venue.client("broker2")]
    accounts = [("10001", "10002"), ("20001", "20002")]
    rng = random.Random(7)
    live: list[tuple[Client, int]] = []

    async def act(n: int) -> None:
        who = rng.randrange(2)
        if live and rng.random() < 0.3:
            owner, order_id = live.pop(rng.randrange(len(live)))
            try:
                await owner.cancel(order_id=order_id)
            except RequestError as error:
                assert error.code == "order_not_open"
            return
        side, price = rng.choice(("buy", "sell")), 1000 + rng.randint(-15, 15)
        placed = order(f"o{n}", rng.choice(accounts[who]), side, price, 100 * rng.randint(1, 5))
        report = await traders[who].place(**placed)
        if report["status"] in ("new", "partially_filled"):
            live.append((traders[who], report["order_id"]))

    for first in range(0, 600, 30):  # 30 requests in flight at a time
        await asyncio.gather(*(act(n) for n in range(first, first + 30)))
    assert venue.gateway is not None and venue.gateway.machine is not None
    matching = venue.gateway.machine.venue.matching

    async def same() -> bool:
        await asyncio.sleep(0.05)
        bids, asks = matching.depth(SYMBOL, 50)
        return book.levels() == ([(p, q) for p, q, _ in bids], [(p, q) for p, q, _ in asks])

    deadline = time.monotonic() + 10
    while not await same():
        assert time.monotonic() < deadline, "the client's book never matched the exchange's"
    assert book.resyncs == 0
    assert len(book.bids) + len(book.asks) > 5


async def test_cancel_on_disconnect_cancels_the_sessions_open_orders(venue: RunningVenue) -> None:
    await venue.open_market()
    watcher = await venue.client("broker1")
    leaving = await venue.client("broker1", cancel_on_disconnect=True, reconnect=False)
    for n in range(3):
        await leaving.place(**order(f"cod{n}", "10001", "buy", 990 + n, 100))
    kept = await watcher.place(**order("keep", "10002", "buy", 980, 100))
    await leaving.close()
    cancelled = []
    while len(cancelled) < 3:
        report = await watcher.next_report()
        if report["report"] == "cancelled":
            cancelled.append(report["client_order_id"])
    assert sorted(cancelled) == ["cod0", "cod1", "cod2"]
    assert [o["order_id"] for o in await watcher.open_orders()] == [kept["order_id"]]


async def test_rate_and_size_limits_answer_errors_and_the_session_stays_usable(
    tmp_path: Path,
) -> None:
    limits = Limits(messages_per_s=20, message_bytes_max=2048, open_orders_per_account=2)
    venue = RunningVenue(tmp_path / "c", limits)
    await venue.start()
    try:
        client = await venue.client("broker1")
        replies = await asyncio.gather(
            *(client.request("ping") for _ in range(40)), return_exceptions=True
        )
        limited = [r for r in replies if isinstance(r, RequestError)]
        assert limited and all(r.code == "rate_limited" for r in limited)
        assert limited[0].reply["limit"] == 20 and "20 messages per second" in str(limited[0])
        await asyncio.sleep(1.1)
        with pytest.raises(RequestError) as error:
            await client.request("open_orders", account="x" * 4000)
        assert error.value.code == "message_too_large" and "2048" in str(error.value)
        assert (await client.request("open_orders"))["orders"] == []
        await venue.open_market()
        for n in range(2):
            await client.place(**order(f"lim{n}", "10001", "buy", 990, 100))
        with pytest.raises(RequestError) as error:
            await client.place(**order("lim2", "10001", "buy", 990, 100))
        assert (error.value.code, error.value.field) == ("too_many_open_orders", "account")
        assert (await client.place(**order("lim3", "10002", "buy", 990, 100)))["status"] == "new"
    finally:
        await venue.stop()


async def test_the_rest_surface(venue: RunningVenue) -> None:
    await venue.open_market()
    one = await venue.client("broker1")
    two = await venue.client("broker2")
    await one.place(**order("a", "10001", "buy", 1000, 100))
    await two.place(**order("b", "20001", "sell", 1000, 100))
    accepted, traded = await reports_until(two, 2)
    assert accepted["report"] == "accepted"
    assert (traded["report"], traded["status"]) == ("trade", "filled")
    final = await asyncio.wait_for(two.finals.get(), 10)
    async with aiohttp.ClientSession() as http:
        base = f"http://{venue.address}"

        async def get(path: str, status: int = 200, caller: str | None = None) -> Any:
            headers = {}
            if caller is not None:  # the non-public endpoints (docs/api.md, "Access")
                key = load_private_key(venue.key_path(caller))
                headers["Authorization"] = authorization(
                    key, venue.genesis.chain_id, caller, "GET", path, time.time_ns()
                )
            async with http.get(base + path, headers=headers) as response:
                assert response.status == status, (path, await response.text())
                if response.content_type == "application/json":
                    return await response.json(loads=orjson.loads)
                return await response.text()

        instruments = (await get("/instruments"))["instruments"]
        assert instruments[0]["symbol"] == SYMBOL and instruments[0]["phase"] == "continuous"
        assert (await get(f"/book/{SYMBOL}"))["type"] == "book_snapshot"
        assert (await get("/book/NOPE", 404))["code"] == "unknown_symbol"
        block = await get(f"/block/{final['height']}", caller="bank1")
        assert block["certificate"]["header_hash"] == final["header_hash"]
        assert (await get("/block/0", 404, "bank1"))["code"] == "unknown_block"
        assert (await get(f"/block/{final['height']}", 401))["code"] == "unauthenticated"
        receipt = await get("/receipt/1", caller="broker2")
        assert receipt["trade_id"] == 1 and trade_in(receipt["leaf"], 1) is not None
        assert (await get("/receipt/99", 404, "broker2"))["code"] == "unknown_trade"
        assert (await get("/receipt/1", 401))["code"] == "unauthenticated"
        assert (await get("/health"))["status"] == "ok"
        await get("/submit", 404)  # the raw sequencer feed is off unless asked for
        metrics = await get("/metrics")
        assert "jinlian_orders_total 2" in metrics and "jinlian_sessions 3" in metrics
    assert (await two.receipt(1))["header"]["height"] <= final["height"]


def test_a_session_more_than_its_backlog_behind_is_closed_not_buffered() -> None:
    """The outgoing queue is bounded: past `backlog_max` the session is marked to close (its
    writer then closes the socket with the reason) and nothing more is queued."""
    from exchange.gateway.server import Session

    session = Session(1, None, Limits(backlog_max=3))  # type: ignore[arg-type]  # never written
    for n in range(3):
        session.send({"n": n})
    assert session.closing is None and len(session.outbox) == 3
    session.send({"n": 3})
    assert session.closing is not None and "slow consumer" in session.closing
    assert len(session.outbox) == 0 and session.outbox_bytes == 0  # freed, not kept to close
    session.send({"n": 4})
    assert len(session.outbox) == 0


async def test_a_new_day_forgets_done_orders_and_frees_client_order_ids(
    venue: RunningVenue,
) -> None:
    await venue.open_market()
    one = await venue.client("broker1")
    two = await venue.client("broker2")
    resting = await one.place(**order("gtc", "10001", "buy", 990, 100, tif="gtc"))
    await one.place(**order("day", "10001", "buy", 995, 100))
    await two.place(**order("hit", "20001", "sell", 995, 100))
    operator = await venue.client("exchange", member=True)
    await operator.admin({"type": "end_day", "day": 20261123})
    await operator.admin({"type": "begin_day", "day": 20261124})
    assert venue.gateway is not None
    assert set(venue.gateway.reports.orders) == {resting["order_id"]}  # the open gtc order
    await operator.admin({"type": "set_phase", "symbol": SYMBOL, "phase": "continuous"})
    again = await one.place(**order("day", "10001", "buy", 990, 100))
    assert again["report"] == "accepted" and again["order_id"] != resting["order_id"]
    assert (await one.order_status(client_order_id="gtc"))["order_id"] == resting["order_id"]
    repeated = await one.place(**order("gtc", "10001", "buy", 990, 100))  # still open: its id
    assert repeated["duplicate"] and repeated["order"]["order_id"] == resting["order_id"]


async def next_market(client: Client, kind: str) -> dict[str, Any]:
    while True:
        message = await asyncio.wait_for(client.market.get(), 10)
        if message["type"] == kind:
            return message


async def test_public_channels_show_the_auction_indicative_price_then_trades_and_bbo(
    venue: RunningVenue,
) -> None:
    operator = await venue.client("exchange", member=True)
    await operator.admin({"type": "begin_day", "day": 20261123})
    await operator.admin({"type": "set_phase", "symbol": SYMBOL, "phase": "call_auction"})
    watcher = await venue.client("broker2")
    for channel in ("phase", "bbo", "trades"):
        await watcher.subscribe(channel, SYMBOL)
    first = await next_market(watcher, "phase")
    assert (first["phase"], first["indicative_price"]) == ("call_auction", None)
    one = await venue.client("broker1")
    await one.place(**order("auc-b", "10001", "buy", 1010, 300))
    await watcher.place(**order("auc-s", "20001", "sell", 1000, 200))
    indicative = await next_market(watcher, "phase")
    while indicative["indicative_volume"] == 0:
        indicative = await next_market(watcher, "phase")
    assert indicative["phase"] == "call_auction" and indicative["indicative_volume"] == 200
    assert 1000 <= indicative["indicative_price"] <= 1010
    await operator.admin({"type": "set_phase", "symbol": SYMBOL, "phase": "continuous"})
    latest: dict[str, dict[str, Any]] = {}  # one block's bbo, phase and trades, any order
    while "trades" not in latest or latest.get("bbo", {}).get("bid_size") != 100:
        message = await asyncio.wait_for(watcher.market.get(), 10)
        latest[message["type"]] = message
    trades = latest["trades"]["trades"]
    assert [(t["quantity"], t["aggressor"]) for t in trades] == [(200, None)]
    assert trades[0]["price"] == indicative["indicative_price"]
    assert (latest["bbo"]["bid"], latest["bbo"]["ask"]) == (1010, None)
    assert latest["phase"]["phase"] == "continuous"
    await operator.admin({"type": "end_day", "day": 20261123})
    expired = await one.next_report()
    while expired["report"] != "expired":
        expired = await one.next_report()
    assert (expired["client_order_id"], expired["quantity"], expired["status"]) == (
        "auc-b",
        100,
        "expired",
    )


async def test_the_published_book_follows_blocks_stored_while_nobody_is_connected(
    venue: RunningVenue,
) -> None:
    await venue.open_market()
    for client in venue.clients:
        await client.close()
    venue.clients.clear()
    assert venue.exchange is not None and venue.gateway is not None
    height = venue.exchange.proposer.height
    place = {"type": "place", "broker": "broker1", "order_id": 900, "symbol": SYMBOL,
             "account": "10001", "side": "buy", "price": 995, "quantity": 300}  # fmt: skip
    assert venue.exchange.submit([place]) is None
    deadline = time.monotonic() + 10
    while venue.exchange.proposer.height == height:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://{venue.address}/book/{SYMBOL}") as response,
    ):
        book = await response.json(loads=orjson.loads)
    assert book["bids"] == [[995, 300]]


def test_a_session_is_bounded_in_bytes_not_only_in_messages() -> None:
    """The outbox counts each message's length plus `MESSAGE_OVERHEAD_BYTES` against
    `backlog_bytes_max` (a session not logged on against `PENDING_BACKLOG_BYTES_MAX`), so
    large messages close a slow consumer long before `backlog_max` of them are queued."""
    from exchange.gateway.server import MESSAGE_OVERHEAD_BYTES, PENDING_BACKLOG_BYTES_MAX, Session

    limits = Limits(backlog_bytes_max=100_000)
    session = Session(1, None, limits, broker="broker1")  # type: ignore[arg-type]
    big = b"x" * 9_000
    for _ in range(10):
        session.send_bytes(big)
    assert session.closing is None
    assert session.outbox_bytes == 10 * (len(big) + MESSAGE_OVERHEAD_BYTES) <= 100_000
    session.send_bytes(big)
    assert session.closing is not None and "100000" in session.closing
    assert session.outbox_bytes == 0 and not session.outbox
    tiny = Session(2, None, limits, broker="broker1")  # type: ignore[arg-type]
    while tiny.closing is None:
        tiny.send_bytes(b"{}")
    assert len(tiny.outbox) == 0 and "slow consumer" in tiny.closing
    anonymous = Session(3, None, limits)  # type: ignore[arg-type]  # before logon
    sent = 0
    while anonymous.closing is None:
        anonymous.send_bytes(big)
        sent += 1
    assert sent * (len(big) + MESSAGE_OVERHEAD_BYTES) > PENDING_BACKLOG_BYTES_MAX
    assert (sent - 1) * (len(big) + MESSAGE_OVERHEAD_BYTES) <= PENDING_BACKLOG_BYTES_MAX


def test_a_sessions_memory_of_its_orders_follows_its_open_orders() -> None:
    """The ids a session entered (for cancel_on_disconnect) are pruned of done orders as the
    set grows, so a long session that places and fills many orders holds only what is open."""
    from exchange.gateway.server import PLACED_PRUNE_MIN, Session

    session = Session(1, None, Limits(), broker="broker1")  # type: ignore[arg-type]
    still_open = set(range(0, 100_000, 1000))  # one order in a thousand stays open
    for order_id in range(100_000):
        session.remember(order_id, still_open.__contains__)
        assert len(session.placed) <= max(2 * PLACED_PRUNE_MIN, 4 * len(still_open)) + 1
    assert still_open <= session.placed
