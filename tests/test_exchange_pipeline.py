"""The exchange's path from "block stored" to "next block proposed" (issue #16, the pipeline):
the cutter proposes and returns, and the reports task builds what a stored block means to
others (the gateway's reports, market data, acknowledgement journal, finality notices, the
/submit answers) after it, in order, behind a bounded queue. On loopback with real members:

- the cutter proposes block N + 1 (a member stores it) while block N's reports are still
  being built (a stored listener held on an event: the real seam the gateway uses);
- past `reports_blocks_max` stored blocks waiting, the cutter waits (backpressure, counted in
  `/status`), and every block's listeners still run once, in height order;
- a broker's reports over a run of blocks arrive in index order with contiguous indexes, and
  equal, byte for byte, the reports rebuilt from the store by a restarted exchange.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest

from exchange.gateway.client import Client, RequestError
from ledger.block import Block
from ledger.feed import Feed
from ledger.keys import load_private_key
from ledger.node import ExchangeNode
from tests.consortium_net import make_consortium, opening, orders, until
from tests.gateway_net import RunningVenue, order
from tests.test_ledger_node import Consortium


@pytest.fixture
async def consortium(tmp_path: Path) -> AsyncIterator[Consortium]:
    make_consortium(tmp_path / "c")
    running = Consortium(tmp_path / "c")
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def venue(tmp_path: Path) -> AsyncIterator[RunningVenue]:
    running = RunningVenue(tmp_path / "c")
    await running.start()
    yield running
    await running.stop()


async def holds(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` with a deadline (`until`'s, for a plain condition)."""

    async def check() -> bool:
        return condition()

    await until(check, what=what)


def cut_to(exchange: ExchangeNode, height: int) -> bool:
    return exchange.proposer.height >= height


class HeldReports:
    """A stored listener that records each block it is called with and, while `gate` is
    clear, holds the reports task there (as the gateway's journal write does)."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.begun: list[int] = []
        self.done: list[int] = []

    def __call__(self, block: Block) -> Any:
        return self._hold(block.header.height)

    async def _hold(self, height: int) -> None:
        self.begun.append(height)
        await self.gate.wait()
        self.done.append(height)


async def test_the_cutter_proposes_the_next_block_before_the_last_ones_reports_are_built(
    consortium: Consortium,
) -> None:
    exchange = consortium.exchange
    assert exchange is not None
    member = consortium.members["bank1"]
    held = HeldReports()
    exchange.stored_listeners.append(held)
    async with Feed(consortium.address) as feed:
        first = await feed.send(opening())
        await holds(lambda: bool(held.begun), what="block N's reports begun")
        block_n = held.begun[0]
        second = await feed.send(orders(1, 10))
        # block N + 1 is cut, stored and proposed: a member stores it, while the reports
        # task is still inside block N's listener
        await holds(lambda: member.replica.height >= block_n + 1, what="block N + 1 proposed")
        assert held.done == [] and held.begun == [block_n], (held.begun, held.done)
        assert not first.done()  # its `stored` answer comes after its block's reports
        held.gate.set()
        heights = await first + await second
    assert heights == [block_n, block_n + 1], heights
    assert held.begun == held.done == [block_n, block_n + 1]


async def test_the_cutter_waits_for_the_reports_task_past_its_bound_and_nothing_is_dropped(
    consortium: Consortium,
) -> None:
    exchange = consortium.exchange
    assert exchange is not None
    exchange.reports_blocks_max = 2
    held = HeldReports()
    exchange.stored_listeners.append(held)
    start = exchange.proposer.height
    async with Feed(consortium.address) as feed:
        answers = []
        for index in range(5):  # one batch at a time: each is cut into its own block
            answers.append(await feed.send(orders(1 + 10 * index, 10)))
            if index < 2:
                await holds(partial(cut_to, exchange, start + index + 1), f"block {index + 1}")
        await holds(lambda: exchange.reports_waits >= 1, what="the cutter waiting")
        assert exchange.proposer.height == start + 2  # no third block while two wait
        assert exchange.status()["reports_queued"] == 2
        assert exchange.status()["reports_waits"] >= 1
        held.gate.set()
        heights = [height for answer in answers for height in await answer]
    cut = list(range(start + 1, exchange.proposer.height + 1))
    assert sorted(set(heights)) == cut and heights == sorted(heights), heights
    assert held.begun == held.done == cut  # every block once, in order


async def reports_of(client: Client, count: int) -> list[dict[str, Any]]:
    return [await client.next_report() for _ in range(count)]


def without(report: dict[str, Any], *names: str) -> dict[str, Any]:
    return {key: value for key, value in report.items() if key not in names}


async def test_reports_over_a_run_of_blocks_are_contiguous_and_equal_the_replay_byte_for_byte(
    venue: RunningVenue,
) -> None:
    await venue.open_market()
    gateway, exchange = venue.gateway, venue.exchange
    assert gateway is not None and exchange is not None
    buyer = await venue.client("broker1", replay_from=1)
    seller = await venue.client("broker2", replay_from=1)
    start = exchange.proposer.height
    for wave in range(6):  # each wave waits for its acks: a run of at least 6 blocks
        buys = [
            buyer.place(**order(f"b{wave}-{n}", "10001", "buy", 1000 - n, 100)) for n in range(6)
        ]
        sells = [seller.place(**order(f"s{wave}-{n}", "20001", "sell", 997, 200)) for n in range(3)]
        await asyncio.gather(*buys, *sells)
    assert exchange.proposer.height >= start + 6
    live_log = [orjson.dumps(r) for r in gateway.reports.log("broker1").reports]
    count = len(live_log)
    assert count >= 36 + 6  # 36 accepted, and trades
    live = await reports_of(buyer, count)
    assert [r["index"] for r in live] == list(range(1, count + 1))
    assert [orjson.dumps(without(r, "request")) for r in live] == live_log
    heights = [r["height"] for r in live]
    assert heights == sorted(heights)  # block by block

    await venue.stop_exchange()  # a restarted exchange rebuilds the reports from its store
    await venue.start_exchange()
    assert venue.gateway is not None
    assert [orjson.dumps(r) for r in venue.gateway.reports.log("broker1").reports] == live_log
    again = Client(venue.address, "broker1", load_private_key(venue.key_path("broker1")),
                   replay_from=1)  # fmt: skip
    await again.connect()
    venue.clients.append(again)
    replayed = await reports_of(again, count)
    assert [orjson.dumps(without(r, "replayed")) for r in replayed] == live_log


async def test_one_journal_write_covers_the_blocks_stored_while_the_reports_task_was_behind(
    venue: RunningVenue,
) -> None:
    """Group commit: three blocks with broker orders are stored while the reports task is
    held; their orders go into the acknowledgement journal in one write (one fsync), each
    with its own block's height, before any of them is acknowledged."""
    await venue.open_market()
    gateway, exchange = venue.gateway, venue.exchange
    assert gateway is not None and exchange is not None
    journal = gateway.journal
    writes: list[list[int]] = []
    record_blocks = journal.record_blocks

    def counted(blocks: Any) -> None:
        writes.append([height for height, _ in blocks])
        record_blocks(blocks)

    journal.record_blocks = counted  # type: ignore[method-assign]
    held = HeldReports()
    exchange.stored_listeners.insert(0, held)  # before the gateway's: its fold waits
    broker = await venue.client("broker1")
    start = exchange.proposer.height
    placing = []
    for n in range(3):
        placing.append(
            asyncio.ensure_future(broker.place(**order(f"g{n}", "10001", "buy", 990 - n, 100)))
        )
        await holds(partial(cut_to, exchange, start + n + 1), f"block {n + 1}")
    assert not any(p.done() for p in placing)  # nothing is acknowledged yet
    held.gate.set()
    placed = await asyncio.gather(*placing)
    assert [p["status"] for p in placed] == ["new"] * 3
    assert writes == [[start + 1, start + 2, start + 3]], writes
    rows = journal._db.execute("SELECT order_id, height FROM acks ORDER BY order_id").fetchall()
    assert rows[-3:] == [(p["order_id"], start + 1 + n) for n, p in enumerate(placed)], rows


class SlowReports:
    """A stored listener that makes the reports task slow at random (a slow disk): each
    block, with probability 1/3, holds it for up to 30 ms, from a seeded generator."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.heights: list[int] = []

    def __call__(self, block: Block) -> Any:
        self.heights.append(block.header.height)
        if self.random.random() < 1 / 3:
            return asyncio.sleep(self.random.uniform(0.0, 0.03))  # the slowness is the point
        return None


@pytest.mark.skipif(
    os.environ.get("JINLIAN_CHECK_ALL") != "1", reason="20 seeds: JINLIAN_CHECK_ALL=1"
)
@pytest.mark.parametrize("seed", range(20))
async def test_seeded_flow_with_a_slow_reports_task_loses_nothing_and_replays_identically(
    tmp_path: Path, seed: int
) -> None:
    """Two brokers send seeded waves of orders, cancels and amends while the reports task is
    slow at random and may hold at most 2 blocks (the cutter waits past that): every request
    is answered, each broker's reports are contiguous and in height order, every block's
    listener ran once in order, and a restarted exchange rebuilds both logs byte for byte."""
    venue = RunningVenue(tmp_path / "c")
    await venue.start()
    try:
        await venue.open_market()
        gateway, exchange = venue.gateway, venue.exchange
        assert gateway is not None and exchange is not None
        exchange.reports_blocks_max = 2
        slow = SlowReports(seed)
        exchange.stored_listeners.insert(0, slow)
        flow = random.Random(seed)
        clients = {
            "broker1": (await venue.client("broker1", replay_from=1), "10001", "buy"),
            "broker2": (await venue.client("broker2", replay_from=1), "20001", "sell"),
        }
        first = exchange.proposer.height + 1
        for wave in range(12):
            requests = []
            for name, (client, account, side) in clients.items():
                for n in range(flow.randint(1, 8)):
                    price = flow.randint(995, 1005)
                    quantity = 100 * flow.randint(1, 3)
                    requests.append(client.place(**order(f"{name}-{wave}-{n}", account, side,
                                                         price, quantity)))  # fmt: skip
            placed = await asyncio.gather(*requests)
            for reply in placed:
                if reply.get("status") == "new" and flow.random() < 0.3:
                    name = "broker1" if reply["account"] == "10001" else "broker2"
                    client = clients[name][0]
                    try:  # answered either way: it may have traded meanwhile
                        if flow.random() < 0.5:
                            await client.cancel(order_id=reply["order_id"])
                        else:
                            await client.amend(order_id=reply["order_id"], quantity=100)
                    except RequestError as error:
                        assert error.code == "order_not_open", error.reply
        assert slow.heights == list(range(first, exchange.proposer.height + 1))
        logs = {}
        for name, (client, _, _) in clients.items():
            log_ = [orjson.dumps(r) for r in gateway.reports.log(name).reports]
            live = await reports_of(client, len(log_))
            assert [r["index"] for r in live] == list(range(1, len(log_) + 1))
            heights = [r["height"] for r in live]
            assert heights == sorted(heights)
            assert [orjson.dumps(without(r, "request")) for r in live] == log_
            logs[name] = log_
        await venue.stop_exchange()
        await venue.start_exchange()
        assert venue.gateway is not None
        for name, log_ in logs.items():
            assert [orjson.dumps(r) for r in venue.gateway.reports.log(name).reports] == log_
    finally:
        await venue.stop()
