"""The exchange's path from "block stored" to "next block proposed", in one process.

`python -m exchange.bench.cut_path [--blocks 40] [--block 200]` builds the exchange with its
gateway (`build_venue`: real store, real acknowledgement journal file) on a consortium written
to a temporary directory, books the seeded flow's resting orders, then for each block of the
flow's commands times, on the wall clock:

- `cut`: `ExchangeNode.cut` (execute, sign, store, hand to the links): the cutter's path now;
- `reports`: the gateway's stored listener folding the block (reports, market data), which
  ran inside `cut` before #16;
- `journal`: one acknowledgement-journal write (fsync) of the block's place commands, which
  ran inside `cut` before #16 for every block holding broker orders, now in a worker thread.

It prints the medians and p99 per block and per command. A benchmark: never in the tests.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from exchange.bench.flow import ACCOUNTS, make_flow
from exchange.bench.ledger_bench import ACCOUNTS_PER_BROKER, MARKET, session_commands
from exchange.consortium.init import init_consortium
from exchange.consortium.nodes import build_venue, load_config


def _quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1e3, 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e3, 3),
    }


def measure(blocks: int, block: int, depth: int, seed: int) -> dict[str, Any]:
    flow = make_flow(seed, blocks * block, depth)
    setup, flowing = session_commands(flow)
    with tempfile.TemporaryDirectory(prefix="jinlian-cut-path-") as scratch:
        directory = Path(scratch) / "consortium"
        init_consortium(directory, members=4, brokers=len(ACCOUNTS) // ACCOUNTS_PER_BROKER,
                        base_port=7690, market=MARKET)  # fmt: skip
        node, gateway = build_venue(load_config(directory / "exchange"))
        node.proposer.recovering = False  # a fresh store: nothing to recover, no network
        node.ready.set()
        node.proposer.lag_max = 10**9  # no member votes here
        node.proposer.block_commands = max(block, 2_000)
        for start in range(0, len(setup), 2_000):
            assert node.submit(setup[start : start + 2_000]) is None
            node.cut()
            _fold(node, gateway)
        cut_s: list[float] = []
        reports_s: list[float] = []
        journal_s: list[float] = []
        for index in range(blocks):
            commands = flowing[index * block : (index + 1) * block]
            assert node.submit(commands) is None
            began = time.perf_counter()
            node.cut()
            cut_s.append(time.perf_counter() - began)
            placed = [c for c in commands if c["type"] == "place"]
            height = node.proposer.height
            began = time.perf_counter()
            gateway.journal.record(height, placed)
            journal_s.append(time.perf_counter() - began)
            began = time.perf_counter()
            _fold(node, gateway)
            reports_s.append(time.perf_counter() - began)
        node.proposer.store.close()
        gateway.journal.close()
    return {
        "blocks": blocks,
        "commands_per_block": block,
        "cut": _quantiles(cut_s),
        "reports": _quantiles(reports_s),
        "journal": _quantiles(journal_s),
        "cut_us_per_command": round(statistics.median(cut_s) * 1e6 / block, 1),
        "reports_us_per_command": round(statistics.median(reports_s) * 1e6 / block, 1),
    }


def _fold(node: Any, gateway: Any) -> None:
    """What the reports task does with each queued stored block (no sessions here)."""
    while node.after:
        item = node.after.popleft()
        if item.kind == "stored":
            node.after_blocks -= 1
            gateway.pump.fold(item.height, _take(gateway, len(item.block.commands)))


def _take(gateway: Any, count: int) -> list[Any]:
    executed: list[Any] = gateway.pump.executed[:count]
    del gateway.pump.executed[:count]
    return executed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blocks", type=int, default=40)
    parser.add_argument("--block", type=int, default=200, help="commands per block")
    parser.add_argument("--depth", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(orjson.dumps(measure(args.blocks, args.block, args.depth, args.seed)).decode())


if __name__ == "__main__":
    main()
