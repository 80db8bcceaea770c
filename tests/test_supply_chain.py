"""Supply-chain finance through the venue: exact amounts for each rule, refusals naming the
value, idempotency, snapshots and the state commitment (settlement/supply_chain.py)."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from exchange.supply_chain import invoice_content_hash, invoice_key_hash
from exchange.venue import wire
from exchange.venue.commitment import StateCommitment, commitment_of_snapshot
from exchange.venue.machine import VenueMachine
from exchange.venue.supply_chain import signing_bytes, verify_signature
from exchange.venue.types import BeginDay, EndDay, VenueCommand
from exchange.venue.venue import Venue
from exchange.venue.wire_fast import slow_event_bytes
from settlement import supply_chain_types as scf
from settlement.commands import Freeze
from tests.supply_chain_flow import (
    CASH,
    CASH_START,
    DAY1,
    DAY2,
    DAY3,
    DAY4,
    KEYS,
    REGULATOR,
    ROLES,
    Flow,
    reason_of,
    unsigned,
)

R = scf.ScfRejectReason
S = scf.PieceStatus


def test_issue_confirm_split_transfer_finance_and_pay_at_maturity_exact_amounts() -> None:
    flow = Flow()
    piece = flow.issue(1_000_00)
    assert flow.venue.supply_chain.outstanding("CORE") == 1_000_00
    split = flow.send(scf.SplitCommitment, "SUP1", piece=piece, amounts=(600_00, 399_99, 1))
    assert split == [scf.CommitmentSplit(piece, (2, 3, 4), (600_00, 399_99, 1))]
    assert flow.venue.supply_chain.lineage(3) == [1, 2, 3, 4]
    moved = flow.send(scf.TransferCommitment, "SUP1", piece=2, to="SUP2", recourse=True)
    assert moved == [scf.CommitmentTransferred(2, "SUP1", "SUP2", True)]
    financed = flow.send(scf.FinanceCommitment, "SUP2", piece=2, factor="FAC", price=590_00)
    assert financed == [scf.CommitmentFinanced(2, "SUP2", "FAC", 590_00, 600_00, True)]
    assert flow.cash("SUP2") == CASH_START + 590_00
    assert flow.cash("FAC") == CASH_START - 590_00
    flow.next_day(DAY2)
    assert flow.cash("FAC") == CASH_START - 590_00  # not due yet
    events = flow.next_day(DAY3)
    paid = [e for e in events if type(e) is scf.CommitmentPaid]
    assert paid == [
        scf.CommitmentPaid(2, "CORE", "FAC", 600_00, CASH),
        scf.CommitmentPaid(3, "CORE", "SUP1", 399_99, CASH),
        scf.CommitmentPaid(4, "CORE", "SUP1", 1, CASH),
    ]
    assert flow.cash("CORE") == CASH_START - 1_000_00
    assert flow.cash("FAC") == CASH_START + 10_00
    assert flow.cash("SUP1") == CASH_START + 400_00
    assert flow.venue.supply_chain.outstanding("CORE") == 0
    assert {flow.venue.supply_chain.pieces()[i].status for i in (2, 3, 4)} == {S.PAID}
    assert flow.venue.supply_chain.pieces()[1].status is S.SPLIT
    # a matured piece cannot move
    reason, value = reason_of(flow.send(scf.TransferCommitment, "FAC", piece=2, to="SUP1"))
    assert (reason, value) == (R.PIECE_NOT_LIVE, "paid")


def test_credit_limit_refuses_issuance_beyond_it_naming_the_amounts() -> None:
    flow = Flow(limit=1_000)
    flow.issue(700)
    events = flow.send(scf.IssueCommitment, "CORE", holder="SUP1", amount=301, currency=CASH,
                       maturity=DAY3)  # fmt: skip
    assert reason_of(events) == (R.CREDIT_LIMIT_EXCEEDED, "700 + 301 > 1000")
    flow.send(scf.IssueCommitment, "CORE", holder="SUP1", amount=300, currency=CASH, maturity=DAY3)
    assert flow.venue.supply_chain.outstanding("CORE") == 1_000
    # a supplier may not issue, nor have a limit
    events = flow.send(scf.IssueCommitment, "SUP1", holder="SUP2", amount=1, currency=CASH,
                       maturity=DAY3)  # fmt: skip
    assert reason_of(events) == (R.NOT_AUTHORIZED, "SUP1")
    assert reason_of(flow.bank(scf.SetCreditLimit, participant="SUP1", limit=5)) == (
        R.NOT_AUTHORIZED,
        "SUP1",
    )
    # only the core enterprise's bank sets its limit
    events = flow.bank(scf.SetCreditLimit, actor="BANK2", participant="CORE", limit=10**9)
    assert reason_of(events) == (R.NOT_YOUR_PARTICIPANT, "BANK2")


def test_participant_commands_need_a_registered_key_the_bank_and_a_valid_signature() -> None:
    flow = Flow()
    piece = flow.issue(500)
    command = flow.command(scf.TransferCommitment, "SUP1", piece=piece, to="SUP2")
    assert reason_of(flow.apply(unsigned(command))) == (R.BAD_SIGNATURE, "SUP1")
    # the bank cannot act for its client without the client's key: another's signature fails
    forged = dataclasses.replace(command, signature=KEYS["SUP3"].sign(signing_bytes(command)).hex())
    assert reason_of(flow.apply(forged)) == (R.BAD_SIGNATURE, "SUP1")
    # a signature over different contents fails
    changed = dataclasses.replace(command, to="SUP3")
    assert reason_of(flow.apply(changed)) == (R.BAD_SIGNATURE, "SUP1")
    via_other_bank = dataclasses.replace(command, actor="BANK2")
    assert reason_of(flow.apply(via_other_bank)) == (R.NOT_YOUR_PARTICIPANT, "BANK2")
    stranger = dataclasses.replace(command, participant="NOBODY")
    assert reason_of(flow.apply(stranger)) == (R.UNKNOWN_PARTICIPANT, "NOBODY")
    # refused unauthenticated commands did not use the id: the genuine one still goes through
    assert type(flow.apply(command)[0]) is scf.CommitmentTransferred
    # the factor must co-sign a financing
    sale = flow.command(scf.FinanceCommitment, "SUP2", piece=piece, factor="FAC", price=400)
    assert reason_of(flow.apply(dataclasses.replace(sale, factor_signature="11" * 64))) == (
        R.BAD_SIGNATURE,
        "FAC",
    )
    assert type(flow.apply(sale)[0]) is scf.CommitmentFinanced


def test_registration_by_the_bank_of_the_account_only() -> None:
    flow = Flow(register=False)
    key = KEYS["SUP1"].public_key.hex()
    role = scf.ParticipantRole.SUPPLIER
    events = flow.bank(scf.RegisterParticipant, actor="BANK2", participant="SUP1", role=role,
                       public_key=key)  # fmt: skip
    assert reason_of(events) == (R.NOT_YOUR_PARTICIPANT, "BANK2")
    events = flow.bank(scf.RegisterParticipant, actor="BANK1", participant="NOACCOUNT",
                       role=role, public_key=key)  # fmt: skip
    assert reason_of(events) == (R.UNKNOWN_ACCOUNT, "NOACCOUNT")
    events = flow.bank(scf.RegisterParticipant, actor="BANK1", participant="SUP1", role=role,
                       public_key="XYZ")  # fmt: skip
    assert reason_of(events) == (R.INVALID_PUBLIC_KEY, "XYZ")
    assert flow.register("SUP1") == [scf.ParticipantRegistered("SUP1", "BANK1", role, key)]
    assert reason_of(flow.register("SUP1")) == (R.DUPLICATE_PARTICIPANT, "SUP1")


def test_bad_input_refused_with_a_reason_naming_the_value() -> None:
    flow = Flow()
    piece = flow.issue(1_000)
    send = flow.send
    assert reason_of(send(scf.SplitCommitment, "SUP1", piece=99, amounts=(1, 2))) == (
        R.UNKNOWN_PIECE,
        "99",
    )
    assert reason_of(send(scf.SplitCommitment, "SUP1", piece=piece, amounts=(600, 399))) == (
        R.SPLIT_NOT_SUM,
        "999 != 1000",
    )
    assert reason_of(send(scf.SplitCommitment, "SUP1", piece=piece, amounts=(1000,))) == (
        R.INVALID_SPLIT,
        "[1000]",
    )
    assert reason_of(send(scf.SplitCommitment, "SUP1", piece=piece, amounts=(1001, -1))) == (
        R.INVALID_SPLIT,
        "[1001, -1]",
    )
    assert reason_of(send(scf.TransferCommitment, "SUP2", piece=piece, to="SUP3")) == (
        R.NOT_HOLDER,
        "SUP2",
    )
    assert reason_of(send(scf.TransferCommitment, "SUP1", piece=piece, to="SUP1")) == (
        R.SAME_PARTICIPANT,
        "SUP1",
    )
    assert reason_of(send(scf.FinanceCommitment, "SUP1", piece=piece, factor="FAC",
                          price=1_001)) == (R.INVALID_AMOUNT, "1001")  # fmt: skip
    assert reason_of(send(scf.FinanceCommitment, "SUP1", piece=piece, factor="SUP2",
                          price=900)) == (R.NOT_A_FACTOR, "SUP2")  # fmt: skip
    issue = {"holder": "SUP1", "currency": CASH, "maturity": DAY3}
    assert reason_of(send(scf.IssueCommitment, "CORE", **issue | {"amount": 0})) == (
        R.INVALID_AMOUNT,
        "0",
    )
    assert reason_of(send(scf.IssueCommitment, "CORE", **issue | {"amount": 5,
                          "currency": "USD"})) == (R.UNKNOWN_CURRENCY, "USD")  # fmt: skip
    assert reason_of(send(scf.IssueCommitment, "CORE", **issue | {"amount": 5,
                          "maturity": 20260105})) == (R.INVALID_MATURITY, "20260105")  # fmt: skip
    # an unconfirmed piece cannot move; a confirmed one cannot be confirmed again
    events = send(scf.IssueCommitment, "CORE", amount=5, **issue)
    fresh = events[0].piece
    assert reason_of(send(scf.TransferCommitment, "SUP1", piece=fresh, to="SUP2")) == (
        R.NOT_CONFIRMED,
        str(fresh),
    )
    assert reason_of(send(scf.ConfirmCommitment, "SUP2", piece=fresh)) == (R.NOT_HOLDER, "SUP2")
    assert reason_of(send(scf.ConfirmCommitment, "SUP1", piece=piece)) == (
        R.ALREADY_CONFIRMED,
        str(piece),
    )
    assert reason_of(send(scf.PledgeCommitment, "SUP1", piece=piece, pledgee="NOBANK")) == (
        R.UNKNOWN_BANK,
        "NOBANK",
    )


def test_pledged_pieces_cannot_move_until_released_by_the_pledgee() -> None:
    flow = Flow()
    piece = flow.issue(1_000)
    assert flow.send(scf.PledgeCommitment, "SUP1", piece=piece, pledgee="BANK2") == [
        scf.CommitmentPledged(piece, "SUP1", "BANK2")
    ]
    for cls, fields in (
        (scf.TransferCommitment, {"to": "SUP2"}),
        (scf.SplitCommitment, {"amounts": (500, 500)}),
        (scf.FinanceCommitment, {"factor": "FAC", "price": 900}),
        (scf.PledgeCommitment, {"pledgee": "BANK1"}),
    ):
        events = flow.send(cls, "SUP1", piece=piece, **fields)
        assert reason_of(events) == (R.PIECE_PLEDGED, f"{piece} pledged to BANK2"), cls
    assert reason_of(flow.bank(scf.ReleasePledge, actor="BANK1", piece=piece)) == (
        R.NOT_PLEDGED,
        str(piece),
    )
    assert flow.bank(scf.ReleasePledge, actor="BANK2", piece=piece) == [
        scf.PledgeReleased(piece, "SUP1", "BANK2")
    ]
    assert type(flow.send(scf.TransferCommitment, "SUP1", piece=piece, to="SUP2")[0]) is (
        scf.CommitmentTransferred
    )


def test_finance_with_too_little_cash_or_a_frozen_factor_moves_nothing() -> None:
    flow = Flow()
    piece = flow.issue(2 * CASH_START)
    events = flow.send(scf.FinanceCommitment, "SUP1", piece=piece, factor="FAC",
                       price=CASH_START + 1)  # fmt: skip
    assert reason_of(events) == (R.INSUFFICIENT_CASH, f"FAC has {CASH_START} of {CASH_START + 1}")
    flow.apply(Freeze(command_id=1, actor=REGULATOR, account="FAC"))
    events = flow.send(scf.FinanceCommitment, "SUP1", piece=piece, factor="FAC", price=5)
    assert reason_of(events) == (R.ACCOUNT_FROZEN, "FAC")
    assert flow.cash("FAC") == flow.cash("SUP1") == CASH_START
    assert flow.venue.supply_chain.pieces()[piece].holder == "SUP1"


def test_maturity_is_all_or_nothing_per_issuer_and_recourse_goes_up_one_tier_per_claim() -> None:
    flow = Flow()
    # CORE owes more than it has; CORE2 can pay: CORE2's pieces are paid regardless
    big = flow.issue(CASH_START // 2)
    other = flow.issue(CASH_START // 2 + 1, holder="SUP3")
    small = flow.issue(10, issuer="CORE2", holder="SUP2")
    # big: SUP1 -> SUP2 without recourse -> FAC (financed, with recourse) -> SUP3 without
    flow.send(scf.TransferCommitment, "SUP1", piece=big, to="SUP2", recourse=False)
    flow.send(scf.FinanceCommitment, "SUP2", piece=big, factor="FAC", price=CASH_START // 4)
    flow.send(scf.TransferCommitment, "FAC", piece=big, to="SUP3", recourse=False)
    events = flow.next_day(DAY3)
    failed = [e for e in events if type(e) is scf.CommitmentFailed]
    due = CASH_START + 1
    assert failed == [
        scf.CommitmentFailed(big, "CORE", "SUP3", CASH_START // 2, CASH, due, CASH_START,
                             ("SUP1", "SUP2", "FAC")),
        scf.CommitmentFailed(other, "CORE", "SUP3", CASH_START // 2 + 1, CASH, due, CASH_START,
                             ()),
    ]  # fmt: skip
    assert [e for e in events if type(e) is scf.CommitmentPaid] == [
        scf.CommitmentPaid(small, "CORE2", "SUP2", 10, CASH)
    ]
    assert flow.cash("CORE") == CASH_START  # nothing paid: all or nothing
    assert flow.venue.supply_chain.outstanding("CORE") == 0
    # the last transfer (FAC -> SUP3) was without recourse: the claim fails, one tier used
    assert flow.send(scf.ClaimRecourse, "SUP3", piece=big) == [
        scf.RecourseFailed(big, "SUP3", "FAC", CASH_START // 2, R.NO_RECOURSE)
    ]
    # then SUP2 -> FAC was with recourse: SUP2 pays in full
    sup2 = flow.cash("SUP2")
    assert flow.send(scf.ClaimRecourse, "SUP3", piece=big) == [
        scf.RecourseClaimed(big, "SUP3", "SUP2", CASH_START // 2)
    ]
    assert flow.cash("SUP2") == sup2 - CASH_START // 2
    assert flow.venue.supply_chain.pieces()[big].status is S.RECOVERED
    assert reason_of(flow.send(scf.ClaimRecourse, "SUP3", piece=big)) == (R.NOT_FAILED, "recovered")
    # the original supplier's piece has no transferor to claim from
    assert reason_of(flow.send(scf.ClaimRecourse, "SUP3", piece=other)) == (
        R.NO_FURTHER_RECOURSE,
        str(other),
    )


def test_recourse_fails_when_the_transferor_cannot_pay_then_goes_further_up() -> None:
    flow = Flow()
    piece = flow.issue(3 * CASH_START)  # CORE cannot pay it
    flow.send(scf.TransferCommitment, "SUP1", piece=piece, to="SUP2")
    flow.send(scf.TransferCommitment, "SUP2", piece=piece, to="SUP3")
    flow.next_day(DAY3)
    assert flow.send(scf.ClaimRecourse, "SUP3", piece=piece) == [
        scf.RecourseFailed(piece, "SUP3", "SUP2", 3 * CASH_START, R.INSUFFICIENT_CASH)
    ]
    assert flow.send(scf.ClaimRecourse, "SUP3", piece=piece) == [
        scf.RecourseFailed(piece, "SUP3", "SUP1", 3 * CASH_START, R.INSUFFICIENT_CASH)
    ]
    assert reason_of(flow.send(scf.ClaimRecourse, "SUP3", piece=piece)) == (
        R.NO_FURTHER_RECOURSE,
        str(piece),
    )
    # a commitment issued without recourse allows no claim at all
    flow2 = Flow()
    piece = flow2.issue(3 * CASH_START, recourse=False)
    flow2.send(scf.TransferCommitment, "SUP1", piece=piece, to="SUP2")
    flow2.next_day(DAY3)
    assert reason_of(flow2.send(scf.ClaimRecourse, "SUP2", piece=piece)) == (
        R.NO_RECOURSE,
        str(piece),
    )


def test_a_skipped_maturity_day_pays_at_the_next_day_begun() -> None:
    flow = Flow()
    piece = flow.issue(100)
    events = flow.next_day(DAY4)  # DAY3 (the maturity) never opened
    assert scf.CommitmentPaid(piece, "CORE", "SUP1", 100, CASH) in events


def test_commands_are_idempotent_by_sender_and_id() -> None:
    flow = Flow(outcomes_max=20)
    piece = flow.issue(1_000)
    command = flow.command(scf.SplitCommitment, "SUP1", piece=piece, amounts=(400, 600))
    first = flow.apply(command)
    before = flow.venue.state_hash()
    assert flow.apply(command) == first
    assert flow.venue.state_hash() == before
    other = dataclasses.replace(command, amounts=(500, 500))
    assert reason_of(flow.apply(other)) == (R.COMMAND_ID_REUSED, str(command.command_id))
    # once forgotten (a window of 20 outcomes), an old id is refused, never applied again
    for _ in range(20):
        flow.bank(scf.SetCreditLimit, participant="CORE", limit=10**7)
    assert flow.apply(command) == [
        scf.ScfRejected("split_commitment", "BANK1", command.command_id, R.COMMAND_ID_TOO_OLD,
                        str(command.command_id))
    ]  # fmt: skip
    assert flow.venue.supply_chain.pieces()[piece].children == (2, 3)


def test_invoices_back_at_most_one_commitment_and_a_second_attempt_names_the_first() -> None:
    flow = Flow()
    key = invoice_key_hash("SUP1", "CORE", "INV-0001")
    content = invoice_content_hash(b"INV-0001: 1,000 widgets at 1.00")
    invoice = {"buyer": "CORE", "key_hash": key, "content_hash": content, "amount": 1_000_00}
    assert flow.send(scf.RegisterInvoice, "SUP1", **invoice) == [
        scf.InvoiceRegistered(key, content, "SUP1", "CORE", 1_000_00)
    ]
    assert reason_of(flow.send(scf.RegisterInvoice, "SUP1", **invoice)) == (
        R.DUPLICATE_INVOICE,
        f"{key} registered by SUP1",
    )
    # the same content under another number is the same invoice
    again = invoice | {"key_hash": invoice_key_hash("SUP1", "CORE", "INV-0001b")}
    assert reason_of(flow.send(scf.RegisterInvoice, "SUP1", **again)) == (
        R.DUPLICATE_INVOICE,
        f"content of {key}",
    )
    issue = {"holder": "SUP1", "currency": CASH, "maturity": DAY3, "invoice": key}
    assert reason_of(flow.send(scf.IssueCommitment, "CORE", amount=1_000_00, **issue)) == (
        R.INVOICE_NOT_CONFIRMED,
        key,
    )
    assert reason_of(flow.send(scf.ConfirmInvoice, "SUP1", key_hash=key)) == (
        R.NOT_AUTHORIZED,
        "SUP1",
    )
    assert flow.send(scf.ConfirmInvoice, "CORE", key_hash=key) == [
        scf.InvoiceConfirmed(key, "CORE")
    ]
    assert reason_of(flow.send(scf.IssueCommitment, "CORE", amount=1_000_01, **issue)) == (
        R.INVOICE_AMOUNT_EXCEEDED,
        "100001 > 100000",
    )
    assert reason_of(flow.send(scf.IssueCommitment, "CORE2", amount=1, **issue)) == (
        R.INVOICE_PARTIES,
        "SUP1 -> CORE",
    )
    piece = flow.send(scf.IssueCommitment, "CORE", amount=1_000_00, **issue)[0].piece
    assert reason_of(flow.send(scf.IssueCommitment, "CORE", amount=1, **issue)) == (
        R.INVOICE_ALREADY_USED,
        f"{key} backs piece {piece}",
    )
    assert flow.venue.supply_chain.invoice(key).piece == piece  # type: ignore[union-attr]
    assert reason_of(flow.send(scf.RegisterInvoice, "SUP1", **invoice | {"key_hash": "zz"})) == (
        R.INVALID_HASH,
        "zz",
    )


def test_snapshot_restore_and_the_commitment_follow_the_supply_chain() -> None:
    flow = Flow()
    machine_venue = Venue.restore(flow.venue.snapshot())
    commitment = StateCommitment(machine_venue)
    assert commitment.digest() == commitment_of_snapshot(flow.venue.snapshot())
    piece = flow.issue(1_000)
    flow.send(scf.SplitCommitment, "SUP1", piece=piece, amounts=(1, 999))
    flow.send(scf.PledgeCommitment, "SUP1", piece=2, pledgee="BANK1")
    flow.next_day(DAY2)
    restored = Venue.restore(orjson.loads(orjson.dumps(flow.venue.snapshot())))
    restored.check()
    assert restored.snapshot() == flow.venue.snapshot()
    assert restored.state_hash() == flow.venue.state_hash()
    # the restored venue goes on exactly as the original
    command = flow.command(scf.TransferCommitment, "SUP1", piece=3, to="SUP2")
    assert restored.apply(command) == flow.apply(command)
    assert restored.state_hash() == flow.venue.state_hash()


def test_incremental_commitment_equals_the_one_from_scratch_through_the_machine() -> None:
    flow = Flow(register=False)
    machine = VenueMachine(Venue.restore(flow.venue.snapshot()))
    empty = machine.state_hash()
    assert "supply_chain" not in flow.venue.snapshot()  # no supply-chain state: no entity
    assert empty == commitment_of_snapshot(flow.venue.snapshot())
    for name in ROLES:
        bank, role = ROLES[name]
        key = KEYS[name].public_key.hex()
        command = scf.RegisterParticipant(
            command_id=flow.next_id("m/" + bank),
            actor=bank,
            participant=name,
            role=role,
            public_key=key,
        )
        _both(flow, machine, command)
    limit = scf.SetCreditLimit(command_id=99, actor="BANK1", participant="CORE", limit=10**6)
    _both(flow, machine, limit)
    assert machine.state_hash() != empty
    issue = {"holder": "SUP1", "currency": CASH, "maturity": DAY3}
    steps = [
        flow.command(scf.IssueCommitment, "CORE", amount=1_000, **issue),
        flow.command(scf.ConfirmCommitment, "SUP1", piece=1),
        flow.command(scf.SplitCommitment, "SUP1", piece=1, amounts=(300, 700)),
        flow.command(scf.SplitCommitment, "SUP1", piece=1, amounts=(300, 700)),  # a replay
        flow.command(scf.FinanceCommitment, "SUP1", piece=2, factor="FAC", price=290),
        flow.command(scf.PledgeCommitment, "SUP1", piece=3, pledgee="BANK2"),
        scf.ReleasePledge(command_id=1, actor="BANK2", piece=3),
        flow.command(scf.TransferCommitment, "SUP1", piece=3, to="SUP2", recourse=False),
        EndDay(day=DAY1),
        BeginDay(day=DAY3),
        flow.command(scf.ClaimRecourse, "SUP2", piece=3),
    ]
    for command in steps:
        _both(flow, machine, command)


def _both(flow: Flow, machine: VenueMachine, command: VenueCommand) -> None:
    """Apply `command` to the flow's venue and, as bytes, to the machine; compare hashes."""
    events = flow.apply(command)
    data = machine.apply(orjson.dumps(wire.venue_command_to_dict(command)), 0)
    assert data == [slow_event_bytes(event) for event in events]
    assert machine.state_hash() == commitment_of_snapshot(flow.venue.snapshot())


def test_wire_refuses_malformed_supply_chain_fields_naming_them() -> None:
    flow = Flow()
    command = flow.command(scf.SplitCommitment, "SUP1", piece=1, amounts=(1, 2))
    data = wire.venue_command_to_dict(command)
    assert wire.parse_venue_line(orjson.dumps(data)) == command
    for field, value, text in (
        ("amounts", "12", "amounts must be an array"),
        ("amounts", [1, 2.5], "amounts must hold 64-bit integers"),
        ("amounts", list(range(65)), "amounts must be an array of at most 64"),
        ("signature", 5, "signature must be a string"),
        ("signature", "a" * 129, "signature must be a string"),
    ):
        error = wire.parse_venue_line(orjson.dumps(data | {field: value}))
        assert isinstance(error, wire.WireError) and error.field == field, (field, error)
        assert text in error.message, error.message
    role = wire.parse_venue_line(
        orjson.dumps(
            {
                "type": "register_participant",
                "command_id": 1,
                "actor": "B",
                "participant": "P",
                "role": "bank",
                "public_key": "00",
            }
        )
    )
    assert isinstance(role, wire.WireError) and role.field == "role"


def test_verify_signature_never_raises_on_malformed_keys_or_signatures() -> None:
    flow = Flow()
    command = flow.command(scf.ConfirmCommitment, "SUP1", piece=1)
    key = KEYS["SUP1"].public_key.hex()
    assert verify_signature(command, key, command.signature)
    for bad_key, bad_signature in (
        ("00" * 32, command.signature),  # not a point on the curve, or a wrong key
        ("zz" * 32, command.signature),
        (key, "zz" * 64),
        (key, command.signature[:-2]),
        ("", ""),
    ):
        assert not verify_signature(command, bad_key, bad_signature)


@pytest.mark.parametrize("day", [DAY3])
def test_every_piece_is_paid_or_failed_exactly_once(day: int) -> None:
    flow = Flow()
    pieces = [flow.issue(100 + i) for i in range(5)]
    events = flow.next_day(day)
    settled = [e.piece for e in events if type(e) in (scf.CommitmentPaid, scf.CommitmentFailed)]
    assert sorted(settled) == pieces
    events = flow.next_day(DAY4)
    assert not [e for e in events if type(e) in (scf.CommitmentPaid, scf.CommitmentFailed)]
