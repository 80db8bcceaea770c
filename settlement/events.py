"""Events the settlement engine emits. Past-tense names; immutable values; integers only.

A refused command emits exactly one `CommandRejected` and changes nothing.

Events are immutable records built on `typing.NamedTuple` rather than frozen dataclasses, as in
`matching.events` and for the same reason: the venue emits a settlement event for every trade
on its hot path, and a frozen dataclass of eleven fields costs 2.4 us to build (one
`object.__setattr__` per field) against about 0.5 us here. `@record` makes equality typed, so
two event types with equal fields never compare equal as plain tuples would. (The helper is
repeated here rather than imported: the pure packages never import each other.)
"""

from __future__ import annotations

from typing import Any, NamedTuple, TypeVar

from settlement.types import AssetKind, RejectReason, SettlementMode

RecordType = TypeVar("RecordType", bound=type)


def _typed_eq(self: tuple[Any, ...], other: object) -> bool:
    return type(self) is type(other) and tuple.__eq__(self, other)


def _typed_ne(self: tuple[Any, ...], other: object) -> bool:
    return not _typed_eq(self, other)


def _typed_hash(self: tuple[Any, ...]) -> int:
    return hash((type(self).__name__, tuple(self)))


def record(cls: RecordType) -> RecordType:
    """Give a NamedTuple event class equality that also compares the event type."""
    cls.__eq__ = _typed_eq  # type: ignore[assignment]
    cls.__ne__ = _typed_ne  # type: ignore[assignment]
    cls.__hash__ = _typed_hash  # type: ignore[assignment]
    return cls


@record
class CommandRejected(NamedTuple):
    """`command` is the snake_case type name of the refused command."""

    command_id: int
    command: str
    reason: RejectReason


@record
class AssetDefined(NamedTuple):
    asset: str
    kind: AssetKind
    issuer: str
    currency: str
    mode: SettlementMode


@record
class FeeScheduleSet(NamedTuple):
    asset: str
    commission_bps: int
    stamp_duty_bps: int
    fee_account: str
    tax_account: str


@record
class AccountOpened(NamedTuple):
    account: str
    broker: str


@record
class Issued(NamedTuple):
    asset: str
    account: str
    amount: int


@record
class Redeemed(NamedTuple):
    asset: str
    account: str
    amount: int


@record
class Deposited(NamedTuple):
    asset: str
    account: str
    amount: int


@record
class Withdrawn(NamedTuple):
    asset: str
    account: str
    amount: int


@record
class Transferred(NamedTuple):
    asset: str
    source: str
    destination: str
    amount: int


@record
class Locked(NamedTuple):
    asset: str
    account: str
    owner: int
    amount: int


@record
class Unlocked(NamedTuple):
    asset: str
    account: str
    owner: int
    amount: int


@record
class AccountFrozen(NamedTuple):
    account: str


@record
class AccountUnfrozen(NamedTuple):
    account: str


@record
class TradeSettled(NamedTuple):
    """A GROSS trade settled: both legs moved, final. Cash in fen of `currency`."""

    trade_id: int
    asset: str
    currency: str
    price: int
    quantity: int
    buyer: str
    seller: str
    buyer_paid: int
    seller_received: int
    commission: int  # charged to each side
    stamp_duty: int


@record
class TradeCleared(NamedTuple):
    """A net-mode trade became obligations due at the cycle. Under CASH_NET the securities leg
    has already moved; under NET_NET both legs wait for the cycle."""

    trade_id: int
    asset: str
    currency: str
    mode: SettlementMode
    price: int
    quantity: int
    buyer: str
    seller: str
    buyer_owes: int
    seller_owed: int
    commission: int
    stamp_duty: int


@record
class PositionSettled(NamedTuple):
    """At a cycle, `account`'s net position in `asset` moved: positive received, negative paid."""

    cycle_id: int
    asset: str
    account: str
    amount: int


@record
class AssetNetted(NamedTuple):
    """Per asset in a settled cycle: `gross` = sum of the debit legs trade by trade, `net` = sum
    of the net debits that actually moved (shares for a security, fen for cash)."""

    cycle_id: int
    asset: str
    gross: int
    net: int


@record
class CycleSettled(NamedTuple):
    """A cycle settled every pending position. Values are in fen over the cash assets."""

    cycle_id: int
    trade_count: int
    gross_value: int
    net_value: int

    @property
    def netting_efficiency(self) -> float | None:
        """gross / net value, for display only (never hashed); None when nothing net moved."""
        return self.gross_value / self.net_value if self.net_value else None


@record
class CycleFailed(NamedTuple):
    """A cycle could not settle: `account` is `shortfall` short of its net debit in `asset`.
    One event per short position; the cycle settled nothing and every position stays pending."""

    cycle_id: int
    asset: str
    account: str
    shortfall: int


Event = (
    CommandRejected
    | AssetDefined
    | FeeScheduleSet
    | AccountOpened
    | Issued
    | Redeemed
    | Deposited
    | Withdrawn
    | Transferred
    | Locked
    | Unlocked
    | AccountFrozen
    | AccountUnfrozen
    | TradeSettled
    | TradeCleared
    | PositionSettled
    | AssetNetted
    | CycleSettled
    | CycleFailed
)
