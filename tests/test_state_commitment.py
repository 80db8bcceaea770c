"""The incremental state commitment (exchange/venue/commitment.py) equals the same commitment
recomputed from scratch from `Venue.snapshot()`: after every step of the venue's stateful
property test (every command kind, auctions, days, cycles, fee changes, restores), and at
block boundaries of the bench flow. Different states get different hashes; a restored
snapshot gets the same one."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import HealthCheck, settings

from exchange.bench.flow import ACCOUNTS, SYMBOL, make_flow
from exchange.bench.venue_bench import OPERATOR, broker_of, venue_setup, wrap
from exchange.venue.commitment import StateCommitment, commitment_of_snapshot
from exchange.venue.machine import VenueMachine
from exchange.venue.types import BeginDay, EndDay, Event, VenueCommand
from exchange.venue.venue import Venue
from exchange.venue.wire import VENUE_PARSERS, parse_command, venue_command_to_dict
from ledger.canonical import canonical_bytes
from matching.commands import PlaceOrder, SetPhase
from matching.types import Phase
from settlement.commands import Deposit, Freeze, SetFeeSchedule, SettleCycle, Transfer, Unfreeze
from tests import test_venue_machine as stateful


def fresh(venue: Venue) -> bytes:
    return commitment_of_snapshot(venue.snapshot())


class CommittedVenue(stateful.VenueMachine):
    """The venue's stateful test, with a commitment following every command."""

    commitment: StateCommitment | None = None

    def apply(self, command: VenueCommand) -> list[Event]:
        if self.commitment is None or self.commitment.venue is not self.venue:
            self.commitment = StateCommitment(self.venue)  # a restored venue: built anew
            assert self.commitment.digest() == fresh(self.venue)
        data = venue_command_to_dict(command)
        assert parse_command(data, VENUE_PARSERS) == command
        events = super().apply(command)
        return events

    def teardown(self) -> None:
        if self.commitment is not None and self.commitment.venue is self.venue:
            assert self.commitment.digest() == fresh(self.venue)

    steps = 0

    @stateful.invariant()
    def commitment_is_exact(self) -> None:
        """Blocks of one to three steps: a digest every third step, and at the end."""
        self.steps += 1
        if self.steps % 3 and self.steps != 2:
            return
        if self.commitment is not None and self.commitment.venue is self.venue:
            assert self.commitment.digest() == fresh(self.venue)


CommittedVenue.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_commitment_follows_random_commands = CommittedVenue.TestCase


def bench_commands(seed: int, count: int) -> tuple[list[VenueCommand], list[VenueCommand]]:
    flow = make_flow(seed, count, depth_orders=400)
    accounts = {c.order_id: c.account for c in flow.setup[2:] if isinstance(c, PlaceOrder)}
    return venue_setup(flow), wrap(flow.commands, accounts)


def admin_commands(rng: random.Random, command_id: int) -> list[VenueCommand]:
    """Registry, fee, cycle, phase and calendar commands among the orders."""
    account = rng.choice(ACCOUNTS)
    other = rng.choice(ACCOUNTS)
    pick = rng.randrange(8)
    if pick == 0:
        return [
            Deposit(command_id=command_id, actor="BANK", asset="CNY", account=account, amount=7)
        ]
    if pick == 1:
        return [
            Transfer(
                command_id=command_id,
                actor=broker_of(account),
                asset=SYMBOL,
                source=account,
                destination=other,
                amount=100,
            )
        ]
    if pick == 2:
        return [
            Freeze(command_id=command_id, actor="CSRC", account=account),
            Unfreeze(command_id=command_id + 1, actor="CSRC", account=account),
        ]
    if pick == 3:
        return [
            SetFeeSchedule(
                command_id=command_id,
                actor=OPERATOR,
                asset=SYMBOL,
                commission_bps=rng.randrange(1, 6),
                stamp_duty_bps=5,
                fee_account=ACCOUNTS[0],
                tax_account=ACCOUNTS[1],
            )
        ]
    if pick == 4:
        return [SettleCycle(command_id=command_id, actor=OPERATOR)]
    if pick == 5:
        return [
            SetPhase(symbol=SYMBOL, phase=Phase.CALL_AUCTION),
            SetPhase(symbol=SYMBOL, phase=Phase.CONTINUOUS),
        ]
    if pick == 6:
        return [SetPhase(symbol=SYMBOL, phase=Phase.HALTED)]
    return [SetPhase(symbol=SYMBOL, phase=Phase.CONTINUOUS)]


def test_commitment_at_block_boundaries_of_the_bench_flow() -> None:
    rng = random.Random(7)
    setup, commands = bench_commands(11, 6_000)
    machine = VenueMachine(Venue(operator=OPERATOR, regulator="CSRC"))
    for command in setup:
        machine.apply(canonical_bytes(venue_command_to_dict(command)), 0)
    assert machine.state_hash() == fresh(machine.venue)
    command_id = 10**6
    day = 20261123
    position = 0
    while position < len(commands):
        size = rng.choice([1, 2, 50, 300, 1_000])
        block = commands[position : position + size]
        position += size
        if rng.random() < 0.5:
            block = [*block, *admin_commands(rng, command_id)]
            command_id += 2
        if rng.random() < 0.15:
            day += 1
            block = [
                *block,
                EndDay(day=day - 1),
                BeginDay(day=day),
                SetPhase(symbol=SYMBOL, phase=Phase.CONTINUOUS),
            ]
        for command in block:
            machine.apply(canonical_bytes(venue_command_to_dict(command)), 0)
        assert machine.state_hash() == fresh(machine.venue), position
    machine.venue.check()


def test_a_new_day_and_a_cycle_in_the_middle_of_blocks() -> None:
    setup, commands = bench_commands(13, 1_500)
    machine = VenueMachine(Venue(operator=OPERATOR, regulator="CSRC"))
    for command in setup:
        machine.apply(canonical_bytes(venue_command_to_dict(command)), 0)
    machine.state_hash()
    day = 20261123
    for start in range(0, len(commands), 500):
        block = [*commands[start : start + 500]]
        if start % 1_000:
            block.append(SettleCycle(command_id=10**6 + day, actor=OPERATOR))
        for command in block:
            machine.apply(canonical_bytes(venue_command_to_dict(command)), 0)
        bought, _ = machine.venue.shares_today()
        assert any(bought.values())  # T+1 purchases to forget at the next day
        assert machine.state_hash() == fresh(machine.venue)
        day += 1
        for command in (
            EndDay(day=day - 1),
            BeginDay(day=day),
            SetPhase(symbol=SYMBOL, phase=Phase.CONTINUOUS),
        ):
            machine.apply(canonical_bytes(venue_command_to_dict(command)), 0)
        assert machine.state_hash() == fresh(machine.venue)


def test_a_restored_snapshot_has_the_same_commitment() -> None:
    setup, commands = bench_commands(3, 2_000)
    machine = VenueMachine(Venue(operator=OPERATOR, regulator="CSRC"))
    for command in [*setup, *commands]:
        machine.apply(canonical_bytes(venue_command_to_dict(command)), 0)
    restored = VenueMachine(Venue.restore(json.loads(json.dumps(machine.venue.snapshot()))))
    assert restored.state_hash() == machine.state_hash() == fresh(machine.venue)


def _variant(change: Any) -> tuple[bytes, bytes]:
    setup, commands = bench_commands(5, 500)
    venue = Venue(operator=OPERATOR, regulator="CSRC")
    for command in [*setup, *commands]:
        venue.apply(command)
    snapshot = json.loads(json.dumps(venue.snapshot()))
    base = commitment_of_snapshot(snapshot)
    change(snapshot)
    changed = Venue.restore(snapshot)
    assert StateCommitment(changed).digest() == commitment_of_snapshot(snapshot)
    return base, commitment_of_snapshot(snapshot)


def test_different_states_have_different_commitments() -> None:
    def balance(snapshot: dict[str, Any]) -> None:
        snapshot["settlement"]["assets"][0]["balances"][0][1] += 1

    def quantity(snapshot: dict[str, Any]) -> None:
        snapshot["matching"]["books"][0]["orders"][0][3] += 1

    def phase(snapshot: dict[str, Any]) -> None:
        snapshot["matching"]["books"][0]["phase"] = int(Phase.HALTED)

    def priority(snapshot: dict[str, Any]) -> None:
        orders = snapshot["matching"]["books"][0]["orders"]
        same = [i for i in range(1, len(orders)) if orders[i][1:3] == orders[i - 1][1:3]]
        i = same[0]
        orders[i - 1], orders[i] = orders[i], orders[i - 1]

    def day(snapshot: dict[str, Any]) -> None:
        snapshot["day_open"] = not snapshot["day_open"]

    def hold(snapshot: dict[str, Any]) -> None:
        registry = next(r for r in snapshot["settlement"]["assets"] if r["holds"])
        registry["holds"][0][2] += 1  # one account's hold for one instrument's orders

    hashes = set()
    for change in (balance, quantity, phase, priority, day, hold):
        base, changed = _variant(change)
        assert base != changed, change.__name__
        hashes.add(changed)
    assert len(hashes) == 6


def test_a_snapshot_field_the_commitment_does_not_know_is_refused() -> None:
    venue = Venue(operator=OPERATOR, regulator="CSRC")
    snapshot = venue.snapshot()
    snapshot["something_new"] = 1
    try:
        commitment_of_snapshot(snapshot)
    except ValueError as error:
        assert "something_new" in str(error)
    else:
        raise AssertionError("an unknown snapshot field was accepted")


def test_the_machine_benchmark_runs_and_agrees(capsys: Any) -> None:
    from exchange.cli import main

    assert main(["bench", "machine", "--messages", "1500", "--depth", "300", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "VenueMachine.apply" in out and "equals the recomputed one: True" in out


def test_outcomes_of_two_actors_with_the_same_command_id_are_committed_apart() -> None:
    """Outcomes are remembered per (actor, command id): the same id from the bank, the broker
    and the operator is three entities, and retries change nothing; the incremental
    commitment equals the recomputed one after each block, and after a restore."""
    setup, _ = bench_commands(13, 200)
    venue = Venue(operator=OPERATOR, regulator="CSRC")
    for command in setup:
        venue.apply(command)
    commitment = StateCommitment(venue)
    account, other = ACCOUNTS[0], ACCOUNTS[1]
    command_id = 10**9  # above every id the setup used
    block: list[VenueCommand] = [
        Deposit(command_id=command_id, actor="BANK", asset="CNY", account=account, amount=7),
        Transfer(
            command_id=command_id,
            actor=broker_of(account),
            asset=SYMBOL,
            source=account,
            destination=other,
            amount=100,
        ),
        SetFeeSchedule(
            command_id=command_id,
            actor=OPERATOR,
            asset=SYMBOL,
            commission_bps=2,
            stamp_duty_bps=5,
            fee_account=ACCOUNTS[0],
            tax_account=ACCOUNTS[1],
        ),
    ]
    for round_ in range(3):  # the commands, then twice their retries
        before = fresh(venue)
        for command in block:
            events = venue.apply(command)
            assert not any(type(e).__name__ == "CommandRejected" for e in events), events
        assert commitment.digest() == fresh(venue)
        assert round_ == 0 or fresh(venue) == before  # a retry changes nothing
    rows = venue.snapshot()["settlement"]["outcomes"]
    keys = [tuple(key) for key, _, _ in rows if key[1] == command_id]
    assert keys == [("BANK", command_id), (broker_of(account), command_id), (OPERATOR, command_id)]
    restored = Venue.restore(json.loads(json.dumps(venue.snapshot())))
    assert StateCommitment(restored).digest() == fresh(venue)
