"""Broker API fixes of issue #15 item 12, end to end on loopback against a running consortium:
replay from past the end, account checks of `cancel_all` and `open_orders`, the reason of a
cancel-on-disconnect, and the documented edges of the WebSocket protocol."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from exchange.client import Client, RequestError
from ledger.keys import load_private_key
from tests.gateway_net import RunningVenue, order


@pytest.fixture
async def venue(tmp_path: Path) -> AsyncIterator[RunningVenue]:
    running = RunningVenue(tmp_path / "c")
    await running.start()
    yield running
    await running.stop()


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
