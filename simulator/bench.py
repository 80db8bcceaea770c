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
from pathlib import Path
from typing import Any

from exchange.consortium import venue_from_genesis
from exchange.ledger_index import VenueIndexer
from exchange.venue_machine import VenueMachine
from ledger.block import certify, sign_vote
from ledger.genesis import load_genesis
from ledger.machine import propose
from ledger.store import BlockStore
from simulator.inprocess import NODE, day_start_ns, derived_key
from simulator.run import run_inprocess
from simulator.scenario import load_scenario


def replay_machine(directory: Path, blocks: list[list[dict[str, Any]]]) -> tuple[float, str]:
    """Seconds to apply every command to a fresh VenueMachine, hashing after each block."""
    machine = VenueMachine(venue_from_genesis(load_genesis(directory / "genesis.json")))
    apply = machine.apply
    state = b""
    started = time.perf_counter()
    for commands in blocks:
        for command in commands:
            apply(command)
        state = machine.state_hash()
    return time.perf_counter() - started, state.hex()


def replay_ledger(
    directory: Path, blocks: list[list[dict[str, Any]]], seed: int, day: int
) -> tuple[float, str]:
    """Seconds to propose, sign, certify and store every block on a fresh machine and store."""
    genesis = load_genesis(directory / "genesis.json")
    machine = VenueMachine(venue_from_genesis(genesis))
    exchange_key = derived_key(seed, genesis.exchange.name)
    voters = {m.id: derived_key(seed, m.name) for m in genesis.members if m.voting}
    with tempfile.TemporaryDirectory() as scratch:
        store = BlockStore.open(
            Path(scratch) / "replay.sqlite", genesis.hash, indexer=VenueIndexer(), durable=False
        )
        parent, state = genesis.hash, b""
        started = time.perf_counter()
        for height, commands in enumerate(blocks, start=1):
            block, execution = propose(
                machine, exchange_key, proposer=genesis.exchange.id, height=height,
                parent_hash=parent, time_ns=day_start_ns(day) + height, commands=commands,
            )  # fmt: skip
            store.append(block, execution.events)
            votes = [sign_vote(key, member, block.header) for member, key in voters.items()]
            store.add_certificate(certify(block.header, votes))
            parent, state = block.header.hash, execution.state_hash
        seconds = time.perf_counter() - started
        store.close()
    return seconds, state.hex()


def main(arguments: argparse.Namespace) -> int:
    scenario = load_scenario(arguments.scenario)
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch) / "run"
        result = run_inprocess(scenario, arguments.seed, directory, keep_commands=True)
        blocks = result.kept_commands
        assert blocks is not None
        ledger_s, ledger_hash = replay_ledger(directory, blocks, arguments.seed, scenario.day)
        machine_s, machine_hash = replay_machine(directory, blocks)
    messages = result.messages
    figures = {
        "benchmark": "simulate",
        "scenario": scenario.name,
        "seed": arguments.seed,
        "agents": sum(group.count for group in scenario.agents),
        "messages": messages,
        "trades": result.trades,
        "blocks": result.blocks,
        "node": NODE,
        "run_s": round(result.wall_s, 3),
        "run_messages_per_s": round(messages / result.wall_s),
        "ledger_replay_messages_per_s": round(messages / ledger_s),
        "machine_replay_messages_per_s": round(messages / machine_s),
        "agents_and_driver_share": round(max(0.0, result.wall_s - ledger_s) / result.wall_s, 3),
        "blocks_and_store_share": round(max(0.0, ledger_s - machine_s) / result.wall_s, 3),
        "machine_share": round(machine_s / result.wall_s, 3),
        "goal_messages_per_s": 100_000,
        "state_hashes_agree": ledger_hash == machine_hash == result.state_hash,
    }
    if arguments.json:
        print(json.dumps(figures))
    else:
        print(f"jinlian bench simulate: {scenario.name} in-process, seed {arguments.seed}: "
              f"{figures['agents']} agents, {messages:,} messages, {result.trades:,} trades, "
              f"{result.blocks} blocks")  # fmt: skip
        print(
            f"  simulation (agents + venue + blocks + store): "
            f"{figures['run_messages_per_s']:>9,} messages/s  ({result.wall_s:.2f} s)"
        )
        print(
            f"  baseline, same commands, no agents (venue + blocks + store): "
            f"{figures['ledger_replay_messages_per_s']:>9,} messages/s  ({ledger_s:.2f} s)"
        )
        print(
            f"  baseline, same commands, VenueMachine alone: "
            f"{figures['machine_replay_messages_per_s']:>9,} messages/s  ({machine_s:.2f} s)"
        )
        print(
            f"  time share: agents and driver {figures['agents_and_driver_share']:.0%}, "
            f"blocks and store {figures['blocks_and_store_share']:.0%}, "
            f"state machine {figures['machine_share']:.0%}; goal 100,000 messages/s"
        )
        print(f"  final state hashes agree: {figures['state_hashes_agree']}")
    return 0 if figures["state_hashes_agree"] else 1
