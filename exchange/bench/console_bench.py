"""The web console's speed on a large store (#20), in headless Chromium.

`python -m exchange.bench.console_bench [--commands 1000000] [--loads 20] [--base-port 7650]`
builds a consortium whose store holds `--commands` venue commands in certified blocks of
`BLOCK_COMMANDS` (2,000: every block a full one; buys and sells at one price, each pair
trading, over a book of resting orders), gives the same store to the exchange and three voting
members (a quorum: the fourth stays down), starts them in this process (each replays its store
first; no node indexes, so that no indexer runs during the loads), and loads each page
`--loads` times in a fresh page of Debian's Chromium (Playwright, `executable_path`): the
market page, the health page, the block list (100 rows), the last block (2,000 commands, its
first 100 shown) and the receipt of its last command (verified in the page). A load's time is
the browser's own navigation timing, from the request to the end of the `load` event, and the
page's data must be rendered by then (checked after each load: the rows, the checksum, the
receipt's `verified`). It prints p50, p95 and max per page, and whether p95 is under 1 s. A
benchmark, run on purpose (`make check-all` runs a full one: tests/test_console_speed.py).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import orjson

from exchange.consortium.init import init_consortium, venue_from_genesis
from exchange.consortium.nodes import build_replica, build_venue, load_config
from exchange.venue.machine import VenueMachine
from ledger.block import certify, sign_vote
from ledger.keys import load_private_key
from ledger.machine import encode_commands, propose
from ledger.node import ExchangeNode, ReplicaNode
from ledger.store import BlockStore

BLOCK_COMMANDS: Final = 2_000
RESTING_ORDERS: Final = 200  # the book the market page shows
LOAD_GOAL_S: Final = 1.0
TIME_NS_START: Final = 1_767_000_000_000_000_000
NODES: Final = ("exchange", "bank1", "depository1", "regulator1")  # the exchange and a quorum
SYMBOL: Final = "600000.SH"


def _batch(height: int, order_id: int) -> tuple[list[dict[str, object]], int]:
    batch: list[dict[str, object]] = []
    if height == 1:
        batch += [{"type": "begin_day", "day": 20261123},
                  {"type": "set_phase", "symbol": SYMBOL, "phase": "continuous"}]  # fmt: skip
        for level in range(RESTING_ORDERS):
            order_id += 1
            buy = level % 2 == 0
            batch.append({"type": "place", "broker": "broker1" if buy else "broker2",
                          "order_id": order_id, "symbol": SYMBOL,
                          "account": "10001" if buy else "20001",
                          "side": "buy" if buy else "sell", "kind": "limit",
                          "price": 990 - level // 2 if buy else 1010 + level // 2,
                          "quantity": 100, "tif": "day"})  # fmt: skip
    while len(batch) < BLOCK_COMMANDS:
        order_id += 1
        buy = order_id % 2 == 0
        batch.append({"type": "place", "broker": "broker1" if buy else "broker2",
                      "order_id": order_id, "symbol": SYMBOL,
                      "account": "10001" if buy else "20001", "side": "buy" if buy else "sell",
                      "kind": "limit", "price": 1000, "quantity": 100, "tif": "day"})  # fmt: skip
    return batch, order_id


def build_store(directory: Path, commands: int, base_port: int) -> int:
    """A consortium in `directory` whose nodes in NODES hold the same certified store of
    `commands` commands (rounded up to whole blocks), none indexing; the tip height."""
    genesis = init_consortium(directory, members=4, brokers=2, base_port=base_port)
    for name in ("exchange", "bank1", "depository1", "regulator1", "broker-node1"):
        config_path = directory / name / "node.json"
        config = orjson.loads(config_path.read_bytes())
        config_path.write_bytes(orjson.dumps({**config, "index": False}))
    exchange_key = load_private_key(directory / "exchange" / "key.pem")
    voters = [(m.id, load_private_key(directory / m.name / "key.pem"))
              for m in genesis.members if m.voting][: genesis.quorum()]  # fmt: skip
    machine = VenueMachine(venue_from_genesis(genesis))
    first = load_config(directory / "exchange").store_path
    store = BlockStore.open(first, genesis.hash, synchronous="NORMAL")
    parent, order_id, height = genesis.hash, 0, 0
    try:
        while height * BLOCK_COMMANDS < commands:
            height += 1
            batch, order_id = _batch(height, order_id)
            block, execution = propose(
                machine, exchange_key, proposer=genesis.exchange.id, height=height,
                parent_hash=parent, time_ns=TIME_NS_START + height * 10**6,
                commands=encode_commands(batch),
            )  # fmt: skip
            store.append(block, list(execution.events))
            votes = [sign_vote(key, member, block.header) for member, key in voters]
            store.add_certificate(certify(block.header, votes))
            parent = block.header.hash
    finally:
        store.close()
    for name in NODES[1:]:
        shutil.copyfile(first, load_config(directory / name).store_path)
    return height


async def _start(directory: Path) -> tuple[ExchangeNode, list[ReplicaNode]]:
    members = []
    for name in NODES[1:]:
        node = build_replica(load_config(directory / name))
        await node.start()
        members.append(node)
    exchange, _ = build_venue(load_config(directory / "exchange"))
    await exchange.start()
    await asyncio.wait_for(exchange.ready.wait(), 120)
    return exchange, members


async def _stop(exchange: ExchangeNode, members: list[ReplicaNode]) -> None:
    for node in [exchange, *members]:
        await node.stop()
    exchange.proposer.store.close()
    for member in members:
        member.replica.store.close()


Check = Callable[[Any], Awaitable[None]]


async def measure_loads(
    pages: list[tuple[str, str, Check]], loads: int, cookie: tuple[str, str, str] | None,
    executable: str,
) -> dict[str, list[float]]:  # fmt: skip
    """Seconds from request to the end of `load`, per page name, each load in a fresh page
    whose data is then checked."""
    from playwright.async_api import async_playwright  # noqa: PLC0415 - a dev dependency

    times: dict[str, list[float]] = {name: [] for name, _, _ in pages}
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
        )
        context = await browser.new_context()
        if cookie is not None:
            name, value, url = cookie
            await context.add_cookies([{"name": name, "value": value, "url": url}])
        for _ in range(loads):
            for name, url, check in pages:  # alternate the pages, round by round
                page = await context.new_page()
                await page.goto(url, wait_until="load")
                timing = await page.evaluate(
                    "() => { const t = performance.getEntriesByType('navigation')[0];"
                    " return t.loadEventEnd - t.startTime; }"
                )
                await check(page)
                times[name].append(float(timing) / 1000)
                await page.close()
        await browser.close()
    return times


def _rows(selector: str, count: int) -> Check:
    async def check(page: Any) -> None:
        found = await page.locator(selector).count()
        assert found == count, f"{selector}: {found} rows, expected {count}"

    return check


def _state(selector: str, state: str) -> Check:
    async def check(page: Any) -> None:
        got = await page.get_attribute(selector, "data-state")
        assert got == state, f"{selector}: data-state {got!r}, expected {state!r}"

    return check


async def run(commands: int, loads: int, base_port: int, executable: str) -> dict[str, Any]:
    from exchange.console.explorer import COOKIE  # noqa: PLC0415 - after the build's imports
    from ledger import auth  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="jinlian-console-bench-") as scratch:
        directory = Path(scratch)
        started = time.perf_counter()
        tip = build_store(directory, commands, base_port)
        built_s = time.perf_counter() - started
        exchange, members = await _start(directory)
        started_s = time.perf_counter() - started - built_s
        try:
            bank = members[0]
            config = load_config(directory / "bank1")
            token = auth.mint_token(load_private_key(directory / "bank1" / "key.pem"),
                                    config.genesis.chain_id, "bank1", time.time_ns(),
                                    3600 * 10**9)  # fmt: skip
            market, console = f"http://{exchange.address}/console", f"http://{bank.address}/console"
            pages = [
                ("market", f"{market}/market?symbol={SYMBOL}", _state("#checksum", "ok")),
                ("health", f"{market}/health", _rows("#members tbody tr", 4)),
                ("block list", f"{console}/blocks?rows=100",
                 _rows("#blocks tbody tr", min(100, tip))),
                ("2,000-command block", f"{console}/block?height={tip}",
                 _rows("#commands tbody tr", 100)),
                ("receipt", f"{console}/command?height={tip}&index={BLOCK_COMMANDS - 1}",
                 _state("#verified", "ok")),
            ]  # fmt: skip
            times = await measure_loads(pages, loads, (COOKIE, token, f"{console}/"), executable)
        finally:
            await _stop(exchange, members)
    return {
        "commands": tip * BLOCK_COMMANDS,
        "blocks": tip,
        "loads": loads,
        "build_s": round(built_s, 1),
        "start_s": round(started_s, 1),
        "pages": {
            name: {
                "p50_ms": round(1000 * statistics.median(values), 1),
                "p95_ms": round(1000 * _p95(values), 1),
                "max_ms": round(1000 * max(values), 1),
                "under_goal": _p95(values) < LOAD_GOAL_S,
            }
            for name, values in times.items()
        },
    }


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]


def render(report: dict[str, Any]) -> str:
    lines = [f"console on a store of {report['commands']:,} commands ({report['blocks']} blocks;"
             f" built in {report['build_s']} s, nodes started in {report['start_s']} s), "
             f"{report['loads']} loads a page in headless Chromium, request to end of load:",
             "  page                     p50 ms   p95 ms   max ms  p95 < 1 s"]  # fmt: skip
    for name, page in report["pages"].items():
        lines.append(f"  {name:<22} {page['p50_ms']:>8} {page['p95_ms']:>8} {page['max_ms']:>8}"
                     f"  {'yes' if page['under_goal'] else 'NO'}")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exchange.bench.console_bench")
    parser.add_argument("--commands", type=int, default=1_000_000)
    parser.add_argument("--loads", type=int, default=20)
    parser.add_argument("--base-port", type=int, default=7650, help="first of 5 ports")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args(argv)
    report = asyncio.run(run(arguments.commands, arguments.loads, arguments.base_port,
                             arguments.chromium))  # fmt: skip
    print(orjson.dumps(report).decode() if arguments.json else render(report), flush=True)
    return 0 if all(page["under_goal"] for page in report["pages"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
