"""The block cutting curve: block size and finality against offered rate.

`python -m exchange.bench.cut_curve [--rates 100 300 ...] [--seconds 3]` runs the consortium
of `jinlian bench ledger` (the exchange and 4 members as processes, the seeded flow's book
first), then one open-loop run per offered rate (`ledger_bench.open_loop`: no coordinated
omission), and prints per rate the blocks cut, commands per block, finality p50 and p99 and
the exchange's reports-task figures (`reports_waits`: times the cutter waited for it). The
numbers behind the table in docs/ledger.md, "Block cutting". A benchmark: never in the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from exchange.bench.flow import ACCOUNTS, make_flow
from exchange.bench.ledger_bench import (
    ACCOUNTS_PER_BROKER,
    MARKET,
    WINDOW,
    Commands,
    CpuClock,
    batches,
    indexer_lag_s,
    open_loop,
    session_commands,
)
from exchange.consortium.init import init_consortium
from exchange.consortium.nodes import load_config, start_processes, stop_processes
from ledger.auth import request_signer
from ledger.feed import Feed, status, wait_until_up
from ledger.keys import load_private_key

RATES = (100, 300, 1_000, 2_000, 3_000)


async def _curve(
    addresses: list[str], children: Any, setup: Commands, flowing: Commands, args: Any, signer: Any
) -> list[dict[str, Any]]:
    exchange = addresses[0]
    await wait_until_up(addresses)
    while len((await status(exchange, 0, signer))["members_connected"]) < len(addresses) - 1:
        await asyncio.sleep(0.05)
    cpu = CpuClock(children)
    rows: list[dict[str, Any]] = []
    position = 0
    async with Feed(exchange) as feed:
        tip = max(await feed.pipeline(batches(setup), WINDOW))
        while (await status(exchange))["certified"] < tip:
            await asyncio.sleep(0.05)
        for rate in args.rates:
            count = round(rate * args.seconds)
            commands, position = flowing[position : position + count], position + count
            before = await status(exchange, 0, signer)
            run = await open_loop(
                feed, commands, rate, cpu, lambda: indexer_lag_s(addresses, signer)
            )
            after = await status(exchange, 0, signer)
            blocks = max(1, after["height"] - before["height"])
            rows.append({**run, "blocks": blocks,
                         "commands_per_block": round(len(commands) / blocks, 1),
                         "reports_waits": after.get("reports_waits", 0)
                         - before.get("reports_waits", 0)})  # fmt: skip
            print(_row(rows[-1]), flush=True)
    return rows


def _row(row: dict[str, Any]) -> str:
    return (f"  offered {row['offered_commands_per_s']:>6,}/s  blocks {row['blocks']:>5}  "
            f"commands/block {row['commands_per_block']:>7}  finality p50 "
            f"{row['finality_p50_ms']:>7} ms  p99 {row['finality_p99_ms']:>7} ms  "
            f"cutter waits {row['reports_waits']}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rates", type=int, nargs="+", default=list(RATES))
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--depth", type=int, default=5_000)
    parser.add_argument("--base-port", type=int, default=7650)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    total = round(sum(args.rates) * args.seconds)
    flow = make_flow(args.seed, total, args.depth)
    setup, flowing = session_commands(flow)
    with tempfile.TemporaryDirectory(prefix="jinlian-cut-curve-") as scratch:
        directory = Path(scratch) / "consortium"
        init_consortium(directory, members=4, brokers=len(ACCOUNTS) // ACCOUNTS_PER_BROKER,
                        base_port=args.base_port, market=MARKET)  # fmt: skip
        config = load_config(directory / "exchange")
        addresses = [config.address] + [m.address for m in config.genesis.members if m.voting]
        children = start_processes(directory, feed=True)
        try:
            signer = request_signer(load_private_key(directory / "exchange" / "key.pem"),
                                    config.genesis.chain_id, "exchange", time.time_ns)  # fmt: skip
            rows = asyncio.run(_curve(addresses, children, setup, flowing, args, signer))
        finally:
            stop_processes(children)
    print(orjson.dumps(rows).decode())


if __name__ == "__main__":
    main()
