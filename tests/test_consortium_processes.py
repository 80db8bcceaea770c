"""The consortium as real processes on loopback, killed with SIGKILL under load.

- A member killed mid-load and restarted catches up to the exchange's header (so state
  hash) at the tip, and `jinlian verify` passes on its store.
- The exchange killed mid-load loses no command it had acknowledged: after a restart every
  acknowledged batch is in its store, and blocks keep becoming final.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from exchange.consortium.audit import index_node
from exchange.consortium.nodes import load_config
from ledger.feed import Feed, FeedError, status, wait_until_up
from ledger.store import BlockStore
from settlement.types import COMMAND_OUTCOMES_MAX
from tests.consortium_net import make_consortium, opening, orders, until

PYTHON = [sys.executable, "-m", "exchange.cli"]
MEMBERS = ("bank1", "depository1", "regulator1", "broker-node1")


class Processes:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        if name == "exchange":
            command = [*PYTHON, "exchange", str(self.directory), "--feed"]
        else:
            command = [*PYTHON, "node", str(self.directory / name)]
        self.children[name] = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def kill(self, name: str) -> None:
        child = self.children.pop(name)
        child.send_signal(signal.SIGKILL)
        child.wait()

    def stop_all(self) -> None:
        for child in self.children.values():
            child.send_signal(signal.SIGTERM)
        for name, child in self.children.items():
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
                raise AssertionError(f"{name} did not stop on SIGTERM") from None
        self.children.clear()

    def address(self, name: str) -> str:
        return load_config(self.directory / name).address


def running(
    directory: Path, names: tuple[str, ...] = (*MEMBERS, "exchange")
) -> Iterator[Processes]:
    """The exchange and every member of the consortium in `directory` (or only `names`) as
    processes, killed at the end."""
    processes = Processes(directory)
    for name in names:
        processes.start(name)
    try:
        yield processes
    finally:
        for child in processes.children.values():
            child.kill()
            child.wait()


@pytest.fixture
def consortium(tmp_path: Path) -> Iterator[Processes]:
    make_consortium(tmp_path / "c")
    yield from running(tmp_path / "c")


async def wait_up(processes: Processes, names: tuple[str, ...]) -> None:
    await wait_until_up([processes.address(name) for name in names], timeout_s=30)


async def tip_of(address: str) -> tuple[int, int]:
    info = await status(address)
    return int(info["height"]), int(info["certified"])


def header_at(directory: Path, height: int) -> bytes:
    config = load_config(directory)
    with BlockStore.open(config.store_path) as store:
        header = store.header(height)
        assert header is not None, f"{directory.name} has no block {height}"
        return header.hash


def verify(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PYTHON, "verify", str(directory)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def load(address: str, first_id: int, batches: int) -> int:
    async with Feed(address) as feed:
        heights = await feed.pipeline(
            [orders(first_id + 50 * k, 50) for k in range(batches)], window=4
        )
    return max(heights)


def test_a_member_killed_under_load_catches_up_to_the_same_state(
    consortium: Processes,
) -> None:
    async def scenario() -> int:
        await wait_up(consortium, (*MEMBERS, "exchange"))
        exchange = consortium.address("exchange")
        async with Feed(exchange) as feed:
            await feed.submit(opening())
        loading = asyncio.create_task(load(exchange, 1, 100))
        await until(lambda: _final(exchange, 4), what="some blocks final")
        assert not loading.done(), "the load finished before the kill"
        consortium.kill("regulator1")
        tip = await loading
        tip = max(tip, await load(exchange, 10_001, 10))
        await until(lambda: _final(exchange, tip), what="finality with three members")
        consortium.start("regulator1")
        member = consortium.address("regulator1")
        await wait_up(consortium, ("regulator1",))
        await until(lambda: _member_at(member, tip), what="the restarted member to catch up")
        return tip

    tip = asyncio.run(scenario())
    consortium.stop_all()
    directory = consortium.directory
    assert header_at(directory / "regulator1", tip) == header_at(directory / "exchange", tip)
    result = verify(directory / "regulator1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK:")


async def _final(address: str, height: int) -> bool:
    return (await tip_of(address))[1] >= height


async def _member_at(address: str, height: int) -> bool:
    current, certified = await tip_of(address)
    return current >= height and certified >= height


def test_the_exchange_killed_under_load_loses_no_acknowledged_command(
    consortium: Processes,
) -> None:
    acknowledged: list[int] = []  # first order id of every batch answered `stored`

    async def feed_until_killed(exchange: str) -> None:
        async with Feed(exchange) as feed:
            for k in range(400):
                first = 1 + 50 * k
                try:
                    await feed.submit(orders(first, 50))
                except (FeedError, ConnectionError):
                    return
                acknowledged.append(first)

    async def scenario() -> int:
        await wait_up(consortium, (*MEMBERS, "exchange"))
        exchange = consortium.address("exchange")
        async with Feed(exchange) as feed:
            await feed.submit(opening())
        feeding = asyncio.create_task(feed_until_killed(exchange))
        await until(lambda: _acknowledged(acknowledged, 10), what="some acknowledged batches")
        consortium.kill("exchange")
        await asyncio.wait_for(feeding, 30)
        consortium.start("exchange")
        await wait_up(consortium, ("exchange",))
        tip = await load(exchange, 1_000_001, 4)
        await until(lambda: _final(exchange, tip), what="finality after the restart")
        return tip

    tip = asyncio.run(scenario())
    consortium.stop_all()
    config = load_config(consortium.directory / "exchange")
    index_node(consortium.directory / "exchange")  # the exchange does not index by default
    with BlockStore.open(config.store_path) as store:
        placed = {int(row[0]) for row in store.read("SELECT order_id FROM orders", ()) if row[0]}
    lost = [first for first in acknowledged if first not in placed]
    assert acknowledged and lost == [], f"acknowledged batches lost: {lost[:5]}"
    for name in ("exchange", "bank1"):
        result = verify(consortium.directory / name)
        assert result.returncode == 0, result.stdout + result.stderr
    assert header_at(consortium.directory / "bank1", tip) == header_at(
        consortium.directory / "exchange", tip
    )


async def _acknowledged(acknowledged: list[int], count: int) -> bool:
    return len(acknowledged) >= count


def test_up_runs_the_demo_session_and_stops_every_process_on_ctrl_c(tmp_path: Path) -> None:
    directory = tmp_path / "c"
    make_consortium(directory)
    up = subprocess.Popen(
        [*PYTHON, "up", str(directory), "--demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert up.stdout is not None
        for line in up.stdout:
            lines.append(line)
            if "the consortium keeps running" in line:
                break
        up.send_signal(signal.SIGINT)
        rest, _ = up.communicate(timeout=20)
    finally:
        if up.poll() is None:
            up.kill()
    output = "".join(lines) + rest
    assert up.returncode == 0, output
    # two trades, then the supply-chain flow's two maturity payments, in bank1's own copy
    assert output.count("final (signed by") == 4, output
    assert "trade    order 4 (lift-1) 100 at 10.05, status filled" in output, output
    assert "is final, signed by members" in output, output
    assert "invoice_already_used" in output, output
    paid = re.findall(r"piece \d: ([\d,.]+ CNY), CORE -> (\w+), block (\d+), final", output)
    assert [(amount, holder) for amount, holder, _ in paid] == [
        ("600,000.00 CNY", "SUP2"), ("400,000.00 CNY", "FAC")]  # fmt: skip
    # the session ends with the block that paid them: every process stops at it
    tip = paid[-1][2]
    assert output.count(f"stopped at height {tip}") == 5, output
    assert "consortium stopped" in output


def deposits(first_id: int, count: int) -> list[dict[str, Any]]:
    """Deposits of 1 fen from the cash bank, each with its own command id."""
    deposit = {"type": "deposit", "actor": "bank1", "asset": "CNY", "account": "10001"}
    return [
        {**deposit, "command_id": command_id, "amount": 1}
        for command_id in range(first_id, first_id + count)
    ]


def test_the_exchange_sequences_past_the_settlement_outcome_window(
    consortium: Processes,
) -> None:
    """Regression (#15 item 1): the exchange's block cutter died at the 10,000th remembered
    settlement outcome, and every later request went unanswered. Past the window, orders
    still become final, the exchange is healthy, and every member holds the same tip."""
    past = COMMAND_OUTCOMES_MAX + 1_000

    async def scenario() -> int:
        await wait_up(consortium, (*MEMBERS, "exchange"))
        exchange = consortium.address("exchange")
        async with Feed(exchange) as feed:
            await feed.submit(opening())
            await feed.pipeline(
                [deposits(1_000_000 + 500 * k, 500) for k in range(past // 500)], window=4
            )
            stored, final = await feed.send_final(orders(1, 10))
            tip = max(await asyncio.wait_for(stored, 30))
            await asyncio.wait_for(final, 30)
        health = await _health(exchange)
        assert health["status"] == "ok", health
        for name in MEMBERS:
            await until(partial(_member_at, consortium.address(name), tip), what=f"{name} at tip")
        return tip

    tip = asyncio.run(scenario())
    consortium.stop_all()
    directory = consortium.directory
    exchange_header = header_at(directory / "exchange", tip)
    for name in MEMBERS:
        assert header_at(directory / name, tip) == exchange_header, name


async def _health(address: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{address}/health") as response,
    ):
        return dict(await response.json())
