"""Tampering with a node's block store from outside, as a disk error or an intruder would, for
the tests of `jinlian verify`, `jinlian receipt` and node start-up. The store's table layout is
known here only, so that the tests survive a change of the block format."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final

from ledger.store import decode_body, encode_body

# What `corrupt_block` can change: the header, the first command or the first event.
BLOCK_PARTS: Final = ("header", "command", "event")


def corrupt_block(store: Path, height: int, part: str = "command") -> None:
    """Change one digit of the stored bytes of `part` of the block at `height` (a digit, so the
    bytes still parse and only the hashes can tell). Commands and events are inside the block's
    blob (`ledger.store.encode_body`): it is decoded, one digit changed, and written back in
    the same encoding, as a tamperer who knows the format would."""
    assert part in BLOCK_PARTS, part
    with sqlite3.connect(store) as db:
        column = "header" if part == "header" else "body"
        row = db.execute(f"SELECT {column} FROM blocks WHERE height = ?", (height,)).fetchone()
        assert row is not None, f"no block at height {height} in {store}"
        if part == "header":
            changed = _changed_digit(bytes(row[0]), part, height)
        else:
            body = bytes(row[0])
            commands, times, events = decode_body(height, body)
            if part == "command":
                assert commands, f"no command at height {height}"
                commands = (_changed_digit(commands[0], part, height), *commands[1:])
            else:
                first = next((i for i, each in enumerate(events) if each), None)
                assert first is not None, f"no event at height {height}"
                produced = (_changed_digit(events[first][0], part, height), *events[first][1:])
                events = (*events[:first], produced, *events[first + 1 :])
            changed = encode_body(commands, times, events, body[0])
        db.execute(f"UPDATE blocks SET {column} = ? WHERE height = ?", (changed, height))
    db.close()


def _changed_digit(data: bytes, part: str, height: int) -> bytes:
    changed = bytearray(data)
    digits = [index for index, byte in enumerate(changed) if 0x31 <= byte <= 0x38]
    assert digits, f"no digit to change in the {part} at height {height}"
    changed[digits[len(digits) // 2]] += 1
    return bytes(changed)


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
            " buy_order_id, sell_order_id, buy_account, sell_account, aggressor, command_idx,"
            " time_ns FROM trades WHERE trade_id = ?",
            (new_id, height, event_offset, trade_id),
        )
    db.close()
    return int(new_id)


def corrupt_page(store: Path, table: str = "blocks") -> None:
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
