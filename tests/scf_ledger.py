"""A seeded supply-chain finance ledger on a real chain: the input of the supply-chain tables'
tests and of notebook 05 in CI.

`generate_scf_ledger(tmp_path, seed)` builds a consortium with `tests.chain.Chain` (real signed,
certified blocks, the venue's indexer) and writes, block by block over a few trading days
(each block timed within its day, Shanghai morning):

- the operator opens accounts at bank1 for three core enterprises, five suppliers (tiers 1
  and 2) and two factors; bank1, the cash issuer, funds them; bank1 registers their keys and
  sets the core enterprises' credit limits;
- each day each core enterprise buys from a tier-1 supplier against invoices (registered by the
  seller, confirmed by the buyer) and issue payment commitments on them, maturing 2 to 8
  trading days on; the suppliers confirm, split, pass pieces down to tier 2 (some without
  recourse), sell pieces to the factors at a discount from an annual rate of 3 to 6% and
  pledge some to bank1, which releases them;
- CORE3 is short of cash: its commitments fail at maturity, and their holders claim recourse
  up their chains;
- on the last day CORE1 and CORE2 issue two commitments each, CORE3 one, that mature 3 to
  40 days after it, so some stay outstanding.

Every command is chosen from the venue's own state after the last block, so none is refused.
"""

from __future__ import annotations

import datetime
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exchange.supply_chain import (
    cosign,
    invoice_content_hash,
    invoice_key_hash,
    sign,
)
from exchange.venue.supply_chain import command_fields
from ledger.keys import PrivateKey, private_key_from_bytes
from settlement import supply_chain_types as scf
from settlement.supply_chain import Piece
from tests.chain import Chain

BANK = "bank1"  # the cash issuer of `init_consortium`'s genesis, and every participant's bank
CASH = "CNY"
CORES = ("CORE1", "CORE2", "CORE3")  # CORE3 cannot pay at maturity
TIER1 = ("SUP1", "SUP2", "SUP3")
TIER2 = ("SUB1", "SUB2")
FACTORS = ("FAC1", "FAC2")
ROLES = {
    **{name: scf.ParticipantRole.CORE_ENTERPRISE for name in CORES},
    **{name: scf.ParticipantRole.SUPPLIER for name in TIER1 + TIER2},
    **{name: scf.ParticipantRole.FACTOR for name in FACTORS},
}
KEYS: dict[str, PrivateKey] = {
    name: private_key_from_bytes(bytes([0x40 + index]) * 32) for index, name in enumerate(ROLES)
}
FUNDING = {"CORE1": 80_000_000_00, "CORE2": 80_000_000_00, "CORE3": 1_000_00}  # fen
FUNDING_OTHERS = 50_000_000_00
CREDIT_LIMIT = 60_000_000_00
OPERATOR_IDS_FROM = 1_000_000  # above the genesis commands' ids
SHANGHAI_OPEN_UTC = datetime.time(1, 30)  # 09:30 in Shanghai


def trading_days(first: datetime.date, count: int) -> list[int]:
    """`count` weekdays from `first` on, as yyyymmdd."""
    days: list[int] = []
    day = first
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day.year * 10_000 + day.month * 100 + day.day)
        day += datetime.timedelta(days=1)
    return days


def day_time_ns(day: int, second: int) -> int:
    date = datetime.date(day // 10_000, day // 100 % 100, day % 100)
    start = datetime.datetime.combine(date, SHANGHAI_OPEN_UTC, tzinfo=datetime.UTC)
    return int(start.timestamp()) * 1_000_000_000 + second * 1_000_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class ScfLedger:
    consortium: Path
    node: Path  # bank1, whose store holds the blocks
    days: tuple[int, ...]
    # the venue's pieces at the end: id -> (status, holder, amount, parent, pledgee)
    pieces: dict[int, tuple[scf.PieceStatus, str, int, int, str]]


@dataclass(kw_only=True)
class _Generator:
    chain: Chain
    rng: random.Random
    days: list[int]
    ids: dict[str, int] = field(default_factory=dict)
    day: int = 0
    second: int = 0
    invoices: int = 0

    @property
    def venue_chain(self) -> Any:
        return self.chain.machine.venue.supply_chain

    def next_id(self, sender: str, start: int = 1) -> int:
        self.ids[sender] = self.ids.get(sender, start - 1) + 1
        return self.ids[sender]

    def block(self, commands: list[dict[str, Any]]) -> None:
        if not commands:
            return
        self.second += 1
        self.chain.add_block(commands, time_ns=day_time_ns(self.day, self.second))
        self.venue_chain.check()

    def signed(self, cls: type[Any], participant: str, **fields: Any) -> dict[str, Any]:
        values: dict[str, Any] = {"command_id": self.next_id("p/" + participant), "actor": BANK,
                                  "participant": participant, "signature": ""}  # fmt: skip
        if cls is scf.FinanceCommitment:
            values["factor_signature"] = ""
        command = sign(cls(**values, **fields), KEYS[participant])
        if cls is scf.FinanceCommitment:
            command = cosign(command, KEYS[fields["factor"]])
        return command_fields(command)

    def bank(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "command_id": self.next_id("m/" + BANK), "actor": BANK, **fields}

    def setup(self) -> None:
        operator = self.chain.genesis.exchange.name
        commands: list[dict[str, Any]] = []
        for name in ROLES:
            commands.append({"type": "open_account", "actor": operator, "account": name,
                             "broker": BANK,
                             "command_id": self.next_id(operator, OPERATOR_IDS_FROM)})  # fmt: skip
            commands.append({"type": "deposit", "actor": BANK, "asset": CASH, "account": name,
                             "amount": FUNDING.get(name, FUNDING_OTHERS),
                             "command_id": self.next_id("cash", OPERATOR_IDS_FROM)})  # fmt: skip
        self.block(commands)
        self.block(
            [
                self.bank(
                    "register_participant",
                    participant=name,
                    role=role.name.lower(),
                    public_key=KEYS[name].public_key.hex(),
                )
                for name, role in ROLES.items()
            ]
            + [
                self.bank("set_credit_limit", participant=name, limit=CREDIT_LIMIT)
                for name in CORES
            ]
        )

    def later(self) -> int:
        """A weekday 3 to 40 days after the last trading day: still outstanding at the end."""
        later = _date(self.days[-1]) + datetime.timedelta(days=self.rng.randint(3, 40))
        while later.weekday() >= 5:
            later += datetime.timedelta(days=1)
        return later.year * 10_000 + later.month * 100 + later.day

    def maturity(self, ahead_min: int, ahead_max: int) -> int:
        index = self.days.index(self.day)
        return self.days[min(index + self.rng.randint(ahead_min, ahead_max), len(self.days) - 1)]

    def issue(self, core: str, supplier: str, maturity: int) -> None:
        """An invoice from `supplier` to `core`, registered and confirmed; a commitment on it
        for the whole amount (or part of it), confirmed by the supplier."""
        self.invoices += 1
        number = f"INV-{self.invoices:05d}"
        amount = self.rng.randint(100, 2_000) * 1_000_00
        key = invoice_key_hash(supplier, core, number)
        content = invoice_content_hash(f"{number} {supplier} {core} {amount}".encode())
        self.block([self.signed(scf.RegisterInvoice, supplier, buyer=core, key_hash=key,
                                content_hash=content, amount=amount)])  # fmt: skip
        face = amount if self.rng.random() < 0.7 else amount // 2
        self.block(
            [
                self.signed(scf.ConfirmInvoice, core, key_hash=key),
                self.signed(
                    scf.IssueCommitment,
                    core,
                    holder=supplier,
                    amount=face,
                    currency=CASH,
                    maturity=maturity,
                    invoice=key,
                    recourse=self.rng.random() < 0.9,
                ),
            ]
        )
        piece = self.venue_chain.invoice(key).piece
        self.block([self.signed(scf.ConfirmCommitment, supplier, piece=piece)])

    def movable(self, holders: tuple[str, ...]) -> list[Piece]:
        return [
            piece
            for piece in self.venue_chain.pieces().values()
            if piece.status is scf.PieceStatus.ACTIVE and piece.holder in holders
        ]

    def move_some(self) -> None:
        """Split, transfer down a tier, finance or pledge some held pieces."""
        for piece in self.movable(TIER1 + TIER2):
            roll = self.rng.random()
            if roll < 0.3 and piece.amount >= 3:
                cut = self.rng.randint(1, piece.amount - 1)
                parts = [cut, piece.amount - cut]
                if self.rng.random() < 0.3 and piece.amount - cut >= 2:
                    third = (piece.amount - cut) // 2
                    parts = [cut, piece.amount - cut - third, third]
                self.block([self.signed(scf.SplitCommitment, piece.holder, piece=piece.piece_id,
                                        amounts=tuple(parts))])  # fmt: skip
            elif roll < 0.5 and piece.holder in TIER1:
                self.block([self.signed(scf.TransferCommitment, piece.holder,
                                        piece=piece.piece_id, to=self.rng.choice(TIER2),
                                        recourse=self.rng.random() < 0.8)])  # fmt: skip
            elif roll < 0.75:
                self.finance(piece)
            elif roll < 0.8:
                self.block([self.signed(scf.PledgeCommitment, piece.holder,
                                        piece=piece.piece_id, pledgee=BANK)])  # fmt: skip
                if self.rng.random() < 0.5:
                    self.block([self.bank("release_pledge", piece=piece.piece_id)])

    def finance(self, piece: Piece) -> None:
        days = max(1, (_date(piece.maturity) - _date(self.day)).days)
        rate_bps = self.rng.randint(300, 600)
        price = piece.amount - piece.amount * rate_bps * days // (10_000 * 360)
        self.block([self.signed(scf.FinanceCommitment, piece.holder, piece=piece.piece_id,
                                factor=self.rng.choice(FACTORS), price=max(1, price),
                                recourse=self.rng.random() < 0.7)])  # fmt: skip

    def claim_recourse(self) -> None:
        """Every failed piece's holder claims up its chain until paid or no tier is left."""
        for piece_id in list(self.venue_chain.pieces()):
            piece = self.venue_chain.piece(piece_id)
            while (
                piece.status is scf.PieceStatus.FAILED
                and piece.recourse
                and piece.claims < len(piece.chain)
            ):
                self.block([self.signed(scf.ClaimRecourse, piece.holder, piece=piece_id)])
                piece = self.venue_chain.piece(piece_id)

    def run_day(self, day: int, *, first: bool, last: bool) -> None:
        if not first:
            self.block([{"type": "end_day", "day": self.day}])
        self.day, self.second = day, 0
        self.block([{"type": "begin_day", "day": day}])  # pays (or fails) what matures
        if first:
            self.setup()
        self.claim_recourse()
        for core in CORES:
            for _ in range(1 + (last and core != "CORE3")):
                supplier = self.rng.choice(TIER1)
                self.issue(core, supplier, self.maturity(2, 8) if not last else self.later())
        self.move_some()


def _date(day: int) -> datetime.date:
    return datetime.date(day // 10_000, day // 100 % 100, day % 100)


def generate_scf_ledger(tmp_path: Path, seed: int = 1, days: int = 8) -> ScfLedger:
    """The seeded supply-chain ledger (see the module docstring) over `days` trading days from
    Monday 5 January 2026. Deterministic for a seed but for the consortium's generated keys."""
    chain = Chain.create(tmp_path, brokers=2)
    calendar = trading_days(datetime.date(2026, 1, 5), days)
    generator = _Generator(chain=chain, rng=random.Random(seed), days=calendar)
    for index, day in enumerate(calendar):
        generator.run_day(day, first=index == 0, last=index == len(calendar) - 1)
    generator.block([{"type": "end_day", "day": generator.day}])
    pieces = {
        piece_id: (piece.status, piece.holder, piece.amount, piece.parent, piece.pledgee)
        for piece_id, piece in generator.venue_chain.pieces().items()
    }
    chain.close()
    return ScfLedger(consortium=chain.directory, node=chain.node, days=tuple(calendar),
                     pieces=pieces)  # fmt: skip
