"""Every bounded window of remembered outcomes, run well past its bound, on the machine every
node runs: the settlement engine's idempotency window (deposits, withdrawals, transfers) and
the venue's own (fee schedules, settlement cycles). After every block the incremental state
commitment equals the one recomputed from `Venue.snapshot()`, and a retried id inside the
window gets its first outcome while one below it is refused as too old.

Regression: the exchange's block cutter died with a KeyError in the commitment's outcome sync
when one block forgot two remembered outcomes (a head promoted, then forgotten too)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson

from exchange.consortium.init import CASH, init_consortium
from exchange.consortium.nodes import new_machine
from exchange.venue.commitment import commitment_of_snapshot
from exchange.venue.machine import VenueMachine
from exchange.venue.setup import FEE_ACCOUNT, TAX_ACCOUNT
from ledger.canonical import canonical_bytes
from ledger.genesis import Genesis, Role
from settlement.types import COMMAND_OUTCOMES_MAX

PAST_BOUND = COMMAND_OUTCOMES_MAX + COMMAND_OUTCOMES_MAX // 4


def consortium(tmp_path: Path) -> tuple[Genesis, VenueMachine]:
    genesis = init_consortium(tmp_path / "c", members=4, brokers=2, base_port=20_000)
    return genesis, new_machine(genesis)


def first(genesis: Genesis, role: Role) -> str:
    return next(member.name for member in genesis.members if member.role == role)


def run_blocks(machine: VenueMachine, commands: list[dict[str, Any]], seed: int) -> None:
    """Apply `commands` in blocks of 1 to 1,500 (so that one digest forgets many outcomes at
    once, and one forgets none), comparing the commitment with a recomputation after each."""
    rng = random.Random(seed)
    position = 0
    while position < len(commands):
        size = rng.choice((1, 3, 257, 700, 1_500))
        for command in commands[position : position + size]:
            events = machine.apply(canonical_bytes(command), 0)
            assert b'"error"' not in events[0], events
        position += size
        assert machine.state_hash() == commitment_of_snapshot(machine.venue.snapshot()), position


def test_the_settlement_window_rolls_over_with_the_commitment_exact(tmp_path: Path) -> None:
    genesis, machine = consortium(tmp_path)
    bank = first(genesis, Role.BANK)
    accounts = [str(a) for broker in genesis.brokers for a in broker.accounts]
    base = 1_000_000
    commands: list[dict[str, Any]] = []
    for i in range(PAST_BOUND):
        account = accounts[i % len(accounts)]
        kind = ("deposit", "withdraw", "transfer")[i % 3]
        command: dict[str, Any] = {"type": kind, "command_id": base + i, "actor": bank,
                                   "asset": CASH, "amount": 1 + i % 7}  # fmt: skip
        if kind == "transfer":
            command |= {"source": account, "destination": accounts[(i + 1) % len(accounts)]}
        else:
            command["account"] = account
        commands.append(command)
    run_blocks(machine, commands, seed=1)
    settlement = machine.venue.settlement
    assert len(settlement._outcomes) == COMMAND_OUTCOMES_MAX
    retried = commands[-5]
    before = machine.state_hash()
    again = machine.apply(canonical_bytes(retried), 0)
    assert orjson.loads(again[0])["type"] in {"deposited", "withdrawn", "transferred"}
    assert machine.state_hash() == before  # a retry inside the window changes nothing
    too_old = machine.apply(canonical_bytes(commands[10]), 0)
    assert orjson.loads(too_old[0])["reason"] == "command_id_too_old", too_old
    assert machine.state_hash() == commitment_of_snapshot(machine.venue.snapshot())


def test_the_venue_window_rolls_over_with_the_commitment_exact(tmp_path: Path) -> None:
    """Fee schedules and settlement cycles are remembered by the venue itself, interleaved
    with deposits remembered by the settlement engine: both windows roll in the same blocks."""
    genesis, machine = consortium(tmp_path)
    operator = genesis.exchange.name
    bank = first(genesis, Role.BANK)
    account = str(genesis.brokers[0].accounts[0])
    symbol = "600000.SH"
    commands: list[dict[str, Any]] = []
    for i in range(PAST_BOUND):
        command_id = 2_000_000 + 2 * i
        if i % 2:
            commands.append({"type": "settle_cycle", "command_id": command_id,
                             "actor": operator})  # fmt: skip
        else:
            commands.append({"type": "set_fee_schedule", "command_id": command_id,
                             "actor": operator, "asset": symbol,
                             "commission_bps": i % 5, "stamp_duty_bps": 10,
                             "fee_account": FEE_ACCOUNT, "tax_account": TAX_ACCOUNT})  # fmt: skip
        commands.append({"type": "deposit", "command_id": command_id + 1, "actor": bank,
                         "asset": CASH, "account": account, "amount": 1})  # fmt: skip
    run_blocks(machine, commands, seed=2)
    assert len(machine.venue._outcomes._rows) == COMMAND_OUTCOMES_MAX
    restored = VenueMachine(type(machine.venue).restore(machine.venue.snapshot()))
    assert restored.state_hash() == machine.state_hash()
