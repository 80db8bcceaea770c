"""The indexer is off the vote path (#16): a member stores and votes, the derived tables follow
behind the "indexed up to height" watermark, and catch up after a crash.

- Sans-IO: a `Replica` whose store has the venue's indexer votes for a block while the block's
  rows are not written (the watermark is below it); `index_blocks` then writes them.
- The store: rows and watermark move together, in bounded batches; a batch is idempotent over
  rows an older build wrote (the rows at its heights are replaced).
- In-process nodes: an indexing member's supervised task brings the watermark to the tip;
  `/status` shows `indexed`, `/metrics` the gauge; a failing indexer is restarted, and fails the
  node (/health 503) after too many failures.
- Processes: a member that stored and voted with indexing off is killed with SIGKILL, restarted
  with indexing on, and its tables catch up to the tip; another member builds its tables with
  `jinlian index`; `jinlian verify` passes and reports the watermark.
- The analysis readers read up to the watermark and warn when it is below the tip.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from exchange.analysis.tables import IndexBehindWarning, NodeLedger, trades
from exchange.analysis.tables import events as events_frame
from exchange.consortium.audit import index_node, verify_node
from exchange.consortium.indexer import ORDER_EVENTS, SETTLEMENT_EVENTS, VenueIndexer
from exchange.consortium.init import indexing_nodes
from exchange.consortium.nodes import build_replica, load_config, new_machine
from ledger.feed import Feed, status, wait_until_up
from ledger.node import INDEX_BATCH_BLOCKS, ExchangeNode, ReplicaNode
from ledger.protocol import Propose, VoteMessage
from ledger.replication import Replica
from ledger.store import BlockStore, StoreCorruptError
from matching.types import Side
from tests.chain import TIME_NS_START, Chain
from tests.consortium_net import free_base_port, make_consortium, opening, orders, until
from tests.store_tamper import corrupt_block
from tests.test_ledger_node import Consortium

PYTHON = [sys.executable, "-m", "exchange.cli"]
SWEEPS = 5  # of the JINLIAN_CHECK_ALL kill sweep
MEMBERS = ("bank1", "depository1", "regulator1", "broker-node1")


def trading_chain(tmp_path: Path, blocks: int, *, index: bool = True, pairs: int = 1) -> Chain:
    """The opening, then `blocks - 1` blocks of `pairs` sells and buys that trade."""
    chain = Chain.create(tmp_path, base_port=free_base_port(5))
    chain.index = index
    chain.add_block(chain.opening())
    order = 0
    for _ in range(blocks - 1):
        commands = []
        for _ in range(pairs):
            commands += [chain.place(order + 1, "10001", Side.SELL, 1000, 100),
                         chain.place(order + 2, "20001", Side.BUY, 1000, 100)]  # fmt: skip
            order += 10
        chain.add_block(commands)
    return chain


def test_every_stored_event_is_attributed_to_the_command_that_produced_it(
    tmp_path: Path,
) -> None:
    """Each event of a stored block is in the receipt of the command that produced it, with
    that command's own time; every derived row names that command (`command_idx`) and time,
    and an order's broker is its command's (no guess); the analysts' readers carry them."""
    chain = Chain.create(tmp_path, base_port=free_base_port(5))
    start = TIME_NS_START + 1_000_000
    chain.add_block(chain.opening(), time_ns=start)
    commands = [
        chain.place(1, "10001", Side.SELL, 1000, 300),
        chain.place(2, "20001", Side.BUY, 1000, 100),  # trades with 1
        chain.place(3, "20001", Side.BUY, 900, 100),
        chain.place(4, "20001", Side.BUY, 1000, 100),  # trades with 1
        chain.cancel(3, "20001"),
        chain.cancel(1, "10001"),
        chain.place(5, "20001", Side.BUY, 0, 100),  # rejected: not on the price grid
    ]
    times = [start + 100 * (index + 1) for index in range(len(commands))]
    chain.add_block(commands, time_ns=start + 10_000, times_ns=times)
    store = chain.store
    assert store.indexed_height() == 2
    attributed = 0
    for height, block in enumerate(chain.blocks, start=1):
        receipts = store.receipts(height)
        assert receipts is not None
        assert [r.time_ns for r in receipts] == list(block.times_ns)
        cause: list[tuple[int, int, dict[str, Any], dict[str, Any]]] = []  # per event, in order
        for receipt in receipts:
            command = orjson.loads(receipt.command)
            cause += [(receipt.index, receipt.time_ns, command, orjson.loads(event))
                      for event in receipt.events]  # fmt: skip
        assert [orjson.loads(e) for e in store.events(height) or []] == [c[3] for c in cause]
        for table, kinds in (("orders", ORDER_EVENTS), ("trades", {"trade"}),
                             ("settlements", SETTLEMENT_EVENTS)):  # fmt: skip
            rows = store.read(
                f"SELECT event_idx, command_idx, time_ns FROM {table} WHERE height = ?", (height,)
            )
            covered = [i for i, (_, _, _, event) in enumerate(cause) if event["type"] in kinds]
            assert sorted(row[0] for row in rows) == covered, table  # each event: one row
            for event_idx, command_idx, time_ns in rows:
                assert (command_idx, time_ns) == cause[event_idx][:2], (table, event_idx)
                attributed += 1
        changes = store.read(
            "SELECT event_idx, command_idx, time_ns FROM balance_changes WHERE height = ?",
            (height,),
        )
        for event_idx, command_idx, time_ns in changes:
            assert (command_idx, time_ns) == cause[event_idx][:2]
        orders = store.read(
            "SELECT event_idx, broker FROM orders WHERE height = ? ORDER BY event_idx", (height,)
        )
        for event_idx, broker in orders:
            command, event = cause[event_idx][2], cause[event_idx][3]
            assert broker == event.get("broker", command.get("broker")), (event, command)
    assert attributed > 10
    rows = store.read("SELECT order_id, event, broker, time_ns FROM orders WHERE height = 2")
    assert (1, "cancelled", "broker1", times[5]) in rows  # placed in this block, cancelled later
    assert (3, "cancelled", "broker2", times[4]) in rows
    assert store.read("SELECT trade_id, time_ns FROM trades ORDER BY trade_id") == [
        (1, times[1]),
        (2, times[3]),
    ]
    chain.close()
    with NodeLedger.open(chain.node) as ledger:
        frame = trades(ledger)
        assert list(frame["time_ns"]) == [times[1], times[3]]  # each trade's own time
        assert list(frame["time"].astype("int64")) == [times[1], times[3]]
        events = events_frame(ledger, ["trade"])
        assert list(events["command_idx"]) == [1, 3]
        assert list(events["time_ns"]) == [times[1], times[3]]
    report = verify_node(chain.node)
    assert report.ok and report.blocks == 2, report


def test_a_member_votes_for_a_block_before_its_rows_are_indexed(tmp_path: Path) -> None:
    chain = trading_chain(tmp_path, 3, index=False)  # the proposer's blocks, in `chain.blocks`
    config = load_config(chain.directory / "depository1")
    store = BlockStore.open(config.store_path, chain.genesis.hash, indexer=VenueIndexer())
    replica = Replica(
        genesis=chain.genesis,
        member_id=config.member_id,
        key=chain.voter_keys[config.member_id],
        store=store,
        new_machine=lambda: new_machine(chain.genesis),
    )
    now_ns = chain.blocks[-1].header.time_ns
    for block in chain.blocks:
        sends = replica.receive(chain.genesis.exchange.id, Propose(block, 0), now_ns=now_ns)
        votes = [send.message for send in sends if isinstance(send.message, VoteMessage)]
        assert [vote.vote.header_hash for vote in votes] == [block.header.hash]  # voted
        assert store.indexed_height() == 0  # and not a row written on the way
        assert store.read("SELECT count(*) FROM trades") == [(0,)]
    assert store.index_blocks() == 3  # the indexer follows, behind the vote
    assert store.read("SELECT count(*) FROM trades") == [(2,)]
    store.close()
    chain.close()


def test_rows_and_watermark_move_together_in_bounded_batches(tmp_path: Path) -> None:
    chain = trading_chain(tmp_path, 5, index=False)
    store = chain.store
    assert store.indexed_height() == 0 and store.tip() is not None
    with pytest.raises(ValueError, match="blocks_max 0"):
        store.index_blocks(0)
    assert store.index_blocks(2) == 2
    assert store.read("SELECT max(height) FROM trades") == [(2,)]
    assert store.index_blocks(2) == 4 and store.index_blocks(2) == 5
    assert store.index_blocks(2) == 5  # at the tip: nothing to do
    assert store.read("SELECT count(*) FROM trades") == [(4,)]
    chain.close()
    # an older build's store: rows written, no watermark: rebuilt from height 1, same rows
    with sqlite3.connect(chain.node / "ledger.sqlite") as db:
        db.execute("DELETE FROM meta WHERE key = 'indexed_height'")
    before = _rows(chain.node / "ledger.sqlite")
    with BlockStore.open(chain.node / "ledger.sqlite", indexer=VenueIndexer()) as reopened:
        assert reopened.indexed_height() == 0
        assert reopened.index_blocks() == 5
    assert _rows(chain.node / "ledger.sqlite") == before
    assert verify_node(chain.node).ok


def test_a_batch_ends_once_it_holds_enough_commands(tmp_path: Path) -> None:
    chain = trading_chain(tmp_path, 4, index=False)  # 4 commands, then 2 per block
    assert [chain.store.index_blocks(commands_max=3) for _ in range(3)] == [1, 3, 4]
    with pytest.raises(ValueError, match="commands_max 0"):
        chain.store.index_blocks(commands_max=0)
    chain.close()


def test_a_batch_reads_no_block_past_the_one_that_fills_it(tmp_path: Path) -> None:
    """A block the batch does not index is not decoded: a corrupt block above the batch does
    not stop it, and the batch that reaches it names its height."""
    chain = trading_chain(tmp_path, 4, index=False)  # 4 commands, then 2 per block
    chain.close()
    corrupt_block(chain.node / "ledger.sqlite", 3)
    with BlockStore.open(chain.node / "ledger.sqlite", indexer=VenueIndexer()) as store:
        assert store.index_blocks(8, commands_max=5) == 2  # 4 + 2 commands: block 3 unread
        with pytest.raises(StoreCorruptError, match="block 3"):
            store.index_blocks(8, commands_max=5)
        assert store.indexed_height() == 2


def _rows(path: Path) -> list[object]:
    with BlockStore.open(path) as store:
        return [store.read(f"SELECT * FROM {table} ORDER BY height") for table in
                ("orders", "trades", "settlements", "balance_changes")]  # fmt: skip


def test_verify_compares_up_to_the_watermark_and_says_so(tmp_path: Path) -> None:
    chain = trading_chain(tmp_path, 4, index=False)
    chain.store.index_blocks(2)
    chain.close()
    report = verify_node(chain.node)
    assert report.ok and report.blocks == 4 and report.indexed_height == 2
    result = subprocess.run(
        [*PYTHON, "verify", str(chain.node)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "derived tables indexed to height 2 of 4" in result.stdout
    # a row above the watermark is not the indexer's: an added row, caught
    with sqlite3.connect(chain.node / "ledger.sqlite") as db:
        db.execute(
            "INSERT INTO trades SELECT trade_id + 100, 3, event_idx, symbol, price, quantity, "
            "buy_order_id, sell_order_id, buy_account, sell_account, aggressor, command_idx, "
            "time_ns FROM trades LIMIT 1"
        )
    report = verify_node(chain.node)
    assert report.failed_height == 3 and "above the index watermark 2" in str(report.failure)


def test_the_analysis_readers_stop_at_the_watermark_and_warn(tmp_path: Path) -> None:
    chain = trading_chain(tmp_path, 4, index=False)
    chain.store.index_blocks(2)
    chain.close()
    with pytest.warns(IndexBehindWarning, match="indexed to height 2, tip 4"):
        ledger = NodeLedger.open(chain.node)
    with ledger:
        assert (ledger.indexed_height, ledger.tip_height) == (2, 4)
        assert list(trades(ledger)["height"]) == [2]
    assert index_node(chain.node) == (2, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with NodeLedger.open(chain.node) as ledger:
            assert list(trades(ledger)["height"]) == [2, 3, 4]


def test_init_writes_which_nodes_index_and_says_so(tmp_path: Path) -> None:
    result = subprocess.run(
        [*PYTHON, "init", str(tmp_path / "c")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert indexing_nodes(tmp_path / "c") == ["bank1", "exchange", "regulator1"]
    assert "analysts' tables: built by bank1, exchange, regulator1" in result.stdout
    assert load_config(tmp_path / "c" / "exchange").index is True
    assert load_config(tmp_path / "c" / "depository1").index is False
    assert load_config(tmp_path / "c" / "bank1").index is True
    config = tmp_path / "c" / "depository1" / "node.json"
    value = orjson.loads(config.read_bytes())
    config.write_bytes(orjson.dumps({**value, "index": "yes"}))
    with pytest.raises(Exception, match="index 'yes' is not true or false"):
        load_config(tmp_path / "c" / "depository1")


async def _get(address: str, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://{address}{path}") as r:
        return r.status, await r.text()


def test_an_indexing_member_catches_up_behind_its_votes_and_shows_the_watermark(
    tmp_path: Path,
) -> None:
    """The node's task indexes what was stored while it was down (blocks appended directly
    here), in batches, and shows the watermark; then a failing indexer is restarted."""
    chain = trading_chain(tmp_path, 3 * INDEX_BATCH_BLOCKS + 1, index=False)
    tip = chain.height
    chain.close()

    async def scenario() -> None:
        node = build_replica(load_config(chain.node))
        assert node.index_store is not None and node.indexed() == 0
        await node.start()
        try:
            await until(lambda: _indexed(node, tip), what="the indexer to reach the tip")
            code, text = await _get(node.address, "/status")
            assert code == 200 and orjson.loads(text)["indexed"] == tip
            code, text = await _get(node.address, "/metrics")
            assert f"jinlian_indexed_height {tip}" in text
            code, _ = await _get(node.address, "/health")
            assert code == 200
        finally:
            await node.stop()
            node.replica.store.close()

    asyncio.run(scenario())
    assert verify_node(chain.node).indexed_height == tip


async def _indexed(node: ReplicaNode, height: int) -> bool:
    return (node.indexed() or 0) >= height


def test_a_failing_indexer_is_restarted_and_one_that_keeps_failing_fails_the_node(
    tmp_path: Path,
) -> None:
    chain = trading_chain(tmp_path, 2, index=False)
    chain.close()

    async def restarted() -> None:
        node = build_replica(load_config(chain.node))
        node.fault.task, node.fault.after_n = "indexer", 0  # the first batch raises
        await node.start()
        try:
            await until(lambda: _indexed(node, 2), what="the restarted indexer to catch up")
            assert node.task_failures["indexer"] == 1 and node.failure is None
            code, _ = await _get(node.address, "/health")
            assert code == 200
        finally:
            await node.stop()
            node.replica.store.close()

    async def failing() -> None:
        node = build_replica(load_config(chain.node))
        assert node.index_store is not None
        node.index_store.indexer = _Raising()  # a deterministic bug: every restart fails
        await node.start()
        try:
            await asyncio.wait_for(node.failed.wait(), timeout=30)
            assert node.failure is not None and node.failure.task == "indexer"
            assert "indexer bug" in node.failure.error
            code, text = await _get(node.address, "/health")
            assert code == 503 and orjson.loads(text)["status"] == "failed"
        finally:
            await node.stop()
            node.replica.store.close()

    asyncio.run(restarted())
    _reset_watermark(chain.node / "ledger.sqlite")
    asyncio.run(failing())


def _reset_watermark(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = 0 WHERE key = 'indexed_height'")
        for table in ("orders", "trades", "settlements", "balance_changes"):
            db.execute(f"DELETE FROM {table}")


class _Raising(VenueIndexer):
    __slots__ = ()

    def rows(self, *arguments: object) -> dict[str, list[tuple[object, ...]]]:
        raise ValueError("indexer bug")


class Processes:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        command = (
            [*PYTHON, "exchange", str(self.directory), "--feed"]
            if name == "exchange"
            else [*PYTHON, "node", str(self.directory / name)]
        )
        self.children[name] = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def address(self, name: str) -> str:
        return load_config(self.directory / name).address

    def kill(self, name: str) -> None:
        child = self.children.pop(name)
        child.send_signal(signal.SIGKILL)
        child.wait()

    def stop_all(self) -> None:
        for child in self.children.values():
            child.send_signal(signal.SIGTERM)
        for child in self.children.values():
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.children.clear()


def _set_index(directory: Path, index: bool) -> None:
    path = directory / "node.json"
    path.write_bytes(orjson.dumps({**orjson.loads(path.read_bytes()), "index": index}))


async def _status_at(address: str, field: str, height: int) -> bool:
    try:
        value = (await status(address)).get(field)
    except (aiohttp.ClientError, OSError):
        return False
    return isinstance(value, int) and value >= height


def test_the_indexer_catches_up_after_a_crash_between_voting_and_indexing(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "c"
    make_consortium(directory)
    _set_index(directory / "bank1", False)  # bank1 votes, indexes nothing: then it is killed
    processes = Processes(directory)
    for name in (*MEMBERS, "exchange"):
        processes.start(name)

    async def scenario() -> int:
        addresses = [processes.address(name) for name in (*MEMBERS, "exchange")]
        await wait_until_up(addresses, timeout_s=30)
        exchange = processes.address("exchange")
        async with Feed(exchange) as feed:
            await feed.submit(opening())
            heights = await feed.pipeline([orders(1 + 50 * k, 50) for k in range(6)], window=2)
        tip = max(heights)
        bank1 = processes.address("bank1")
        await until(lambda: _status_at(bank1, "certified", tip), what="bank1 to store the tip")
        assert (await status(bank1))["indexed"] is None  # not indexing: nothing behind the votes
        processes.kill("bank1")  # kill -9 between voting and indexing
        _set_index(directory / "bank1", True)
        processes.start("bank1")
        await wait_until_up([bank1], timeout_s=30)
        await until(lambda: _status_at(bank1, "indexed", tip), what="bank1's indexer to catch up")
        return tip

    try:
        tip = asyncio.run(scenario())
        processes.stop_all()
    finally:
        for child in processes.children.values():
            child.kill()
            child.wait()
    report = verify_node(directory / "bank1")
    assert report.ok and report.indexed_height >= tip, report
    # a node that never indexed builds its tables on demand, and they verify
    result = subprocess.run(
        [*PYTHON, "index", str(directory / "depository1")],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0 and f"to {report.blocks}" in result.stdout, result.stderr
    depository = verify_node(directory / "depository1")
    assert depository.ok and depository.indexed_height == depository.blocks
    assert depository.derived_rows == report.derived_rows > 0


@pytest.mark.skipif(
    os.environ.get("JINLIAN_CHECK_ALL") != "1", reason="a long kill sweep: JINLIAN_CHECK_ALL=1"
)
def test_jinlian_index_killed_at_random_points_always_leaves_consistent_tables(
    tmp_path: Path,
) -> None:
    """`jinlian index` killed with SIGKILL after a random delay, again and again, until it
    reaches the tip: after every kill `jinlian verify` passes (rows exactly up to the
    watermark), and the end state is every block indexed. Seeds printed."""
    chain = trading_chain(tmp_path, 161, index=False, pairs=100)  # 5 transactions, ~1 s
    chain.close()
    seed = random.randrange(2**32)
    print(f"kill sweep seed {seed}")
    rng = random.Random(seed)
    kills = 0
    _reset_watermark(chain.node / "ledger.sqlite")
    started = time.monotonic()
    subprocess.run([*PYTHON, "index", str(chain.node)], check=True, capture_output=True)
    whole_s = time.monotonic() - started  # an uninterrupted run: the kills land inside it
    for sweep in range(SWEEPS):
        _reset_watermark(chain.node / "ledger.sqlite")
        while True:
            child = subprocess.Popen(
                [*PYTHON, "index", str(chain.node)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                child.wait(timeout=rng.uniform(0.3, 1.0) * whole_s)
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGKILL)
                child.wait()
                kills += 1
            report = verify_node(chain.node)
            assert report.ok, (seed, sweep, kills, report)
            print(f"sweep {sweep} kill {kills}: indexed to {report.indexed_height}")
            if report.indexed_height == report.blocks:
                break
            assert kills < 200, f"seed {seed}: no progress after {kills} kills"
    assert report.derived_rows > 0


def test_a_block_missing_below_the_tip_stops_the_indexer_naming_it(tmp_path: Path) -> None:
    chain = trading_chain(tmp_path, 4, index=False)
    chain.store.index_blocks(1)
    chain.close()
    with sqlite3.connect(chain.node / "ledger.sqlite") as db:
        for table in ("certificates", "blocks"):  # a block is one row, and its certificate
            db.execute(f"DELETE FROM {table} WHERE height = 2")
    with BlockStore.open(chain.node / "ledger.sqlite", indexer=VenueIndexer()) as store:
        with pytest.raises(StoreCorruptError, match="block 2: stored block missing below"):
            store.index_blocks()
        assert store.indexed_height() == 1  # not moved past the gap


def test_an_exchange_set_to_index_indexes_what_it_stores(tmp_path: Path) -> None:
    directory = tmp_path / "c"
    make_consortium(directory)
    _set_index(directory / "exchange", True)  # not the default: the exchange may opt in
    running = Consortium(directory)

    async def scenario() -> None:
        await running.start()
        try:
            exchange = running.exchange
            assert exchange is not None and exchange.index_store is not None
            async with Feed(running.address) as feed:
                await feed.submit(opening())
                heights = await feed.pipeline([orders(1 + 50 * k, 50) for k in range(4)])
            tip = max(heights)
            await until(lambda: _exchange_indexed(exchange, tip), what="the exchange's indexer")
            trades = exchange.proposer.store.read("SELECT count(*) FROM trades WHERE height <= ?",
                                                  (tip,))  # fmt: skip
            assert trades == [(100,)]
            assert exchange.status()["indexed"] >= tip
        finally:
            await running.stop()

    asyncio.run(scenario())


async def _exchange_indexed(node: ExchangeNode, height: int) -> bool:
    return (node.indexed() or 0) >= height
