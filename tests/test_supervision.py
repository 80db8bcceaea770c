"""Supervision of every background task (issue #15, item 2), in one process on loopback: a
fault injected into each task kind through the nodes' fault seam (`ledger.node.Fault`) is
handled as docs/ledger.md, "Supervision", says. A core task (cutter, ticker, proposer,
replica) stops the node: it records the task and the error, /health answers 503 naming them,
`jinlian_task_failures_total` counts it, every waiting broker request and /submit batch is
answered `unavailable`. An I/O task (dial, link writer, fetch, reply, session writer, replay
stream) is counted and restarted, retried or its connection closed, and the node goes on.

The original defect: the exchange's block cutter died with a KeyError, the broker's order in
flight was never answered and /health still said ok (`test_a_failed_cutter_...`)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.client_exceptions import WSMessageTypeError

from exchange.consortium.nodes import (
    Restarts,
    build_exchange,
    build_replica,
    build_venue,
    load_config,
)
from exchange.gateway.client import RequestError
from ledger.feed import Feed, FeedError
from ledger.node import ExchangeNode, ReplicaNode, _Shell
from tests.consortium_net import make_consortium, opening, orders, until
from tests.gateway_net import RunningVenue, order
from tests.test_ledger_node import MEMBERS, Consortium


def arm(node: _Shell, task: str, after_n: int = 0) -> None:
    """Arm the node's fault seam in place (its sessions share the same `Fault`)."""
    node.fault.task, node.fault.after_n = task, after_n


async def get(address: str, path: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.get(f"http://{address}{path}") as r:
        return r.status, await r.read()


async def health_of(address: str) -> tuple[int, dict[str, Any]]:
    status, body = await get(address, "/health")
    return status, orjson.loads(body)


async def failure_counted(address: str, task: str, count: int = 1) -> None:
    _, metrics = await get(address, "/metrics")
    line = f'jinlian_task_failures_total{{task="{task}"}} {count}'
    assert line in metrics.decode(), metrics.decode()


@pytest.fixture
async def consortium(tmp_path: Path) -> AsyncIterator[Consortium]:
    make_consortium(tmp_path / "c")
    running = Consortium(tmp_path / "c")
    await running.start()
    yield running
    await running.stop()


async def test_a_failed_cutter_answers_the_order_in_flight_and_health_says_why(
    venue: RunningVenue,
) -> None:
    await venue.open_market()
    exchange = venue.exchange
    assert exchange is not None
    broker = await venue.client("broker1")
    arm(exchange, "cutter")
    with pytest.raises(RequestError) as raised:
        await broker.place(**order("c-1", "10001", "buy", 990, 100))
    assert raised.value.code == "unavailable", raised.value.reply
    assert "task cutter failed: InjectedFaultError" in str(raised.value), raised.value
    assert exchange.failed.is_set()
    status, health = await health_of(venue.address)
    assert status == 503 and health["status"] == "failed", health
    assert health["failure"]["task"] == "cutter", health
    assert "InjectedFaultError" in health["failure"]["error"], health
    await failure_counted(venue.address, "cutter")
    _, metrics = await get(venue.address, "/metrics")
    assert "\njinlian_failed 1.0\n" in metrics.decode()
    other = await venue.client("broker2")  # a failed exchange refuses, never goes silent
    with pytest.raises(RequestError) as refused:
        await other.place(**order("c-2", "20001", "sell", 990, 100))
    assert refused.value.code == "unavailable", refused.value.reply


async def test_a_failed_reports_task_answers_the_order_in_flight_and_health_says_why(
    venue: RunningVenue,
) -> None:
    """The order's block is stored and proposed; the reports task fails before folding it:
    the order is answered `unavailable` (its outcome unknown: never a false `accepted`)."""
    await venue.open_market()
    exchange = venue.exchange
    assert exchange is not None
    broker = await venue.client("broker1")
    arm(exchange, "reports")
    with pytest.raises(RequestError) as raised:
        await broker.place(**order("r-1", "10001", "buy", 990, 100))
    assert raised.value.code == "unavailable", raised.value.reply
    assert "task reports failed: InjectedFaultError" in str(raised.value), raised.value
    status, health = await health_of(venue.address)
    assert status == 503 and health["failure"]["task"] == "reports", health
    await failure_counted(venue.address, "reports")


async def test_a_stopping_exchange_answers_the_waiting_order(venue: RunningVenue) -> None:
    await venue.open_market()
    exchange, gateway = venue.exchange, venue.gateway
    assert exchange is not None and gateway is not None
    exchange.pipeline_blocks, exchange.block_interval_s = 0, 60.0  # the order waits to be cut
    broker = await venue.client("broker1", reconnect=False)
    placing = asyncio.ensure_future(broker.place(**order("w-1", "10001", "buy", 990, 100)))
    await until(lambda: _at_least(len(gateway.awaiting), 1), what="the order to wait")
    await venue.stop_exchange()
    with pytest.raises(RequestError) as raised:
        await placing
    assert raised.value.code == "unavailable", raised.value.reply
    assert "the node is stopping" in str(raised.value)


async def test_a_failed_cutter_refuses_the_waiting_submit_batch(consortium: Consortium) -> None:
    assert consortium.exchange is not None
    arm(consortium.exchange, "cutter")
    async with Feed(consortium.address) as feed:
        with pytest.raises(FeedError) as raised:
            await asyncio.wait_for(feed.submit(opening()), 10)
        assert raised.value.code == "unavailable"
        with pytest.raises(FeedError) as again:  # refused at once from now on
            await asyncio.wait_for(feed.submit(orders(1, 2)), 10)
        assert again.value.code == "unavailable"
    _, body = await get(consortium.address, "/status")
    assert orjson.loads(body)["status"] == "failed"


async def test_a_failed_reports_task_still_answers_the_stored_submit_batch_stored(
    consortium: Consortium,
) -> None:
    """The batch's block is stored before the reports task fails on it: the feed is told
    `stored` (it is in the store), then refused `unavailable` from then on."""
    exchange = consortium.exchange
    assert exchange is not None
    arm(exchange, "reports")
    async with Feed(consortium.address) as feed:
        heights = await asyncio.wait_for(feed.submit(opening()), 10)
        assert heights == [exchange.proposer.height], heights
        assert exchange.failure is not None and exchange.failure.task == "reports"
        with pytest.raises(FeedError) as again:
            await asyncio.wait_for(feed.submit(orders(1, 2)), 10)
        assert again.value.code == "unavailable"
    assert exchange.proposer.store.header(heights[0]) is not None


@pytest.mark.parametrize(
    ("where", "task"),
    [("exchange", "ticker"), ("exchange", "proposer"), ("bank1", "ticker"), ("bank1", "replica")],
)
async def test_a_failed_core_task_stops_the_node_and_its_health_names_it(
    consortium: Consortium, where: str, task: str
) -> None:
    node: ExchangeNode | ReplicaNode | None = (
        consortium.exchange if where == "exchange" else consortium.members[where]
    )
    assert node is not None
    arm(node, task, 1)
    async with Feed(consortium.address) as feed:
        sent = await feed.send(opening())
        await asyncio.wait_for(node.failed.wait(), 10)
        if not sent.done():
            with pytest.raises(FeedError):
                await asyncio.wait_for(sent, 10)
    assert node.failure is not None and node.failure.task == task
    assert node.failure.error.startswith("InjectedFaultError: fault injected into task")
    address = node.address
    status, health = await health_of(address)
    assert status == 503 and health["failure"]["task"] == task, health
    assert orjson.loads((await get(address, "/status"))[1])["status"] == "failed"
    await failure_counted(address, task)


async def test_a_failed_member_stops_while_the_others_keep_finalizing(
    consortium: Consortium,
) -> None:
    member = consortium.members["regulator1"]
    arm(member, "replica")
    async with Feed(consortium.address) as feed:
        await feed.submit(opening())
        heights = await feed.submit(orders(1, 20))
    await asyncio.wait_for(member.failed.wait(), 10)
    exchange = consortium.exchange
    assert exchange is not None
    await until(lambda: _at_least(exchange.proposer.certified, max(heights)), what="finality")
    assert exchange.failure is None and (await health_of(exchange.address))[0] == 200


async def _at_least(value: int, bound: int) -> bool:
    return value >= bound


async def test_a_failed_link_writer_is_closed_and_redialled(consortium: Consortium) -> None:
    exchange = consortium.exchange
    assert exchange is not None
    arm(exchange, "link", 2)
    async with Feed(consortium.address) as feed:
        await feed.submit(opening())
        heights = await feed.submit(orders(1, 20))
    await until(lambda: consortium.final_everywhere(max(heights)), what="finality everywhere")
    assert exchange.task_failures["link"] == 1 and exchange.failure is None
    await failure_counted(exchange.address, "link")


async def test_a_failed_dial_is_restarted(tmp_path: Path) -> None:
    make_consortium(tmp_path / "c")
    consortium = Consortium(tmp_path / "c")
    for name in MEMBERS:
        await consortium.start_member(name)
    exchange = consortium.exchange = build_exchange(load_config(tmp_path / "c" / "exchange"))
    arm(exchange, "dial")
    await exchange.start()
    try:
        async with Feed(consortium.address) as feed:
            height = max(await feed.submit(opening()))
        await until(lambda: consortium.final_everywhere(height), what="finality everywhere")
        assert exchange.task_failures["dial"] == 1 and exchange.failure is None
    finally:
        await consortium.stop()


async def test_a_task_restarted_too_often_stops_the_node(consortium: Consortium) -> None:
    exchange = consortium.exchange
    assert exchange is not None

    async def broken() -> None:
        raise KeyError(7)

    await asyncio.wait_for(exchange.restarting("dial", broken), 10)
    assert exchange.task_failures["dial"] == 6, exchange.task_failures
    assert exchange.failure is not None and exchange.failure.task == "dial"
    assert "KeyError: 7" in exchange.failure.error and "6 failures in a minute" in (
        exchange.failure.error
    )


async def test_a_failed_fetch_is_retried(consortium: Consortium) -> None:
    await consortium.stop_member("regulator1")
    async with Feed(consortium.address) as feed:
        await feed.submit(opening())
        height = max(await feed.submit(orders(1, 20)))
    member = build_replica(load_config(consortium.directory / "regulator1"))
    arm(member, "fetch")
    await member.start()
    consortium.members["regulator1"] = member
    await until(lambda: consortium.final_everywhere(height), what="the member to catch up")
    assert member.task_failures["fetch"] == 1 and member.failure is None
    assert (await health_of(member.address))[0] == 200


async def test_a_failed_feed_reply_closes_the_feed_socket(consortium: Consortium) -> None:
    exchange = consortium.exchange
    assert exchange is not None
    arm(exchange, "reply")
    async with Feed(consortium.address) as feed:
        with pytest.raises(ConnectionError):  # not silence: the client sees the loss
            await asyncio.wait_for(feed.submit(opening()), 10)
    assert exchange.task_failures["reply"] == 1 and exchange.failure is None
    async with Feed(consortium.address) as feed:
        await asyncio.wait_for(feed.submit(orders(1, 2)), 10)


async def test_a_failed_session_writer_closes_its_session(venue: RunningVenue) -> None:
    exchange = venue.exchange
    assert exchange is not None
    arm(exchange, "session", 2)  # the challenge and the logon reply pass
    broker = await venue.client("broker1", reconnect=False)
    with pytest.raises(ConnectionError):
        await broker.request("ping", timeout_s=10)
    assert exchange.task_failures["session"] == 1 and exchange.failure is None
    again = await venue.client("broker1")
    await venue.open_market()
    placed = await again.place(**order("s-1", "10001", "buy", 990, 100))
    assert placed["status"] == "new", placed


async def test_a_failed_replay_stream_answers_the_replay_and_closes_the_session(
    venue: RunningVenue,
) -> None:
    await venue.open_market()
    broker = await venue.client("broker1", reconnect=False)
    await broker.place(**order("r-1", "10001", "buy", 990, 100))
    exchange = venue.exchange
    assert exchange is not None
    arm(exchange, "replay")
    with pytest.raises(RequestError) as raised:
        await broker.request("replay", timeout_s=10, **{"from": 1})
    assert raised.value.code == "unavailable" and "replay failed" in str(raised.value)
    assert exchange.task_failures["replay"] == 1 and exchange.failure is None


def test_restarts_back_off_and_allow_5_a_minute() -> None:
    restarts = Restarts()
    delays = [restarts.delay_s(100.0 + k) for k in range(5)]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6]
    assert restarts.delay_s(105.0) is None  # a sixth within the minute: give up
    assert restarts.delay_s(161.5) == 0.8  # the first two left the minute: room for one more


SWEEP = [
    *[("exchange", task) for task in ("cutter", "reports", "ticker", "proposer", "dial", "link")],
    *[("exchange", task) for task in ("session", "replay")],
    *[("bank1", task) for task in ("ticker", "replica", "link", "fetch")],
]


@pytest.mark.skipif(
    os.environ.get("JINLIAN_CHECK_ALL") != "1", reason="a long sweep: JINLIAN_CHECK_ALL=1"
)
@pytest.mark.parametrize("after_n", [0, 3, 17, 60])
@pytest.mark.parametrize(("where", "task"), SWEEP)
async def test_sweep_no_request_goes_unanswered_whatever_task_fails(
    tmp_path: Path, where: str, task: str, after_n: int
) -> None:
    """A fault in each task kind at several points under order flow from two brokers: every
    request is answered (a reply, an error, or a closed connection; never a timeout), /health
    is 503 `failed` exactly when the exchange failed, and an exchange that did not fail still
    takes orders afterwards."""
    venue = RunningVenue(tmp_path / "c")
    for name in MEMBERS:
        node = build_replica(load_config(venue.directory / name))
        if name == where:
            arm(node, task, after_n)
        await node.start()
        venue.members.append(node)
    exchange, venue.gateway = build_venue(load_config(venue.directory / "exchange"))
    venue.exchange = exchange
    if where == "exchange":
        arm(exchange, task, after_n)
    await exchange.start()
    try:
        outcomes = await _flow(venue)
        assert "timeout" not in outcomes, outcomes
        failed = exchange.failure is not None  # a tick-timed fault may fire at any moment
        status, health = await health_of(venue.address)
        if failed:
            assert status == 503 and health["status"] == "failed", health
        if health["status"] == "failed":
            assert exchange.failure is not None and health["failure"]["task"] == task
        try:
            await venue.open_market()
            late = await venue.client("broker1")
            placed = await late.place(**order("late", "10001", "buy", 990, 100))
            assert placed["status"] == "new", placed
        except RequestError as error:  # refused, never silent, and only by a failed exchange
            assert error.code == "unavailable" and exchange.failure is not None, error
    finally:
        await venue.stop()


async def _flow(venue: RunningVenue) -> list[str]:
    """Open the market and send 2 x 30 orders and a replay; how each request ended."""

    async def attempt(request: Awaitable[Any]) -> str:
        try:
            await request
        except RequestError as error:
            return error.code
        except (ConnectionError, aiohttp.ClientError, WSMessageTypeError):  # a closed session
            return "closed"
        except TimeoutError:
            return "timeout"
        return "answered"

    outcomes = [await attempt(venue.open_market())]
    requests: list[Awaitable[Any]] = []
    for name, account, side in (("broker1", "10001", "buy"), ("broker2", "20001", "sell")):
        try:
            broker = await venue.client(name, reconnect=False)
        except (ConnectionError, aiohttp.ClientError, WSMessageTypeError):
            outcomes.append("closed")  # a session writer failed at logon: answered by a close
            continue
        requests += [
            broker.place(**order(f"{name}-{k}", account, side, 990, 100)) for k in range(30)
        ]
        requests.append(broker.request("replay", timeout_s=10, **{"from": 1}))
    outcomes += await asyncio.gather(*(attempt(r) for r in requests))
    return outcomes
