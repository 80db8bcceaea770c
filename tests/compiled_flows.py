"""Seeded matching and venue flows written out as bytes, for comparing the builds.

`python -m tests.compiled_flows` runs, in whichever build `JINLIAN_BUILD` selects: the dense
and the sparse matching flows of `jinlian bench matching` through the matching engine, and the
venue benchmark's flow through the venue's ledger adapter (`VenueMachine`: wire parsing, the
venue, the incremental commitment, event encoding). It writes every event, each snapshot's hash
and each state hash to stdout, and the build it ran (one JSON line) to stderr.
tests/test_compiled_build.py compares the stdout of the pure and the compiled build byte for
byte.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable

import orjson

from exchange import compiled
from exchange.bench.flow import named_flow
from exchange.bench.venue_bench import venue_setup, wrap
from exchange.venue import wire
from exchange.venue.machine import VenueMachine
from exchange.venue.venue import Venue
from ledger.canonical import canonical_bytes
from matching.commands import PlaceOrder
from matching.engine import MatchingEngine

SEED = 20261204
MATCHING_FLOWS = (
    ("dense", 20_000, 5_000),
    ("sparse-shallow", 20_000, 500),
    ("sparse-deep", 5_000, 8_000),
)
VENUE_MESSAGES = 20_000
VENUE_DEPTH = 2_000


def _snapshot_hash(snapshot: object) -> str:
    return hashlib.sha256(orjson.dumps(snapshot, option=orjson.OPT_NON_STR_KEYS)).hexdigest()


def matching_flows(write: Callable[[bytes], object]) -> None:
    for name, messages, depth in MATCHING_FLOWS:
        flow = named_flow(name, SEED, messages, depth)
        engine = MatchingEngine()
        for command in (*flow.setup, *flow.commands):
            for event in engine.apply(command):
                write(orjson.dumps(wire.event_to_dict(event)) + b"\n")
        engine.check()
        write(f"matching {name}: state {engine.state_hash()}\n".encode())
        write(f"matching {name}: snapshot {_snapshot_hash(engine.snapshot())}\n".encode())


def venue_flow(write: Callable[[bytes], object]) -> None:
    flow = named_flow("dense", SEED, VENUE_MESSAGES, VENUE_DEPTH)
    accounts = {c.order_id: c.account for c in flow.setup[2:] if isinstance(c, PlaceOrder)}
    commands = [*venue_setup(flow), *wrap(flow.commands, accounts)]
    venue = Venue(operator="EXCHANGE", regulator="CSRC")
    machine = VenueMachine(venue)
    for number, command in enumerate(commands, start=1):
        data_in = canonical_bytes(wire.venue_command_to_dict(command))
        for data in machine.apply(data_in, number):  # the venue reads no time: any will do
            write(data + b"\n")
        if number % 500 == 0:  # a block's worth: the commitment headers sign
            write(f"venue after {number}: commitment {machine.state_hash().hex()}\n".encode())
    venue.check()
    write(f"venue: state {venue.state_hash()} commitment {machine.state_hash().hex()}\n".encode())
    write(f"venue: snapshot {_snapshot_hash(venue.snapshot())}\n".encode())


def main() -> int:
    selection = compiled.current()
    engine_file = sys.modules[MatchingEngine.__module__].__file__
    report = {"build": selection.build, "source_hash": selection.source_hash, "file": engine_file}
    out = sys.stdout.buffer
    matching_flows(out.write)
    venue_flow(out.write)
    out.flush()
    print(orjson.dumps(report).decode(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
