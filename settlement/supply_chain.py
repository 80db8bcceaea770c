"""Supply-chain finance on the ledger: payment commitments (the 信单 model) and invoices.

A core enterprise issues a payment commitment (a promise to pay, not money) to a supplier; the
supplier confirms it; holders split it (children summing exactly to the parent), transfer it
down the supplier tiers, sell it to a factor (delivery versus payment against cash in one
step) or pledge it to a bank. At `begin_day` of its maturity the issuer pays every holder, all
or nothing per issuer and currency; pieces it cannot pay fail, and their holders may claim
recourse up the chain of transfers, one tier per claim. Invoices are registered by two hashes
and may back at most one commitment.

Pure: the same state and command give the same events. Signatures are checked through the
`verify` function the composition root passes in (Ed25519 lives outside settlement); cash moves
through the settlement engine's cash registries, so conservation per asset is theirs.

Every piece ever made stays (its lineage can be queried); every table is bounded. Each command
is idempotent by (participant or member, command id); see `SupplyChain.apply`.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from settlement.engine import SettlementEngine
from settlement.idempotency import OutcomeWindow
from settlement.supply_chain_types import (
    HASH_HEX_LENGTH,
    INVOICES_MAX,
    LIVE_STATUSES,
    PARTICIPANTS_MAX,
    PIECES_MAX,
    PUBLIC_KEY_HEX_LENGTH,
    SCF_OUTCOMES_MAX,
    SPLIT_CHILDREN_MAX,
    ClaimRecourse,
    Command,
    CommitmentConfirmed,
    CommitmentFailed,
    CommitmentFinanced,
    CommitmentIssued,
    CommitmentPaid,
    CommitmentPledged,
    CommitmentSplit,
    CommitmentTransferred,
    ConfirmCommitment,
    ConfirmInvoice,
    CreditLimitSet,
    Event,
    FinanceCommitment,
    InvoiceConfirmed,
    InvoiceRegistered,
    IssueCommitment,
    MemberCommand,
    ParticipantCommand,
    ParticipantRegistered,
    ParticipantRole,
    PieceStatus,
    PledgeCommitment,
    PledgeReleased,
    RecourseClaimed,
    RecourseFailed,
    RegisterInvoice,
    RegisterParticipant,
    ReleasePledge,
    ScfRejected,
    ScfRejectReason,
    SetCreditLimit,
    SplitCommitment,
    TransferCommitment,
)
from settlement.types import SUPPLY_MAX, AssetKind

R = ScfRejectReason
S = PieceStatus
Key = tuple[Any, ...]
# (command, public key hex, signature hex) -> whether the signature verifies
Verifier = Callable[[Any, str, str], bool]
Refusal = tuple[ScfRejectReason, object]  # a reason and the value at fault
MEMBER_COMMANDS: tuple[type, ...] = typing.get_args(MemberCommand)
PARTICIPANT_COMMANDS: tuple[type, ...] = typing.get_args(ParticipantCommand)
COMMAND_TYPES: dict[str, type] = {cls.__name__: cls for cls in typing.get_args(Command)}
EVENT_TYPES: dict[str, type] = {cls.__name__: cls for cls in typing.get_args(Event)}
_HEX = frozenset("0123456789abcdef")


def wire_name(cls: type) -> str:
    """`SplitCommitment` -> `split_commitment`: the command's JSON type."""
    return "".join("_" + c.lower() if c.isupper() else c for c in cls.__name__).lstrip("_")


def is_hex(text: str, length: int) -> bool:
    return len(text) == length and set(text) <= _HEX


class Participant:
    __slots__ = ("bank", "public_key", "role")

    def __init__(self, bank: str, role: ParticipantRole, public_key: str) -> None:
        self.bank = bank
        self.role = role
        self.public_key = public_key


class Piece:
    """One payment commitment or a piece split from one. `chain`: (transferor, with recourse)
    of every transfer since issue, the first first (children inherit their parent's);
    `claims`: how many of them, from the last, recourse has tried."""

    __slots__ = (
        "amount",
        "chain",
        "children",
        "claims",
        "currency",
        "holder",
        "invoice",
        "issuer",
        "maturity",
        "parent",
        "piece_id",
        "pledgee",
        "recourse",
        "root",
        "status",
    )

    def __init__(
        self,
        *,
        piece_id: int,
        root: int,
        parent: int,
        issuer: str,
        holder: str,
        amount: int,
        currency: str,
        maturity: int,
        invoice: str,
        recourse: bool,
        status: PieceStatus,
        pledgee: str,
        chain: list[tuple[str, bool]],
        claims: int,
        children: tuple[int, ...],
    ) -> None:
        self.piece_id = piece_id
        self.root = root
        self.parent = parent  # 0: an original commitment
        self.issuer = issuer
        self.holder = holder
        self.amount = amount
        self.currency = currency
        self.maturity = maturity
        self.invoice = invoice
        self.recourse = recourse
        self.status = status
        self.pledgee = pledgee
        self.chain = chain
        self.claims = claims
        self.children = children

    def row(self) -> list[Any]:
        return [
            "c",
            self.piece_id,
            self.root,
            self.parent,
            self.issuer,
            self.holder,
            self.amount,
            self.currency,
            self.maturity,
            self.invoice,
            self.recourse,
            int(self.status),
            self.pledgee,
            [[name, recourse] for name, recourse in self.chain],
            self.claims,
            list(self.children),
        ]


class Invoice:
    __slots__ = ("amount", "buyer", "confirmed", "content_hash", "piece", "seller")

    def __init__(
        self, seller: str, buyer: str, content_hash: str, amount: int, confirmed: bool, piece: int
    ) -> None:
        self.seller = seller
        self.buyer = buyer
        self.content_hash = content_hash
        self.amount = amount
        self.confirmed = confirmed
        self.piece = piece  # the commitment it backs, 0 if none


class SupplyChain:
    """Participants, payment commitments, credit limits and invoices, over the settlement
    engine's cash. `apply` is the way in for commands, `begin_day` pays what matures."""

    def __init__(
        self,
        settlement: SettlementEngine,
        verify: Verifier,
        *,
        outcomes_max: int = SCF_OUTCOMES_MAX,
    ) -> None:
        self.settlement = settlement
        self._verify = verify
        self._participants: dict[str, Participant] = {}
        self._banks: dict[str, int] = {}  # bank -> participants registered by it (derived)
        self._limits: dict[str, int] = {}
        self._outstanding: dict[str, int] = {}  # issuer -> live pieces' sum (derived)
        self._pieces: dict[int, Piece] = {}
        self._piece_id_last = 0
        self._due: dict[int, list[int]] = {}  # maturity -> live piece ids (derived)
        self._invoices: dict[str, Invoice] = {}  # key hash -> invoice
        self._contents: dict[str, str] = {}  # content hash -> key hash (derived)
        self._day = 0
        # senders ("p/participant" or "m/member"): their last ids and outcomes
        self._window = OutcomeWindow(
            maximum=outcomes_max,
            last_tag="y",
            outcome_tag="w",
            commands=COMMAND_TYPES,
            events=EVENT_TYPES,
        )
        self._changes: set[Key] | None = None
        self._handlers: dict[type, Callable[[Any], list[Event] | Refusal]] = {
            RegisterParticipant: self._register,
            SetCreditLimit: self._set_limit,
            ReleasePledge: self._release,
            IssueCommitment: self._issue,
            ConfirmCommitment: self._confirm,
            SplitCommitment: self._split,
            TransferCommitment: self._transfer,
            FinanceCommitment: self._finance,
            PledgeCommitment: self._pledge,
            ClaimRecourse: self._claim,
            RegisterInvoice: self._register_invoice,
            ConfirmInvoice: self._confirm_invoice,
        }

    # -- the way in ------------------------------------------------------------------------

    def apply(self, command: Command) -> list[Event]:
        """Apply one command; return its events. Checked in this order: a remembered
        (sender, command id) returns the original events (or `command_id_reused`); then who
        sent it (a participant's command: the participant is registered, `actor` is its bank,
        the signature verifies; a member's: its authority); then the id must be above the
        sender's last (`command_id_too_old`); then the command's own rules. A command refused
        before the id check is not remembered and does not use up the id: an unsigned command
        cannot burn a participant's ids. O(1) but for a split (O(children)) and recourse."""
        sender = _sender(command)
        remembered = self._window.remembered(sender, command.command_id)
        if remembered is not None:
            if remembered[0] == command:
                return list(remembered[1])
            return [_rejected(command, R.COMMAND_ID_REUSED, command.command_id)]
        refusal = self._sender_refusal(command)
        if refusal is not None:
            return [_rejected(command, *refusal)]
        if self._window.too_old(sender, command.command_id):
            return [_rejected(command, R.COMMAND_ID_TOO_OLD, command.command_id)]
        outcome = self._handlers[type(command)](command)
        events: list[Event] = (
            [_rejected(command, *outcome)] if isinstance(outcome, tuple) else outcome
        )
        self._touch(("x",), *self._window.remember(sender, command, events))
        return events

    def _sender_refusal(self, command: Command) -> Refusal | None:
        if not isinstance(command, MEMBER_COMMANDS):
            command = typing.cast(ParticipantCommand, command)
            participant = self._participants.get(command.participant)
            if participant is None:
                return R.UNKNOWN_PARTICIPANT, command.participant
            if participant.bank != command.actor:
                return R.NOT_YOUR_PARTICIPANT, command.actor
            if not self._verify(command, participant.public_key, command.signature):
                return R.BAD_SIGNATURE, command.participant
            if isinstance(command, FinanceCommitment):
                factor = self._participants.get(command.factor)
                if factor is None:
                    return R.UNKNOWN_PARTICIPANT, command.factor
                if not self._verify(command, factor.public_key, command.factor_signature):
                    return R.BAD_SIGNATURE, command.factor
            return None
        if isinstance(command, RegisterParticipant):
            owner = self.settlement.broker_of(command.participant)
            if owner is None:
                return R.UNKNOWN_ACCOUNT, command.participant
            if owner != command.actor:
                return R.NOT_YOUR_PARTICIPANT, command.actor
            return None
        if isinstance(command, SetCreditLimit):
            participant = self._participants.get(command.participant)
            if participant is None:
                return R.UNKNOWN_PARTICIPANT, command.participant
            if participant.bank != command.actor:
                return R.NOT_YOUR_PARTICIPANT, command.actor
            return None
        assert isinstance(command, ReleasePledge), command
        piece = self._pieces.get(command.piece)
        if piece is None:
            return R.UNKNOWN_PIECE, command.piece
        if piece.status is not S.PLEDGED or piece.pledgee != command.actor:
            return R.NOT_PLEDGED, command.piece
        return None

    def _touch(self, *keys: Key) -> None:
        if self._changes is not None:
            self._changes.update(keys)

    # -- members' commands -----------------------------------------------------------------

    def _register(self, command: RegisterParticipant) -> list[Event] | Refusal:
        if command.participant in self._participants:
            return R.DUPLICATE_PARTICIPANT, command.participant
        if not is_hex(command.public_key, PUBLIC_KEY_HEX_LENGTH):
            return R.INVALID_PUBLIC_KEY, command.public_key
        if len(self._participants) >= PARTICIPANTS_MAX:
            return R.CAPACITY_EXHAUSTED, PARTICIPANTS_MAX
        self._participants[command.participant] = Participant(
            command.actor, command.role, command.public_key
        )
        self._banks[command.actor] = self._banks.get(command.actor, 0) + 1
        self._touch(("q", command.participant))
        return [
            ParticipantRegistered(
                participant=command.participant,
                bank=command.actor,
                role=command.role,
                public_key=command.public_key,
            )
        ]

    def _set_limit(self, command: SetCreditLimit) -> list[Event] | Refusal:
        if self._participants[command.participant].role is not ParticipantRole.CORE_ENTERPRISE:
            return R.NOT_AUTHORIZED, command.participant
        if not 0 <= command.limit <= SUPPLY_MAX:
            return R.INVALID_AMOUNT, command.limit
        self._limits[command.participant] = command.limit
        self._touch(("m", command.participant))
        return [CreditLimitSet(participant=command.participant, limit=command.limit)]

    def _release(self, command: ReleasePledge) -> list[Event] | Refusal:
        piece = self._pieces[command.piece]
        piece.status = S.ACTIVE
        piece.pledgee = ""
        self._touch(("c", piece.piece_id))
        return [PledgeReleased(piece=piece.piece_id, holder=piece.holder, pledgee=command.actor)]

    # -- commitments -----------------------------------------------------------------------

    def _issue(self, command: IssueCommitment) -> list[Event] | Refusal:
        refusal = self._issue_refusal(command)
        if refusal is not None:
            return refusal
        self._piece_id_last += 1
        piece_id = self._piece_id_last
        self._add_piece(
            Piece(
                piece_id=piece_id,
                root=piece_id,
                parent=0,
                issuer=command.participant,
                holder=command.holder,
                amount=command.amount,
                currency=command.currency,
                maturity=command.maturity,
                invoice=command.invoice,
                recourse=command.recourse,
                status=S.UNCONFIRMED,
                pledgee="",
                chain=[],
                claims=0,
                children=(),
            )
        )
        issuer = command.participant
        self._outstanding[issuer] = self._outstanding.get(issuer, 0) + command.amount
        if command.invoice:
            self._invoices[command.invoice].piece = piece_id
            self._touch(("i", command.invoice))
        self._touch(("x",))
        return [
            CommitmentIssued(
                piece=piece_id,
                issuer=issuer,
                holder=command.holder,
                amount=command.amount,
                currency=command.currency,
                maturity=command.maturity,
                invoice=command.invoice,
                recourse=command.recourse,
            )
        ]

    def _issue_refusal(self, command: IssueCommitment) -> Refusal | None:
        issuer = command.participant
        if self._participants[issuer].role is not ParticipantRole.CORE_ENTERPRISE:
            return R.NOT_AUTHORIZED, issuer
        if command.holder not in self._participants:
            return R.UNKNOWN_PARTICIPANT, command.holder
        if command.holder == issuer:
            return R.SAME_PARTICIPANT, command.holder
        if not 0 < command.amount <= SUPPLY_MAX:
            return R.INVALID_AMOUNT, command.amount
        cash = self.settlement.registries().get(command.currency)
        if cash is None or cash.kind is not AssetKind.CASH:
            return R.UNKNOWN_CURRENCY, command.currency
        if not self._day < command.maturity <= 99991231:
            return R.INVALID_MATURITY, command.maturity
        if command.invoice:
            refusal = self._invoice_refusal(command)
            if refusal is not None:
                return refusal
        outstanding = self._outstanding.get(issuer, 0)
        limit = self._limits.get(issuer, 0)
        if outstanding + command.amount > limit:
            return R.CREDIT_LIMIT_EXCEEDED, f"{outstanding} + {command.amount} > {limit}"
        if len(self._pieces) >= PIECES_MAX:
            return R.CAPACITY_EXHAUSTED, PIECES_MAX
        return None

    def _invoice_refusal(self, command: IssueCommitment) -> Refusal | None:
        invoice = self._invoices.get(command.invoice)
        if invoice is None:
            return R.UNKNOWN_INVOICE, command.invoice
        if not invoice.confirmed:
            return R.INVOICE_NOT_CONFIRMED, command.invoice
        if invoice.buyer != command.participant or invoice.seller != command.holder:
            return R.INVOICE_PARTIES, f"{invoice.seller} -> {invoice.buyer}"
        if invoice.piece:
            return R.INVOICE_ALREADY_USED, f"{command.invoice} backs piece {invoice.piece}"
        if command.amount > invoice.amount:
            return R.INVOICE_AMOUNT_EXCEEDED, f"{command.amount} > {invoice.amount}"
        return None

    def _add_piece(self, piece: Piece) -> None:
        self._pieces[piece.piece_id] = piece
        self._due.setdefault(piece.maturity, []).append(piece.piece_id)
        self._touch(("c", piece.piece_id))

    def _confirm(self, command: ConfirmCommitment) -> list[Event] | Refusal:
        piece = self._held(command.piece, command.participant)
        if isinstance(piece, tuple):
            return piece
        if piece.status is not S.UNCONFIRMED:
            if piece.status in LIVE_STATUSES:
                return R.ALREADY_CONFIRMED, command.piece
            return R.PIECE_NOT_LIVE, piece.status.name.lower()
        piece.status = S.ACTIVE
        self._touch(("c", piece.piece_id))
        return [CommitmentConfirmed(piece=piece.piece_id, holder=piece.holder)]

    def _held(self, piece_id: int, participant: str) -> Piece | Refusal:
        """The piece `participant` holds, or why not: unknown, or not its holder."""
        piece = self._pieces.get(piece_id)
        if piece is None:
            return R.UNKNOWN_PIECE, piece_id
        if piece.holder != participant:
            return R.NOT_HOLDER, participant
        return piece

    def _movable(self, piece_id: int, participant: str) -> Piece | Refusal:
        """The piece `participant` may split, transfer, finance or pledge, or why not:
        unknown, not its holder, not live (paid, failed, split), not confirmed, pledged."""
        piece = self._held(piece_id, participant)
        if isinstance(piece, tuple):
            return piece
        status = piece.status
        if status not in LIVE_STATUSES:
            return R.PIECE_NOT_LIVE, status.name.lower()
        if status is S.UNCONFIRMED:
            return R.NOT_CONFIRMED, piece_id
        if status is S.PLEDGED:
            return R.PIECE_PLEDGED, f"{piece_id} pledged to {piece.pledgee}"
        return piece

    def _split(self, command: SplitCommitment) -> list[Event] | Refusal:
        piece = self._movable(command.piece, command.participant)
        if isinstance(piece, tuple):
            return piece
        amounts = command.amounts
        if not 2 <= len(amounts) <= SPLIT_CHILDREN_MAX or min(amounts) < 1:
            return R.INVALID_SPLIT, list(amounts)
        if sum(amounts) != piece.amount:
            return R.SPLIT_NOT_SUM, f"{sum(amounts)} != {piece.amount}"
        if len(self._pieces) + len(amounts) > PIECES_MAX:
            return R.CAPACITY_EXHAUSTED, PIECES_MAX
        first = self._piece_id_last + 1
        children = tuple(range(first, first + len(amounts)))
        self._piece_id_last += len(amounts)
        for child, amount in zip(children, amounts, strict=True):
            self._add_piece(
                Piece(
                    piece_id=child,
                    root=piece.root,
                    parent=piece.piece_id,
                    issuer=piece.issuer,
                    holder=piece.holder,
                    amount=amount,
                    currency=piece.currency,
                    maturity=piece.maturity,
                    invoice=piece.invoice,
                    recourse=piece.recourse,
                    status=S.ACTIVE,
                    pledgee="",
                    chain=list(piece.chain),
                    claims=0,
                    children=(),
                )
            )
        piece.status = S.SPLIT
        piece.children = children
        self._touch(("c", piece.piece_id), ("x",))
        return [CommitmentSplit(piece=piece.piece_id, children=children, amounts=tuple(amounts))]

    def _transfer(self, command: TransferCommitment) -> list[Event] | Refusal:
        piece = self._movable(command.piece, command.participant)
        if isinstance(piece, tuple):
            return piece
        if command.to not in self._participants:
            return R.UNKNOWN_PARTICIPANT, command.to
        if command.to == command.participant:
            return R.SAME_PARTICIPANT, command.to
        self._move(piece, command.to, command.recourse)
        return [
            CommitmentTransferred(
                piece=piece.piece_id,
                transferor=command.participant,
                holder=command.to,
                recourse=command.recourse,
            )
        ]

    def _move(self, piece: Piece, to: str, recourse: bool) -> None:
        piece.chain.append((piece.holder, recourse))
        piece.holder = to
        self._touch(("c", piece.piece_id))

    def _finance(self, command: FinanceCommitment) -> list[Event] | Refusal:
        piece = self._movable(command.piece, command.participant)
        if isinstance(piece, tuple):
            return piece
        factor = command.factor
        if self._participants[factor].role is not ParticipantRole.FACTOR:
            return R.NOT_A_FACTOR, factor
        if factor == command.participant:
            return R.SAME_PARTICIPANT, factor
        if not 0 < command.price <= piece.amount:
            return R.INVALID_AMOUNT, command.price
        cash = self.settlement.registry(piece.currency)
        if self.settlement.is_frozen(factor):
            return R.ACCOUNT_FROZEN, factor
        available = cash.available.get(factor, 0)
        if available < command.price:
            return R.INSUFFICIENT_CASH, f"{factor} has {available} of {command.price}"
        cash.debit(factor, command.price)
        cash.credit(command.participant, command.price)
        self._move(piece, factor, command.recourse)
        return [
            CommitmentFinanced(
                piece=piece.piece_id,
                seller=command.participant,
                factor=factor,
                price=command.price,
                amount=piece.amount,
                recourse=command.recourse,
            )
        ]

    def _pledge(self, command: PledgeCommitment) -> list[Event] | Refusal:
        piece = self._movable(command.piece, command.participant)
        if isinstance(piece, tuple):
            return piece
        if command.pledgee not in self._banks:
            return R.UNKNOWN_BANK, command.pledgee
        piece.status = S.PLEDGED
        piece.pledgee = command.pledgee
        self._touch(("c", piece.piece_id))
        return [
            CommitmentPledged(piece=piece.piece_id, holder=piece.holder, pledgee=command.pledgee)
        ]

    def _claim(self, command: ClaimRecourse) -> list[Event] | Refusal:
        piece = self._held(command.piece, command.participant)
        if isinstance(piece, tuple):
            return piece
        if piece.status is not S.FAILED:
            return R.NOT_FAILED, piece.status.name.lower()
        if not piece.recourse:
            return R.NO_RECOURSE, command.piece
        tier = len(piece.chain) - 1 - piece.claims
        if tier < 0:
            return R.NO_FURTHER_RECOURSE, command.piece
        transferor, with_recourse = piece.chain[tier]
        piece.claims += 1
        self._touch(("c", piece.piece_id))
        cash = self.settlement.registry(piece.currency)
        reason = None
        if not with_recourse:
            reason = R.NO_RECOURSE
        elif self.settlement.is_frozen(transferor):
            reason = R.ACCOUNT_FROZEN
        elif cash.available.get(transferor, 0) < piece.amount:
            reason = R.INSUFFICIENT_CASH
        if reason is not None:
            return [RecourseFailed(piece.piece_id, piece.holder, transferor, piece.amount, reason)]
        cash.debit(transferor, piece.amount)
        cash.credit(piece.holder, piece.amount)
        piece.status = S.RECOVERED
        return [RecourseClaimed(piece.piece_id, piece.holder, transferor, piece.amount)]

    # -- invoices --------------------------------------------------------------------------

    def _register_invoice(self, command: RegisterInvoice) -> list[Event] | Refusal:
        seller = command.participant
        if command.buyer not in self._participants:
            return R.UNKNOWN_PARTICIPANT, command.buyer
        if command.buyer == seller:
            return R.SAME_PARTICIPANT, command.buyer
        for text in (command.key_hash, command.content_hash):
            if not is_hex(text, HASH_HEX_LENGTH):
                return R.INVALID_HASH, text
        if not 0 < command.amount <= SUPPLY_MAX:
            return R.INVALID_AMOUNT, command.amount
        first = self._invoices.get(command.key_hash)
        if first is not None:
            return R.DUPLICATE_INVOICE, f"{command.key_hash} registered by {first.seller}"
        first_key = self._contents.get(command.content_hash)
        if first_key is not None:
            return R.DUPLICATE_INVOICE, f"content of {first_key}"
        if len(self._invoices) >= INVOICES_MAX:
            return R.CAPACITY_EXHAUSTED, INVOICES_MAX
        self._invoices[command.key_hash] = Invoice(
            seller, command.buyer, command.content_hash, command.amount, False, 0
        )
        self._contents[command.content_hash] = command.key_hash
        self._touch(("i", command.key_hash))
        return [
            InvoiceRegistered(
                key_hash=command.key_hash,
                content_hash=command.content_hash,
                seller=seller,
                buyer=command.buyer,
                amount=command.amount,
            )
        ]

    def _confirm_invoice(self, command: ConfirmInvoice) -> list[Event] | Refusal:
        invoice = self._invoices.get(command.key_hash)
        if invoice is None:
            return R.UNKNOWN_INVOICE, command.key_hash
        if invoice.buyer != command.participant:
            return R.NOT_AUTHORIZED, command.participant
        if invoice.confirmed:
            return R.ALREADY_CONFIRMED, command.key_hash
        invoice.confirmed = True
        self._touch(("i", command.key_hash))
        return [InvoiceConfirmed(key_hash=command.key_hash, buyer=invoice.buyer)]

    # -- maturity --------------------------------------------------------------------------

    def begin_day(self, day: int) -> list[Event]:
        """Day `day` begins (the venue checked it is after the last): every live piece that
        matures on or before it is paid by its issuer, all or nothing per issuer and currency,
        in order of (issuer, currency, piece); what cannot be paid fails. O(pieces due)."""
        if not self._pieces and not self._participants:
            self._day = day  # no state yet: nothing enters the commitment
            return []
        self._day = day
        self._touch(("x",))
        due: dict[tuple[str, str], list[Piece]] = {}
        for maturity in sorted(m for m in self._due if m <= day):
            for piece_id in self._due.pop(maturity):
                piece = self._pieces[piece_id]
                if piece.status in LIVE_STATUSES:
                    due.setdefault((piece.issuer, piece.currency), []).append(piece)
        events: list[Event] = []
        for (issuer, currency), pieces in sorted(due.items()):
            events.extend(self._pay(issuer, currency, sorted(pieces, key=_piece_id)))
        return events

    def _pay(self, issuer: str, currency: str, pieces: list[Piece]) -> list[Event]:
        cash = self.settlement.registry(currency)
        total = sum(piece.amount for piece in pieces)
        available = cash.available.get(issuer, 0)
        pays = available >= total and not self.settlement.is_frozen(issuer)
        if pays:
            cash.debit(issuer, total)
        events: list[Event] = []
        for piece in pieces:
            self._outstanding[issuer] -= piece.amount
            piece.pledgee = ""
            self._touch(("c", piece.piece_id))
            if pays:
                piece.status = S.PAID
                cash.credit(piece.holder, piece.amount)
                events.append(
                    CommitmentPaid(piece.piece_id, issuer, piece.holder, piece.amount, currency)
                )
            else:
                piece.status = S.FAILED
                transferors = tuple(name for name, _ in piece.chain)
                events.append(
                    CommitmentFailed(
                        piece.piece_id,
                        issuer,
                        piece.holder,
                        piece.amount,
                        currency,
                        total,
                        available,
                        transferors,
                    )
                )
        return events

    # -- queries ---------------------------------------------------------------------------

    @property
    def day(self) -> int:
        return self._day

    def piece(self, piece_id: int) -> Piece | None:
        return self._pieces.get(piece_id)

    def pieces(self) -> Mapping[int, Piece]:
        """Every piece ever made, by id, read-only."""
        return self._pieces

    def lineage(self, piece_id: int) -> list[int]:
        """The tree of the piece's root, depth first in id order: the original and every
        piece split from it. O(tree)."""
        root = self._pieces[piece_id].root
        found: list[int] = []
        stack = [root]
        while stack:
            current = stack.pop()
            found.append(current)
            stack.extend(reversed(self._pieces[current].children))
        return found

    def outstanding(self, issuer: str) -> int:
        return self._outstanding.get(issuer, 0)

    def credit_limit(self, issuer: str) -> int:
        return self._limits.get(issuer, 0)

    def participant(self, name: str) -> Participant | None:
        return self._participants.get(name)

    def invoice(self, key_hash: str) -> Invoice | None:
        return self._invoices.get(key_hash)

    # -- state: entities, snapshot, restore, changes, check --------------------------------

    def is_empty(self) -> bool:
        """No participant yet: the state has no supply-chain entity (nor snapshot key)."""
        return not self._participants and self._window.is_empty()

    def track_changes(self) -> set[Key]:
        """From now on record the keys of the entities changed (see `entity`); once."""
        assert self._changes is None, "the supply chain's changes have a reader already"
        self._changes = set()
        return self._changes

    def entity(self, key: Key) -> list[Any] | None:
        """The JSON-ready row of entity `key` (its tag first), or None if there is none."""
        tag = key[0]
        if tag == "x":
            if self.is_empty():
                return None
            return ["x", self._day, self._piece_id_last]
        if tag == "q":
            p = self._participants.get(key[1])
            return None if p is None else ["q", key[1], p.bank, int(p.role), p.public_key]
        if tag == "m":
            limit = self._limits.get(key[1])
            return None if limit is None else ["m", key[1], limit]
        if tag == "c":
            piece = self._pieces.get(key[1])
            return None if piece is None else piece.row()
        if tag == "i":
            i = self._invoices.get(key[1])
            if i is None:
                return None
            return ["i", key[1], i.content_hash, i.seller, i.buyer, i.amount, i.confirmed, i.piece]
        return self._window.entity(key)

    def keys(self) -> Iterator[Key]:
        """Every entity's key. O(state)."""
        if self.is_empty():
            return
        yield ("x",)
        yield from (("q", name) for name in self._participants)
        yield from (("m", name) for name in self._limits)
        yield from (("c", piece_id) for piece_id in self._pieces)
        yield from (("i", key_hash) for key_hash in self._invoices)
        yield from self._window.keys()

    def snapshot(self) -> list[list[Any]]:
        """Every entity's row, in a fixed order (outcomes oldest first): JSON-ready."""
        rows = []
        for key in self.keys():
            row = self.entity(key)
            assert row is not None, key
            rows.append(row)
        return rows

    @classmethod
    def restore(
        cls,
        rows: list[list[Any]],
        settlement: SettlementEngine,
        verify: Verifier,
        *,
        day: int,
        outcomes_max: int = SCF_OUTCOMES_MAX,
    ) -> SupplyChain:
        """The supply chain `rows` (`snapshot`) describe, over `settlement`, on the venue's
        `day` (which the rows repeat when there are any)."""
        chain = cls(settlement, verify, outcomes_max=outcomes_max)
        chain._day = day
        for row in rows:
            chain._restore_row(row)
        assert chain._day == day, f"supply chain on day {chain._day}, venue on {day}"
        return chain

    def _restore_row(self, row: list[Any]) -> None:
        tag = row[0]
        if tag == "x":
            self._day, self._piece_id_last = row[1], row[2]
        elif tag == "q":
            _, name, bank, role, key = row
            self._participants[name] = Participant(bank, ParticipantRole(role), key)
            self._banks[bank] = self._banks.get(bank, 0) + 1
        elif tag == "m":
            self._limits[row[1]] = row[2]
        elif tag == "c":
            values = dict(zip(PIECE_FIELDS, row[1:], strict=True))
            values["status"] = S(values["status"])
            values["chain"] = [(name, recourse) for name, recourse in values["chain"]]
            values["children"] = tuple(values["children"])
            piece = Piece(**values)
            self._pieces[piece.piece_id] = piece
            if piece.status in LIVE_STATUSES:
                self._due.setdefault(piece.maturity, []).append(piece.piece_id)
                self._outstanding[piece.issuer] = (
                    self._outstanding.get(piece.issuer, 0) + piece.amount
                )
        elif tag == "i":
            _, key_hash, content, seller, buyer, amount, confirmed, piece_id = row
            self._invoices[key_hash] = Invoice(seller, buyer, content, amount, confirmed, piece_id)
            self._contents[content] = key_hash
        else:
            self._window.restore_row(row)

    def check(self) -> None:
        """Assert the invariants: Σ children = parent for every split; a pledged piece has a
        pledgee and was not moved (it cannot be: `_movable`); every live piece matures after
        the current day (so every matured piece was paid or failed exactly once: each leaves
        the live statuses once, at `begin_day`); each issuer's outstanding is the sum of its
        live pieces and each invoice backs at most one piece, which names it; bounded tables.
        O(state)."""
        assert len(self._participants) <= PARTICIPANTS_MAX
        assert len(self._pieces) <= PIECES_MAX and len(self._invoices) <= INVOICES_MAX
        outstanding: dict[str, int] = {}
        backed: dict[str, int] = {}
        for piece_id, piece in self._pieces.items():
            assert piece.piece_id == piece_id and 0 < piece_id <= self._piece_id_last
            assert piece.amount > 0, piece_id
            if piece.status is S.SPLIT:
                amounts = [self._pieces[child].amount for child in piece.children]
                assert sum(amounts) == piece.amount, f"split {piece_id}: {amounts}"
                for child in piece.children:
                    assert self._pieces[child].parent == piece_id, (piece_id, child)
            else:
                assert not piece.children, piece_id
            assert (piece.status is S.PLEDGED) == bool(piece.pledgee), piece_id
            if piece.status in LIVE_STATUSES:
                assert piece.maturity > self._day, f"piece {piece_id} matured and still live"
                outstanding[piece.issuer] = outstanding.get(piece.issuer, 0) + piece.amount
                assert piece_id in self._due.get(piece.maturity, ()), piece_id
            assert 0 <= piece.claims <= len(piece.chain), piece_id
            if piece.parent:
                assert piece_id in self._pieces[piece.parent].children, piece_id
            else:
                assert piece.root == piece_id, piece_id
                if piece.invoice:
                    assert piece.invoice not in backed, f"invoice {piece.invoice} backs two"
                    backed[piece.invoice] = piece_id
        wrong = {
            i: (outstanding.get(i, 0), self._outstanding.get(i, 0))
            for i in outstanding.keys() | self._outstanding.keys()
            if outstanding.get(i, 0) != self._outstanding.get(i, 0)
        }
        assert not wrong, f"outstanding (pieces, kept): {wrong}"
        for key_hash, invoice in self._invoices.items():
            assert backed.get(key_hash, 0) == invoice.piece, key_hash
            assert self._contents[invoice.content_hash] == key_hash
        assert len(self._contents) == len(self._invoices)
        self._window.check(_sender)


KEY_LENGTHS = {"x": 1, "q": 2, "m": 2, "c": 2, "i": 2, "y": 2, "w": 3}


def entity_key(row: list[Any]) -> Key:
    """The key of an entity row (`SupplyChain.entity`): its tag and its key fields."""
    return tuple(row[: KEY_LENGTHS[row[0]]])


PIECE_FIELDS = (
    "piece_id",
    "root",
    "parent",
    "issuer",
    "holder",
    "amount",
    "currency",
    "maturity",
    "invoice",
    "recourse",
    "status",
    "pledgee",
    "chain",
    "claims",
    "children",
)


def _piece_id(piece: Piece) -> int:
    return int(piece.piece_id)


def _sender(command: Command) -> str:
    """Whose ids the command uses: a participant's ("p/" + id) or a member's ("m/" + id)."""
    if isinstance(command, MEMBER_COMMANDS):
        return "m/" + command.actor
    return "p/" + command.participant  # type: ignore[union-attr]


def _rejected(command: Command, reason: ScfRejectReason, value: object) -> ScfRejected:
    return ScfRejected(
        command=wire_name(type(command)),
        actor=command.actor,
        command_id=command.command_id,
        reason=reason,
        value=str(value),
    )
