"""`jinlian match` as a user runs it: a real process, JSON lines in, JSON lines out."""

from __future__ import annotations

import io
import subprocess
import sys
from typing import Any

import orjson

from exchange.cli import run_match
from tests.test_wire import ISSUE_EXAMPLES


def run(lines: list[bytes], *arguments: str) -> list[dict[str, Any]]:
    completed = subprocess.run(
        [sys.executable, "-m", "exchange.cli", "match", *arguments],
        input=b"\n".join(lines) + b"\n",
        capture_output=True,
        check=True,
        timeout=60,
    )
    return [orjson.loads(line) for line in completed.stdout.splitlines()]


def test_the_issue_session_end_to_end() -> None:
    events = run(ISSUE_EXAMPLES, "--final-book")
    kinds = [event["type"] for event in events]
    assert kinds == [
        "instrument_added",
        "phase_changed",
        "accepted",
        "accepted",
        "trade",
        "cancelled",
        "amend_rejected",
        "book",
    ]
    trade = events[4]
    assert {k: trade[k] for k in ("symbol", "price", "quantity", "buy_order_id")} == {
        "symbol": "600000.SH",
        "price": 1000,
        "quantity": 100,
        "buy_order_id": 1,
    }
    assert (trade["sell_order_id"], trade["aggressor"]) == (2, "sell")
    assert events[5] == {
        "type": "cancelled",
        "order_id": 1,
        "symbol": "600000.SH",
        "quantity": 200,
        "reason": "requested",
    }
    assert events[6]["reason"] == "unknown_order"  # amend after the cancel
    assert events[7] == {"type": "book", "symbol": "600000.SH", "orders": []}


def test_a_malformed_line_names_line_and_field_and_processing_continues() -> None:
    lines = [
        ISSUE_EXAMPLES[0],
        ISSUE_EXAMPLES[1],
        b'{"type": "place", "order_id": "seven"}',
        b"not json at all",
        b"",
        b'{"type": "place", "order_id": 3, "account": "A1", "symbol": "600000.SH", '
        b'"side": "sell", "price": 1002, "quantity": 50}',
        b'{"type": "place", "order_id": 4, "account": "A2", "symbol": "600000.SH", '
        b'"side": "buy", "price": 1001, "quantity": 100, "tif": "gtc"}',
    ]
    events = run(lines, "--final-book")
    errors = [event for event in events if event["type"] == "error"]
    assert errors[0]["line"] == 3 and errors[0]["field"] == "order_id"
    assert "'seven'" in errors[0]["message"]
    assert errors[1]["line"] == 4 and errors[1]["field"] is None
    assert events[-1] == {
        "type": "book",
        "symbol": "600000.SH",
        "orders": [
            {"order_id": 4, "side": "buy", "price": 1001, "quantity": 100},
            {"order_id": 3, "side": "sell", "price": 1002, "quantity": 50},
        ],
    }


def test_final_book_lists_bids_then_asks_in_priority_order_per_instrument() -> None:
    lines = [ISSUE_EXAMPLES[0], ISSUE_EXAMPLES[1]]
    lines.append(ISSUE_EXAMPLES[0].replace(b"600000.SH", b"000001.SZ"))
    lines.append(ISSUE_EXAMPLES[1].replace(b"600000.SH", b"000001.SZ"))
    orders = [
        (1, "buy", 999, 100), (2, "buy", 1000, 200), (3, "buy", 999, 300),
        (4, "sell", 1005, 10), (5, "sell", 1003, 20), (6, "sell", 1005, 30),
    ]  # fmt: skip
    for order_id, side, price, quantity in orders:
        lines.append(
            orjson.dumps(
                {"type": "place", "order_id": order_id, "account": "A", "symbol": "600000.SH",
                 "side": side, "price": price, "quantity": quantity}
            )
        )  # fmt: skip
    out = io.BytesIO()
    run_match(lines, out, final_book=True)
    books = [orjson.loads(line) for line in out.getvalue().splitlines()][-2:]
    assert [book["symbol"] for book in books] == ["000001.SZ", "600000.SH"]
    assert [o["order_id"] for o in books[1]["orders"]] == [2, 1, 3, 5, 4, 6]
    assert books[0]["orders"] == []
