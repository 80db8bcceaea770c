"""`jinlian bench simulate`: the realistic scenario in-process, against baselines in the same run.

The figure is simulated messages (commands sequenced into the ledger) per wall-clock second
for the whole run: agents deciding, the venue state machine applying every command, and the
blocks being sealed, signed, certified and stored with the venue's derived tables. Then the
same commands, block by block, are replayed twice without agents:

- `ledger`: a fresh `VenueMachine` from the same genesis, each block proposed, signed, certified
  and stored with the venue's indexer (what the run does, minus the agents and the driver);
- `machine`: the `VenueMachine` alone, with the state hash after each block (no blocks kept).

The differences attribute the run's time: agents and driver = run - ledger; block building and
storage = ledger - machine. Both replays must reach the run's final state hash (checked).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchange.consortium.indexer import VenueIndexer
from exchange.consortium.init import venue_from_genesis
from exchange.venue.machine import VenueMachine
from ledger.block import certify, sign_vote
from ledger.genesis import load_genesis
from ledger.machine import encode_commands, propose
from ledger.store import BlockStore
from simulator.inprocess import day_start_ns, derived_key
from simulator.run import run_inprocess
from simulator.scenario import load_scenario


@dataclass(frozen=True, slots=True)
class Timing:
    wall_s: float
    cpu_s: float  # this process's CPU time: steadier than wall time on a shared machine
    state_hash: str


class _Stopwatch:
    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self, state_hash: bytes) -> Timing:
        return Timing(
            time.perf_counter() - self.wall, time.process_time() - self.cpu, state_hash.hex()
        )


def replay_machine(directory: Path, blocks: list[list[dict[str, Any]]]) -> Timing:
    """Apply every command to a fresh VenueMachine, with the state hash after each block."""
    machine = VenueMachine(venue_from_genesis(load_genesis(directory / "genesis.json")))
    apply = machine.apply
    state = b""
    encoded = [encode_commands(commands) for commands in blocks]  # as a block carries them
    watch = _Stopwatch()
    for commands in encoded:
        for command in commands:
            apply(command, 0)
        state = machine.state_hash()
    return watch.stop(state)


def replay_ledger(
    directory: Path, blocks: list[list[dict[str, Any]]], seed: int, day: int
) -> Timing:
    """Propose, sign, certify and store every block on a fresh machine and store."""
    genesis = load_genesis(directory / "genesis.json")
    machine = VenueMachine(venue_from_genesis(genesis))
    exchange_key = derived_key(seed, genesis.exchange.name)
    voters = {m.id: derived_key(seed, m.name) for m in genesis.members if m.voting}
    with tempfile.TemporaryDirectory() as scratch:
        store = BlockStore.open(
            Path(scratch) / "replay.sqlite",
            genesis.hash,
            indexer=VenueIndexer(),
            synchronous="NORMAL",
        )
        parent, state = genesis.hash, b""
        watch = _Stopwatch()
        for height, commands in enumerate(blocks, start=1):
            block, execution = propose(
                machine, exchange_key, proposer=genesis.exchange.id, height=height,
                parent_hash=parent, time_ns=day_start_ns(day) + height,
                commands=encode_commands(commands),
            )  # fmt: skip
            store.append(block, execution.events)
            store.index_blocks(1)  # an indexing member's work, kept in the measured time
            votes = [sign_vote(key, member, block.header) for member, key in voters.items()]
            store.add_certificate(certify(block.header, votes))
            parent, state = block.header.hash, execution.state_hash
        timing = watch.stop(state)
        store.close()
    return timing


def main(arguments: argparse.Namespace) -> int:
    scenario = load_scenario(arguments.scenario)
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch) / "run"
        result = run_inprocess(scenario, arguments.seed, directory, keep_commands=True)
        blocks = result.kept_commands
        assert blocks is not None
        ledger = replay_ledger(directory, blocks, arguments.seed, scenario.day)
        machine = replay_machine(directory, blocks)
    messages = result.messages
    run = Timing(result.wall_s, result.cpu_s, result.state_hash)
    figures: dict[str, Any] = {
        "benchmark": "simulate",
        "scenario": scenario.name,
        "seed": arguments.seed,
        "agents": sum(group.count for group in scenario.agents),
        "messages": messages,
        "trades": result.trades,
        "blocks": result.blocks,
        "goal_messages_per_s": 100_000,
        "state_hashes_agree": ledger.state_hash == machine.state_hash == result.state_hash,
    }
    for name, timing in (("run", run), ("ledger_replay", ledger), ("machine_replay", machine)):
        figures[f"{name}_wall_s"] = round(timing.wall_s, 3)
        figures[f"{name}_cpu_s"] = round(timing.cpu_s, 3)
        figures[f"{name}_messages_per_s"] = round(messages / timing.wall_s)
        figures[f"{name}_messages_per_cpu_s"] = round(messages / timing.cpu_s)
    figures["agents_and_driver_cpu_share"] = round(1 - ledger.cpu_s / run.cpu_s, 3)
    figures["blocks_and_store_cpu_share"] = round((ledger.cpu_s - machine.cpu_s) / run.cpu_s, 3)
    figures["machine_cpu_share"] = round(machine.cpu_s / run.cpu_s, 3)
    if arguments.json:
        print(json.dumps(figures))
    else:
        _print(figures)
    return 0 if figures["state_hashes_agree"] else 1


def _print(figures: dict[str, Any]) -> None:
    print(f"jinlian bench simulate: {figures['scenario']} in-process, seed {figures['seed']}: "
          f"{figures['agents']} agents, {figures['messages']:,} messages, "
          f"{figures['trades']:,} trades, {figures['blocks']} blocks")  # fmt: skip
    print(f"  {'':52} {'messages/s':>12} {'per CPU s':>12}")
    rows = (
        ("run", "simulation (agents + venue + blocks + store)"),
        ("ledger_replay", "baseline: same commands, venue + blocks + store"),
        ("machine_replay", "baseline: same commands, VenueMachine alone"),
    )
    for key, title in rows:
        print(f"  {title:52} {figures[f'{key}_messages_per_s']:>12,} "
              f"{figures[f'{key}_messages_per_cpu_s']:>12,}")  # fmt: skip
    print(
        f"  CPU share: agents and driver {figures['agents_and_driver_cpu_share']:.0%}, "
        f"blocks and store {figures['blocks_and_store_cpu_share']:.0%}, "
        f"state machine {figures['machine_cpu_share']:.0%}; goal 100,000 messages/s"
    )
    print(f"  final state hashes agree: {figures['state_hashes_agree']}")
