"""The incremental state commitment, fed by the cores' own records of what they changed,
equals the commitment recomputed from `Venue.snapshot()` after every block of long random
command streams: 100,000 commands per run over four seeds (JINLIAN_CHECK_ALL=1: sixteen),
on every settlement mode, with every command kind a member may sequence, retries and reused
or forgotten command ids, and blocks of 1 to 1,000 commands.

The idempotency windows are made small (`command_outcomes_max`) so that each stream runs far
past every bounded window of remembered outcomes (#15): settlement's, the venue's own (fee
schedules, cycles), and the per-actor floors of forgotten ids past FORGOTTEN_ACTORS_MAX
actors (brokers opening their own accounts are new actors). A regression test pins the
block that main's hand-kept table of effects got wrong.

Also: commitment.py reads no other class's private attribute (it follows the cores only
through their records of changes and public queries)."""

from __future__ import annotations

import ast
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from exchange.venue.commitment import StateCommitment, commitment_of_snapshot
from exchange.venue.types import BeginDay, BrokerCommand, EndDay, VenueCommand
from exchange.venue.venue import Venue
from matching.commands import AmendOrder, CancelOrder, PlaceOrder, SetPhase
from matching.types import OrderKind, Phase, Side, StpMode, TimeInForce
from settlement.commands import (
    Deposit,
    Freeze,
    Issue,
    OpenAccount,
    SetFeeSchedule,
    SettleCycle,
    Transfer,
    Unfreeze,
    Withdraw,
)
from settlement.engine import FORGOTTEN_ACTORS_MAX
from tests.test_venue import (
    ACCOUNTS,
    BANK,
    CASH,
    FEE,
    ISSUER,
    OPERATOR,
    REGULATOR,
    SECURITIES,
    TAX,
    setup_commands,
)

WINDOW = 97  # outcomes remembered by settlement and by the venue, in these tests
COMMANDS_PER_SEED = 25_000
SEEDS = range(1, 17) if os.environ.get("JINLIAN_CHECK_ALL") == "1" else range(1, 5)
SYMBOLS = [security.symbol for security in SECURITIES]  # GROSS (two), CASH_NET, NET_NET
LOTS = {security.symbol: security.lot for security in SECURITIES}
TRADERS = list(ACCOUNTS)
BLOCK_SIZES = (1, 2, 7, 20, 60, 150, 400, 1_000)


class Stream:
    """Random commands for a venue built by `tests.test_venue.setup_commands`, chosen from
    the venue's state as they go (which orders rest, which day is open)."""

    def __init__(self, seed: int, venue: Venue) -> None:
        self.rng = random.Random(seed)
        self.venue = venue
        self.order_id = 0
        self.command_id = 10_000
        self.day = 20240102
        self.sent: list[VenueCommand] = []  # settlement commands, for retries
        self.new_brokers = 0

    def next_id(self) -> int:
        self.command_id += 1
        return self.command_id

    def commands(self) -> list[VenueCommand]:
        """One to three commands (a day turns over in three)."""
        pick = self.rng.random()
        if pick < 0.42:
            return [self.place()]
        if pick < 0.55:
            return [self.cancel()]
        if pick < 0.62:
            return [self.amend()]
        return self.admin()

    def broker(self, command: PlaceOrder | CancelOrder | AmendOrder, account: str) -> Any:
        return BrokerCommand(broker=ACCOUNTS[account], command=command)

    def place(self) -> VenueCommand:
        rng = self.rng
        self.order_id += 1
        symbol = rng.choice(SYMBOLS)
        account = rng.choice(TRADERS)
        side = rng.choice((Side.BUY, Side.SELL))
        market = rng.random() < 0.05
        tif = rng.choice((TimeInForce.DAY,) * 5 + (TimeInForce.GTC,) * 2 + (TimeInForce.IOC,))
        if rng.random() < 0.03:
            tif = TimeInForce.FOK
        grouped = rng.random() < 0.15
        quantity = LOTS[symbol] * rng.randint(1, 4)
        if side is Side.SELL and rng.random() < 0.05:
            quantity += 1  # an odd lot: refused unless it sells the holding's odd lot
        order = PlaceOrder(
            order_id=self.order_id,
            symbol=symbol,
            account=account,
            side=side,
            kind=OrderKind.MARKET if market else OrderKind.LIMIT,
            price=None if market else rng.randint(985, 1_015),
            quantity=quantity,
            tif=TimeInForce.IOC if market else tif,
            post_only=not market and rng.random() < 0.05,
            stp_group="G" if grouped else "",
            stp_mode=rng.choice(list(StpMode)) if grouped else StpMode.CANCEL_NEWEST,
        )
        return self.broker(order, account)

    def resting(self) -> Any:
        index = self.venue.matching.order_index()
        if not index or self.rng.random() < 0.05:  # sometimes an order that is not there
            return None
        return index[self.rng.choice(list(index))]

    def cancel(self) -> VenueCommand:
        order = self.resting()
        if order is None:
            return self.broker(CancelOrder(order_id=self.order_id + 7, symbol="GRS"), "A1")
        return self.broker(CancelOrder(order_id=order.order_id, symbol=order.symbol), order.account)

    def amend(self) -> VenueCommand:
        order = self.resting()
        if order is None:
            return self.cancel()
        rng = self.rng
        price = rng.choice((None, rng.randint(985, 1_015)))
        quantity = rng.choice((None, LOTS[order.symbol] * rng.randint(1, 5)))
        if price is None and quantity is None:
            quantity = max(order.quantity - LOTS[order.symbol], LOTS[order.symbol])
        command = AmendOrder(
            order_id=order.order_id, symbol=order.symbol, price=price, quantity=quantity
        )
        return self.broker(command, order.account)

    def admin(self) -> list[VenueCommand]:
        rng = self.rng
        pick = rng.randrange(13)
        account, other = rng.choice(TRADERS), rng.choice(TRADERS)
        if pick == 0:
            return [
                self.remember(
                    Deposit(
                        command_id=self.next_id(),
                        actor=BANK,
                        asset=CASH,
                        account=account,
                        amount=rng.randint(1, 10**6),
                    )
                )
            ]
        if pick == 1:
            return [
                self.remember(
                    Withdraw(
                        command_id=self.next_id(),
                        actor=BANK,
                        asset=CASH,
                        account=account,
                        amount=rng.randint(1, 10**4),
                    )
                )
            ]
        if pick == 2:
            asset = rng.choice([CASH, *SYMBOLS])
            return [
                self.remember(
                    Transfer(
                        command_id=self.next_id(),
                        actor=ACCOUNTS[account],
                        asset=asset,
                        source=account,
                        destination=other,
                        amount=rng.randint(1, 300),
                    )
                )
            ]
        if pick == 3:
            symbol = rng.choice(SYMBOLS)
            return [
                self.remember(
                    Issue(
                        command_id=self.next_id(),
                        actor=ISSUER,
                        asset=symbol,
                        account=account,
                        amount=LOTS[symbol] * 5,
                    )
                )
            ]
        if pick == 4:
            kind = Freeze if rng.random() < 0.15 else Unfreeze
            return [
                self.remember(kind(command_id=self.next_id(), actor=REGULATOR, account=account))
            ]
        if pick == 5:  # a fee schedule, sometimes naming other fee and tax accounts
            fee, tax = (FEE, TAX) if rng.random() < 0.7 else (account, other)
            return [
                self.remember(
                    SetFeeSchedule(
                        command_id=self.next_id(),
                        actor=OPERATOR,
                        asset=rng.choice(SYMBOLS),
                        commission_bps=rng.randrange(0, 8),
                        stamp_duty_bps=rng.randrange(0, 12),
                        fee_account=fee,
                        tax_account=tax,
                    )
                )
            ]
        if pick == 6:
            return [self.remember(SettleCycle(command_id=self.next_id(), actor=OPERATOR))]
        if pick == 7:  # a broker opens its own account: a new actor
            self.new_brokers += 1
            broker = f"NB{self.new_brokers}"
            return [
                self.remember(
                    OpenAccount(
                        command_id=1, actor=broker, account=f"N{self.new_brokers}", broker=broker
                    )
                )
            ]
        if pick == 8 and self.sent:  # a retry: recent (the first outcome) or forgotten (too old)
            return [rng.choice(self.sent[-3 * WINDOW :])]
        if pick == 9:
            symbol = rng.choice(SYMBOLS)
            return [
                SetPhase(symbol=symbol, phase=Phase.CALL_AUCTION),
                SetPhase(symbol=symbol, phase=Phase.CONTINUOUS),
            ]
        if pick == 10:
            symbol = rng.choice(SYMBOLS)
            return [
                SetPhase(symbol=symbol, phase=Phase.HALTED),
                SetPhase(symbol=symbol, phase=Phase.CONTINUOUS),
            ]
        if pick == 11 and rng.random() < 0.15:
            self.day += 1
            return [
                EndDay(day=self.day - 1),
                BeginDay(day=self.day),
                *[SetPhase(symbol=symbol, phase=Phase.CONTINUOUS) for symbol in SYMBOLS],
            ]
        return [self.place()]

    def remember(self, command: Any) -> Any:
        self.sent.append(command)
        return command


def new_venue() -> Venue:
    venue = Venue(operator=OPERATOR, regulator=REGULATOR, command_outcomes_max=WINDOW)
    command_id = 0
    for template in setup_commands():
        command: Any = template
        if hasattr(template, "command_id"):
            command_id += 1
            command = type(template)(**{**_fields(template), "command_id": command_id})
        venue.apply(command)
    for account in TRADERS:  # enough of everything for a long stream
        command_id += 1
        venue.apply(
            Deposit(command_id=command_id, actor=BANK, asset=CASH, account=account, amount=10**10)
        )
        for symbol in SYMBOLS:
            command_id += 1
            venue.apply(
                Issue(
                    command_id=command_id,
                    actor=ISSUER,
                    asset=symbol,
                    account=account,
                    amount=LOTS[symbol] * 10**4,
                )
            )
    venue.apply(BeginDay(day=20240102))
    for symbol in SYMBOLS:
        venue.apply(SetPhase(symbol=symbol, phase=Phase.CONTINUOUS))
    return venue


def _fields(command: Any) -> dict[str, Any]:
    return {name: getattr(command, name) for name in command.__slots__}


def run_stream(seed: int, count: int) -> dict[str, int]:
    """Apply `count` random commands in random blocks, comparing the incremental commitment
    with the recomputed one after each block; what the stream went through."""
    venue = new_venue()
    commitment = StateCommitment(venue)
    stream = Stream(seed, venue)
    rng = random.Random(-seed)
    applied = blocks = trades = 0
    while applied < count:
        size = rng.choice(BLOCK_SIZES)
        for _ in range(size):
            for command in stream.commands():
                events = venue.apply(command)
                trades += sum(type(event).__name__ == "TradeExecuted" for event in events)
                applied += 1
        blocks += 1
        assert commitment.digest() == commitment_of_snapshot(venue.snapshot()), (seed, applied)
    venue.check()
    settlement = venue.settlement
    return {
        "applied": applied,
        "blocks": blocks,
        "trades": trades,
        "settlement outcomes": len(settlement.outcomes()),
        "venue outcomes": len(venue.outcomes()),
        "floors": len(settlement.forgotten_ids()),
        "remembered": len(stream.sent),
    }


@pytest.mark.parametrize("seed", SEEDS)
def test_the_commitment_follows_long_random_streams_past_every_window(seed: int) -> None:
    start = time.perf_counter()
    seen = run_stream(seed, COMMANDS_PER_SEED)
    assert seen["applied"] >= COMMANDS_PER_SEED and seen["trades"] > 1_000, seen
    # past every bounded window: both outcome windows full (and rolled many times over), and
    # more actors with a floor than FORGOTTEN_ACTORS_MAX (the rest share one)
    assert seen["settlement outcomes"] == seen["venue outcomes"] == WINDOW, seen
    assert seen["remembered"] > 20 * WINDOW, seen
    assert seen["floors"] == FORGOTTEN_ACTORS_MAX + 1, seen
    assert time.perf_counter() - start < 30, seen


def test_a_fee_account_changed_after_trades_in_the_same_block() -> None:
    """Regression: main's commitment took a trade's fee and tax accounts from the schedule
    in force at the digest, so a block in which trades credit FEE and a new schedule then
    names another fee account left FEE's balance stale. The registries now record the
    accounts they credit."""
    venue = new_venue()
    commitment = StateCommitment(venue)
    place = Stream(0, venue)
    for side, account in ((Side.BUY, "A1"), (Side.SELL, "B1")):
        place.order_id += 1
        order = PlaceOrder(
            order_id=place.order_id,
            symbol="GRS",
            account=account,
            side=side,
            kind=OrderKind.LIMIT,
            price=1_000,
            quantity=100,
            tif=TimeInForce.DAY,
            post_only=False,
            stp_group="",
            stp_mode=StpMode.CANCEL_NEWEST,
        )
        venue.apply(BrokerCommand(broker=ACCOUNTS[account], command=order))
    venue.apply(
        SetFeeSchedule(
            command_id=99_999,
            actor=OPERATOR,
            asset="GRS",
            commission_bps=5,
            stamp_duty_bps=5,
            fee_account="C1",
            tax_account="C1",
        )
    )
    assert commitment.digest() == commitment_of_snapshot(venue.snapshot())


def test_the_commitment_reads_no_private_attribute_of_another_class() -> None:
    """`x._name` in exchange/venue/commitment.py only with x = self."""
    source = Path(__file__).parent.parent / "exchange" / "venue" / "commitment.py"
    tree = ast.parse(source.read_text())
    reads = [
        f"line {node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id == "self")
    ]
    assert not reads, reads


def test_a_venue_has_one_commitment() -> None:
    """The cores' records have one reader: a second commitment would drain what the first
    must see, so it is refused."""
    venue = new_venue()
    StateCommitment(venue)
    with pytest.raises(AssertionError, match="reader already"):
        StateCommitment(venue)
