"""The gateway's durable journal of acknowledged orders, so that an order whose block was lost
on every copy is reported `lost`, never silently forgotten.

The exchange's store runs with `synchronous=NORMAL` (docs/ledger.md, "Durability"): a power
cut may take its last blocks. Recovery fetches them back from the members (docs/ledger.md,
"Recovery"); what no member holds either is gone, and with it the orders in it that brokers
were told were accepted. The store cannot say which orders those were, so the gateway writes
each order it is about to acknowledge here first, in its own SQLite file (`acks.sqlite` in
the exchange's directory) with `synchronous=FULL`: one fsync per block that holds broker
orders, off the path from "block stored" to "next block proposed": the gateway folds a block
after the cutter has proposed it (the exchange's reports task), and writes here in a worker
thread (`asyncio.to_thread`), so the fsync (8 ms at the median, up to 200 ms, on the
development machine) holds back only that block's acknowledgements. The gateway uses the
connection from one call at a time (the reports task awaits each write), from any thread.

- `record(height, orders)` before the acknowledgements of a block go out (`record_blocks`:
  several blocks in one transaction, one fsync: the gateway's group commit when its reports
  task is behind);
- `prune(certified)` forgets the orders of final blocks (a final block is on 2f + 1 members,
  so it is never lost), every `PRUNE_BLOCKS` certified heights: the journal holds the orders
  of blocks not yet final, bounded by the exchange's `lag_max`;
- `settle(tip)` after recovery: every journalled order above the recovered tip was lost on
  every copy; it moves to the `lost` table with the tip (where its `lost` report goes in its
  broker's report log) and is returned. Lost orders are kept for good (they are rare), so
  that every restart puts their reports at the same index.

`OrderRecord` is what a `lost` report needs: the order's id, broker, client order id, account,
symbol, side, price and quantity as the broker sent them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Self

import orjson

PRUNE_BLOCKS: Final = 64
LOST_MAX: Final = 1_000_000  # lost orders kept; beyond this the journal refuses to start

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS acks (order_id INTEGER PRIMARY KEY, height INTEGER NOT NULL, "
    "data BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS acks_by_height ON acks (height)",
    "CREATE TABLE IF NOT EXISTS lost (order_id INTEGER PRIMARY KEY, after_height INTEGER "
    "NOT NULL, data BLOB NOT NULL)",
)

OrderRecord = dict[str, Any]


class JournalError(Exception):
    """The journal file cannot be used (not SQLite, or too many lost orders)."""


class AckJournal:
    """`AckJournal.open(path)`; `None` path: in memory (tests that need no durability)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection
        self.pruned = 0  # certified height up to which acks were forgotten

    @classmethod
    def open(cls, path: Path | None) -> Self:
        """Raises `JournalError` naming the file."""
        try:
            connection = sqlite3.connect(
                ":memory:" if path is None else path, isolation_level=None, check_same_thread=False
            )
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = FULL")
            for statement in _SCHEMA:
                connection.execute(statement)
            lost = connection.execute("SELECT count(*) FROM lost").fetchone()[0]
        except sqlite3.DatabaseError as error:
            raise JournalError(f"{path}: not an acknowledgement journal: {error}") from None
        if lost > LOST_MAX:
            raise JournalError(f"{path}: {lost} lost orders (at most {LOST_MAX})")
        return cls(connection)

    def close(self) -> None:
        self._db.close()

    def record(self, height: int, orders: Sequence[OrderRecord]) -> None:
        """Make `orders`, about to be acknowledged in the block at `height`, durable."""
        self.record_blocks([(height, orders)])

    def record_blocks(self, blocks: Sequence[tuple[int, Sequence[OrderRecord]]]) -> None:
        """`record` for several blocks (height, orders) in one transaction: one fsync."""
        rows = [
            (order["order_id"], height, orjson.dumps(order))
            for height, orders in blocks
            for order in orders
        ]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO acks VALUES (?, ?, ?)", rows)

    def prune_due(self, certified: int) -> bool:
        """Whether `prune(certified)` would write."""
        return certified - self.pruned >= PRUNE_BLOCKS

    def prune(self, certified: int) -> None:
        """Forget the orders of final blocks, every `PRUNE_BLOCKS` heights."""
        if not self.prune_due(certified):
            return
        with self._db:
            self._db.execute("DELETE FROM acks WHERE height <= ?", (certified,))
        self.pruned = certified

    def settle(self, tip: int) -> list[OrderRecord]:
        """After recovery to `tip`: the journalled orders above it are lost; moved to `lost`
        with `after_height` = `tip` and returned, in order id order."""
        rows = self._db.execute(
            "SELECT order_id, data FROM acks WHERE height > ? ORDER BY order_id", (tip,)
        ).fetchall()
        if rows:
            with self._db:
                self._db.executemany(
                    "INSERT OR REPLACE INTO lost VALUES (?, ?, ?)",
                    [(order_id, tip, data) for order_id, data in rows],
                )
                self._db.execute("DELETE FROM acks WHERE height > ?", (tip,))
        return [self._record(data, tip) for _, data in rows]

    def lost(self) -> list[OrderRecord]:
        """Every order ever lost, each with its `after_height`, in that order."""
        rows = self._db.execute(
            "SELECT after_height, data FROM lost ORDER BY after_height, order_id"
        ).fetchall()
        return [self._record(data, after) for after, data in rows]

    def max_order_id(self) -> int:
        """The highest order id journalled or lost (0: none): ids are never given twice."""
        row = self._db.execute(
            "SELECT max(order_id) FROM (SELECT order_id FROM acks UNION ALL "
            "SELECT order_id FROM lost)"
        ).fetchone()
        return int(row[0] or 0)

    @staticmethod
    def _record(data: bytes, after_height: int) -> OrderRecord:
        record: OrderRecord = orjson.loads(data)
        record["after_height"] = after_height
        return record
