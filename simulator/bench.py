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
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from exchange import compiled
from exchange.consortium.init import venue_from_genesis
from exchange.venue.machine import VenueMachine
from ledger.genesis import load_genesis
from simulator.agents import Intent, MarketView
from simulator.inprocess import LEDGER, CertifiedLedger, KeptBlock, write_consortium
from simulator.run import children_cpu_s, run_inprocess
from simulator.scenario import Scenario, load_scenario
from simulator.simulation import Simulation

GOAL_RATIO: Final = 0.5  # the run's wall-clock rate over VenueMachine alone's (issue #16)
GOAL_NO_LEDGER_MESSAGES_PER_S: Final = 60_000  # issue #18, beside ABIDES's rates
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


class ActTimer:
    """Wraps every agent's `act` to add up the wall time agents spend deciding."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def prepare(self, simulation: Simulation) -> None:
        for agent in simulation.agents:
            agent.act = self._timed(agent.act)  # type: ignore[method-assign]

    def _timed(self, act: Callable[[int, MarketView], list[Intent]]) -> Callable[..., Any]:
        clock = time.perf_counter

        def timed(now_ns: int, market: MarketView) -> list[Intent]:
            started = clock()
            intents = act(now_ns, market)
            self.seconds += clock() - started
            self.calls += 1
            return intents

        return timed


def replay_venue(genesis_directory: Path, objects: list[Any]) -> Timing:
    """`Venue.apply` alone on the no-ledger run's command objects, in order (no parsing, no
    bytes: the venue's own work, its state commitment included), and the state hash after."""
    machine = VenueMachine(venue_from_genesis(load_genesis(genesis_directory / "genesis.json")))
    apply = machine.venue.apply
    watch = _Stopwatch()
    for command in objects:
        apply(command)
    return watch.stop(machine.state_hash())


def without_ledger(
    scenario: Scenario, seed: int, directory: Path, rounds: int = 2
) -> dict[str, Any]:
    """The run without the ledger (`--no-ledger`), alternated with a run of it whose agents'
    `act` calls are timed and with `Venue.apply` alone on the timed run's command objects
    (`rounds` rounds each; medians): its messages/s, and per message the µs of the venue, of
    the agents' own decisions and of the rest (the driver and the simulation's loop)."""
    rates: list[float] = []
    agents_us: list[float] = []
    venue_rates: list[float] = []
    run_us: list[float] = []
    state_hash, messages = "", 0
    genesis = directory / "genesis"
    write_consortium(scenario, seed, genesis)
    for round_number in range(rounds):
        # the figure's run keeps nothing (keeping every command object would slow it: its
        # collector would traverse them); the timed run keeps them for `Venue.apply` alone
        plain = run_inprocess(scenario, seed, directory / f"plain{round_number}", ledger=False)
        timer = ActTimer()
        timed = run_inprocess(scenario, seed, directory / f"timed{round_number}", ledger=False,
                              prepare=timer.prepare, keep_commands=True)  # fmt: skip
        assert plain.state_hash == timed.state_hash, "timing changed the run"
        objects = timed.kept_objects
        assert objects is not None
        venue = replay_venue(genesis, objects)
        assert venue.state_hash == plain.state_hash, "Venue.apply alone reached another state"
        rates.append(plain.messages_per_s)
        run_us.append(plain.wall_s / plain.messages * 1e6)
        venue_rates.append(plain.messages / venue.wall_s)
        agents_us.append(timer.seconds / timed.messages * 1e6)
        state_hash, messages = plain.state_hash, plain.messages
    run_message_us = statistics.median(run_us)
    venue_us = 1e6 / statistics.median(venue_rates)
    agents = statistics.median(agents_us)
    return {
        "messages": messages,
        "state_hash": state_hash,
        "messages_per_s": round(statistics.median(rates)),
        "messages_per_s_rounds": [round(rate) for rate in rates],
        "venue_apply_messages_per_s": round(statistics.median(venue_rates)),
        "agents_us_per_message": round(agents, 2),
        "us_per_message": round(run_message_us, 2),
        "venue_us_per_message": round(venue_us, 2),
        "driver_us_per_message": round(run_message_us - venue_us - agents, 2),
    }


def main(arguments: argparse.Namespace) -> int:
    scenario = load_scenario(arguments.scenario)
    rounds = getattr(arguments, "rounds", 2)
    if rounds < 1:
        print(f"jinlian bench simulate: --rounds must be at least 1, got {rounds}", file=sys.stderr)
        return 2
    if getattr(arguments, "no_ledger", False):
        return no_ledger_main(scenario, arguments.seed, rounds, json_out=arguments.json)
    with tempfile.TemporaryDirectory() as scratch:
        alone = without_ledger(scenario, arguments.seed, Path(scratch) / "alone", rounds)
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
        "no_ledger_state_hash_agrees": alone["state_hash"] == result.state_hash,
        "no_ledger_messages_per_s": alone["messages_per_s"],
        "no_ledger_messages_per_s_rounds": alone["messages_per_s_rounds"],
        "agents_us_per_message": alone["agents_us_per_message"],
        "no_ledger_us_per_message": alone["us_per_message"],
        "venue_apply_messages_per_s": alone["venue_apply_messages_per_s"],
        "venue_us_per_message": alone["venue_us_per_message"],
        "driver_us_per_message": alone["driver_us_per_message"],
        "build": compiled.describe(),
        "goal_no_ledger_messages_per_s": GOAL_NO_LEDGER_MESSAGES_PER_S,
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
    agree = ("state_hashes_agree", "replayed_chain_agrees", "no_ledger_state_hash_agrees")
    return 0 if all(figures[name] for name in agree) else 1


def no_ledger_main(scenario: Scenario, seed: int, rounds: int, *, json_out: bool) -> int:
    """`jinlian bench simulate --no-ledger`: only `without_ledger`'s runs, their figures and
    the load average before and after (the figure halves on a loaded 2-core machine)."""
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch:
        alone = without_ledger(scenario, seed, Path(scratch) / "alone", rounds)
    figures: dict[str, Any] = {
        "benchmark": "simulate --no-ledger",
        "scenario": scenario.name,
        "scenario_sha256": scenario.sha256,
        "seed": seed,
        "build": compiled.describe(),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "goal_no_ledger_messages_per_s": GOAL_NO_LEDGER_MESSAGES_PER_S,
        **alone,
    }
    if json_out:
        print(json.dumps(figures))
        return 0
    rates = ", ".join(f"{rate:,}" for rate in figures["messages_per_s_rounds"])
    print(f"jinlian bench simulate --no-ledger: {scenario.name} in-process (scenario file "
          f"sha256 {scenario.sha256}), seed {seed}, {figures['messages']:,} messages; "
          f"{figures['build']}; load average {load_before:.2f} before, "
          f"{figures['load_average'][1]:.2f} after")  # fmt: skip
    print(f"  {figures['messages_per_s']:,} messages/s wall (median of {rates}; goal "
          f"{GOAL_NO_LEDGER_MESSAGES_PER_S:,}); final state "
          f"{figures['state_hash'][:16]}...")  # fmt: skip
    print(f"  per message: {_split(figures['us_per_message'], figures)}")
    return 0


def _print(figures: dict[str, Any]) -> None:
    print(f"jinlian bench simulate: {figures['scenario']} in-process (scenario file sha256 "
          f"{figures['scenario_sha256']}), seed {figures['seed']}: {figures['agents']} agents, "
          f"{figures['messages']:,} messages, {figures['trades']:,} trades, "
          f"{figures['blocks']} blocks")  # fmt: skip
    print(f"  ledger: {figures['ledger']}; {figures['build']}")
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
    rounds = ", ".join(f"{rate:,}" for rate in figures["no_ledger_messages_per_s_rounds"])
    print(f"  without the ledger (--no-ledger): {figures['no_ledger_messages_per_s']:,} "
          f"messages/s wall (median of {rounds}; goal "
          f"{figures['goal_no_ledger_messages_per_s']:,}); agents' own decisions "
          f"{figures['agents_us_per_message']:.2f} µs per message; same final state: "
          f"{figures['no_ledger_state_hash_agrees']}")  # fmt: skip
    print(f"  per message without the ledger: "
          f"{_split(figures['no_ledger_us_per_message'], figures)}")  # fmt: skip


def _split(us_per_message: float, figures: dict[str, Any]) -> str:
    """A message's µs without the ledger and its split (`without_ledger`'s figures)."""
    return (f"{us_per_message:.2f} µs = Venue.apply {figures['venue_us_per_message']:.2f} "
            f"(alone on the same command objects: {figures['venue_apply_messages_per_s']:,}/s) "
            f"+ agents {figures['agents_us_per_message']:.2f} + driver and loop "
            f"{figures['driver_us_per_message']:.2f}")  # fmt: skip
