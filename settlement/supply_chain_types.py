"""Commands, events, reasons and limits of supply-chain finance (payment commitments, invoices).

Wire-stable like the rest of settlement: enum values are explicit and append-only, names go
on the wire lower-case. Commands are frozen dataclasses (the wire parser reads their fields'
types), events NamedTuples, as in `settlement.commands` and `settlement.events`.

Two kinds of command:

- a member's (a bank's) command, with `actor` the member that sent it: registering a
  participant's key, setting a core enterprise's credit limit, releasing a pledge;
- a participant's command, signed with the participant's Ed25519 key (`signature`, hex, over
  the command's signing bytes, see `exchange.venue.supply_chain.signing_bytes`) and sent
  through its bank's member session (`actor`, which must be the participant's bank).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

PARTICIPANTS_MAX = 100_000
PIECES_MAX = 1_000_000  # every piece ever made (paid and failed ones stay: lineage queries)
INVOICES_MAX = 1_000_000
SPLIT_CHILDREN_MAX = 16
SCF_OUTCOMES_MAX = 10_000  # remembered command outcomes (idempotency window)
HASH_HEX_LENGTH = 64  # SHA-256, hex
PUBLIC_KEY_HEX_LENGTH = 64  # Ed25519, raw, hex
SIGNATURE_HEX_LENGTH = 128  # Ed25519, hex


class ParticipantRole(IntEnum):
    CORE_ENTERPRISE = 1  # issues payment commitments and pays them at maturity
    SUPPLIER = 2  # receives, confirms, splits and passes commitments on
    FACTOR = 3  # buys commitments at a discount (financing)


class PieceStatus(IntEnum):
    UNCONFIRMED = 1  # issued, waiting for its holder's confirmation (确权)
    ACTIVE = 2  # may be split, transferred, financed or pledged
    PLEDGED = 3  # collateral of a bank: cannot move until released
    SPLIT = 4  # replaced by its children
    PAID = 5  # paid by its issuer at maturity
    FAILED = 6  # its issuer could not pay at maturity
    RECOVERED = 7  # failed, then paid by a transferor through recourse


LIVE_STATUSES = frozenset((PieceStatus.UNCONFIRMED, PieceStatus.ACTIVE, PieceStatus.PLEDGED))


class ScfRejectReason(IntEnum):
    """Why a supply-chain command was refused. Append only; the order in which they are
    checked is in docs/supply_chain.md."""

    UNKNOWN_PARTICIPANT = 1
    NOT_YOUR_PARTICIPANT = 2  # the actor is not the participant's bank
    BAD_SIGNATURE = 3  # the participant's (or the factor's) signature does not verify
    COMMAND_ID_TOO_OLD = 4  # not above the last id of this participant or member
    COMMAND_ID_REUSED = 5  # a remembered id sent with different contents
    NOT_AUTHORIZED = 6  # the role may not do this (an issuer that is not a core enterprise)
    UNKNOWN_ACCOUNT = 7
    DUPLICATE_PARTICIPANT = 8
    INVALID_PUBLIC_KEY = 9  # not 64 lower-case hex digits
    UNKNOWN_PIECE = 10
    NOT_HOLDER = 11
    NOT_CONFIRMED = 12
    ALREADY_CONFIRMED = 13
    PIECE_NOT_LIVE = 14  # split, paid, failed or recovered
    PIECE_PLEDGED = 15
    SPLIT_NOT_SUM = 16  # the children do not sum to the parent
    INVALID_SPLIT = 17  # fewer than 2 or more than SPLIT_CHILDREN_MAX children, a child < 1
    INVALID_AMOUNT = 18  # not positive, above the supply maximum, a price above the amount
    CREDIT_LIMIT_EXCEEDED = 19
    UNKNOWN_CURRENCY = 20
    INVALID_MATURITY = 21  # not after the current day
    INSUFFICIENT_CASH = 22
    ACCOUNT_FROZEN = 23
    NOT_A_FACTOR = 24
    SAME_PARTICIPANT = 25
    NOT_PLEDGED = 26  # a release of a piece not pledged to this member
    NOT_FAILED = 27  # recourse on a piece that did not fail
    NO_FURTHER_RECOURSE = 28  # every transferor up the chain was tried
    UNKNOWN_INVOICE = 29
    DUPLICATE_INVOICE = 30  # a hash already registered: names the first invoice
    INVOICE_NOT_CONFIRMED = 31
    INVOICE_ALREADY_USED = 32  # the invoice backs a commitment already: names it
    INVOICE_AMOUNT_EXCEEDED = 33
    INVOICE_PARTIES = 34  # the commitment's issuer/holder are not the invoice's buyer/seller
    CAPACITY_EXHAUSTED = 35
    INVALID_HASH = 36  # not 64 lower-case hex digits
    NO_RECOURSE = 37  # the transfer being claimed against was without recourse
    UNKNOWN_BANK = 38  # a pledge to a member that is no participant's bank


# -- members' (banks') commands --------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterParticipant:
    """Register the Ed25519 key of `participant`, a settlement account of the bank `actor`."""

    command_id: int
    actor: str
    participant: str
    role: ParticipantRole
    public_key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SetCreditLimit:
    """Set how much a core enterprise may have outstanding (by its bank), in fen."""

    command_id: int
    actor: str
    participant: str
    limit: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleasePledge:
    """Give a pledged piece back to its holder's free use (by the member it is pledged to)."""

    command_id: int
    actor: str
    piece: int


# -- participants' signed commands -----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class IssueCommitment:
    """A core enterprise (`participant`) promises to pay `amount` fen of `currency` to the
    holder of the piece on `maturity` (yyyymmdd). `invoice`: the key hash of a confirmed
    invoice it rests on, or empty. `recourse`: whether holders may claim against their
    transferors if it fails."""

    command_id: int
    actor: str
    participant: str
    holder: str
    amount: int
    currency: str
    maturity: int
    invoice: str = ""
    recourse: bool = True
    signature: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfirmCommitment:
    """The holder of a newly issued piece confirms it (确权): only then can it move."""

    command_id: int
    actor: str
    participant: str
    piece: int
    signature: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SplitCommitment:
    """Split a held piece into children of `amounts`, which must sum to the piece exactly."""

    command_id: int
    actor: str
    participant: str
    piece: int
    amounts: tuple[int, ...]
    signature: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferCommitment:
    """Pass a held piece to another participant (down the supplier tiers)."""

    command_id: int
    actor: str
    participant: str
    piece: int
    to: str
    recourse: bool = True
    signature: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FinanceCommitment:
    """Sell a held piece to a factor for `price` fen, delivery versus payment in one step;
    signed by the seller (`signature`) and by the factor (`factor_signature`), over the same
    bytes."""

    command_id: int
    actor: str
    participant: str
    piece: int
    factor: str
    price: int
    recourse: bool = True
    signature: str
    factor_signature: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PledgeCommitment:
    """Pledge a held piece to the member bank `pledgee` as collateral."""

    command_id: int
    actor: str
    participant: str
    piece: int
    pledgee: str
    signature: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimRecourse:
    """The holder of a failed piece claims its amount from the next transferor up its chain."""

    command_id: int
    actor: str
    participant: str
    piece: int
    signature: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterInvoice:
    """The seller registers an invoice by two SHA-256 hashes (hex): `key_hash` of (seller,
    buyer, number) and `content_hash` of its full content; `amount` in fen."""

    command_id: int
    actor: str
    participant: str
    buyer: str
    key_hash: str
    content_hash: str
    amount: int
    signature: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfirmInvoice:
    """The buyer confirms an invoice registered against it."""

    command_id: int
    actor: str
    participant: str
    key_hash: str
    signature: str


MemberCommand = RegisterParticipant | SetCreditLimit | ReleasePledge
ParticipantCommand = (
    IssueCommitment
    | ConfirmCommitment
    | SplitCommitment
    | TransferCommitment
    | FinanceCommitment
    | PledgeCommitment
    | ClaimRecourse
    | RegisterInvoice
    | ConfirmInvoice
)
Command = MemberCommand | ParticipantCommand


# -- events ----------------------------------------------------------------------------------


class ParticipantRegistered(NamedTuple):
    participant: str
    bank: str
    role: ParticipantRole
    public_key: str


class CreditLimitSet(NamedTuple):
    participant: str
    limit: int


class CommitmentIssued(NamedTuple):
    piece: int
    issuer: str
    holder: str
    amount: int
    currency: str
    maturity: int
    invoice: str
    recourse: bool


class CommitmentConfirmed(NamedTuple):
    piece: int
    holder: str


class CommitmentSplit(NamedTuple):
    piece: int
    children: tuple[int, ...]
    amounts: tuple[int, ...]


class CommitmentTransferred(NamedTuple):
    piece: int
    transferor: str
    holder: str
    recourse: bool


class CommitmentFinanced(NamedTuple):
    """`factor` paid `price` fen to `seller` and holds the piece of `amount` fen."""

    piece: int
    seller: str
    factor: str
    price: int
    amount: int
    recourse: bool


class CommitmentPledged(NamedTuple):
    piece: int
    holder: str
    pledgee: str


class PledgeReleased(NamedTuple):
    piece: int
    holder: str
    pledgee: str


class CommitmentPaid(NamedTuple):
    piece: int
    issuer: str
    holder: str
    amount: int
    currency: str


class CommitmentFailed(NamedTuple):
    """The issuer could not pay its pieces due that day (`due` in all, `available` of cash).
    `transferors`: the piece's chain, first transferor first; recourse goes up it from the
    last."""

    piece: int
    issuer: str
    holder: str
    amount: int
    currency: str
    due: int
    available: int
    transferors: tuple[str, ...]


class RecourseClaimed(NamedTuple):
    piece: int
    holder: str
    transferor: str
    amount: int


class RecourseFailed(NamedTuple):
    """The claim on `transferor` failed (`reason`: no_recourse, insufficient_cash or
    account_frozen); the holder may claim one tier further up."""

    piece: int
    holder: str
    transferor: str
    amount: int
    reason: ScfRejectReason


class InvoiceRegistered(NamedTuple):
    key_hash: str
    content_hash: str
    seller: str
    buyer: str
    amount: int


class InvoiceConfirmed(NamedTuple):
    key_hash: str
    buyer: str


class ScfRejected(NamedTuple):
    """A refused supply-chain command (`command`: its wire type) and the value at fault:
    e.g. the unknown piece's id, the sum the children made, the first piece an invoice backs."""

    command: str
    actor: str
    command_id: int
    reason: ScfRejectReason
    value: str


Event = (
    ParticipantRegistered
    | CreditLimitSet
    | CommitmentIssued
    | CommitmentConfirmed
    | CommitmentSplit
    | CommitmentTransferred
    | CommitmentFinanced
    | CommitmentPledged
    | PledgeReleased
    | CommitmentPaid
    | CommitmentFailed
    | RecourseClaimed
    | RecourseFailed
    | InvoiceRegistered
    | InvoiceConfirmed
    | ScfRejected
)
