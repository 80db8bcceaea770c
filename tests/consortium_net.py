"""Shared helpers for tests that run a consortium on loopback: free ports, order batches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from exchange.consortium.init import free_base_port, init_consortium
from ledger.genesis import Genesis

SYMBOL = "600000.SH"


def make_consortium(directory: Path) -> Genesis:
    return init_consortium(directory, members=4, brokers=2, base_port=free_base_port(5))


def opening() -> list[dict[str, Any]]:
    return [
        {"type": "begin_day", "day": 20261123},
        {"type": "set_phase", "symbol": SYMBOL, "phase": "continuous"},
    ]


def orders(first_id: int, count: int) -> list[dict[str, Any]]:
    """Alternating buys and sells at one price between two brokers' accounts: they trade."""
    batch = []
    for order_id in range(first_id, first_id + count):
        buy = order_id % 2 == 0
        batch.append({
            "type": "place", "broker": "broker1" if buy else "broker2", "order_id": order_id,
            "symbol": SYMBOL, "account": "10001" if buy else "20001",
            "side": "buy" if buy else "sell", "kind": "limit", "price": 1000,
            "quantity": 100, "tif": "day",
        })  # fmt: skip
    return batch


async def until(
    condition: Callable[[], Awaitable[bool]], timeout: float = 30.0, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
