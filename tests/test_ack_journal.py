"""The gateway's acknowledgement journal (`exchange.gateway.ack_journal`): durable across a reopen,
bounded by pruning the orders of final blocks, and the source of `lost` orders."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.gateway.ack_journal import PRUNE_BLOCKS, AckJournal, JournalError


def place(order_id: int) -> dict[str, object]:
    return {"type": "place", "broker": "broker1", "order_id": order_id, "symbol": "600000.SH",
            "account": "10001", "side": "buy", "kind": "limit", "quantity": 100, "tif": "day",
            "client_order_id": f"c{order_id}", "price": 1000}  # fmt: skip


def count(journal: AckJournal) -> int:
    return int(journal._db.execute("SELECT count(*) FROM acks").fetchone()[0])


def test_orders_above_the_recovered_tip_are_lost_for_good(tmp_path: Path) -> None:
    path = tmp_path / "acks.sqlite"
    journal = AckJournal.open(path)
    for height in range(1, 6):
        journal.record(height, [place(2 * height), place(2 * height + 1)])
    journal.close()
    journal = AckJournal.open(path)  # what a restart finds
    lost = journal.settle(3)
    assert [r["order_id"] for r in lost] == [8, 9, 10, 11]
    assert {r["after_height"] for r in lost} == {3} and lost[0]["client_order_id"] == "c8"
    assert journal.settle(3) == []  # settled once
    journal.close()
    journal = AckJournal.open(path)
    assert [r["order_id"] for r in journal.lost()] == [8, 9, 10, 11]
    assert journal.max_order_id() == 11  # never given to another order


def test_the_journal_holds_only_blocks_not_yet_final(tmp_path: Path) -> None:
    journal = AckJournal.open(tmp_path / "acks.sqlite")
    for height in range(1, 3 * PRUNE_BLOCKS):  # well past the bound
        journal.record(height, [place(height)])
        journal.prune(height - 2)  # finality two blocks behind
        assert count(journal) <= PRUNE_BLOCKS + 2
    assert journal.settle(3 * PRUNE_BLOCKS) == []
    assert journal.max_order_id() == 3 * PRUNE_BLOCKS - 1


def test_a_file_that_is_not_a_journal_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "acks.sqlite"
    path.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(JournalError, match=r"acks\.sqlite: not an acknowledgement journal"):
        AckJournal.open(path)
