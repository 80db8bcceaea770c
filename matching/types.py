"""Wire-stable enumerations of the matching engine.

Every value here goes on the wire and into the ledger: values are explicit and append-only,
never renumbered. The JSON vocabulary uses the lower-case member names.
"""

from __future__ import annotations

from enum import IntEnum


class Side(IntEnum):
    BUY = 1
    SELL = 2

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderKind(IntEnum):
    LIMIT = 1
    MARKET = 2


class TimeInForce(IntEnum):
    DAY = 1  # rests until filled, cancelled or the market closes
    GTC = 2  # good till cancelled: survives the close
    IOC = 3  # immediate or cancel: the unfilled remainder is cancelled
    FOK = 4  # fill or kill: fills completely at once or trades nothing


class Phase(IntEnum):
    CLOSED = 1
    CALL_AUCTION = 2  # opening call auction: orders rest, nothing matches
    CONTINUOUS = 3
    CLOSING_AUCTION = 4
    HALTED = 5  # cancels only

    @property
    def is_auction(self) -> bool:
        return self is Phase.CALL_AUCTION or self is Phase.CLOSING_AUCTION


class StpMode(IntEnum):
    """What self-trade prevention does when an incoming order meets a resting order of its group."""

    CANCEL_NEWEST = 1  # cancel the incoming order's remainder (default)
    CANCEL_OLDEST = 2  # cancel the resting order and keep matching
    CANCEL_BOTH = 3
    DECREMENT_AND_CANCEL = 4  # reduce both by the smaller quantity; the smaller one is cancelled


class RejectReason(IntEnum):
    """Why a command was refused. Checked in this order of precedence; append only."""

    UNKNOWN_INSTRUMENT = 1
    DUPLICATE_ORDER_ID = 2
    UNKNOWN_ORDER = 3
    NON_POSITIVE_QUANTITY = 4
    QUANTITY_NOT_A_LOT = 5
    NON_POSITIVE_PRICE = 6
    PRICE_NOT_ON_TICK = 7
    PRICE_OUTSIDE_LIMITS = 8
    PHASE_CLOSED = 9  # the instrument is closed or halted for this command
    ORDER_TYPE_NOT_ALLOWED_IN_PHASE = 10  # market, ioc, fok or post-only during a call auction
    POST_ONLY_WOULD_TAKE = 11
    DUPLICATE_INSTRUMENT = 12
    INVALID_INSTRUMENT = 13  # bad tick, lot, reference price or limit
    POST_ONLY_MARKET = 14  # a market order cannot be post-only
    NO_CHANGE = 15  # an amend that changes neither price nor quantity
    QUANTITY_TOO_LARGE = 16
    BOOK_FULL = 17


class CancelReason(IntEnum):
    """Why open quantity left the book without trading. Append only."""

    REQUESTED = 1
    UNFILLED_REMAINDER = 2  # ioc or market remainder after matching
    FILL_OR_KILL = 3  # a fok order that could not fill completely
    SELF_TRADE = 4  # self-trade prevention
    UNFUNDED = 5  # the venue cancelled an order its account could no longer fund
    CANCEL_ON_DISCONNECT = 6  # requested for its owner by the gateway: the session went away
    MATURED = 7  # the venue cancelled an order on a bond that matured (docs/fixed_income.md)


def name_of(member: IntEnum) -> str:
    """The JSON name of an enum member: lower-case, as on the wire."""
    return member.name.lower()
