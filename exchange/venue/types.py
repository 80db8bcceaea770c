"""The venue's own commands, events and reasons, beside those of matching and settlement.

Wire-stable like the others: enum values are append-only, names go on the wire lower-case.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from matching.commands import AmendOrder, CancelOrder, PlaceOrder, SetPhase
from matching.events import Event as MatchingEvent
from matching.events import record
from settlement.commands import Command as SettlementCommand
from settlement.corporate_action_types import Command as CorporateActionCommand
from settlement.corporate_action_types import Event as CorporateActionEvent
from settlement.events import Event as SettlementEvent
from settlement.supply_chain_types import Command as SupplyChainCommand
from settlement.supply_chain_types import Event as SupplyChainEvent


class VenueRejectReason(IntEnum):
    """Why the venue refused a broker's order command before matching saw it. Append only."""

    DAY_NOT_OPEN = 1  # no trading day is open (before begin_day, after end_day)
    UNKNOWN_ACCOUNT = 2
    NOT_YOUR_ACCOUNT = 3  # the account belongs to another broker
    NOT_YOUR_ORDER = 4  # the order belongs to another broker's account
    ACCOUNT_FROZEN = 5
    INSUFFICIENT_CASH = 6
    INSUFFICIENT_SECURITIES = 7
    BOUGHT_TODAY = 8  # T+1: shares bought today cannot be sold until the next trading day
    ODD_LOT_NOT_WHOLE = 9  # an odd lot may only be sold all at once
    DAY_NOT_AFTER = 10  # begin_day with a day not after the last one
    DAY_ALREADY_OPEN = 11
    UNKNOWN_ASSET = 12  # listing an instrument whose security is not defined in settlement
    INVALID_RULES = 13  # bad settlement rules for a listing (t_plus not 0 or 1)
    DUPLICATE_INSTRUMENT = 14


@record
class BrokerCommand(NamedTuple):
    """An order command as a broker sent it: the broker's identity arrives with the command.
    `client_order_id` is the broker's own id of a new order (empty if none): the venue does not
    read it, but the ledger keeps it with the order, so the gateway's client order ids (unique
    per broker per trading day) survive a restart of the exchange.

    A record like the order commands it carries (see matching/commands.py): one is built per
    broker message, and `Venue.apply` unpacks it as a tuple; a slotted dataclass's fields are
    generic attribute reads in the compiled build."""

    broker: str
    command: PlaceOrder | CancelOrder | AmendOrder
    client_order_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ListInstrument:
    """List a security for trading (by the operator). Its registry must already be defined in
    settlement, which gives its cash asset and settlement mode. `t_plus` 1: shares bought
    today cannot be sold today (A-shares); 0: they can (bonds, funds)."""

    symbol: str
    tick_size: int
    lot: int
    reference_price: int
    price_limit_pct: int | None
    t_plus: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class BeginDay:
    """Open trading day `day` (yyyymmdd); shares bought on earlier days become sellable."""

    day: int


@dataclass(frozen=True, slots=True, kw_only=True)
class EndDay:
    """Close the trading day: every instrument closes (day orders expire; gtc orders stay)."""

    day: int


VenueCommand = (
    BrokerCommand
    | ListInstrument
    | BeginDay
    | EndDay
    | SetPhase
    | SettlementCommand
    | SupplyChainCommand
    | CorporateActionCommand
)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRefused:
    """The venue refused a broker's command for who sent it or when (`command`: its type)."""

    command: str
    broker: str
    order_id: int
    symbol: str
    reason: VenueRejectReason


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderUnfunded:
    """An order the account cannot fund: `required` of `asset`, of which `available` is free
    (for a sale under T+1, `available` counts only shares held before today)."""

    order_id: int
    symbol: str
    account: str
    asset: str
    required: int
    available: int
    reason: VenueRejectReason


@dataclass(frozen=True, slots=True, kw_only=True)
class InstrumentListed:
    symbol: str
    currency: str
    t_plus: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ListingRefused:
    symbol: str
    reason: VenueRejectReason


@dataclass(frozen=True, slots=True, kw_only=True)
class DayBegun:
    day: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DayEnded:
    day: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DayRefused:
    """A begin_day or end_day that does not fit the calendar."""

    day: int
    reason: VenueRejectReason


VenueEvent = (
    OrderRefused
    | OrderUnfunded
    | InstrumentListed
    | ListingRefused
    | DayBegun
    | DayEnded
    | DayRefused
)
Event = MatchingEvent | SettlementEvent | VenueEvent | SupplyChainEvent | CorporateActionEvent
