"""Commands the matching engine accepts. Imperative names; immutable records; ids are ints.

Commands are `typing.NamedTuple` records like the events (see matching/events.py), for the same
reason: a frozen dataclass pays an `object.__setattr__` per field when it is built, and a caller
builds one command per message. They keep the dataclasses' keyword constructors, field names
and defaults. `@record` makes equality and hashing typed: a `CancelOrder` never equals an
event, another command or a plain tuple that holds the same values, as a bare NamedTuple would.
"""

from __future__ import annotations

from typing import NamedTuple

from matching.events import record
from matching.types import CancelReason, OrderKind, Phase, Side, StpMode, TimeInForce


@record
class AddInstrument(NamedTuple):
    symbol: str
    tick_size: int
    lot: int
    reference_price: int
    price_limit_pct: int | None


@record
class SetPhase(NamedTuple):
    symbol: str
    phase: Phase


@record
class PlaceOrder(NamedTuple):
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


@record
class CancelOrder(NamedTuple):
    """Cancel a resting order for its owner. `reason` is what the cancellation reports: the
    owner's request, or the gateway's cancel-on-disconnect on the owner's behalf (the only two
    a command may give; the venue's own reasons come from the venue)."""

    order_id: int
    symbol: str
    reason: CancelReason = CancelReason.REQUESTED


@record
class AmendOrder(NamedTuple):
    """Set a resting order's price and open quantity (None keeps the current value)."""

    order_id: int
    symbol: str
    price: int | None = None
    quantity: int | None = None


Command = AddInstrument | SetPhase | PlaceOrder | CancelOrder | AmendOrder
