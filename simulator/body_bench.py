"""Whether to compress a block's blob: bytes per command and the store's sustained rate, plain
against zlib, in one in-process run (`python -m simulator.body_bench`).

The blocks are those of an in-process simulation of a scenario (`smoke` by default: agents
placing, cancelling and trading at varied prices, as `jinlian simulate` stores them), read once
from its store. Each round stores all of them into a fresh store (`append`, `synchronous`
NORMAL as the nodes run) and reads them back as catch-up and the indexer do (`blocks_from`),
once plain and once with zlib, alternating, so both see the same machine load. The rule
(docs/ledger.md, "Block store"): compress only if it cuts the bytes per command by at least 30%
without lowering the sustained rate. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ledger.block import Block
from ledger.store import BLOCKS_PAGE_MAX, BODY_PLAIN, BODY_ZLIB, BlockStore, encode_body
from simulator.inprocess import NODE
from simulator.run import run_inprocess
from simulator.scenario import load_scenario

ENCODINGS = {"plain": BODY_PLAIN, "zlib": BODY_ZLIB}


def store_round(
    directory: Path,
    genesis_hash: bytes,
    blocks: list[tuple[Block, list[Sequence[bytes]]]],
    compression: int,
) -> tuple[float, float]:
    """(seconds to append every block, seconds to read them all back), wall clock."""
    path = directory / f"round-{time.monotonic_ns()}.sqlite"
    store = BlockStore.open(path, genesis_hash, synchronous="NORMAL", compression=compression)
    try:
        start = time.perf_counter()
        for block, events in blocks:
            store.append(block, events)
        stored = time.perf_counter()
        height = 1
        while page := store.blocks_from(height, BLOCKS_PAGE_MAX):
            height += len(page)
        return stored - start, time.perf_counter() - stored
    finally:
        store.close()


def simulated_blocks(
    directory: Path, arguments: argparse.Namespace
) -> tuple[list[tuple[Block, list[Sequence[bytes]]]], bytes]:
    """The blocks (with each command's events) of a simulated run, and its genesis hash."""
    result = run_inprocess(load_scenario(arguments.scenario), arguments.seed, directory)
    blocks: list[tuple[Block, list[Sequence[bytes]]]] = []
    with BlockStore.open(directory / NODE / "ledger.sqlite") as store:
        height = 1
        while page := store.blocks_from(height, BLOCKS_PAGE_MAX):
            blocks += [(stored.block, list(stored.events or ())) for stored in page]
            height += len(page)
        assert len(blocks) == result.blocks, (len(blocks), result.blocks)
        return blocks, store.genesis_hash


def main(arguments: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        blocks, genesis_hash = simulated_blocks(directory / "run", arguments)
        commands = sum(block.header.command_count for block, _ in blocks)
        sizes = {
            name: sum(
                len(encode_body(block.commands, block.times_ns, events, encoding))
                for block, events in blocks
            )
            for name, encoding in ENCODINGS.items()
        }
        timings: dict[str, list[tuple[float, float]]] = {name: [] for name in ENCODINGS}
        for _ in range(arguments.rounds):
            for name, encoding in ENCODINGS.items():
                timings[name].append(store_round(directory, genesis_hash, blocks, encoding))
    result: dict[str, Any] = {
        "benchmark": "block body compression",
        "scenario": arguments.scenario,
        "seed": arguments.seed,
        "blocks": len(blocks),
        "commands": commands,
        "rounds": arguments.rounds,
    }
    for name in ENCODINGS:
        append_s = statistics.median(t[0] for t in timings[name])
        read_s = statistics.median(t[1] for t in timings[name])
        result[name] = {
            "body_bytes_per_command": round(sizes[name] / commands, 1),
            "append_commands_per_s": round(commands / append_s),
            "read_commands_per_s": round(commands / read_s),
        }
    result["zlib_bytes_cut"] = round(1 - sizes["zlib"] / sizes["plain"], 3)
    result["zlib_append_rate_ratio"] = round(
        result["zlib"]["append_commands_per_s"] / result["plain"]["append_commands_per_s"], 3
    )
    result["compress"] = result["zlib_bytes_cut"] >= 0.3 and result["zlib_append_rate_ratio"] >= 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", default="smoke")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=5)
    raise SystemExit(main(parser.parse_args()))
