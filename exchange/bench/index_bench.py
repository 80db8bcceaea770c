"""The vote path's store cost with and without the analysts' indexer on it (#16).

`python -m exchange.bench.index_bench [--blocks N] [--commands N] [--rounds N]` builds N blocks
of real venue commands once (half buys, half sells at one price: every pair trades), then
stores them into fresh stores in alternating rounds:

- `vote path now`: `BlockStore.append` alone, what a member does before it votes;
- `indexer on the vote path`: `append` then `index_blocks(1)` for every block, so the block's
  derived rows are written before the next step, as the store did before #16 (it wrote them in
  the block's own transaction: that saved one COMMIT, so this is a slight over-estimate).

It prints the CPU microseconds per command of each round (process time, `synchronous` NORMAL as
the nodes use) and the median of each mode. A benchmark, run on purpose, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from exchange.consortium.indexer import VenueIndexer
from exchange.consortium.init import init_consortium, venue_from_genesis
from exchange.venue.machine import VenueMachine
from ledger.block import Block
from ledger.keys import load_private_key
from ledger.machine import encode_commands, propose
from ledger.store import BlockStore

TIME_NS_START = 1_700_000_000_000_000_000


def build_blocks(
    directory: Path, blocks: int, commands: int
) -> list[tuple[Block, list[Sequence[bytes]]]]:
    genesis = init_consortium(directory, members=4, brokers=2)
    key = load_private_key(directory / "exchange" / "key.pem")
    machine = VenueMachine(venue_from_genesis(genesis))
    opening: list[dict[str, object]] = [
        {"type": "begin_day", "day": 20261123},
        {"type": "set_phase", "symbol": "600000.SH", "phase": "continuous"},
    ]
    built: list[tuple[Block, list[Sequence[bytes]]]] = []
    parent = genesis.hash
    order_id = 0
    for height in range(1, blocks + 1):
        batch: list[dict[str, object]] = list(opening) if height == 1 else []
        while len(batch) < commands:
            order_id += 1
            buy = order_id % 2 == 0
            batch.append({
                "type": "place", "broker": "broker1" if buy else "broker2",
                "order_id": order_id, "symbol": "600000.SH",
                "account": "10001" if buy else "20001", "side": "buy" if buy else "sell",
                "kind": "limit", "price": 1000, "quantity": 100, "tif": "day",
            })  # fmt: skip
        block, execution = propose(
            machine, key, proposer=genesis.exchange.id, height=height, parent_hash=parent,
            time_ns=TIME_NS_START + height, commands=encode_commands(batch),
        )  # fmt: skip
        built.append((block, list(execution.events)))
        parent = block.header.hash
    return built


def store_round(
    directory: Path,
    genesis_hash: bytes,
    blocks: list[tuple[Block, list[Sequence[bytes]]]],
    index: bool,
) -> float:
    """CPU seconds to store every block (and index it at once if `index`)."""
    path = directory / f"round-{time.monotonic_ns()}.sqlite"
    store = BlockStore.open(path, genesis_hash, indexer=VenueIndexer(), synchronous="NORMAL")
    try:
        start = time.process_time()
        for block, events in blocks:
            store.append(block, events)
            if index:
                store.index_blocks(1)
        return time.process_time() - start
    finally:
        store.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=100)
    parser.add_argument("--commands", type=int, default=500, help="commands per block")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each mode")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        blocks = build_blocks(directory / "net", arguments.blocks, arguments.commands)
        genesis_hash = blocks[0][0].header.parent_hash
        count = sum(block.header.command_count for block, _ in blocks)
        results: dict[bool, list[float]] = {False: [], True: []}
        for round_number in range(arguments.rounds):
            for index in (False, True):
                seconds = store_round(directory, genesis_hash, blocks, index)
                results[index].append(seconds * 1e6 / count)
                mode = "indexer on the vote path" if index else "vote path now"
                print(f"round {round_number + 1} {mode:<25} {results[index][-1]:6.1f} us/command")
    now, before = statistics.median(results[False]), statistics.median(results[True])
    print(f"{count} commands in {len(blocks)} blocks; median CPU per command: vote path now "
          f"{now:.1f} us, with the indexer on it {before:.1f} us "
          f"({before - now:.1f} us, {100 * (before - now) / before:.0f}% less)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
