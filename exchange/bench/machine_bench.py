"""`jinlian bench machine`: what a member node pays per command, against `Venue.apply` alone.

The bench venue flow (`exchange.bench.venue_bench`) is sent as canonical JSON command objects
through `VenueMachine.apply` (strict parsing, the venue, event bytes) in blocks of `--block`
commands, with `VenueMachine.state_hash` (the incremental commitment) at the end of each
block, as the ledger does. Rounds alternate the machine and the bare `Venue.apply` of the same
command objects; the medians are reported. Then the full `Venue.state_hash` (the whole
snapshot serialised) of the final state, and the commitment recomputed from scratch, which
must equal the incremental one.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from typing import Any

from exchange.bench.flow import make_flow
from exchange.bench.report import emit
from exchange.bench.venue_bench import OPERATOR, time_venue, venue_setup, wrap
from exchange.venue.commitment import commitment_of_snapshot
from exchange.venue.machine import VenueMachine
from exchange.venue.venue import Venue
from exchange.venue.wire import venue_command_to_dict
from ledger.machine import encode_commands
from matching.commands import PlaceOrder


def time_machine(
    setup: list[dict[str, Any]], commands: list[dict[str, Any]], block: int
) -> tuple[float, float, int, VenueMachine]:
    """(seconds in apply, seconds in state_hash, blocks, the machine)."""
    machine = VenueMachine(Venue(operator=OPERATOR, regulator="CSRC"))
    for command in encode_commands(setup):
        machine.apply(command, 0)
    machine.state_hash()
    encoded = encode_commands(commands)  # as a block carries them: parsed by `apply`
    apply, state_hash, clock = machine.apply, machine.state_hash, time.perf_counter
    applying = hashing = 0.0
    blocks = 0
    gc.collect()
    for start in range(0, len(commands), block):
        began = clock()
        for command in encoded[start : start + block]:
            apply(command, 0)
        applied = clock()
        state_hash()
        hashing += clock() - applied
        applying += applied - began
        blocks += 1
    return applying, hashing, blocks, machine


def measure(arguments: argparse.Namespace) -> dict[str, Any]:
    flow = make_flow(arguments.seed, arguments.messages, arguments.depth)
    setup = venue_setup(flow)
    order_accounts = {c.order_id: c.account for c in flow.setup[2:] if isinstance(c, PlaceOrder)}
    commands = wrap(flow.commands, order_accounts)
    setup_dicts = [venue_command_to_dict(command) for command in setup]
    dicts = [venue_command_to_dict(command) for command in commands]
    count = len(commands)
    venue_us, machine_us, hash_ms, ratios = [], [], [], []
    for _ in range(arguments.rounds):
        venue_seconds, venue = time_venue(setup, commands)
        del venue
        applying, hashing, blocks, machine = time_machine(setup_dicts, dicts, arguments.block)
        venue_us.append(venue_seconds / count * 1e6)
        machine_us.append(applying / count * 1e6)
        hash_ms.append(hashing / blocks * 1e3)
        ratios.append(applying / venue_seconds)
    final = machine.venue
    began = time.perf_counter()
    final.state_hash()
    full_ms = (time.perf_counter() - began) * 1e3
    began = time.perf_counter()
    recomputed = commitment_of_snapshot(final.snapshot())
    scratch_ms = (time.perf_counter() - began) * 1e3
    final.check()
    return {
        "seed": arguments.seed,
        "commands": count,
        "rounds": arguments.rounds,
        "block": arguments.block,
        "resting_orders": len(final.matching),
        "venue_apply_us": round(statistics.median(venue_us), 2),
        "machine_apply_us": round(statistics.median(machine_us), 2),
        "ratio": round(statistics.median(ratios), 3),
        "machine_commands_per_s": round(1e6 / statistics.median(machine_us)),
        "venue_commands_per_s": round(1e6 / statistics.median(venue_us)),
        "state_hash_ms_per_block": round(statistics.median(hash_ms), 3),
        "full_state_hash_ms": round(full_ms, 1),
        "commitment_from_scratch_ms": round(scratch_ms, 1),
        "books_agree": recomputed == machine.state_hash(),
    }


def render(report: dict[str, Any]) -> str:
    block = report["block"]
    return "\n".join(
        [
            f"machine benchmark: seed {report['seed']}, {report['commands']:,} commands in "
            f"blocks of {block:,}, median of {report['rounds']} rounds, "
            f"{report['resting_orders']:,} orders resting at the end",
            f"  Venue.apply alone            {report['venue_commands_per_s']:>10,} commands/s"
            f"  {report['venue_apply_us']:>7.2f} us/command",
            f"  VenueMachine.apply (JSON in) {report['machine_commands_per_s']:>10,} commands/s"
            f"  {report['machine_apply_us']:>7.2f} us/command",
            f"  ratio machine/venue (median of rounds): {report['ratio']:.3f}",
            f"  VenueMachine.state_hash per block of {block:,}: "
            f"{report['state_hash_ms_per_block']:.3f} ms (incremental)",
            f"  Venue.state_hash (whole snapshot): {report['full_state_hash_ms']:.1f} ms; "
            f"commitment recomputed from the snapshot: "
            f"{report['commitment_from_scratch_ms']:.1f} ms",
            f"  incremental commitment equals the recomputed one: {report['books_agree']}",
        ]
    )


def main(arguments: argparse.Namespace) -> int:
    return emit(measure(arguments), render, arguments.json)
