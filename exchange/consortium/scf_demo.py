"""The supply-chain part of `jinlian up --demo`: one payment commitment's life on the running
consortium, through the member API and the client library as a bank's and its clients'
programs would.

The operator opens four settlement accounts at bank1 (a core enterprise, a tier-1 and a tier-2
supplier, a factor) and bank1, the cash issuer, funds the core enterprise and the factor. Each
participant holds its own Ed25519 key (`DIR/participants/<name>/key.pem`, made on the first
run); bank1 registers the public keys and sets the core enterprise's credit limit, then
forwards each participant's signed command through its member session
(`Client.participant_command`). The supplier registers an invoice and the core enterprise
confirms it and issues a payment commitment on it; the supplier confirms (确权), splits it,
passes one piece down to its own supplier and sells the other to the factor at a discount; a
second commitment on the same invoice is refused. At the maturity day's `begin_day` the core
enterprise pays every holder. Each step prints the venue's answer and its block.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from exchange.gateway.client import Client
from exchange.supply_chain import cosign, invoice_content_hash, invoice_key_hash
from ledger.keys import PrivateKey, generate_private_key, load_private_key, save_private_key
from settlement import supply_chain_types as scf
from settlement.supply_chain import wire_name

CASH: Final = "CNY"
CORE, SUPPLIER, SUB_SUPPLIER, FACTOR = "CORE", "SUP1", "SUP2", "FAC"
ROLES: Final = {
    CORE: "core_enterprise",
    SUPPLIER: "supplier",
    SUB_SUPPLIER: "supplier",
    FACTOR: "factor",
}
FUNDING: Final = {CORE: 2_000_000_00, FACTOR: 1_000_000_00}  # fen
CREDIT_LIMIT: Final = 5_000_000_00
FACE: Final = 1_000_000_00  # the commitment, on an invoice of the same amount
PIECES: Final = (600_000_00, 400_000_00)  # the split
DISCOUNT_BPS_ACT360: Final = 360  # the factor's annual discount rate: 3.60% on face, ACT/360
COMMAND_IDS_FROM: Final = 60_001  # the operator's and bank1's settlement ids (above genesis')


class DemoError(RuntimeError):
    """A step of the demo was refused (on a consortium where it already ran, say)."""


def money(fen: int) -> str:
    """`123456789` -> `1,234,567.89 CNY` (exact: integer arithmetic)."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole:,}.{cents:02d} {CASH}"


def participant_keys(directory: Path) -> dict[str, PrivateKey]:
    """Each participant's key from `directory/<name>/key.pem`, made and saved if missing: the
    participant's own, which its bank never holds."""
    keys = {}
    for name in ROLES:
        path = directory / name / "key.pem"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            save_private_key(generate_private_key(), path)
        keys[name] = load_private_key(path)
    return keys


def discounted_price(face: int, days: int, rate_bps: int = DISCOUNT_BPS_ACT360) -> int:
    """The price of `face` fen due in `days` days at an annual discount rate of `rate_bps` on
    the face (ACT/360, as bills are discounted), the discount rounded up to the fen."""
    discount = -(-face * rate_bps * days // (10_000 * 360))
    return face - discount


@dataclass(kw_only=True)
class ScfDemo:
    """The flow's clients and participants; `cash` and `pieces` follow the venue's events."""

    operator: Client
    bank: Client
    keys: dict[str, PrivateKey]
    ids: dict[str, int] = field(default_factory=dict)
    cash: dict[str, int] = field(default_factory=dict)
    pieces: dict[int, dict[str, Any]] = field(default_factory=dict)
    say: Callable[[str], None] = print

    def next_id(self, sender: str, start: int = 1) -> int:
        self.ids[sender] = self.ids.get(sender, start - 1) + 1
        return self.ids[sender]

    async def member(self, client: Client, command: dict[str, Any], *, refused: bool = False
                     ) -> dict[str, Any]:  # fmt: skip
        """A member's command; its result, whose events must not be a refusal (or must be
        one, when `refused`)."""
        result = await client.admin(command)
        self.check(command["type"], result, refused=refused)
        return result

    async def participant(self, cls: type[Any], name: str, *, refused: bool = False,
                          **fields: Any) -> dict[str, Any]:  # fmt: skip
        """`name`'s command, signed with its key (and the factor's for a financing), sent by
        the bank."""
        values: dict[str, Any] = {"command_id": self.next_id("p/" + name),
                                  "actor": self.bank.name, "participant": name,
                                  "signature": ""}  # fmt: skip
        if cls is scf.FinanceCommitment:
            values["factor_signature"] = ""
        command = cls(**values, **fields)
        if cls is scf.FinanceCommitment:
            command = cosign(command, self.keys[fields["factor"]])
        result = await self.bank.participant_command(command, self.keys[name])
        self.check(wire_name(cls), result, refused=refused)
        return result

    def check(self, what: str, result: dict[str, Any], *, refused: bool) -> None:
        kinds = [event["type"] for event in result["events"]]
        rejected = [e for e in result["events"] if e["type"].endswith(("rejected", "refused"))]
        if bool(rejected) != refused:
            raise DemoError(f"{what}: {result['events']} (has the demo run here already?)")
        for event in result["events"]:
            self.follow(event)
        if not refused:
            self.say(f"  {what} -> {', '.join(kinds)} in block {result['height']}")

    def follow(self, event: dict[str, Any]) -> None:
        """Keep `cash` and `pieces` as the events say."""
        kind = event["type"]
        if kind == "deposited":
            self.cash[event["account"]] = self.cash.get(event["account"], 0) + event["amount"]
        elif kind == "commitment_issued":
            self.pieces[event["piece"]] = {"amount": event["amount"], "holder": event["holder"],
                                           "status": "unconfirmed"}  # fmt: skip
        elif kind == "commitment_confirmed":
            self.pieces[event["piece"]]["status"] = "active"
        elif kind == "commitment_split":
            parent = self.pieces[event["piece"]]
            parent["status"] = "split"
            for child, amount in zip(event["children"], event["amounts"], strict=True):
                self.pieces[child] = {"amount": amount, "holder": parent["holder"],
                                      "status": "active"}  # fmt: skip
        elif kind == "commitment_transferred":
            self.pieces[event["piece"]]["holder"] = event["holder"]
        elif kind == "commitment_financed":
            self.pieces[event["piece"]]["holder"] = event["factor"]
            self.move(event["factor"], event["seller"], event["price"])
        elif kind in ("commitment_paid", "commitment_failed"):
            self.pieces[event["piece"]]["status"] = kind.removeprefix("commitment_")
            if kind == "commitment_paid":
                self.move(event["issuer"], event["holder"], event["amount"])

    def move(self, payer: str, payee: str, amount: int) -> None:
        self.cash[payer] = self.cash.get(payer, 0) - amount
        self.cash[payee] = self.cash.get(payee, 0) + amount

    def show_holdings(self) -> None:
        for piece_id, piece in sorted(self.pieces.items()):
            self.say(f"  piece {piece_id}: {money(piece['amount'])}, held by "
                     f"{piece['holder']}, {piece['status']}")  # fmt: skip
        for name in ROLES:
            self.say(f"  {name:<5} ({ROLES[name]}): cash {money(self.cash.get(name, 0))}")


async def run_supply_chain(
    demo: ScfDemo, *, day: int, maturity: int, say: Callable[[str], None] = print
) -> int:
    """The flow (module docstring) on the consortium whose trading day `day` is open; ends
    `day` and begins `maturity` (yyyymmdd, a later day), whose `begin_day` pays the pieces.
    Returns the height of the block that paid them. Raises DemoError if a step is refused."""
    demo.say = say
    bank, operator = demo.bank.name, demo.operator.name
    say(f"\nsupply-chain finance: the operator opens accounts at {bank} for a core enterprise "
        f"({CORE}), its supplier ({SUPPLIER}), the supplier's supplier ({SUB_SUPPLIER}) and a "
        f"factor ({FACTOR}); {bank} funds them, registers their public keys and sets {CORE}'s "
        f"credit limit ({money(CREDIT_LIMIT)}):")  # fmt: skip
    for name in ROLES:
        await demo.member(
            demo.operator,
            {
                "type": "open_account",
                "account": name,
                "broker": bank,
                "command_id": demo.next_id(operator, COMMAND_IDS_FROM),
            },
        )
    for name, amount in FUNDING.items():
        await demo.member(
            demo.bank,
            {
                "type": "deposit",
                "asset": CASH,
                "account": name,
                "amount": amount,
                "command_id": demo.next_id(bank, COMMAND_IDS_FROM),
            },
        )
    for name, role in ROLES.items():
        await demo.member(
            demo.bank,
            {
                "type": "register_participant",
                "participant": name,
                "role": role,
                "command_id": demo.next_id("m/" + bank),
                "public_key": demo.keys[name].public_key.hex(),
            },
        )
    await demo.member(
        demo.bank,
        {
            "type": "set_credit_limit",
            "participant": CORE,
            "limit": CREDIT_LIMIT,
            "command_id": demo.next_id("m/" + bank),
        },
    )
    say(f"{SUPPLIER} invoices {CORE} {money(FACE)}; {CORE} confirms the invoice and issues a "
        f"payment commitment on it, due {maturity}; each signs with its own key:")  # fmt: skip
    number = f"INV-{day}-0001"
    key = invoice_key_hash(SUPPLIER, CORE, number)
    content = invoice_content_hash(f"{number}: 1,000 brake assemblies, {money(FACE)}".encode())
    await demo.participant(scf.RegisterInvoice, SUPPLIER, buyer=CORE, key_hash=key,
                           content_hash=content, amount=FACE)  # fmt: skip
    await demo.participant(scf.ConfirmInvoice, CORE, key_hash=key)
    issued = await demo.participant(scf.IssueCommitment, CORE, holder=SUPPLIER, amount=FACE,
                                    currency=CASH, maturity=maturity, invoice=key)  # fmt: skip
    piece = issued["events"][0]["piece"]
    say(f"{SUPPLIER} confirms it (确权), splits it into {money(PIECES[0])} and "
        f"{money(PIECES[1])}, passes the first to {SUB_SUPPLIER} and sells the second to "
        f"{FACTOR}:")  # fmt: skip
    await demo.participant(scf.ConfirmCommitment, SUPPLIER, piece=piece)
    split = await demo.participant(scf.SplitCommitment, SUPPLIER, piece=piece, amounts=PIECES)
    first, second = split["events"][0]["children"]
    await demo.participant(scf.TransferCommitment, SUPPLIER, piece=first, to=SUB_SUPPLIER)
    days = _days(day, maturity)
    price = discounted_price(PIECES[1], days)
    say(
        f"  {FACTOR} pays {money(price)} for {money(PIECES[1])} due in {days} days "
        f"({DISCOUNT_BPS_ACT360 / 100:.2f}% a year on face, ACT/360), in the same step:"
    )
    await demo.participant(scf.FinanceCommitment, SUPPLIER, piece=second, factor=FACTOR,
                           price=price)  # fmt: skip
    second_try = await demo.participant(scf.IssueCommitment, CORE, refused=True,
                                        holder=SUPPLIER, amount=FACE, currency=CASH,
                                        maturity=maturity, invoice=key)  # fmt: skip
    refusal = second_try["events"][0]
    say(f"a second commitment on the same invoice is refused: {refusal['reason']} "
        f"({refusal['value']})")  # fmt: skip
    say(f"the operator ends day {day} and begins {maturity}; {CORE} pays the holders:")
    await demo.member(demo.operator, {"type": "end_day", "day": day})
    paid = await demo.member(demo.operator, {"type": "begin_day", "day": maturity})
    for event in paid["events"]:
        if event["type"] == "commitment_paid":
            say(f"  piece {event['piece']}: {money(event['amount'])} {event['issuer']} -> "
                f"{event['holder']}")  # fmt: skip
    say("the pieces and the participants' cash after the flow:")
    demo.show_holdings()
    return int(paid["height"])


def _days(first: int, last: int) -> int:
    """Calendar days from `first` to `last` (yyyymmdd)."""

    def date(day: int) -> datetime.date:
        return datetime.date(day // 10_000, day // 100 % 100, day % 100)

    return (date(last) - date(first)).days
