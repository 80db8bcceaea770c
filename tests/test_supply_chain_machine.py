"""A hypothesis state machine: the venue's supply-chain finance against a naive model.

The model keeps each piece as a dict and each participant's cash as an int, and decides each
command's outcome (the refusal reason, or what moves) with plain code written from the rules
in docs/supply_chain.md. After every step the venue's events must name the model's reason,
and cash, holders, statuses, amounts and outstanding sums must agree; `Venue.check` runs after
every command (Σ children = parent, pledged pieces unmoved, paid or failed once, ...).
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from settlement import supply_chain_types as scf
from settlement.commands import Transfer
from tests.supply_chain_flow import CASH, CASH_START, DAY1, ROLES, Flow, bank_of

R = scf.ScfRejectReason
PARTICIPANTS = sorted(ROLES)
CORES = ("CORE", "CORE2")
LIMIT = 3_000_000
DAYS = [20260105 + i for i in range(0, 60)]  # consecutive yyyymmdd in January-February
DAYS = [d for d in DAYS if d % 100 <= 28 and d % 10000 // 100 in (1, 2)]

who = st.sampled_from(PARTICIPANTS)


class Model:
    """The obvious implementation: pieces as dicts, cash as ints."""

    def __init__(self) -> None:
        self.cash = dict.fromkeys(PARTICIPANTS, CASH_START)
        self.pieces: dict[int, dict[str, Any]] = {}
        self.day = DAY1
        self.banks = {bank for bank, _ in ROLES.values()}

    def outstanding(self, issuer: str) -> int:
        return sum(
            p["amount"]
            for p in self.pieces.values()
            if p["issuer"] == issuer and p["status"] in ("unconfirmed", "active", "pledged")
        )

    def movable(self, piece_id: int, participant: str) -> R | None:
        piece = self.pieces.get(piece_id)
        if piece is None:
            return R.UNKNOWN_PIECE
        if piece["holder"] != participant:
            return R.NOT_HOLDER
        if piece["status"] not in ("unconfirmed", "active", "pledged"):
            return R.PIECE_NOT_LIVE
        if piece["status"] == "unconfirmed":
            return R.NOT_CONFIRMED
        if piece["status"] == "pledged":
            return R.PIECE_PLEDGED
        return None

    def new_piece(self, **fields: Any) -> int:
        piece_id = len(self.pieces) + 1
        self.pieces[piece_id] = {"children": [], "claims": 0, "pledgee": ""} | fields
        return piece_id

    def issue(self, issuer: str, holder: str, amount: int, maturity: int) -> R | None:
        if ROLES[issuer][1] is not scf.ParticipantRole.CORE_ENTERPRISE:
            return R.NOT_AUTHORIZED
        if holder == issuer:
            return R.SAME_PARTICIPANT
        if maturity <= self.day:
            return R.INVALID_MATURITY
        if self.outstanding(issuer) + amount > LIMIT:
            return R.CREDIT_LIMIT_EXCEEDED
        self.new_piece(issuer=issuer, holder=holder, amount=amount, maturity=maturity,
                       status="unconfirmed", chain=[])  # fmt: skip
        return None

    def confirm(self, piece_id: int, participant: str) -> R | None:
        piece = self.pieces.get(piece_id)
        if piece is None:
            return R.UNKNOWN_PIECE
        if piece["holder"] != participant:
            return R.NOT_HOLDER
        if piece["status"] != "unconfirmed":
            live = piece["status"] in ("active", "pledged")
            return R.ALREADY_CONFIRMED if live else R.PIECE_NOT_LIVE
        piece["status"] = "active"
        return None

    def split(self, piece_id: int, participant: str, amounts: list[int]) -> R | None:
        reason = self.movable(piece_id, participant)
        if reason is not None:
            return reason
        piece = self.pieces[piece_id]
        if not 2 <= len(amounts) <= 16 or min(amounts) < 1:
            return R.INVALID_SPLIT
        if sum(amounts) != piece["amount"]:
            return R.SPLIT_NOT_SUM
        for amount in amounts:
            child = self.new_piece(**{**piece, "amount": amount, "status": "active",
                                      "chain": list(piece["chain"]), "children": []})  # fmt: skip
            piece["children"].append(child)
        piece["status"] = "split"
        return None

    def transfer(self, piece_id: int, participant: str, to: str, recourse: bool) -> R | None:
        reason = self.movable(piece_id, participant)
        if reason is not None:
            return reason
        if to == participant:
            return R.SAME_PARTICIPANT
        piece = self.pieces[piece_id]
        piece["chain"].append((participant, recourse))
        piece["holder"] = to
        return None

    def finance(self, piece_id: int, participant: str, factor: str, price: int) -> R | None:
        reason = self.movable(piece_id, participant)
        if reason is not None:
            return reason
        if ROLES[factor][1] is not scf.ParticipantRole.FACTOR:
            return R.NOT_A_FACTOR
        if factor == participant:
            return R.SAME_PARTICIPANT
        piece = self.pieces[piece_id]
        if not 0 < price <= piece["amount"]:
            return R.INVALID_AMOUNT
        if self.cash[factor] < price:
            return R.INSUFFICIENT_CASH
        self.cash[factor] -= price
        self.cash[participant] += price
        piece["chain"].append((participant, True))
        piece["holder"] = factor
        return None

    def pledge(self, piece_id: int, participant: str, pledgee: str) -> R | None:
        reason = self.movable(piece_id, participant)
        if reason is not None:
            return reason
        if pledgee not in self.banks:
            return R.UNKNOWN_BANK
        self.pieces[piece_id] |= {"status": "pledged", "pledgee": pledgee}
        return None

    def release(self, piece_id: int, actor: str) -> R | None:
        piece = self.pieces.get(piece_id)
        if piece is None:
            return R.UNKNOWN_PIECE
        if piece["status"] != "pledged" or piece["pledgee"] != actor:
            return R.NOT_PLEDGED
        piece |= {"status": "active", "pledgee": ""}
        return None

    def begin_day(self, day: int) -> None:
        self.day = day
        due: dict[str, list[dict[str, Any]]] = {}
        for piece in self.pieces.values():
            if piece["maturity"] <= day and piece["status"] in ("unconfirmed", "active", "pledged"):
                due.setdefault(piece["issuer"], []).append(piece)
        for issuer, pieces in sorted(due.items()):  # issuer by issuer, as documented
            total = sum(p["amount"] for p in pieces)
            pays = self.cash[issuer] >= total
            if pays:
                self.cash[issuer] -= total
            for piece in pieces:
                piece["pledgee"] = ""
                piece["status"] = "paid" if pays else "failed"
                if pays:
                    self.cash[piece["holder"]] += piece["amount"]

    def claim(self, piece_id: int, participant: str) -> R | None:
        piece = self.pieces.get(piece_id)
        if piece is None:
            return R.UNKNOWN_PIECE
        if piece["holder"] != participant:
            return R.NOT_HOLDER
        if piece["status"] != "failed":
            return R.NOT_FAILED
        tier = len(piece["chain"]) - 1 - piece["claims"]
        if tier < 0:
            return R.NO_FURTHER_RECOURSE
        piece["claims"] += 1
        transferor, with_recourse = piece["chain"][tier]
        if with_recourse and self.cash[transferor] >= piece["amount"]:
            self.cash[transferor] -= piece["amount"]
            self.cash[participant] += piece["amount"]
            piece["status"] = "recovered"
        return None


class SupplyChainMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.flow = Flow(limit=LIMIT)
        self.model = Model()
        self.day_index = 0

    def pick(self, data: st.DataObject) -> tuple[int, str]:
        """A piece (mostly one that exists) and a participant (mostly its holder)."""
        known = sorted(self.model.pieces)
        piece = data.draw(st.sampled_from(known) if known and data.draw(st.integers(0, 9)) else
                          st.integers(1, 30))  # fmt: skip
        holder = self.model.pieces[piece]["holder"] if piece in self.model.pieces else "SUP1"
        participant = holder if data.draw(st.integers(0, 5)) else data.draw(who)
        return piece, participant

    def check(self, events: list[Any], reason: R | None) -> None:
        refused = [e.reason for e in events if type(e) is scf.ScfRejected]
        assert refused == ([] if reason is None else [reason]), (events, reason)

    @rule(issuer=st.sampled_from(("CORE", "CORE2", "CORE", "CORE2", "SUP1")), holder=who,
          amount=st.integers(1, 700_000), days=st.integers(0, 4))  # fmt: skip
    def issue(self, issuer: str, holder: str, amount: int, days: int) -> None:
        maturity = DAYS[min(self.day_index + days, len(DAYS) - 1)] if days else DAYS[0]
        events = self.flow.send(scf.IssueCommitment, issuer, holder=holder, amount=amount,
                                currency=CASH, maturity=maturity)  # fmt: skip
        self.check(events, self.model.issue(issuer, holder, amount, maturity))
        if type(events[0]) is scf.CommitmentIssued and days % 2:  # confirm most at once
            confirmed = self.flow.send(scf.ConfirmCommitment, holder, piece=events[0].piece)
            self.check(confirmed, self.model.confirm(events[0].piece, holder))

    @precondition(lambda self: self.model.pieces)
    @rule(data=st.data())
    def confirm(self, data: st.DataObject) -> None:
        piece, participant = self.pick(data)
        events = self.flow.send(scf.ConfirmCommitment, participant, piece=piece)
        self.check(events, self.model.confirm(piece, participant))

    @precondition(lambda self: self.model.pieces)
    @rule(data=st.data())
    def split(self, data: st.DataObject) -> None:
        piece, participant = self.pick(data)
        amount = self.model.pieces[piece]["amount"] if piece in self.model.pieces else 10
        cuts = data.draw(st.lists(st.integers(1, max(amount - 1, 1)), max_size=3, unique=True))
        points = sorted(c for c in cuts if c < amount)
        amounts = [b - a for a, b in zip([0, *points], [*points, amount], strict=True)]
        if data.draw(st.booleans()):
            amounts[-1] += data.draw(st.sampled_from((-1, 1)))  # does not sum (or not >= 1)
        events = self.flow.send(scf.SplitCommitment, participant, piece=piece,
                                amounts=tuple(amounts))  # fmt: skip
        self.check(events, self.model.split(piece, participant, amounts))

    @precondition(lambda self: self.model.pieces)
    @rule(data=st.data(), to=who, recourse=st.booleans())
    def transfer(self, data: st.DataObject, to: str, recourse: bool) -> None:
        piece, participant = self.pick(data)
        events = self.flow.send(scf.TransferCommitment, participant, piece=piece, to=to,
                                recourse=recourse)  # fmt: skip
        self.check(events, self.model.transfer(piece, participant, to, recourse))

    @precondition(lambda self: self.model.pieces)
    @rule(data=st.data(), factor=st.sampled_from(("FAC", "SUP2")),
          price=st.integers(1, 1_000_000))  # fmt: skip
    def finance(self, data: st.DataObject, factor: str, price: int) -> None:
        piece, participant = self.pick(data)
        events = self.flow.send(scf.FinanceCommitment, participant, piece=piece, factor=factor,
                                price=price)  # fmt: skip
        self.check(events, self.model.finance(piece, participant, factor, price))

    @precondition(lambda self: self.model.pieces)
    @rule(data=st.data(), pledgee=st.sampled_from(("BANK1", "BANK2", "X")))
    def pledge(self, data: st.DataObject, pledgee: str) -> None:
        piece, participant = self.pick(data)
        events = self.flow.send(scf.PledgeCommitment, participant, piece=piece, pledgee=pledgee)
        self.check(events, self.model.pledge(piece, participant, pledgee))

    @precondition(lambda self: self.model.pieces)
    @rule(data=st.data(), actor=st.sampled_from(("BANK1", "BANK2")))
    def release(self, data: st.DataObject, actor: str) -> None:
        piece, _ = self.pick(data)
        events = self.flow.bank(scf.ReleasePledge, actor=actor, piece=piece)
        self.check(events, self.model.release(piece, actor))

    @precondition(lambda self: self.model.pieces)
    @rule(data=st.data())
    def claim(self, data: st.DataObject) -> None:
        piece, participant = self.pick(data)
        events = self.flow.send(scf.ClaimRecourse, participant, piece=piece)
        self.check(events, self.model.claim(piece, participant))

    @rule(core=st.sampled_from(CORES), amount=st.integers(500_000, 1_000_000))
    def spend(self, core: str, amount: int) -> None:
        """The core enterprise pays cash out (a free transfer to FAC): later it may be short."""
        amount = min(amount, self.model.cash[core])
        if amount:
            self.flow.apply(Transfer(command_id=self.flow.next_id(bank_of(core)),
                                     actor=bank_of(core), asset=CASH, source=core,
                                     destination="FAC", amount=amount))  # fmt: skip
            self.model.cash[core] -= amount
            self.model.cash["FAC"] += amount

    @rule(days=st.integers(1, 2))
    def next_day(self, days: int) -> None:
        if self.day_index + days >= len(DAYS):
            return
        self.day_index += days
        self.flow.next_day(DAYS[self.day_index])
        self.model.begin_day(DAYS[self.day_index])

    @invariant()
    def agrees_with_the_model(self) -> None:
        chain = self.flow.venue.supply_chain
        for name in PARTICIPANTS:
            assert self.flow.cash(name) == self.model.cash[name], name
        assert set(chain.pieces()) == set(self.model.pieces)
        for piece_id, expected in self.model.pieces.items():
            piece = chain.pieces()[piece_id]
            got = (piece.holder, piece.amount, piece.status.name.lower(), piece.pledgee)
            want = (expected["holder"], expected["amount"], expected["status"],
                    expected["pledgee"])  # fmt: skip
            assert got == want, piece_id
        for core in CORES:
            assert chain.outstanding(core) == self.model.outstanding(core)


SupplyChainMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=50, deadline=None
)
TestSupplyChainMachine = SupplyChainMachine.TestCase
