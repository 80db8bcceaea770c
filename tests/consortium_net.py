"""Shared helpers for tests that run a consortium on loopback: free ports, order batches."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from exchange.consortium import init_consortium
from ledger.genesis import Genesis

SYMBOL = "600000.SH"


def free_base_port(count: int) -> int:
    """A port p such that p .. p + count - 1 are free on 127.0.0.1 right now. Chosen below
    the kernel's ephemeral range, so that no outgoing connection (the exchange dialling a
    member that is still starting) can take a port a node is about to listen on."""
    ranges = Path("/proc/sys/net/ipv4/ip_local_port_range")
    low = int(ranges.read_text().split()[0]) if ranges.exists() else 32768
    for _ in range(200):
        base = random.randrange(10_000, low - count)
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free port range")


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
