"""`jinlian bench finance`: supply-chain finance in-process, beside venue trading.

Each round builds a venue with `--suppliers` suppliers, core enterprises and a factor, their
keys registered, and sends signed commands (signed before the clock starts: signing is the
participants' work, verifying is the venue's) through `Venue.apply`: `--pieces` commitments
issued and confirmed, each split in two, every child transferred to another supplier, half of
them financed by the factor; then one `begin_day` pays every piece at maturity. Then a bond
held by `--suppliers` holders pays a coupon at one `begin_day` and is redeemed at another
(holders paid per second, docs/fixed_income.md). Rounds
alternate with the venue benchmark's trading flow (`jinlian bench venue`), so the figures
share the machine's state of the moment; medians are reported.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from typing import Any

from exchange import compiled
from exchange.bench.flow import make_flow
from exchange.bench.report import emit
from exchange.bench.venue_bench import time_venue, venue_setup, wrap
from exchange.supply_chain import cosign, sign
from exchange.venue.types import BeginDay, EndDay, VenueCommand
from exchange.venue.venue import Venue
from ledger.keys import PrivateKey, private_key_from_bytes
from matching.commands import PlaceOrder
from settlement import supply_chain_types as scf
from settlement.commands import DefineAsset, Deposit, Issue, OpenAccount
from settlement.corporate_action_types import BondRedeemed, CouponPaid, DefineBond
from settlement.types import AssetKind

OPERATOR, CASH, BANK = "EXCHANGE", "CNY", "BANK1"
DAY1, MATURITY = 20260105, 20260301
CORES = 10
Phase = list[VenueCommand]


def _key(index: int) -> PrivateKey:
    return private_key_from_bytes(index.to_bytes(32, "big"))


def finance_commands(suppliers: int, pieces: int) -> tuple[Phase, dict[str, Phase]]:
    """The setup, then the timed phases' signed commands: issue (and confirm), split,
    transfer, finance."""
    names = [f"S{n:05d}" for n in range(suppliers)]
    cores = [f"C{n:02d}" for n in range(CORES)]
    keys = {name: _key(i + 1) for i, name in enumerate([*cores, *names, "FACTOR"])}
    setup: Phase = [
        DefineAsset(command_id=1, actor=OPERATOR, asset=CASH, kind=AssetKind.CASH, issuer="PBOC")
    ]
    for number, name in enumerate(keys, start=2):
        setup.append(OpenAccount(command_id=number, actor=OPERATOR, account=name, broker=BANK))
        # a cash asset's supply stays within 10^18 (more than ~1,000 accounts of 10^15 did not)
        setup.append(Deposit(command_id=number, actor="PBOC", asset=CASH, account=name,
                             amount=10**18 // (2 * len(keys))))  # fmt: skip
    setup.append(BeginDay(day=DAY1))
    bank_ids = iter(range(1, 10**9))
    for name, key in keys.items():
        role = scf.ParticipantRole.SUPPLIER
        if name in cores:
            role = scf.ParticipantRole.CORE_ENTERPRISE
        elif name == "FACTOR":
            role = scf.ParticipantRole.FACTOR
        setup.append(scf.RegisterParticipant(command_id=next(bank_ids), actor=BANK,
                                             participant=name, role=role,
                                             public_key=key.public_key.hex()))  # fmt: skip
    for core in cores:
        setup.append(scf.SetCreditLimit(command_id=next(bank_ids), actor=BANK, participant=core,
                                        limit=10**17))  # fmt: skip
    ids: dict[str, int] = {}

    def signed(cls: type[Any], who: str, **fields: Any) -> Any:
        ids[who] = ids.get(who, 0) + 1
        extra = {"factor_signature": ""} if cls is scf.FinanceCommitment else {}
        command = cls(command_id=ids[who], actor=BANK, participant=who, signature="",
                      **fields, **extra)  # fmt: skip
        command = sign(command, keys[who])
        return cosign(command, keys["FACTOR"]) if extra else command

    phases: dict[str, Phase] = {name: [] for name in ("issue", "split", "transfer", "finance")}
    for index in range(pieces):
        holder, core = names[index % suppliers], cores[index % CORES]
        phases["issue"].append(signed(scf.IssueCommitment, core, holder=holder,
                                      amount=1_000_000 + index, currency=CASH,
                                      maturity=MATURITY))  # fmt: skip
        phases["issue"].append(signed(scf.ConfirmCommitment, holder, piece=index + 1))
    # each phase is sent after the one before: a sender's ids must increase in that order
    for index in range(pieces):
        amounts = (400_000, 600_000 + index)
        phases["split"].append(signed(scf.SplitCommitment, names[index % suppliers],
                                      piece=index + 1, amounts=amounts))  # fmt: skip
    for index in range(pieces):
        first = pieces + 2 * index + 1  # the children's ids: after every original
        for child in (first, first + 1):
            to = names[(index + 1) % suppliers]
            phases["transfer"].append(signed(scf.TransferCommitment, names[index % suppliers],
                                             piece=child, to=to))  # fmt: skip
    for index in range(pieces):
        phases["finance"].append(signed(scf.FinanceCommitment, names[(index + 1) % suppliers],
                                        piece=pieces + 2 * index + 1, factor="FACTOR",
                                        price=390_000))  # fmt: skip
    return setup, phases


def time_finance(setup: Phase, phases: dict[str, Phase]) -> tuple[dict[str, float], Venue]:
    """Seconds per phase, and the venue after them."""
    venue = Venue(operator=OPERATOR, regulator="CSRC")
    for command in setup:
        venue.apply(command)
    seconds: dict[str, float] = {}
    apply = venue.apply
    for name, commands in phases.items():
        gc.collect()
        start = time.perf_counter()
        for command in commands:
            events = apply(command)
            assert type(events[0]) is not scf.ScfRejected, events  # all accepted; ~30 ns
        seconds[name] = time.perf_counter() - start
    venue.apply(EndDay(day=DAY1))
    gc.collect()
    start = time.perf_counter()
    events = venue.apply(BeginDay(day=MATURITY))
    seconds["maturity"] = time.perf_counter() - start
    assert all(type(e) is not scf.CommitmentFailed for e in events)
    return seconds, venue


BOND, ISSUER = "GB", "TREASURY"
COUPON_DAY, BOND_MATURITY = 20260701, 20270101


def bond_setup(holders: int) -> Phase:
    """A bond held by `holders` accounts (10 to 19 units each), its issuer funded, before
    its coupon day."""
    setup: Phase = [
        DefineAsset(command_id=1, actor=OPERATOR, asset=CASH, kind=AssetKind.CASH, issuer="PBOC"),
        DefineAsset(
            command_id=2, actor=OPERATOR, asset=BOND, kind=AssetKind.SECURITY, issuer="CSDC"
        ),
        OpenAccount(command_id=3, actor=OPERATOR, account=ISSUER, broker=BANK),
        Deposit(command_id=1, actor="PBOC", asset=CASH, account=ISSUER, amount=10**15),
        DefineBond(
            command_id=1,
            actor="CSDC",
            bond=BOND,
            issuer=ISSUER,
            face_value=10_000,
            coupon_bps=350,
            start=20260101,
            coupon_days=(COUPON_DAY,),
            maturity=BOND_MATURITY,
        ),
    ]
    for index in range(holders):
        name = f"H{index:06d}"
        setup.append(OpenAccount(command_id=4 + index, actor=OPERATOR, account=name, broker=BANK))
        setup.append(Issue(command_id=2 + index, actor="CSDC", asset=BOND, account=name,
                           amount=10 + index % 10))  # fmt: skip
    setup.append(BeginDay(day=20260630))
    setup.append(EndDay(day=20260630))
    return setup


def time_bonds(setup: Phase, holders: int) -> dict[str, float]:
    """Seconds of the coupon's `begin_day` and of the redemption's."""
    venue = Venue(operator=OPERATOR, regulator="CSRC")
    for command in setup:
        events = venue.apply(command)
        assert "Rejected" not in type(events[0]).__name__, events
    seconds: dict[str, float] = {}
    for name, day, kind in (("coupon", COUPON_DAY, CouponPaid),
                            ("redemption", BOND_MATURITY, BondRedeemed)):  # fmt: skip
        gc.collect()
        start = time.perf_counter()
        events = venue.apply(BeginDay(day=day))
        seconds[name] = time.perf_counter() - start
        assert sum(type(e) is kind for e in events) == holders, events[:3]
        venue.apply(EndDay(day=day))
    venue.check()
    return seconds


def measure(arguments: argparse.Namespace) -> dict[str, Any]:
    setup, phases = finance_commands(arguments.suppliers, arguments.pieces)
    flow = make_flow(arguments.seed, arguments.messages, arguments.depth)
    trading_setup = venue_setup(flow)
    accounts = {c.order_id: c.account for c in flow.setup[2:] if isinstance(c, PlaceOrder)}
    trading = wrap(flow.commands, accounts)
    rates: dict[str, list[float]] = {}
    bonds = bond_setup(arguments.suppliers)
    for _ in range(arguments.rounds):
        for name, taken in time_bonds(bonds, arguments.suppliers).items():
            rates.setdefault(name, []).append(arguments.suppliers / taken)
        seconds, venue = time_finance(setup, phases)
        venue.check()
        for name, taken in seconds.items():
            count = len(phases[name]) if name != "maturity" else 2 * arguments.pieces
            rates.setdefault(name, []).append(count / taken)
        trading_seconds, _ = time_venue(trading_setup, trading)
        rates.setdefault("trading", []).append(len(trading) / trading_seconds)
    return {
        "books_agree": True,  # (emit's exit status) nothing is compared here
        "build": compiled.describe(),
        "suppliers": arguments.suppliers,
        "pieces": arguments.pieces,
        "rounds": arguments.rounds,
        "trading_commands": len(trading),
        **{f"{name}_per_s": round(statistics.median(r)) for name, r in rates.items()},
    }


def render(report: dict[str, Any]) -> str:
    rows = [
        ("issue + confirm (commands)", "issue_per_s"),
        ("splits (into 2)", "split_per_s"),
        ("transfers", "transfer_per_s"),
        ("financings (DvP)", "finance_per_s"),
        ("maturity settlements (pieces paid)", "maturity_per_s"),
        ("bond coupons (holders paid)", "coupon_per_s"),
        ("bond redemptions (holders, DvP)", "redemption_per_s"),
        ("venue trading (bench venue flow)", "trading_per_s"),
    ]
    lines = [
        f"finance benchmark: {report['pieces']:,} commitments among {report['suppliers']:,} "
        f"suppliers, median of {report['rounds']} rounds (signatures verified in the venue); "
        f"trading: {report['trading_commands']:,} commands",
        f"  {report['build']}",
    ]
    lines += [f"  {label:<38}{report[key]:>12,} /s" for label, key in rows]
    return "\n".join(lines)


def main(arguments: argparse.Namespace) -> int:
    return emit(measure(arguments), render, arguments.json)
