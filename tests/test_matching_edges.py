"""Every rule of docs/matching.md as a unit test with exact expected events.

Most tests run twice: against `MatchingEngine` and against the naive `ReferenceBook`, so a
wrong expectation here cannot hide behind a wrong model, nor a wrong model behind a wrong
engine. Tests of snapshots, state hashes, `check()` and speed run against the engine only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any, Protocol

import pytest

import matching.engine
from matching.commands import AddInstrument, AmendOrder, CancelOrder, Command, PlaceOrder, SetPhase
from matching.engine import MatchingEngine
from matching.events import (
    AmendRejected,
    AuctionUncrossed,
    CancelRejected,
    CommandRejected,
    Event,
    InstrumentAdded,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    OrderReduced,
    OrderRejected,
    PhaseChanged,
    SelfTradePrevented,
    TradeExecuted,
)
from matching.instrument import PRICE_MAX, QUANTITY_MAX
from matching.types import (
    CancelReason,
    OrderKind,
    Phase,
    RejectReason,
    Side,
    StpMode,
    TimeInForce,
)
from tests.reference_book import ReferenceBook

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderKind.LIMIT, OrderKind.MARKET
DAY, GTC, IOC, FOK = TimeInForce.DAY, TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK
SYMBOL = "AAA"  # tick 1, lot 100, reference 1000, limits [900, 1100]
OTHER = "BBB"  # tick 5, lot 10, reference 2000, limits [1800, 2200]


class Venue(Protocol):
    def apply(self, command: Command) -> list[Event]: ...
    def orders(self, symbol: str) -> list[Any]: ...
    def best_bid(self, symbol: str) -> int | None: ...
    def best_ask(self, symbol: str) -> int | None: ...
    def depth(self, symbol: str, levels: int) -> tuple[list[Any], list[Any]]: ...
    def indicative(self, symbol: str) -> tuple[int | None, int, int]: ...
    def check(self) -> None: ...


@pytest.fixture(params=["engine", "reference"])
def venue(request: pytest.FixtureRequest) -> Iterator[Venue]:
    """A venue with AAA and BBB listed, both in continuous trading."""
    subject: Venue = MatchingEngine() if request.param == "engine" else ReferenceBook()
    subject.apply(add_instrument(SYMBOL))
    subject.apply(add_instrument(OTHER, tick_size=5, lot=10, reference_price=2000))
    subject.apply(SetPhase(symbol=SYMBOL, phase=Phase.CONTINUOUS))
    subject.apply(SetPhase(symbol=OTHER, phase=Phase.CONTINUOUS))
    yield subject
    subject.check()


def add_instrument(
    symbol: str,
    *,
    tick_size: int = 1,
    lot: int = 100,
    reference_price: int = 1000,
    price_limit_pct: int | None = 10,
) -> AddInstrument:
    return AddInstrument(
        symbol=symbol,
        tick_size=tick_size,
        lot=lot,
        reference_price=reference_price,
        price_limit_pct=price_limit_pct,
    )


def order(
    order_id: int,
    side: Side,
    price: int | None,
    quantity: int,
    *,
    symbol: str = SYMBOL,
    account: str = "",
    tif: TimeInForce = DAY,
    post_only: bool = False,
    stp_group: str = "",
    stp_mode: StpMode = StpMode.CANCEL_NEWEST,
) -> PlaceOrder:
    return PlaceOrder(
        order_id=order_id,
        symbol=symbol,
        account=account or f"acct{order_id}",
        side=side,
        kind=LIMIT if price is not None else MARKET,
        price=price,
        quantity=quantity,
        tif=tif,
        post_only=post_only,
        stp_group=stp_group,
        stp_mode=stp_mode,
    )


def accepted(command: PlaceOrder) -> OrderAccepted:
    return OrderAccepted(
        order_id=command.order_id,
        symbol=command.symbol,
        account=command.account,
        side=command.side,
        kind=command.kind,
        price=command.price,
        quantity=command.quantity,
        tif=command.tif,
    )


def trade(
    trade_id: int,
    price: int,
    quantity: int,
    buy: int,
    sell: int,
    aggressor: Side | None,
    symbol: str = SYMBOL,
) -> TradeExecuted:
    """A trade between orders placed by `order()` with their default accounts."""
    return TradeExecuted(
        trade_id=trade_id,
        symbol=symbol,
        price=price,
        quantity=quantity,
        buy_order_id=buy,
        sell_order_id=sell,
        buy_account=f"acct{buy}",
        sell_account=f"acct{sell}",
        aggressor=aggressor,
    )


def cancelled(order_id: int, quantity: int, reason: CancelReason) -> OrderCancelled:
    return OrderCancelled(order_id=order_id, symbol=SYMBOL, quantity=quantity, reason=reason)


def rejected(order_id: int, reason: RejectReason, symbol: str = SYMBOL) -> OrderRejected:
    return OrderRejected(order_id=order_id, symbol=symbol, reason=reason)


def book(venue: Venue, symbol: str = SYMBOL) -> list[tuple[int, Side, int, int]]:
    """Resting orders as (id, side, price, open quantity), bids then asks in priority order."""
    return [(o.order_id, o.side, o.price, o.quantity) for o in venue.orders(symbol)]


def rest(venue: Venue, *commands: PlaceOrder) -> None:
    """Place orders that must rest untouched."""
    for command in commands:
        assert venue.apply(command) == [accepted(command)], command


def phase(venue: Venue, new: Phase, symbol: str = SYMBOL) -> list[Event]:
    return venue.apply(SetPhase(symbol=symbol, phase=new))


# ------------------------------------------------------------------ instruments and phases


@pytest.mark.parametrize(
    ("reference_price", "tick_size", "pct", "lower", "upper"),
    [
        (1000, 1, 10, 900, 1100),
        (1005, 1, 10, 905, 1106),  # 904.5 and 1105.5 round half up
        (1005, 5, 10, 905, 1105),  # then lower rounds up, upper down, to a tick
        (1005, 10, 10, 910, 1100),
        (1003, 1, 5, 953, 1053),  # 952.85 -> 953, 1053.15 -> 1053
        (1, 1, 10, 1, 1),  # 0.9 -> 1 and 1.1 -> 1
        (1000, 1, None, 1, PRICE_MAX),
        (1000, 7, None, 7, PRICE_MAX - PRICE_MAX % 7),
    ],
)
def test_price_limits_round_to_the_unit_then_inward_to_a_tick(
    venue: Venue, reference_price: int, tick_size: int, pct: int | None, lower: int, upper: int
) -> None:
    command = add_instrument(
        "LIM", tick_size=tick_size, reference_price=reference_price, price_limit_pct=pct
    )
    assert venue.apply(command) == [
        InstrumentAdded(
            symbol="LIM",
            tick_size=tick_size,
            lot=100,
            reference_price=reference_price,
            price_limit_pct=pct,
            lower_limit=lower,
            upper_limit=upper,
        )
    ]
    phase(venue, Phase.CONTINUOUS, "LIM")
    outside = RejectReason.PRICE_OUTSIDE_LIMITS
    for order_id, price in ((1, lower - tick_size), (2, upper + tick_size)):
        assert venue.apply(order(order_id, SELL, price, 1, symbol="LIM")) == [
            rejected(order_id, outside if price > 0 else RejectReason.NON_POSITIVE_PRICE, "LIM")
        ]
    rest(venue, order(3, BUY, lower, 100, symbol="LIM"))
    venue.apply(CancelOrder(order_id=3, symbol="LIM"))
    rest(venue, order(4, SELL, upper, 1, symbol="LIM"))


def test_limits_of_the_test_instruments(venue: Venue) -> None:
    for order_id, price, reason in (
        (1, 899, RejectReason.PRICE_OUTSIDE_LIMITS),
        (2, 1101, RejectReason.PRICE_OUTSIDE_LIMITS),
    ):
        assert venue.apply(order(order_id, BUY, price, 100)) == [rejected(order_id, reason)]
    rest(venue, order(3, BUY, 900, 100), order(4, SELL, 1100, 100))


@pytest.mark.parametrize(
    "command",
    [
        add_instrument("X", tick_size=0),
        add_instrument("X", tick_size=-5),
        add_instrument("X", lot=0),
        add_instrument("X", reference_price=0),
        add_instrument("X", price_limit_pct=0),
        add_instrument("X", price_limit_pct=100),
        add_instrument(""),
        add_instrument("X" * 33),
    ],
)
def test_invalid_instruments_are_rejected(venue: Venue, command: AddInstrument) -> None:
    assert venue.apply(command) == [
        CommandRejected(
            command="add_instrument", symbol=command.symbol, reason=RejectReason.INVALID_INSTRUMENT
        )
    ]


def test_instrument_symbol_of_32_characters_is_valid(venue: Venue) -> None:
    events = venue.apply(add_instrument("X" * 32))
    assert [type(event) for event in events] == [InstrumentAdded]


def test_duplicate_instrument_is_checked_before_validity(venue: Venue) -> None:
    assert venue.apply(add_instrument(SYMBOL, tick_size=0)) == [
        CommandRejected(
            command="add_instrument", symbol=SYMBOL, reason=RejectReason.DUPLICATE_INSTRUMENT
        )
    ]


def test_set_phase_rejections(venue: Venue) -> None:
    assert phase(venue, Phase.CONTINUOUS, "NOPE") == [
        CommandRejected(command="set_phase", symbol="NOPE", reason=RejectReason.UNKNOWN_INSTRUMENT)
    ]
    assert phase(venue, Phase.CONTINUOUS) == [
        CommandRejected(command="set_phase", symbol=SYMBOL, reason=RejectReason.NO_CHANGE)
    ]


def test_a_new_instrument_starts_closed(venue: Venue) -> None:
    venue.apply(add_instrument("NEW"))
    assert venue.apply(order(1, BUY, 1000, 100, symbol="NEW")) == [
        rejected(1, RejectReason.PHASE_CLOSED, "NEW")
    ]
    assert phase(venue, Phase.CALL_AUCTION, "NEW") == [
        PhaseChanged(symbol="NEW", phase=Phase.CALL_AUCTION, previous=Phase.CLOSED)
    ]


# ----------------------------------------------------------------- validation of orders


def test_place_rejections_follow_the_documented_order(venue: Venue) -> None:
    """Each command fails its own check and every later one, so only the order decides."""
    rest(venue, order(1, SELL, 1000, 100))
    r = RejectReason
    cases: list[tuple[PlaceOrder, RejectReason]] = [
        (order(2, BUY, 0, 0, symbol="NOPE", post_only=True), r.UNKNOWN_INSTRUMENT),
        (order(1, BUY, 0, 0, symbol=OTHER, post_only=True), r.DUPLICATE_ORDER_ID),
        (order(2, BUY, 0, 0, post_only=True), r.NON_POSITIVE_QUANTITY),
        (order(2, BUY, 0, -100, post_only=True), r.NON_POSITIVE_QUANTITY),
        (order(2, BUY, 0, QUANTITY_MAX + 100, post_only=True), r.QUANTITY_TOO_LARGE),
        (order(2, BUY, 0, 150, post_only=True), r.QUANTITY_NOT_A_LOT),
        (order(2, BUY, 0, 100, post_only=True), r.NON_POSITIVE_PRICE),
        (order(2, BUY, -5, 100, post_only=True), r.NON_POSITIVE_PRICE),
        (order(2, BUY, 2003, 10, symbol=OTHER, post_only=True), r.PRICE_NOT_ON_TICK),
        (order(2, BUY, 1200, 100, post_only=True), r.PRICE_OUTSIDE_LIMITS),
        (order(2, BUY, None, 100, post_only=True), r.POST_ONLY_MARKET),
        (order(2, BUY, 1000, 100, post_only=True), r.POST_ONLY_WOULD_TAKE),
    ]
    for command, reason in cases:
        assert venue.apply(command) == [rejected(command.order_id, reason, command.symbol)], command
    assert book(venue) == [(1, SELL, 1000, 100)]


def test_quantity_limit_is_inclusive(venue: Venue) -> None:
    rest(venue, order(1, SELL, 1100, QUANTITY_MAX))
    assert venue.apply(order(2, SELL, 1100, QUANTITY_MAX + 1)) == [
        rejected(2, RejectReason.QUANTITY_TOO_LARGE)
    ]


def test_lot_rule_applies_to_buys_only(venue: Venue) -> None:
    assert venue.apply(order(1, BUY, 1000, 150)) == [rejected(1, RejectReason.QUANTITY_NOT_A_LOT)]
    assert venue.apply(order(2, BUY, None, 50)) == [rejected(2, RejectReason.QUANTITY_NOT_A_LOT)]
    rest(venue, order(3, SELL, 1001, 150), order(4, SELL, 1002, 1), order(5, BUY, 999, 200))
    # A buy may be left with an odd lot by a fill; amending its price only is fine.
    command = order(6, BUY, 1001, 200)
    assert venue.apply(command) == [
        accepted(command),
        trade(1, 1001, 150, buy=6, sell=3, aggressor=BUY),
    ]
    assert venue.apply(AmendOrder(order_id=6, symbol=SYMBOL, price=998)) == [
        OrderAmended(order_id=6, symbol=SYMBOL, price=998, quantity=50, priority_kept=False)
    ]
    assert venue.apply(AmendOrder(order_id=6, symbol=SYMBOL, quantity=30)) == [
        AmendRejected(order_id=6, symbol=SYMBOL, reason=RejectReason.QUANTITY_NOT_A_LOT)
    ]


def test_phase_rejections_come_after_order_checks(venue: Venue) -> None:
    phase(venue, Phase.HALTED)
    assert venue.apply(order(1, BUY, 1000, 150)) == [rejected(1, RejectReason.QUANTITY_NOT_A_LOT)]
    assert venue.apply(order(2, BUY, None, 100, post_only=True)) == [
        rejected(2, RejectReason.POST_ONLY_MARKET)
    ]
    assert venue.apply(order(3, BUY, 1000, 100)) == [rejected(3, RejectReason.PHASE_CLOSED)]
    phase(venue, Phase.CALL_AUCTION)
    assert venue.apply(order(4, BUY, 1000, 150)) == [rejected(4, RejectReason.QUANTITY_NOT_A_LOT)]


@pytest.mark.parametrize("closed_phase", [Phase.CLOSED, Phase.HALTED])
def test_closed_and_halted_accept_cancels_only(venue: Venue, closed_phase: Phase) -> None:
    rest(venue, order(1, BUY, 990, 100, tif=GTC), order(2, SELL, 1010, 100, tif=GTC))
    phase(venue, closed_phase)
    assert venue.apply(order(3, BUY, 1000, 100)) == [rejected(3, RejectReason.PHASE_CLOSED)]
    assert venue.apply(order(4, SELL, None, 100, tif=IOC)) == [
        rejected(4, RejectReason.PHASE_CLOSED)
    ]
    assert venue.apply(AmendOrder(order_id=1, symbol=SYMBOL, price=995)) == [
        AmendRejected(order_id=1, symbol=SYMBOL, reason=RejectReason.PHASE_CLOSED)
    ]
    assert venue.apply(CancelOrder(order_id=2, symbol=SYMBOL)) == [
        cancelled(2, 100, CancelReason.REQUESTED)
    ]
    assert book(venue) == [(1, BUY, 990, 100)]


@pytest.mark.parametrize("auction", [Phase.CALL_AUCTION, Phase.CLOSING_AUCTION])
@pytest.mark.parametrize(
    "command",
    [
        order(1, BUY, None, 100),
        order(1, SELL, None, 100, tif=FOK),
        order(1, BUY, 1000, 100, tif=IOC),
        order(1, SELL, 1000, 100, tif=FOK),
        order(1, BUY, 1000, 100, post_only=True),
        order(1, SELL, 1000, 100, tif=GTC, post_only=True),
    ],
)
def test_auctions_refuse_market_ioc_fok_and_post_only(
    venue: Venue, auction: Phase, command: PlaceOrder
) -> None:
    phase(venue, auction)
    assert venue.apply(command) == [rejected(1, RejectReason.ORDER_TYPE_NOT_ALLOWED_IN_PHASE)]
    assert book(venue) == []


def test_duplicate_order_id_spans_instruments(venue: Venue) -> None:
    rest(venue, order(7, BUY, 1000, 100))
    assert venue.apply(order(7, SELL, 2100, 10, symbol=OTHER)) == [
        rejected(7, RejectReason.DUPLICATE_ORDER_ID, OTHER)
    ]
    assert venue.apply(CancelOrder(order_id=7, symbol=OTHER)) == [
        CancelRejected(order_id=7, symbol=OTHER, reason=RejectReason.UNKNOWN_ORDER)
    ]
    assert venue.apply(AmendOrder(order_id=7, symbol=OTHER, quantity=10)) == [
        AmendRejected(order_id=7, symbol=OTHER, reason=RejectReason.UNKNOWN_ORDER)
    ]


def test_book_full(venue: Venue, monkeypatch: pytest.MonkeyPatch) -> None:
    """The limit is a constant far out of a unit test's reach; lower it for both subjects."""
    if isinstance(venue, ReferenceBook):
        venue = ReferenceBook(orders_per_book_max=2)
        venue.apply(add_instrument(SYMBOL))
        venue.apply(add_instrument(OTHER, tick_size=5, lot=10, reference_price=2000))
        phase(venue, Phase.CONTINUOUS)
        phase(venue, Phase.CONTINUOUS, OTHER)
    else:
        monkeypatch.setattr(matching.engine, "ORDERS_PER_BOOK_MAX", 2)
    rest(venue, order(1, BUY, 990, 100), order(2, SELL, 1010, 100))
    full = RejectReason.BOOK_FULL
    assert venue.apply(order(3, BUY, 991, 100)) == [rejected(3, full)]
    # Even an order that would not rest is refused; earlier checks still come first.
    assert venue.apply(order(4, BUY, 1010, 100, tif=IOC)) == [rejected(4, full)]
    assert venue.apply(order(5, BUY, 1010, 150)) == [rejected(5, RejectReason.QUANTITY_NOT_A_LOT)]
    assert venue.apply(order(6, BUY, 1010, 100, post_only=True)) == [rejected(6, full)]
    rest(venue, order(7, SELL, 2100, 10, symbol=OTHER))  # another book has room
    venue.apply(CancelOrder(order_id=1, symbol=SYMBOL))
    rest(venue, order(8, BUY, 991, 100))


# ------------------------------------------------------------------- continuous matching


def test_trade_at_the_makers_price_and_ids_count_across_instruments(venue: Venue) -> None:
    rest(venue, order(1, SELL, 1000, 300), order(2, BUY, 2000, 10, symbol=OTHER))
    taker = order(3, BUY, 1005, 100)
    assert venue.apply(taker) == [accepted(taker), trade(1, 1000, 100, 3, 1, BUY)]
    other = order(4, SELL, 1995, 10, symbol=OTHER)
    assert venue.apply(other) == [accepted(other), trade(2, 2000, 10, 2, 4, SELL, OTHER)]
    taker = order(5, BUY, 1000, 100)
    assert venue.apply(taker) == [accepted(taker), trade(3, 1000, 100, 5, 1, BUY)]
    assert book(venue) == [(1, SELL, 1000, 100)]
    assert book(venue, OTHER) == []


def test_marketable_limit_stops_at_its_own_price(venue: Venue) -> None:
    rest(
        venue,
        order(1, SELL, 1000, 100),
        order(2, SELL, 1001, 100),
        order(3, SELL, 1002, 100),
        order(4, SELL, 1003, 100),
    )
    taker = order(5, BUY, 1002, 500)
    assert venue.apply(taker) == [
        accepted(taker),
        trade(1, 1000, 100, 5, 1, BUY),
        trade(2, 1001, 100, 5, 2, BUY),
        trade(3, 1002, 100, 5, 3, BUY),
    ]
    assert book(venue) == [(5, BUY, 1002, 200), (4, SELL, 1003, 100)]
    assert (venue.best_bid(SYMBOL), venue.best_ask(SYMBOL)) == (1002, 1003)


def test_sell_taker_walks_bids_down(venue: Venue) -> None:
    rest(venue, order(1, BUY, 1000, 100), order(2, BUY, 999, 100), order(3, BUY, 1000, 100))
    taker = order(4, SELL, 999, 250)
    assert venue.apply(taker) == [
        accepted(taker),
        trade(1, 1000, 100, 1, 4, SELL),
        trade(2, 1000, 100, 3, 4, SELL),
        trade(3, 999, 50, 2, 4, SELL),
    ]
    assert book(venue) == [(2, BUY, 999, 50)]


def test_ioc_residual_never_rests(venue: Venue) -> None:
    rest(venue, order(1, SELL, 1000, 100))
    taker = order(2, BUY, 1001, 300, tif=IOC)
    assert venue.apply(taker) == [
        accepted(taker),
        trade(1, 1000, 100, 2, 1, BUY),
        cancelled(2, 200, CancelReason.UNFILLED_REMAINDER),
    ]
    lonely = order(3, BUY, 1001, 100, tif=IOC)
    assert venue.apply(lonely) == [
        accepted(lonely),
        cancelled(3, 100, CancelReason.UNFILLED_REMAINDER),
    ]
    assert book(venue) == []
    assert venue.best_bid(SYMBOL) is None


@pytest.mark.parametrize("tif", [DAY, GTC, IOC])
def test_market_order_sweeps_any_price_and_never_rests(venue: Venue, tif: TimeInForce) -> None:
    rest(venue, order(1, SELL, 1000, 100), order(2, SELL, 1100, 50), order(3, BUY, 900, 100))
    taker = order(4, BUY, None, 200, tif=tif)
    assert venue.apply(taker) == [
        accepted(taker),
        trade(1, 1000, 100, 4, 1, BUY),
        trade(2, 1100, 50, 4, 2, BUY),
        cancelled(4, 50, CancelReason.UNFILLED_REMAINDER),
    ]
    assert book(venue) == [(3, BUY, 900, 100)]
    empty = order(5, BUY, None, 100, tif=tif)
    assert venue.apply(empty) == [
        accepted(empty),
        cancelled(5, 100, CancelReason.UNFILLED_REMAINDER),
    ]


def test_limit_remainder_rests_at_the_back_of_its_level(venue: Venue) -> None:
    rest(venue, order(1, BUY, 999, 100), order(2, SELL, 1000, 100))
    taker = order(3, BUY, 1000, 300)
    assert venue.apply(taker) == [accepted(taker), trade(1, 1000, 100, 3, 2, BUY)]
    rest(venue, order(4, BUY, 1000, 100))
    assert book(venue) == [(3, BUY, 1000, 200), (4, BUY, 1000, 100), (1, BUY, 999, 100)]


def test_cancel_in_the_middle_of_a_queue_then_sweep(venue: Venue) -> None:
    rest(venue, *(order(i, SELL, 1000, 100) for i in range(1, 6)))
    assert venue.apply(CancelOrder(order_id=3, symbol=SYMBOL)) == [
        cancelled(3, 100, CancelReason.REQUESTED)
    ]
    taker = order(9, BUY, 1000, 500)
    assert venue.apply(taker) == [
        accepted(taker),
        trade(1, 1000, 100, 9, 1, BUY),
        trade(2, 1000, 100, 9, 2, BUY),
        trade(3, 1000, 100, 9, 4, BUY),
        trade(4, 1000, 100, 9, 5, BUY),
    ]
    assert book(venue) == [(9, BUY, 1000, 100)]


def test_cancel_the_head_and_the_tail_of_a_queue(venue: Venue) -> None:
    rest(venue, *(order(i, BUY, 1000, 100) for i in range(1, 5)))
    venue.apply(CancelOrder(order_id=1, symbol=SYMBOL))
    venue.apply(CancelOrder(order_id=4, symbol=SYMBOL))
    taker = order(9, SELL, None, 300)
    assert venue.apply(taker) == [
        accepted(taker),
        trade(1, 1000, 100, 2, 9, SELL),
        trade(2, 1000, 100, 3, 9, SELL),
        cancelled(9, 100, CancelReason.UNFILLED_REMAINDER),
    ]


def test_a_long_queue_consumed_from_its_head_keeps_its_order(venue: Venue) -> None:
    """A level's queue is a list read from a head index, its consumed prefix cut off now and
    then: fills one at a time from the head, cancels behind it and orders joining the back,
    far past the prefix the queue keeps, leave the same queue as the model's."""
    rest(venue, *(order(i, SELL, 1000, 100) for i in range(1, 121)))
    next_id = 1000
    for step in range(100):
        if step % 3 == 0:  # a cancel a few places behind the head
            venue.apply(CancelOrder(order_id=step + 5, symbol=SYMBOL))
        next_id += 1
        venue.apply(order(next_id, BUY, 1000, 100))  # takes the head
        if step % 4 == 0:
            next_id += 1
            rest(venue, order(next_id, SELL, 1000, 100))
        venue.check()
    queue = [order_id for order_id, _, _, _ in book(venue)]
    assert len(queue) == len(set(queue)) > 0
    assert queue == sorted(queue)  # arrival order: ids rose as they joined


def test_no_phantom_best_price_after_cancelling_the_top_level(venue: Venue) -> None:
    rest(venue, order(1, BUY, 1000, 100), order(2, BUY, 1000, 200), order(3, BUY, 998, 100))
    rest(venue, order(4, SELL, 1003, 100), order(5, SELL, 1005, 100))
    assert venue.depth(SYMBOL, 5) == (
        [(1000, 300, 2), (998, 100, 1)],
        [(1003, 100, 1), (1005, 100, 1)],
    )
    venue.apply(CancelOrder(order_id=1, symbol=SYMBOL))
    venue.apply(CancelOrder(order_id=2, symbol=SYMBOL))
    venue.apply(CancelOrder(order_id=4, symbol=SYMBOL))
    assert (venue.best_bid(SYMBOL), venue.best_ask(SYMBOL)) == (998, 1005)
    assert venue.depth(SYMBOL, 5) == ([(998, 100, 1)], [(1005, 100, 1)])
    # A sell at the old best bid must rest, not trade against a ghost.
    rest(venue, order(6, SELL, 1000, 100))
    assert venue.best_ask(SYMBOL) == 1000
    venue.apply(CancelOrder(order_id=3, symbol=SYMBOL))
    assert venue.best_bid(SYMBOL) is None
    assert venue.depth(SYMBOL, 1) == ([], [(1000, 100, 1)])


def test_depth_limits_the_number_of_levels(venue: Venue) -> None:
    rest(venue, *(order(i, SELL, 1000 + i, i) for i in range(1, 6)))
    assert venue.depth(SYMBOL, 2) == ([], [(1001, 1, 1), (1002, 2, 1)])


def test_stale_cancel_and_amend_after_a_full_fill_are_unknown(venue: Venue) -> None:
    rest(venue, order(1, SELL, 1000, 100))
    venue.apply(order(2, BUY, 1000, 100))
    assert venue.apply(CancelOrder(order_id=1, symbol=SYMBOL)) == [
        CancelRejected(order_id=1, symbol=SYMBOL, reason=RejectReason.UNKNOWN_ORDER)
    ]
    assert venue.apply(AmendOrder(order_id=1, symbol=SYMBOL, quantity=50)) == [
        AmendRejected(order_id=1, symbol=SYMBOL, reason=RejectReason.UNKNOWN_ORDER)
    ]
    assert venue.apply(CancelOrder(order_id=2, symbol=SYMBOL)) == [
        CancelRejected(order_id=2, symbol=SYMBOL, reason=RejectReason.UNKNOWN_ORDER)
    ]
    assert venue.apply(CancelOrder(order_id=1, symbol="NOPE")) == [
        CancelRejected(order_id=1, symbol="NOPE", reason=RejectReason.UNKNOWN_INSTRUMENT)
    ]
    assert venue.apply(AmendOrder(order_id=1, symbol="NOPE", quantity=50)) == [
        AmendRejected(order_id=1, symbol="NOPE", reason=RejectReason.UNKNOWN_INSTRUMENT)
    ]


def test_cancel_reports_the_open_quantity_after_a_partial_fill(venue: Venue) -> None:
    rest(venue, order(1, SELL, 1000, 500))
    venue.apply(order(2, BUY, 1000, 200))
    assert venue.apply(CancelOrder(order_id=1, symbol=SYMBOL)) == [
        cancelled(1, 300, CancelReason.REQUESTED)
    ]
    assert venue.apply(CancelOrder(order_id=1, symbol=SYMBOL)) == [
        CancelRejected(order_id=1, symbol=SYMBOL, reason=RejectReason.UNKNOWN_ORDER)
    ]


@pytest.mark.parametrize("how", ["filled", "cancelled", "killed", "expired"])
def test_an_order_id_is_free_again_once_the_order_is_done(venue: Venue, how: str) -> None:
    if how == "filled":
        rest(venue, order(1, SELL, 1000, 100))
        venue.apply(order(2, BUY, 1000, 100))
    elif how == "cancelled":
        rest(venue, order(1, SELL, 1000, 100))
        venue.apply(CancelOrder(order_id=1, symbol=SYMBOL))
    elif how == "killed":
        venue.apply(order(1, SELL, 1000, 100, tif=FOK))
    else:
        rest(venue, order(1, SELL, 1000, 100))
        phase(venue, Phase.CLOSED)
        phase(venue, Phase.CONTINUOUS)
    again = order(1, BUY, 999, 300, account="fresh")
    assert venue.apply(again) == [accepted(again)]
    assert [(o.order_id, o.quantity, o.account) for o in venue.orders(SYMBOL)] == [
        (1, 300, "fresh")
    ]
    rest(venue, order(3, BUY, 999, 100))
    taker = order(4, SELL, 999, 300)
    fresh_fill = TradeExecuted(
        trade_id=2 if how == "filled" else 1,
        symbol=SYMBOL,
        price=999,
        quantity=300,
        buy_order_id=1,
        sell_order_id=4,
        buy_account="fresh",
        sell_account="acct4",
        aggressor=SELL,
    )
    assert venue.apply(taker) == [accepted(taker), fresh_fill]
    assert book(venue) == [(3, BUY, 999, 100)]


# --------------------------------------------------------------------------- fill or kill


def test_fok_fills_completely_across_levels(venue: Venue) -> None:
    rest(venue, order(1, SELL, 1000, 100), order(2, SELL, 1001, 150), order(3, SELL, 1002, 100))
    taker = order(4, BUY, 1001, 200, tif=FOK)
    assert venue.apply(taker) == [
        accepted(taker),
        trade(1, 1000, 100, 4, 1, BUY),
        trade(2, 1001, 100, 4, 2, BUY),
    ]
    assert book(venue) == [(2, SELL, 1001, 50), (3, SELL, 1002, 100)]


def test_fok_with_exactly_enough_fills(venue: Venue) -> None:
    rest(venue, order(1, BUY, 1000, 100), order(2, BUY, 999, 100))
    taker = order(3, SELL, 999, 200, tif=FOK)
    assert venue.apply(taker) == [
        accepted(taker),
        trade(1, 1000, 100, 1, 3, SELL),
        trade(2, 999, 100, 2, 3, SELL),
    ]


def test_fok_kill_trades_nothing(venue: Venue) -> None:
    rest(venue, order(1, SELL, 1000, 100), order(2, SELL, 1001, 100), order(3, SELL, 1003, 500))
    taker = order(4, BUY, 1002, 300, tif=FOK)
    assert venue.apply(taker) == [accepted(taker), cancelled(4, 300, CancelReason.FILL_OR_KILL)]
    market = order(5, BUY, None, 800, tif=FOK)
    assert venue.apply(market) == [accepted(market), cancelled(5, 800, CancelReason.FILL_OR_KILL)]
    assert book(venue) == [(1, SELL, 1000, 100), (2, SELL, 1001, 100), (3, SELL, 1003, 500)]
    market = order(6, BUY, None, 700, tif=FOK)
    assert venue.apply(market) == [
        accepted(market),
        trade(1, 1000, 100, 6, 1, BUY),
        trade(2, 1001, 100, 6, 2, BUY),
        trade(3, 1003, 500, 6, 3, BUY),
    ]


@pytest.mark.parametrize(
    ("mode", "fills"),
    [
        (StpMode.CANCEL_NEWEST, False),
        (StpMode.CANCEL_BOTH, False),
        (StpMode.DECREMENT_AND_CANCEL, False),
        (StpMode.CANCEL_OLDEST, True),
    ],
)
def test_fok_count_skips_or_stops_at_own_group(venue: Venue, mode: StpMode, fills: bool) -> None:
    rest(
        venue,
        order(1, SELL, 1000, 100),
        order(2, SELL, 1000, 100, stp_group="g"),
        order(3, SELL, 1001, 100),
    )
    taker = order(4, BUY, 1001, 200, tif=FOK, stp_group="g", stp_mode=mode)
    if not fills:
        assert venue.apply(taker) == [accepted(taker), cancelled(4, 200, CancelReason.FILL_OR_KILL)]
        assert len(book(venue)) == 3
        return
    assert venue.apply(taker) == [
        accepted(taker),
        trade(1, 1000, 100, 4, 1, BUY),
        SelfTradePrevented(
            symbol=SYMBOL, taker_order_id=4, maker_order_id=2, mode=mode, quantity=100
        ),
        cancelled(2, 100, CancelReason.SELF_TRADE),
        trade(2, 1001, 100, 4, 3, BUY),
    ]
    assert book(venue) == []


def test_fok_count_enough_before_own_group_fills(venue: Venue) -> None:
    rest(venue, order(1, SELL, 1000, 200), order(2, SELL, 1000, 100, stp_group="g"))
    taker = order(3, BUY, 1000, 200, tif=FOK, stp_group="g")
    assert venue.apply(taker) == [accepted(taker), trade(1, 1000, 200, 3, 1, BUY)]
    assert book(venue) == [(2, SELL, 1000, 100)]


# ------------------------------------------------------------------------------ post-only


def test_post_only_rests_when_it_would_not_take(venue: Venue) -> None:
    rest(venue, order(1, SELL, 1000, 100), order(2, BUY, 995, 100))
    rest(venue, order(3, BUY, 999, 100, post_only=True), order(4, SELL, 1000, 100, post_only=True))
    for order_id, side, price in ((5, BUY, 1000), (6, BUY, 1001), (7, SELL, 999), (8, SELL, 990)):
        assert venue.apply(order(order_id, side, price, 100, post_only=True)) == [
            rejected(order_id, RejectReason.POST_ONLY_WOULD_TAKE)
        ]


def test_post_only_on_an_empty_opposite_side_rests(venue: Venue) -> None:
    rest(venue, order(1, BUY, 1100, 100, post_only=True))
    venue.apply(CancelOrder(order_id=1, symbol=SYMBOL))
    rest(venue, order(2, SELL, 900, 7, post_only=True))


# -------------------------------------------------------------------------------- amend


def test_amend_may_restate_an_odd_open_quantity_but_not_choose_one(venue: Venue) -> None:
    """A buy left with an odd 50 by fills may restate 50 (with a new price, or as NO_CHANGE);
    a new quantity that is not whole lots is still refused."""
    rest(venue, order(1, SELL, 1000, 100))
    venue.apply(order(2, BUY, 1000, 200))  # fills 100, rests 100
    rest(venue, order(3, SELL, 1001, 50))
    venue.apply(AmendOrder(order_id=2, symbol=SYMBOL, price=1001))  # fills 50, rests 50
    assert book(venue) == [(2, BUY, 1001, 50)]
    assert venue.apply(AmendOrder(order_id=2, symbol=SYMBOL, quantity=50)) == [
        AmendRejected(order_id=2, symbol=SYMBOL, reason=RejectReason.NO_CHANGE)
    ]
    assert venue.apply(AmendOrder(order_id=2, symbol=SYMBOL, quantity=30)) == [
        AmendRejected(order_id=2, symbol=SYMBOL, reason=RejectReason.QUANTITY_NOT_A_LOT)
    ]
    assert venue.apply(AmendOrder(order_id=2, symbol=SYMBOL, price=999, quantity=50)) == [
        OrderAmended(order_id=2, symbol=SYMBOL, price=999, quantity=50, priority_kept=False)
    ]
    assert book(venue) == [(2, BUY, 999, 50)]


def test_amend_quantity_down_keeps_priority(venue: Venue) -> None:
    rest(venue, order(1, SELL, 1000, 300), order(2, SELL, 1000, 100))
    assert venue.apply(AmendOrder(order_id=1, symbol=SYMBOL, quantity=200)) == [
        OrderAmended(order_id=1, symbol=SYMBOL, price=1000, quantity=200, priority_kept=True)
    ]
    assert venue.apply(AmendOrder(order_id=1, symbol=SYMBOL, price=1000, quantity=150)) == [
        OrderAmended(order_id=1, symbol=SYMBOL, price=1000, quantity=150, priority_kept=True)
    ]
    assert book(venue) == [(1, SELL, 1000, 150), (2, SELL, 1000, 100)]
    taker = order(3, BUY, 1000, 200)
    assert venue.apply(taker) == [
        accepted(taker),
        trade(1, 1000, 150, 3, 1, BUY),
        trade(2, 1000, 50, 3, 2, BUY),
    ]


def test_amend_quantity_up_loses_priority(venue: Venue) -> None:
    rest(venue, order(1, BUY, 1000, 100), order(2, BUY, 1000, 100))
    assert venue.apply(AmendOrder(order_id=1, symbol=SYMBOL, quantity=200)) == [
        OrderAmended(order_id=1, symbol=SYMBOL, price=1000, quantity=200, priority_kept=False)
    ]
    assert book(venue) == [(2, BUY, 1000, 100), (1, BUY, 1000, 200)]


def test_amend_price_and_back_loses_priority(venue: Venue) -> None:
    rest(venue, order(1, BUY, 1000, 100), order(2, BUY, 1000, 100))
    venue.apply(AmendOrder(order_id=1, symbol=SYMBOL, price=999))
    assert book(venue) == [(2, BUY, 1000, 100), (1, BUY, 999, 100)]
    assert venue.apply(AmendOrder(order_id=1, symbol=SYMBOL, price=1000, quantity=50)) == [
        AmendRejected(order_id=1, symbol=SYMBOL, reason=RejectReason.QUANTITY_NOT_A_LOT)
    ]
    assert venue.apply(AmendOrder(order_id=1, symbol=SYMBOL, price=1000)) == [
        OrderAmended(order_id=1, symbol=SYMBOL, price=1000, quantity=100, priority_kept=False)
    ]
    assert book(venue) == [(2, BUY, 1000, 100), (1, BUY, 1000, 100)]


def test_amend_that_crosses_fills_at_the_makers_price(venue: Venue) -> None:
    rest(venue, order(1, SELL, 1002, 100), order(2, SELL, 1003, 100), order(3, BUY, 1000, 300))
    assert venue.apply(AmendOrder(order_id=3, symbol=SYMBOL, price=1005)) == [
        OrderAmended(order_id=3, symbol=SYMBOL, price=1005, quantity=300, priority_kept=False),
        trade(1, 1002, 100, 3, 1, BUY),
        trade(2, 1003, 100, 3, 2, BUY),
    ]
    assert book(venue) == [(3, BUY, 1005, 100)]


def test_amend_that_crosses_and_fills_completely_leaves_the_book(venue: Venue) -> None:
    rest(venue, order(1, BUY, 1000, 200), order(2, SELL, 1001, 300))
    assert venue.apply(AmendOrder(order_id=2, symbol=SYMBOL, price=995, quantity=200)) == [
        OrderAmended(order_id=2, symbol=SYMBOL, price=995, quantity=200, priority_kept=False),
        trade(1, 1000, 200, 1, 2, SELL),
    ]
    assert book(venue) == []
    assert venue.apply(CancelOrder(order_id=2, symbol=SYMBOL)) == [
        CancelRejected(order_id=2, symbol=SYMBOL, reason=RejectReason.UNKNOWN_ORDER)
    ]


def test_amend_rejections_follow_the_documented_order(venue: Venue) -> None:
    rest(
        venue,
        order(1, BUY, 1000, 200),
        order(2, SELL, 1001, 30),
        order(3, SELL, 2100, 10, symbol=OTHER),
    )
    rest(venue, order(4, BUY, 990, 100, post_only=True, tif=GTC))
    r = RejectReason

    def amend(
        order_id: int, price: int | None, quantity: int | None, symbol: str = SYMBOL
    ) -> list[Event]:
        return venue.apply(
            AmendOrder(order_id=order_id, symbol=symbol, price=price, quantity=quantity)
        )

    def refused(order_id: int, reason: RejectReason, symbol: str = SYMBOL) -> list[Event]:
        return [AmendRejected(order_id=order_id, symbol=symbol, reason=reason)]

    assert amend(1, 0, 0, "NOPE") == refused(1, r.UNKNOWN_INSTRUMENT, "NOPE")
    assert amend(9, 0, 0) == refused(9, r.UNKNOWN_ORDER)
    assert amend(1, 0, 0) == refused(1, r.NON_POSITIVE_QUANTITY)
    assert amend(1, 0, -100) == refused(1, r.NON_POSITIVE_QUANTITY)
    assert amend(1, 0, QUANTITY_MAX + 100) == refused(1, r.QUANTITY_TOO_LARGE)
    assert amend(1, 0, 150) == refused(1, r.QUANTITY_NOT_A_LOT)
    assert amend(2, 0, 15) == refused(2, r.NON_POSITIVE_PRICE)  # an odd-lot sell is fine
    assert amend(3, 2102, None, OTHER) == refused(3, r.PRICE_NOT_ON_TICK, OTHER)
    assert amend(1, 1101, None) == refused(1, r.PRICE_OUTSIDE_LIMITS)
    assert amend(1, 899, 100) == refused(1, r.PRICE_OUTSIDE_LIMITS)
    assert amend(1, None, None) == refused(1, r.NO_CHANGE)
    assert amend(1, 1000, None) == refused(1, r.NO_CHANGE)
    assert amend(1, 1000, 200) == refused(1, r.NO_CHANGE)
    assert amend(1, None, 200) == refused(1, r.NO_CHANGE)
    assert amend(4, 1001, None) == refused(4, r.POST_ONLY_WOULD_TAKE)
    assert amend(4, 1005, 100) == refused(4, r.POST_ONLY_WOULD_TAKE)
    phase(venue, Phase.HALTED)
    assert amend(9, 1000, 100) == refused(9, r.UNKNOWN_ORDER)
    assert amend(1, 0, 0) == refused(1, r.PHASE_CLOSED)
    assert book(venue) == [(1, BUY, 1000, 200), (4, BUY, 990, 100), (2, SELL, 1001, 30)]


def test_post_only_amend_that_keeps_priority_or_does_not_cross_is_fine(venue: Venue) -> None:
    rest(venue, order(1, SELL, 1001, 100), order(2, BUY, 1000, 300, post_only=True))
    assert venue.apply(AmendOrder(order_id=2, symbol=SYMBOL, quantity=200)) == [
        OrderAmended(order_id=2, symbol=SYMBOL, price=1000, quantity=200, priority_kept=True)
    ]
    assert venue.apply(AmendOrder(order_id=2, symbol=SYMBOL, price=999, quantity=400)) == [
        OrderAmended(order_id=2, symbol=SYMBOL, price=999, quantity=400, priority_kept=False)
    ]


def test_amend_in_an_auction_just_moves(venue: Venue) -> None:
    phase(venue, Phase.CLOSING_AUCTION)
    rest(venue, order(1, SELL, 1000, 100), order(2, BUY, 990, 100), order(3, BUY, 990, 100))
    assert venue.apply(AmendOrder(order_id=2, symbol=SYMBOL, price=1005)) == [
        OrderAmended(order_id=2, symbol=SYMBOL, price=1005, quantity=100, priority_kept=False)
    ]
    assert venue.apply(AmendOrder(order_id=3, symbol=SYMBOL, price=1005, quantity=200)) == [
        OrderAmended(order_id=3, symbol=SYMBOL, price=1005, quantity=200, priority_kept=False)
    ]
    assert book(venue) == [(2, BUY, 1005, 100), (3, BUY, 1005, 200), (1, SELL, 1000, 100)]


# ------------------------------------------------------------------ self-trade prevention


def stp_book(venue: Venue) -> None:
    """Maker 1 (group g, 100) ahead of maker 2 (no group, 300), both asks at 1000."""
    rest(venue, order(1, SELL, 1000, 100, stp_group="g"), order(2, SELL, 1000, 300))


def prevented(taker: int, maker: int, mode: StpMode, quantity: int) -> SelfTradePrevented:
    return SelfTradePrevented(
        symbol=SYMBOL, taker_order_id=taker, maker_order_id=maker, mode=mode, quantity=quantity
    )


def test_stp_cancel_newest(venue: Venue) -> None:
    stp_book(venue)
    mode = StpMode.CANCEL_NEWEST
    taker = order(3, BUY, 1000, 200, stp_group="g", stp_mode=mode)
    assert venue.apply(taker) == [
        accepted(taker),
        prevented(3, 1, mode, 100),
        cancelled(3, 200, CancelReason.SELF_TRADE),
    ]
    assert book(venue) == [(1, SELL, 1000, 100), (2, SELL, 1000, 300)]


def test_stp_cancel_oldest(venue: Venue) -> None:
    stp_book(venue)
    mode = StpMode.CANCEL_OLDEST
    taker = order(3, BUY, 1000, 200, stp_group="g", stp_mode=mode)
    assert venue.apply(taker) == [
        accepted(taker),
        prevented(3, 1, mode, 100),
        cancelled(1, 100, CancelReason.SELF_TRADE),
        trade(1, 1000, 200, 3, 2, BUY),
    ]
    assert book(venue) == [(2, SELL, 1000, 100)]


def test_stp_cancel_both(venue: Venue) -> None:
    stp_book(venue)
    mode = StpMode.CANCEL_BOTH
    taker = order(3, BUY, 1000, 200, stp_group="g", stp_mode=mode)
    assert venue.apply(taker) == [
        accepted(taker),
        prevented(3, 1, mode, 100),
        cancelled(1, 100, CancelReason.SELF_TRADE),
        cancelled(3, 200, CancelReason.SELF_TRADE),
    ]
    assert book(venue) == [(2, SELL, 1000, 300)]


def test_stp_decrement_smaller_maker(venue: Venue) -> None:
    stp_book(venue)
    mode = StpMode.DECREMENT_AND_CANCEL
    taker = order(3, BUY, 1000, 200, stp_group="g", stp_mode=mode)
    assert venue.apply(taker) == [
        accepted(taker),
        prevented(3, 1, mode, 100),
        cancelled(1, 100, CancelReason.SELF_TRADE),
        OrderReduced(
            order_id=3, symbol=SYMBOL, quantity=100, remaining=100, reason=CancelReason.SELF_TRADE
        ),
        trade(1, 1000, 100, 3, 2, BUY),
    ]
    assert book(venue) == [(2, SELL, 1000, 200)]


def test_stp_decrement_smaller_taker_keeps_maker_priority(venue: Venue) -> None:
    rest(venue, order(1, SELL, 1000, 300, stp_group="g"), order(2, SELL, 1000, 100))
    mode = StpMode.DECREMENT_AND_CANCEL
    taker = order(3, BUY, 1000, 100, stp_group="g", stp_mode=mode, tif=IOC)
    assert venue.apply(taker) == [
        accepted(taker),
        prevented(3, 1, mode, 100),
        OrderReduced(
            order_id=1, symbol=SYMBOL, quantity=100, remaining=200, reason=CancelReason.SELF_TRADE
        ),
        cancelled(3, 100, CancelReason.SELF_TRADE),
    ]
    assert book(venue) == [(1, SELL, 1000, 200), (2, SELL, 1000, 100)]


def test_stp_decrement_equal_cancels_both(venue: Venue) -> None:
    rest(venue, order(1, BUY, 1000, 100, stp_group="g"))
    mode = StpMode.DECREMENT_AND_CANCEL
    taker = order(2, SELL, None, 100, stp_group="g", stp_mode=mode)
    assert venue.apply(taker) == [
        accepted(taker),
        prevented(2, 1, mode, 100),
        cancelled(1, 100, CancelReason.SELF_TRADE),
        cancelled(2, 100, CancelReason.SELF_TRADE),
    ]
    assert book(venue) == []


def test_stp_decrement_then_remainder_of_a_market_order(venue: Venue) -> None:
    rest(venue, order(1, BUY, 1000, 100, stp_group="g"), order(2, BUY, 999, 100))
    mode = StpMode.DECREMENT_AND_CANCEL
    taker = order(3, SELL, None, 250, stp_group="g", stp_mode=mode)
    assert venue.apply(taker) == [
        accepted(taker),
        prevented(3, 1, mode, 100),
        cancelled(1, 100, CancelReason.SELF_TRADE),
        OrderReduced(
            order_id=3, symbol=SYMBOL, quantity=100, remaining=150, reason=CancelReason.SELF_TRADE
        ),
        trade(1, 999, 100, 2, 3, SELL),
        cancelled(3, 50, CancelReason.UNFILLED_REMAINDER),
    ]


def test_stp_needs_the_same_non_empty_group(venue: Venue) -> None:
    rest(venue, order(1, SELL, 1000, 100, account="same", stp_group="g1"))
    rest(venue, order(2, SELL, 1000, 100, account="same"))
    taker = order(3, BUY, 1000, 200, account="same", stp_group="g2")
    assert [type(e) for e in venue.apply(taker)] == [OrderAccepted, TradeExecuted, TradeExecuted]
    # Same account, no group on either side: the venue does not guess, the trade happens.
    rest(venue, order(4, SELL, 1000, 100, account="same"))
    taker = order(5, BUY, 1000, 100, account="same")
    assert [type(e) for e in venue.apply(taker)] == [OrderAccepted, TradeExecuted]
    # The taker's group matters, not the account: different accounts, same group, no trade.
    rest(venue, order(6, SELL, 1000, 100, account="x", stp_group="desk"))
    taker = order(7, BUY, 1000, 100, account="y", stp_group="desk")
    assert venue.apply(taker) == [
        accepted(taker),
        prevented(7, 6, StpMode.CANCEL_NEWEST, 100),
        cancelled(7, 100, CancelReason.SELF_TRADE),
    ]


def test_stp_uses_the_takers_mode_and_applies_to_an_amended_order(venue: Venue) -> None:
    rest(
        venue,
        order(1, SELL, 1000, 100, stp_group="g", stp_mode=StpMode.CANCEL_NEWEST),
        order(2, SELL, 1001, 100),
        order(3, BUY, 990, 300, stp_group="g", stp_mode=StpMode.CANCEL_OLDEST),
    )
    assert venue.apply(AmendOrder(order_id=3, symbol=SYMBOL, price=1001)) == [
        OrderAmended(order_id=3, symbol=SYMBOL, price=1001, quantity=300, priority_kept=False),
        prevented(3, 1, StpMode.CANCEL_OLDEST, 100),
        cancelled(1, 100, CancelReason.SELF_TRADE),
        trade(1, 1001, 100, 3, 2, BUY),
    ]
    assert book(venue) == [(3, BUY, 1001, 200)]


def test_stp_cancel_newest_on_an_amend_cancels_the_amended_order(venue: Venue) -> None:
    rest(venue, order(1, SELL, 1000, 100, stp_group="g"), order(2, BUY, 990, 300, stp_group="g"))
    assert venue.apply(AmendOrder(order_id=2, symbol=SYMBOL, price=1000)) == [
        OrderAmended(order_id=2, symbol=SYMBOL, price=1000, quantity=300, priority_kept=False),
        prevented(2, 1, StpMode.CANCEL_NEWEST, 100),
        cancelled(2, 300, CancelReason.SELF_TRADE),
    ]
    assert book(venue) == [(1, SELL, 1000, 100)]


# --------------------------------------------------------------------------- call auctions


def uncrossed(price: int | None, volume: int, imbalance: int) -> AuctionUncrossed:
    return AuctionUncrossed(symbol=SYMBOL, price=price, volume=volume, imbalance=imbalance)


def changed(new: Phase, previous: Phase) -> PhaseChanged:
    return PhaseChanged(symbol=SYMBOL, phase=new, previous=previous)


def auction_with(venue: Venue, *commands: PlaceOrder) -> None:
    phase(venue, Phase.CLOSED)
    phase(venue, Phase.CALL_AUCTION)
    rest(venue, *commands)


def test_auction_orders_rest_crossed_and_show_an_indicative_price(venue: Venue) -> None:
    auction_with(
        venue, order(1, BUY, 1010, 300), order(2, SELL, 990, 100), order(3, SELL, 1000, 100)
    )
    assert book(venue) == [(1, BUY, 1010, 300), (2, SELL, 990, 100), (3, SELL, 1000, 100)]
    assert (venue.best_bid(SYMBOL), venue.best_ask(SYMBOL)) == (1010, 990)
    # 990: B 300 A 100; 1000: B 300 A 200; 1010: B 300 A 200, farther from the reference.
    assert venue.indicative(SYMBOL) == (1000, 200, 100)


def test_indicative_of_a_book_that_cannot_trade(venue: Venue) -> None:
    assert venue.indicative(SYMBOL) == (None, 0, 0)
    auction_with(venue, order(1, BUY, 990, 300))
    assert venue.indicative(SYMBOL) == (None, 0, 0)
    rest(venue, order(2, SELL, 1000, 300))
    assert venue.indicative(SYMBOL) == (None, 0, 0)


def test_uncross_maximises_volume(venue: Venue) -> None:
    # 1000 is the reference, but 1008 executes more.
    auction_with(
        venue, order(1, BUY, 1008, 200), order(2, SELL, 1000, 100), order(3, SELL, 1008, 100)
    )
    assert venue.indicative(SYMBOL) == (1008, 200, 0)
    assert phase(venue, Phase.CONTINUOUS) == [
        uncrossed(1008, 200, 0),
        trade(1, 1008, 100, 1, 2, None),
        trade(2, 1008, 100, 1, 3, None),
        changed(Phase.CONTINUOUS, Phase.CALL_AUCTION),
    ]
    assert book(venue) == []


def test_uncross_volume_tie_goes_to_the_smallest_imbalance(venue: Venue) -> None:
    # 990 and 995 execute 100 with imbalance 100; 1010 executes 100 with imbalance 0.
    auction_with(venue, order(1, BUY, 1010, 100), order(2, BUY, 995, 100), order(3, SELL, 990, 100))
    assert venue.indicative(SYMBOL) == (1010, 100, 0)
    assert phase(venue, Phase.CONTINUOUS) == [
        uncrossed(1010, 100, 0),
        trade(1, 1010, 100, 1, 3, None),
        changed(Phase.CONTINUOUS, Phase.CALL_AUCTION),
    ]
    assert book(venue) == [(2, BUY, 995, 100)]


def test_uncross_imbalance_sign_is_excess_buying(venue: Venue) -> None:
    auction_with(venue, order(1, SELL, 1000, 500), order(2, BUY, 1000, 200))
    assert venue.indicative(SYMBOL) == (1000, 200, -300)


def test_uncross_imbalance_tie_goes_closest_to_the_reference(venue: Venue) -> None:
    auction_with(venue, order(1, BUY, 1010, 100), order(2, SELL, 995, 100))
    assert venue.indicative(SYMBOL) == (995, 100, 0)
    venue.apply(CancelOrder(order_id=1, symbol=SYMBOL))
    venue.apply(CancelOrder(order_id=2, symbol=SYMBOL))
    rest(venue, order(3, BUY, 1003, 100), order(4, SELL, 990, 100))
    assert venue.indicative(SYMBOL) == (1003, 100, 0)


def test_uncross_reference_tie_goes_to_the_higher_price(venue: Venue) -> None:
    auction_with(venue, order(1, BUY, 1005, 100), order(2, SELL, 995, 100))
    assert venue.indicative(SYMBOL) == (1005, 100, 0)
    assert phase(venue, Phase.CONTINUOUS) == [
        uncrossed(1005, 100, 0),
        trade(1, 1005, 100, 1, 2, None),
        changed(Phase.CONTINUOUS, Phase.CALL_AUCTION),
    ]


def test_uncross_allocates_by_price_then_time(venue: Venue) -> None:
    auction_with(
        venue,
        order(1, BUY, 1010, 300),
        order(2, BUY, 1010, 200),
        order(3, BUY, 1000, 100),
        order(4, SELL, 1000, 200),
        order(5, SELL, 990, 200),
        order(6, SELL, 1020, 100),
    )
    # 1000: volume 400, imbalance 200; 1010: volume 400, imbalance 100.
    assert phase(venue, Phase.CONTINUOUS) == [
        uncrossed(1010, 400, 100),
        trade(1, 1010, 200, 1, 5, None),
        trade(2, 1010, 100, 1, 4, None),
        trade(3, 1010, 100, 2, 4, None),
        changed(Phase.CONTINUOUS, Phase.CALL_AUCTION),
    ]
    assert book(venue) == [(2, BUY, 1010, 100), (3, BUY, 1000, 100), (6, SELL, 1020, 100)]


def test_uncross_ignores_stp_groups(venue: Venue) -> None:
    auction_with(
        venue,
        order(1, BUY, 1000, 100, stp_group="g", stp_mode=StpMode.CANCEL_BOTH),
        order(2, SELL, 1000, 100, stp_group="g", stp_mode=StpMode.CANCEL_BOTH),
    )
    assert phase(venue, Phase.CONTINUOUS) == [
        uncrossed(1000, 100, 0),
        trade(1, 1000, 100, 1, 2, None),
        changed(Phase.CONTINUOUS, Phase.CALL_AUCTION),
    ]


def test_leaving_an_auction_with_nothing_to_trade_still_reports(venue: Venue) -> None:
    auction_with(venue, order(1, BUY, 990, 100))
    assert phase(venue, Phase.CONTINUOUS) == [
        uncrossed(None, 0, 0),
        changed(Phase.CONTINUOUS, Phase.CALL_AUCTION),
    ]
    assert phase(venue, Phase.CLOSING_AUCTION) == [changed(Phase.CLOSING_AUCTION, Phase.CONTINUOUS)]
    assert phase(venue, Phase.CLOSED) == [
        uncrossed(None, 0, 0),
        changed(Phase.CLOSED, Phase.CLOSING_AUCTION),
        OrderExpired(order_id=1, symbol=SYMBOL, quantity=100),
    ]


def test_no_uncross_between_auctions_or_into_a_halt(venue: Venue) -> None:
    auction_with(venue, order(1, BUY, 1000, 100), order(2, SELL, 1000, 100))
    assert phase(venue, Phase.CLOSING_AUCTION) == [
        changed(Phase.CLOSING_AUCTION, Phase.CALL_AUCTION)
    ]
    assert phase(venue, Phase.HALTED) == [changed(Phase.HALTED, Phase.CLOSING_AUCTION)]
    # Halted -> continuous is not leaving an auction, but the book is crossed.
    assert phase(venue, Phase.CONTINUOUS) == [
        uncrossed(1000, 100, 0),
        trade(1, 1000, 100, 1, 2, None),
        changed(Phase.CONTINUOUS, Phase.HALTED),
    ]


def test_halted_crossed_book_uncrosses_at_the_close(venue: Venue) -> None:
    auction_with(venue, order(1, BUY, 1002, 100, tif=GTC), order(2, SELL, 998, 300, tif=GTC))
    phase(venue, Phase.HALTED)
    assert phase(venue, Phase.CLOSED) == [
        uncrossed(1002, 100, -200),
        trade(1, 1002, 100, 1, 2, None),
        changed(Phase.CLOSED, Phase.HALTED),
    ]
    assert book(venue) == [(2, SELL, 998, 200)]


@pytest.mark.parametrize("new", [p for p in Phase if p is not Phase.CONTINUOUS])
def test_cancels_are_accepted_in_every_phase(venue: Venue, new: Phase) -> None:
    rest(venue, order(1, BUY, 990, 100, tif=GTC), order(2, SELL, 1010, 100, tif=GTC))
    phase(venue, new)
    assert venue.apply(CancelOrder(order_id=2, symbol=SYMBOL)) == [
        cancelled(2, 100, CancelReason.REQUESTED)
    ]
    assert book(venue) == [(1, BUY, 990, 100)]


def test_any_phase_may_follow_any_other(venue: Venue) -> None:
    for new, previous in (
        (Phase.CALL_AUCTION, Phase.CONTINUOUS),
        (Phase.CLOSED, Phase.CALL_AUCTION),
        (Phase.CLOSING_AUCTION, Phase.CLOSED),
        (Phase.CALL_AUCTION, Phase.CLOSING_AUCTION),
        (Phase.CONTINUOUS, Phase.CALL_AUCTION),
    ):
        events = phase(venue, new)
        assert events[-1] == changed(new, previous), events


def test_halted_uncrossed_book_reopens_without_an_auction_event(venue: Venue) -> None:
    rest(venue, order(1, BUY, 999, 100))
    phase(venue, Phase.HALTED)
    assert phase(venue, Phase.CONTINUOUS) == [changed(Phase.CONTINUOUS, Phase.HALTED)]


def test_close_after_an_auction_uncrosses_then_expires_day_orders(venue: Venue) -> None:
    phase(venue, Phase.CLOSING_AUCTION)
    rest(
        venue,
        order(1, BUY, 1000, 300),
        order(2, BUY, 999, 100, tif=GTC),
        order(3, BUY, 1001, 100),
        order(4, SELL, 1000, 200, tif=GTC),
        order(5, SELL, 1050, 100),
        order(6, SELL, 1040, 100, tif=GTC),
        order(7, SELL, 1040, 100),
    )
    assert phase(venue, Phase.CLOSED) == [
        uncrossed(1000, 200, 200),
        trade(1, 1000, 100, 3, 4, None),
        trade(2, 1000, 100, 1, 4, None),
        changed(Phase.CLOSED, Phase.CLOSING_AUCTION),
        OrderExpired(order_id=1, symbol=SYMBOL, quantity=200),
        OrderExpired(order_id=7, symbol=SYMBOL, quantity=100),
        OrderExpired(order_id=5, symbol=SYMBOL, quantity=100),
    ]
    assert book(venue) == [(2, BUY, 999, 100), (6, SELL, 1040, 100)]


def test_close_from_continuous_expires_day_orders_only(venue: Venue) -> None:
    rest(venue, order(1, BUY, 990, 100), order(2, BUY, 995, 100, tif=GTC), order(3, SELL, 1005, 7))
    assert phase(venue, Phase.CLOSED) == [
        changed(Phase.CLOSED, Phase.CONTINUOUS),
        OrderExpired(order_id=1, symbol=SYMBOL, quantity=100),
        OrderExpired(order_id=3, symbol=SYMBOL, quantity=7),
    ]
    assert book(venue) == [(2, BUY, 995, 100)]
    assert phase(venue, Phase.CALL_AUCTION) == [changed(Phase.CALL_AUCTION, Phase.CLOSED)]
    assert book(venue, OTHER) == []


def test_a_full_trading_day(venue: Venue) -> None:
    """closed -> call auction -> continuous -> closing auction -> closed, trade ids running on."""
    phase(venue, Phase.CLOSED)
    assert phase(venue, Phase.CALL_AUCTION) == [changed(Phase.CALL_AUCTION, Phase.CLOSED)]
    rest(venue, order(1, BUY, 1000, 200), order(2, SELL, 1000, 100))
    assert phase(venue, Phase.CONTINUOUS)[1] == trade(1, 1000, 100, 1, 2, None)
    taker = order(3, SELL, 1000, 50)
    assert venue.apply(taker) == [accepted(taker), trade(2, 1000, 50, 1, 3, SELL)]
    phase(venue, Phase.CLOSING_AUCTION)
    rest(venue, order(4, SELL, 990, 100))
    assert phase(venue, Phase.CLOSED) == [
        uncrossed(1000, 50, -50),
        trade(3, 1000, 50, 1, 4, None),
        changed(Phase.CLOSED, Phase.CLOSING_AUCTION),
        OrderExpired(order_id=4, symbol=SYMBOL, quantity=50),
    ]


# ------------------------------------------------------------------ engine-only properties


def full_day_commands() -> list[Command]:
    commands: list[Command] = [
        add_instrument(SYMBOL),
        add_instrument(OTHER, tick_size=5, lot=10, reference_price=2000),
        SetPhase(symbol=SYMBOL, phase=Phase.CALL_AUCTION),
        SetPhase(symbol=OTHER, phase=Phase.CONTINUOUS),
    ]
    for i in range(1, 41):
        side = BUY if i % 2 else SELL
        commands.append(order(i, side, 995 + i % 11, 100 * (1 + i % 3), tif=GTC if i % 5 else DAY))
        commands.append(
            order(
                100 + i,
                side,
                1990 + 5 * (i % 5),
                10 + i % 7,
                symbol=OTHER,
                stp_group="g" if i % 3 else "",
            )
        )
    commands.append(SetPhase(symbol=SYMBOL, phase=Phase.CONTINUOUS))
    commands += [CancelOrder(order_id=i, symbol=SYMBOL) for i in range(1, 41, 4)]
    commands += [AmendOrder(order_id=i, symbol=SYMBOL, price=1000) for i in range(2, 41, 3)]
    commands.append(order(200, BUY, None, 1000))
    commands.append(SetPhase(symbol=SYMBOL, phase=Phase.CLOSED))
    return commands


def run(engine: MatchingEngine, commands: list[Command]) -> list[Event]:
    events: list[Event] = []
    for command in commands:
        events += engine.apply(command)
        engine.check()
    return events


def test_replay_is_deterministic() -> None:
    commands = full_day_commands()
    first, second = MatchingEngine(), MatchingEngine()
    assert run(first, commands) == run(second, commands)
    assert first.state_hash() == second.state_hash()
    assert first.snapshot() == second.snapshot()


def test_engine_agrees_with_the_reference_on_a_full_day() -> None:
    commands = full_day_commands()
    engine, reference = MatchingEngine(), ReferenceBook()
    for command in commands:
        assert engine.apply(command) == reference.apply(command), command
    for symbol in (SYMBOL, OTHER):
        assert book(engine, symbol) == book(reference, symbol)


def test_cancel_checked_is_cancel_of_an_order_already_looked_up() -> None:
    """The venue's door: the same events and state as `cancel`, for every live order of a
    full day's book, with the requested reason or the venue's own."""
    commands = full_day_commands()[:-2]  # before the closing auction: orders still rest
    by_command, by_order = MatchingEngine(), MatchingEngine()
    run(by_command, commands)
    run(by_order, commands)
    live = sorted(by_order.order_index())
    assert live
    for number, order_id in enumerate(live):
        why = CancelReason.UNFUNDED if number % 2 else CancelReason.REQUESTED
        order = by_order.order_index()[order_id]
        command = CancelOrder(order_id=order_id, symbol=order.symbol)
        assert by_order.cancel_checked(order, why) == by_command.cancel(command, why)
        by_order.check()
        assert by_order.snapshot() == by_command.snapshot()
    assert not by_order.order_index()


def test_snapshot_restore_keeps_the_state_hash_and_the_future() -> None:
    commands = full_day_commands()
    middle = len(commands) // 2
    original = MatchingEngine()
    run(original, commands[:middle])
    restored = MatchingEngine.restore(original.snapshot())
    restored.check()
    assert restored.state_hash() == original.state_hash()
    assert book(restored) == book(original)
    assert run(restored, commands[middle:]) == run(original, commands[middle:])
    assert restored.state_hash() == original.state_hash()


def test_state_hash_tracks_state_not_history() -> None:
    engine = MatchingEngine()
    empty = engine.state_hash()
    engine.apply(add_instrument(SYMBOL))
    listed = engine.state_hash()
    assert listed != empty
    engine.apply(SetPhase(symbol=SYMBOL, phase=Phase.CONTINUOUS))
    engine.apply(order(1, BUY, 1000, 100))
    assert engine.state_hash() != listed
    rejected_order = engine.state_hash()
    engine.apply(order(1, BUY, 1000, 100))  # a rejection changes nothing
    assert engine.state_hash() == rejected_order


def test_snapshot_survives_a_json_round_trip() -> None:
    engine = MatchingEngine()
    run(engine, full_day_commands()[:60])
    restored = MatchingEngine.restore(json.loads(json.dumps(engine.snapshot())))
    assert restored.state_hash() == engine.state_hash()


def test_a_five_thousand_fill_sweep_at_one_price() -> None:
    engine = MatchingEngine()
    engine.apply(add_instrument(SYMBOL))
    engine.apply(SetPhase(symbol=SYMBOL, phase=Phase.CONTINUOUS))
    fills = 5_000
    for i in range(1, fills + 1):
        engine.apply(order(i, SELL, 1000, 100 * (1 + i % 3)))
    engine.apply(order(fills + 1, SELL, 1001, 100))
    total = sum(100 * (1 + i % 3) for i in range(1, fills + 1))
    engine.check()
    started = time.perf_counter()
    events = engine.apply(order(fills + 2, BUY, 1000, total + 100, tif=IOC))
    elapsed_s = time.perf_counter() - started
    trades = [e for e in events if isinstance(e, TradeExecuted)]
    assert len(trades) == fills
    assert [t.trade_id for t in trades] == list(range(1, fills + 1))
    assert [t.sell_order_id for t in trades] == list(range(1, fills + 1))
    assert sum(t.quantity for t in trades) == total
    assert {t.price for t in trades} == {1000}
    assert events[-1] == cancelled(fills + 2, 100, CancelReason.UNFILLED_REMAINDER)
    assert engine.best_bid(SYMBOL) is None
    assert engine.best_ask(SYMBOL) == 1001
    assert engine.depth(SYMBOL, 10) == ([], [(1001, 100, 1)])
    engine.check()
    assert elapsed_s < 2.0, f"a 5,000-fill sweep took {elapsed_s:.3f} s"


def test_check_passes_through_a_busy_day() -> None:
    engine = MatchingEngine()
    run(engine, full_day_commands())
    assert isinstance(engine.state_hash(), str)
