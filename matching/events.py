"""Events the matching engine emits. Past-tense names; frozen values.

Every change to an order's open quantity is told by exactly one of: TradeExecuted,
OrderCancelled, OrderReduced, OrderAmended, OrderExpired. SelfTradePrevented and
AuctionUncrossed are informational and never change a quantity by themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from matching.types import CancelReason, OrderKind, Phase, RejectReason, Side, StpMode, TimeInForce


@dataclass(frozen=True, slots=True, kw_only=True)
class InstrumentAdded:
    symbol: str
    tick_size: int
    lot: int
    reference_price: int
    price_limit_pct: int | None
    lower_limit: int
    upper_limit: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PhaseChanged:
    symbol: str
    phase: Phase
    previous: Phase


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRejected:
    """An instrument or phase command was refused; `command` is its JSON type name."""

    command: str
    symbol: str
    reason: RejectReason


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderAccepted:
    order_id: int
    symbol: str
    account: str
    side: Side
    kind: OrderKind
    price: int | None
    quantity: int
    tif: TimeInForce


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRejected:
    order_id: int
    symbol: str
    reason: RejectReason


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelRejected:
    """A cancel was refused; the order, if it exists, is unchanged."""

    order_id: int
    symbol: str
    reason: RejectReason


@dataclass(frozen=True, slots=True, kw_only=True)
class AmendRejected:
    """An amend was refused; the order, if it exists, is unchanged."""

    order_id: int
    symbol: str
    reason: RejectReason


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeExecuted:
    """A fill. `aggressor` is the taker's side, None for a trade at an auction uncross."""

    trade_id: int
    symbol: str
    price: int
    quantity: int
    buy_order_id: int
    sell_order_id: int
    buy_account: str
    sell_account: str
    aggressor: Side | None


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderCancelled:
    """`quantity` open shares left the book; the order is done."""

    order_id: int
    symbol: str
    quantity: int
    reason: CancelReason


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderReduced:
    """`quantity` open shares left the book and `remaining` stay, with their priority."""

    order_id: int
    symbol: str
    quantity: int
    remaining: int
    reason: CancelReason


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderAmended:
    """The order now rests (or, if it matches at once, starts) at `price` with open `quantity`."""

    order_id: int
    symbol: str
    price: int
    quantity: int
    priority_kept: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderExpired:
    """A day order's open quantity expired at the close; the order is done."""

    order_id: int
    symbol: str
    quantity: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SelfTradePrevented:
    """An incoming order met a resting order of its own STP group; no trade took place."""

    symbol: str
    taker_order_id: int
    maker_order_id: int
    mode: StpMode
    quantity: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AuctionUncrossed:
    """A call auction ended. `price` is None when nothing could execute."""

    symbol: str
    price: int | None
    volume: int
    imbalance: int


Event = (
    InstrumentAdded
    | PhaseChanged
    | CommandRejected
    | OrderAccepted
    | OrderRejected
    | CancelRejected
    | AmendRejected
    | TradeExecuted
    | OrderCancelled
    | OrderReduced
    | OrderAmended
    | OrderExpired
    | SelfTradePrevented
    | AuctionUncrossed
)
