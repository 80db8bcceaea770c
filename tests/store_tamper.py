"""Tampering with a node's block store from outside, as a disk error or an intruder would, for
the tests of `jinlian verify`, `jinlian receipt` and node start-up. The store's table layout is
known here only, so that the tests survive a change of the block format."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final

# What `corrupt_block` can change: the header, the first command or the first event.
BLOCK_PARTS: Final = ("header", "command", "event")
_PART_ROWS: Final = {
    "header": ("blocks", "header", ""),
    "command": ("commands", "data", " AND idx = 0"),
    "event": ("events", "data", " AND idx = 0"),
}


def corrupt_block(store: Path, height: int, part: str = "command") -> None:
    """Change one digit of the stored bytes of `part` of the block at `height` (a digit, so the
    bytes still parse and only the hashes can tell)."""
    table, column, extra = _PART_ROWS[part]
    condition = f"height = {height}{extra}"
    with sqlite3.connect(store) as db:
        row = db.execute(f"SELECT {column} FROM {table} WHERE {condition}").fetchone()
        assert row is not None, f"no {part} at height {height} in {store}"
        changed = bytearray(row[0])
        digits = [index for index, byte in enumerate(changed) if 0x31 <= byte <= 0x38]
        assert digits, f"no digit to change in the {part} at height {height}"
        position = digits[len(digits) // 2]
        changed[position] += 1
        db.execute(f"UPDATE {table} SET {column} = ? WHERE {condition}", (bytes(changed),))
    db.close()


def tamper_trade(store: Path, trade_id: int, *, price_delta: int = 1) -> int:
    """Change the price of trade `trade_id` in the derived `trades` table; return the height
    of the block it is in."""
    with sqlite3.connect(store) as db:
        row = db.execute("SELECT height FROM trades WHERE trade_id = ?", (trade_id,)).fetchone()
        assert row is not None, f"trade {trade_id} is not in {store}"
        db.execute(
            "UPDATE trades SET price = price + ? WHERE trade_id = ?", (price_delta, trade_id)
        )
    db.close()
    return int(row[0])


def drop_trade(store: Path, trade_id: int) -> int:
    """Delete trade `trade_id`'s row from the derived `trades` table; return its height."""
    with sqlite3.connect(store) as db:
        row = db.execute("SELECT height FROM trades WHERE trade_id = ?", (trade_id,)).fetchone()
        assert row is not None, f"trade {trade_id} is not in {store}"
        db.execute("DELETE FROM trades WHERE trade_id = ?", (trade_id,))
    db.close()
    return int(row[0])


def copy_trade_to_height(
    store: Path, trade_id: int, height: int, *, event_offset: int = 1000
) -> int:
    """Add a copy of trade `trade_id`'s row under a new trade id at `height`, its event index
    moved by `event_offset` (a made-up row); return the new trade id."""
    with sqlite3.connect(store) as db:
        (new_id,) = db.execute("SELECT max(trade_id) + 1 FROM trades").fetchone()
        db.execute(
            "INSERT INTO trades SELECT ?, ?, event_idx + ?, symbol, price, quantity,"
            " buy_order_id, sell_order_id, buy_account, sell_account, aggressor"
            " FROM trades WHERE trade_id = ?",
            (new_id, height, event_offset, trade_id),
        )
    db.close()
    return int(new_id)


def corrupt_page(store: Path, table: str = "commands") -> None:
    """Overwrite the b-tree header of `table`'s root page, as a disk error would: SQLite then
    reports the file as malformed when it reads that table (the store must be closed, its WAL
    checkpointed)."""
    with sqlite3.connect(store) as db:
        (page_size,) = db.execute("PRAGMA page_size").fetchone()
        row = db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
        assert row is not None, f"no table {table} in {store}"
    db.close()
    offset = (int(row[0]) - 1) * int(page_size)
    with store.open("r+b") as file:
        file.seek(offset)
        file.write(b"\xff" * 12)
