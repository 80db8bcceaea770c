"""Events the settlement engine emits. Past-tense names; frozen values; integers only.

A refused command emits exactly one `CommandRejected` and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from settlement.types import AssetKind, RejectReason, SettlementMode


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRejected:
    """`command` is the snake_case type name of the refused command."""

    command_id: int
    command: str
    reason: RejectReason


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetDefined:
    asset: str
    kind: AssetKind
    issuer: str
    currency: str
    mode: SettlementMode


@dataclass(frozen=True, slots=True, kw_only=True)
class FeeScheduleSet:
    asset: str
    commission_bps: int
    stamp_duty_bps: int
    fee_account: str
    tax_account: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountOpened:
    account: str
    broker: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Issued:
    asset: str
    account: str
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Redeemed:
    asset: str
    account: str
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Deposited:
    asset: str
    account: str
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Withdrawn:
    asset: str
    account: str
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Transferred:
    asset: str
    source: str
    destination: str
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Locked:
    asset: str
    account: str
    owner: int
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Unlocked:
    asset: str
    account: str
    owner: int
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountFrozen:
    account: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountUnfrozen:
    account: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeSettled:
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


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeCleared:
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


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionSettled:
    """At a cycle, `account`'s net position in `asset` moved: positive received, negative paid."""

    cycle_id: int
    asset: str
    account: str
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetNetted:
    """Per asset in a settled cycle: `gross` = sum of the debit legs trade by trade, `net` = sum
    of the net debits that actually moved (shares for a security, fen for cash)."""

    cycle_id: int
    asset: str
    gross: int
    net: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CycleSettled:
    """A cycle settled every pending position. Values are in fen over the cash assets."""

    cycle_id: int
    trade_count: int
    gross_value: int
    net_value: int

    @property
    def netting_efficiency(self) -> float | None:
        """gross / net value, for display only (never hashed); None when nothing net moved."""
        return self.gross_value / self.net_value if self.net_value else None


@dataclass(frozen=True, slots=True, kw_only=True)
class CycleFailed:
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
