"""`jinlian bench simulate`: the realistic scenario in-process, against baselines in the same run.

The figure is simulated messages (commands sequenced into the ledger) per wall-clock second
for the whole run: agents deciding, and the certified ledger being built by the ledger's own
cores (`simulator.inprocess.CertifiedLedger`: the exchange's `Proposer` sequencing and
executing, one `Replica` re-executing, storing, voting and indexing, the other members' votes
signed without re-execution). Then the same commands, block by block, are replayed twice
without agents:

- `ledger`: a fresh `CertifiedLedger` in a fresh consortium directory, the same blocks at the
  same times (what the run does, minus the agents and the driver); its chain must be the run's,
  header hash for header hash (checked at the tip);
- `machine`: the `VenueMachine` alone, with the state hash after each block (no blocks kept):
  the baseline of the goal, the run at least half as fast (`GOAL_RATIO`).

The differences attribute the run's time: agents and driver = run - ledger; the ledger's work =
ledger - machine. Both replays must reach the run's final state hash (checked).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from exchange.consortium.init import venue_from_genesis
from exchange.venue.machine import VenueMachine
from ledger.genesis import load_genesis
from simulator.inprocess import LEDGER, CertifiedLedger, KeptBlock, write_consortium
from simulator.run import children_cpu_s, run_inprocess
from simulator.scenario import Scenario, load_scenario

GOAL_RATIO: Final = 0.5  # the run's wall-clock rate over VenueMachine alone's (issue #16)
ABIDES_MESSAGES_PER_S: Final = (37_000, 56_000)  # its standard day, on this machine


@dataclass(frozen=True, slots=True)
class Timing:
    wall_s: float
    cpu_s: float  # CPU time, steadier than wall time on a shared machine: all processes
    member_cpu_s: float  # of which bank1's process (0 for the machine alone)
    state_hash: str


class _Stopwatch:
    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        self.member_cpu = children_cpu_s()

    def stop(self, state_hash: bytes) -> Timing:
        member_cpu_s = children_cpu_s() - self.member_cpu
        return Timing(
            time.perf_counter() - self.wall,
            time.process_time() - self.cpu + member_cpu_s,
            member_cpu_s,
            state_hash.hex(),
        )


def replay_machine(directory: Path, blocks: list[KeptBlock]) -> Timing:
    """Apply every command to a fresh VenueMachine, with the state hash after each block."""
    machine = VenueMachine(venue_from_genesis(load_genesis(directory / "genesis.json")))
    apply = machine.apply
    state = b""
    watch = _Stopwatch()
    for _, commands, times_ns in blocks:
        for command, time_ns in zip(commands, times_ns, strict=True):
            apply(command, time_ns)
        state = machine.state_hash()
    return watch.stop(state)


def replay_ledger(
    scenario: Scenario, seed: int, blocks: list[KeptBlock], directory: Path
) -> tuple[Timing, bytes]:
    """The same blocks, at the same times, through a fresh `CertifiedLedger` in `directory`
    (the run's, minus the agents and the driver); also the tip's header hash, which must be
    the run's (same commands, times and keys: the same chain)."""
    genesis = write_consortium(scenario, seed, directory)
    ledger = CertifiedLedger(genesis, seed, directory, block_commands=scenario.block_commands)
    apply, cut = ledger.apply, ledger.cut
    tip, state = b"", b""
    watch = _Stopwatch()
    for block_ns, commands, times_ns in blocks:
        for command, time_ns in zip(commands, times_ns, strict=True):
            apply(command, time_ns)
        block = cut(block_ns)
        assert block is not None, f"the replay's block at {time_ns} ns is empty"
        tip, state = block.header.hash, block.header.state_hash
    ledger.finish()
    timing = watch.stop(state)
    ledger.close()
    return timing, tip


def main(arguments: argparse.Namespace) -> int:
    scenario = load_scenario(arguments.scenario)
    with tempfile.TemporaryDirectory() as scratch:
        result = run_inprocess(scenario, arguments.seed, Path(scratch) / "run", keep_commands=True)
        blocks = result.kept_commands
        assert blocks is not None
        ledger, tip_hash = replay_ledger(scenario, arguments.seed, blocks, Path(scratch) / "replay")
        machine = replay_machine(result.directory, blocks)
    messages = result.messages
    run = Timing(
        result.wall_s, result.cpu_s + result.member_cpu_s, result.member_cpu_s, result.state_hash
    )
    figures: dict[str, Any] = {
        "benchmark": "simulate",
        "scenario": scenario.name,
        "scenario_sha256": scenario.sha256,
        "seed": arguments.seed,
        "ledger": LEDGER,
        "agents": sum(group.count for group in scenario.agents),
        "messages": messages,
        "trades": result.trades,
        "blocks": result.blocks,
        "state_hashes_agree": ledger.state_hash == machine.state_hash == result.state_hash,
        "replayed_chain_agrees": tip_hash.hex() == result.tip_hash,
    }
    for name, timing in (("run", run), ("ledger_replay", ledger), ("machine_replay", machine)):
        figures[f"{name}_wall_s"] = round(timing.wall_s, 3)
        figures[f"{name}_cpu_s"] = round(timing.cpu_s, 3)
        figures[f"{name}_member_cpu_s"] = round(timing.member_cpu_s, 3)
        figures[f"{name}_messages_per_s"] = round(messages / timing.wall_s)
        figures[f"{name}_messages_per_cpu_s"] = round(messages / timing.cpu_s)
    figures["run_to_machine_wall"] = round(machine.wall_s / run.wall_s, 3)
    figures["run_to_machine_cpu"] = round(machine.cpu_s / run.cpu_s, 3)
    figures["goal_run_to_machine"] = GOAL_RATIO
    figures["abides_messages_per_s"] = list(ABIDES_MESSAGES_PER_S)
    figures["agents_and_driver_cpu_share"] = round(1 - ledger.cpu_s / run.cpu_s, 3)
    figures["ledger_cpu_share"] = round((ledger.cpu_s - machine.cpu_s) / run.cpu_s, 3)
    figures["machine_cpu_share"] = round(machine.cpu_s / run.cpu_s, 3)
    if arguments.json:
        print(json.dumps(figures))
    else:
        _print(figures)
    return 0 if figures["state_hashes_agree"] and figures["replayed_chain_agrees"] else 1


def _print(figures: dict[str, Any]) -> None:
    print(f"jinlian bench simulate: {figures['scenario']} in-process (scenario file sha256 "
          f"{figures['scenario_sha256']}), seed {figures['seed']}: {figures['agents']} agents, "
          f"{figures['messages']:,} messages, {figures['trades']:,} trades, "
          f"{figures['blocks']} blocks")  # fmt: skip
    print(f"  ledger: {figures['ledger']}")
    print(f"  {'':58} {'messages/s':>12} {'per CPU s':>12}")
    rows = (
        ("run", "simulation (agents + venue + certified ledger)"),
        ("ledger_replay", "baseline: same commands, venue + certified ledger"),
        ("machine_replay", "baseline: same commands, VenueMachine alone"),
    )
    for key, title in rows:
        print(f"  {title:58} {figures[f'{key}_messages_per_s']:>12,} "
              f"{figures[f'{key}_messages_per_cpu_s']:>12,}")  # fmt: skip
    low, high = figures["abides_messages_per_s"]
    print(
        f"  simulation / VenueMachine alone: {figures['run_to_machine_wall']:.2f}x wall, "
        f"{figures['run_to_machine_cpu']:.2f}x CPU (goal {figures['goal_run_to_machine']}x); "
        f"{figures['run_messages_per_s']:,} messages/s beside ABIDES's {low:,}-{high:,} on "
        "this machine (which builds no ledger)"
    )
    print(
        f"  CPU share: agents and driver {figures['agents_and_driver_cpu_share']:.0%}, "
        f"ledger (sequencing, blocks, re-execution, store, index) "
        f"{figures['ledger_cpu_share']:.0%}, state machine {figures['machine_cpu_share']:.0%}"
    )
    print(f"  CPU seconds: simulation {figures['run_cpu_s']:.1f} "
          f"(bank1's process {figures['run_member_cpu_s']:.1f}), replay "
          f"{figures['ledger_replay_cpu_s']:.1f} ({figures['ledger_replay_member_cpu_s']:.1f}), "
          f"VenueMachine alone {figures['machine_replay_cpu_s']:.1f}")  # fmt: skip
    print(f"  final state hashes agree: {figures['state_hashes_agree']}; "
          f"the replay's chain is the run's: {figures['replayed_chain_agrees']}")  # fmt: skip
