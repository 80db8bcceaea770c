"""Commands the matching engine accepts. Imperative names; frozen values; ids are ints."""

from __future__ import annotations

from dataclasses import dataclass

from matching.types import CancelReason, OrderKind, Phase, Side, StpMode, TimeInForce


@dataclass(frozen=True, slots=True, kw_only=True)
class AddInstrument:
    symbol: str
    tick_size: int
    lot: int
    reference_price: int
    price_limit_pct: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SetPhase:
    symbol: str
    phase: Phase


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaceOrder:
    """A new order. `price` is None for a market order; `stp_group` "" opts out of STP."""

    order_id: int
    symbol: str
    account: str
    side: Side
    kind: OrderKind
    price: int | None
    quantity: int
    tif: TimeInForce = TimeInForce.DAY
    post_only: bool = False
    stp_group: str = ""
    stp_mode: StpMode = StpMode.CANCEL_NEWEST


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelOrder:
    """Cancel a resting order for its owner. `reason` is what the cancellation reports: the
    owner's request, or the gateway's cancel-on-disconnect on the owner's behalf (the only two
    a command may give; the venue's own reasons come from the venue)."""

    order_id: int
    symbol: str
    reason: CancelReason = CancelReason.REQUESTED


@dataclass(frozen=True, slots=True, kw_only=True)
class AmendOrder:
    """Set a resting order's price and open quantity (None keeps the current value)."""

    order_id: int
    symbol: str
    price: int | None = None
    quantity: int | None = None


Command = AddInstrument | SetPhase | PlaceOrder | CancelOrder | AmendOrder
