"""A venue with supply-chain participants, and helpers that sign and send their commands.

Participants are settlement accounts; a participant's bank is its account's broker:

- CORE (core enterprise, BANK1), CORE2 (core enterprise, BANK2)
- SUP1 (supplier, BANK1), SUP2 (supplier, BANK2), SUP3 (supplier, BANK1)
- FAC (factor, BANK2)
"""

from __future__ import annotations

import dataclasses
from typing import Any

from exchange.supply_chain import cosign, sign
from exchange.venue.types import BeginDay, EndDay, Event, VenueCommand
from exchange.venue.venue import Venue
from ledger.keys import PrivateKey, private_key_from_bytes
from settlement import supply_chain_types as scf
from settlement.commands import DefineAsset, Deposit, OpenAccount
from settlement.types import AssetKind

OPERATOR, REGULATOR, CASH_ISSUER = "EXCHANGE", "CSRC", "PBOC"
CASH = "CNY"
DAY1, DAY2, DAY3, DAY4 = 20260105, 20260106, 20260107, 20260108
ROLES = {
    "CORE": ("BANK1", scf.ParticipantRole.CORE_ENTERPRISE),
    "CORE2": ("BANK2", scf.ParticipantRole.CORE_ENTERPRISE),
    "SUP1": ("BANK1", scf.ParticipantRole.SUPPLIER),
    "SUP2": ("BANK2", scf.ParticipantRole.SUPPLIER),
    "SUP3": ("BANK1", scf.ParticipantRole.SUPPLIER),
    "FAC": ("BANK2", scf.ParticipantRole.FACTOR),
}
KEYS: dict[str, PrivateKey] = {
    name: private_key_from_bytes(bytes([index + 1]) * 32) for index, name in enumerate(ROLES)
}
CASH_START = 1_000_000  # fen per participant


def bank_of(participant: str) -> str:
    return ROLES[participant][0]


class Flow:
    """A venue with cash, the participants' accounts and (optionally) their keys registered;
    `send` signs a participant's command with its key and sends it through its bank."""

    def __init__(
        self, *, register: bool = True, limit: int = 10_000_000, outcomes_max: int = 10_000
    ) -> None:
        self.venue = Venue(
            operator=OPERATOR, regulator=REGULATOR, command_outcomes_max=outcomes_max
        )
        self.ids: dict[str, int] = {}
        self.apply(
            DefineAsset(
                command_id=self.next_id(OPERATOR),
                actor=OPERATOR,
                asset=CASH,
                kind=AssetKind.CASH,
                issuer=CASH_ISSUER,
            )
        )
        for name, (bank, _) in ROLES.items():
            self.apply(
                OpenAccount(
                    command_id=self.next_id(OPERATOR), actor=OPERATOR, account=name, broker=bank
                )
            )
            self.apply(
                Deposit(
                    command_id=self.next_id(CASH_ISSUER),
                    actor=CASH_ISSUER,
                    asset=CASH,
                    account=name,
                    amount=CASH_START,
                )
            )
        self.apply(BeginDay(day=DAY1))
        if register:
            for name in ROLES:
                self.register(name)
            for name in ("CORE", "CORE2"):
                self.bank(scf.SetCreditLimit, participant=name, limit=limit)

    def next_id(self, sender: str) -> int:
        self.ids[sender] = self.ids.get(sender, 0) + 1
        return self.ids[sender]

    def apply(self, command: VenueCommand) -> list[Event]:
        events = self.venue.apply(command)
        self.venue.check()
        return events

    def register(self, name: str) -> list[Event]:
        bank, role = ROLES[name]
        return self.bank(
            scf.RegisterParticipant,
            actor=bank,
            participant=name,
            role=role,
            public_key=KEYS[name].public_key.hex(),
        )

    def bank(self, cls: type[Any], *, actor: str | None = None, **fields: Any) -> list[Event]:
        """A member's (bank's) command: by the participant's bank unless `actor` is given."""
        if actor is None:
            actor = bank_of(fields["participant"])
        command = cls(command_id=self.next_id("m/" + actor), actor=actor, **fields)
        return self.apply(command)

    def command(self, cls: type[Any], participant: str, **fields: Any) -> Any:
        """The participant's command, signed with its key (and the factor's, for a financing),
        sent through its bank, with the participant's next command id."""
        values: dict[str, Any] = {
            "command_id": self.next_id("p/" + participant),
            "actor": bank_of(participant),
            "participant": participant,
            "signature": "",
        }
        if cls is scf.FinanceCommitment:
            values["factor_signature"] = ""
        command = cls(**(values | fields))
        command = sign(command, KEYS[participant])
        if cls is scf.FinanceCommitment and command.factor in KEYS:
            command = cosign(command, KEYS[command.factor])
        return command

    def send(self, cls: type[Any], participant: str, **fields: Any) -> list[Event]:
        return self.apply(self.command(cls, participant, **fields))

    def issue(self, amount: int, *, holder: str = "SUP1", issuer: str = "CORE", **more: Any) -> int:
        """Issue and confirm a commitment; its piece id."""
        fields: dict[str, Any] = {"maturity": DAY3, "currency": CASH} | more
        events = self.send(scf.IssueCommitment, issuer, holder=holder, amount=amount, **fields)
        assert type(events[0]) is scf.CommitmentIssued, events
        piece: int = events[0].piece
        confirmed = self.send(scf.ConfirmCommitment, holder, piece=piece)
        assert type(confirmed[0]) is scf.CommitmentConfirmed, confirmed
        return piece

    def next_day(self, day: int) -> list[Event]:
        if self.venue.day_open:
            self.apply(EndDay(day=self.venue.day))
        return self.apply(BeginDay(day=day))

    def cash(self, participant: str) -> int:
        return self.venue.settlement.available(CASH, participant)


def reason_of(events: list[Event]) -> tuple[scf.ScfRejectReason, str]:
    """The reason and value of a refusal (asserted to be one)."""
    assert len(events) == 1 and type(events[0]) is scf.ScfRejected, events
    return events[0].reason, events[0].value


def unsigned(command: Any) -> Any:
    return dataclasses.replace(command, signature="00" * 64)
