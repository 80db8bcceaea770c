"""A naive reference model of the matching engine, written straight from docs/matching.md.

Obviously correct rather than fast: every instrument keeps one plain list of resting orders,
each order carries a global arrival sequence number, and every query sorts the list again.
No sortedcontainers, no indexes, no caches. The differential tests feed this model and
`matching.engine.MatchingEngine` the same commands and demand identical events and books.
"""

from __future__ import annotations

from dataclasses import dataclass

from matching.commands import (
    AddInstrument,
    AmendOrder,
    CancelOrder,
    Command,
    PlaceOrder,
    SetPhase,
)
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
from matching.instrument import QUANTITY_MAX, Instrument, instrument_reason
from matching.types import (
    CancelReason,
    OrderKind,
    Phase,
    RejectReason,
    Side,
    StpMode,
    TimeInForce,
)

ORDERS_PER_BOOK_MAX = 100_000


@dataclass(frozen=True, slots=True)
class ReferenceOrder:
    """A resting order as the queries show it; compared field by field with the engine's."""

    order_id: int
    side: Side
    price: int
    quantity: int
    account: str


@dataclass(slots=True)
class _Order:
    order_id: int
    symbol: str
    account: str
    side: Side
    kind: OrderKind
    price: int | None
    open: int
    tif: TimeInForce
    post_only: bool
    stp_group: str
    stp_mode: StpMode
    sequence: int  # arrival at its current price level: smaller is older


@dataclass(slots=True)
class _Book:
    instrument: Instrument
    phase: Phase
    orders: list[_Order]  # every resting order, in no particular order


def _priority(order: _Order) -> tuple[int, int]:
    assert order.price is not None, f"order {order.order_id} rests without a price"
    price_rank = -order.price if order.side is Side.BUY else order.price
    return (price_rank, order.sequence)


class ReferenceBook:
    """Every instrument's book as plain lists; `apply` follows docs/matching.md line by line."""

    def __init__(self, orders_per_book_max: int = ORDERS_PER_BOOK_MAX) -> None:
        self._books: dict[str, _Book] = {}
        self._orders_per_book_max = orders_per_book_max
        self._sequence = 0
        self._trade_id = 0

    # ----------------------------------------------------------------- queries

    def symbols(self) -> list[str]:
        return sorted(self._books)

    def orders(self, symbol: str) -> list[ReferenceOrder]:
        book = self._books[symbol]
        resting = self._side(book, Side.BUY) + self._side(book, Side.SELL)
        return [
            ReferenceOrder(
                order_id=order.order_id,
                side=order.side,
                price=_price(order),
                quantity=order.open,
                account=order.account,
            )
            for order in resting
        ]

    def best_bid(self, symbol: str) -> int | None:
        bids = self._side(self._books[symbol], Side.BUY)
        return _price(bids[0]) if bids else None

    def best_ask(self, symbol: str) -> int | None:
        asks = self._side(self._books[symbol], Side.SELL)
        return _price(asks[0]) if asks else None

    def depth(
        self, symbol: str, levels: int
    ) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        book = self._books[symbol]
        return (
            _levels(self._side(book, Side.BUY), levels),
            _levels(self._side(book, Side.SELL), levels),
        )

    def indicative(self, symbol: str) -> tuple[int | None, int, int]:
        return self._uncross_point(self._books[symbol])

    def phase(self, symbol: str) -> Phase:
        return self._books[symbol].phase

    def live_order_ids(self, symbol: str) -> list[int]:
        return sorted(order.order_id for order in self._books[symbol].orders)

    def check(self) -> None:
        """The model's own invariants: positive open quantities, unique live ids, no cross
        outside an auction."""
        live = [order.order_id for book in self._books.values() for order in book.orders]
        assert len(live) == len(set(live)), f"duplicate live ids in {sorted(live)}"
        for symbol, book in self._books.items():
            for order in book.orders:
                assert order.open > 0, f"order {order.order_id} rests with {order.open}"
                assert order.price is not None and order.kind is OrderKind.LIMIT
                assert order.tif in (TimeInForce.DAY, TimeInForce.GTC), order
            bid, ask = self.best_bid(symbol), self.best_ask(symbol)
            if book.phase is Phase.CONTINUOUS and bid is not None and ask is not None:
                assert bid < ask, f"{symbol} crossed in continuous: {bid} >= {ask}"

    # ---------------------------------------------------------------- commands

    def apply(self, command: Command) -> list[Event]:
        if isinstance(command, AddInstrument):
            return self._add_instrument(command)
        if isinstance(command, SetPhase):
            return self._set_phase(command)
        if isinstance(command, PlaceOrder):
            return self._place(command)
        if isinstance(command, CancelOrder):
            return self._cancel(command)
        if isinstance(command, AmendOrder):
            return self._amend(command)
        raise AssertionError(f"not a command: {command!r}")

    def _add_instrument(self, command: AddInstrument) -> list[Event]:
        instrument = Instrument(
            symbol=command.symbol,
            tick_size=command.tick_size,
            lot=command.lot,
            reference_price=command.reference_price,
            price_limit_pct=command.price_limit_pct,
        )
        reason = (
            RejectReason.DUPLICATE_INSTRUMENT
            if command.symbol in self._books
            else instrument_reason(instrument)
        )
        if reason is not None:
            return [CommandRejected(command="add_instrument", symbol=command.symbol, reason=reason)]
        self._books[command.symbol] = _Book(instrument=instrument, phase=Phase.CLOSED, orders=[])
        return [
            InstrumentAdded(
                symbol=command.symbol,
                tick_size=command.tick_size,
                lot=command.lot,
                reference_price=command.reference_price,
                price_limit_pct=command.price_limit_pct,
                lower_limit=instrument.lower_limit,
                upper_limit=instrument.upper_limit,
            )
        ]

    def _set_phase(self, command: SetPhase) -> list[Event]:
        book = self._books.get(command.symbol)
        reason = None
        if book is None:
            reason = RejectReason.UNKNOWN_INSTRUMENT
        elif book.phase is command.phase:
            reason = RejectReason.NO_CHANGE
        if reason is not None:
            return [CommandRejected(command="set_phase", symbol=command.symbol, reason=reason)]
        assert book is not None
        events: list[Event] = []
        previous = book.phase
        if command.phase in (Phase.CONTINUOUS, Phase.CLOSED) and (
            previous.is_auction or self._crossed(book)
        ):
            events += self._uncross(book)
        book.phase = command.phase
        events.append(PhaseChanged(symbol=command.symbol, phase=command.phase, previous=previous))
        if command.phase is Phase.CLOSED:
            for order in self._side(book, Side.BUY) + self._side(book, Side.SELL):
                if order.tif is TimeInForce.DAY:
                    book.orders.remove(order)
                    expired = OrderExpired(
                        order_id=order.order_id, symbol=order.symbol, quantity=order.open
                    )
                    events.append(expired)
        return events

    def _place(self, command: PlaceOrder) -> list[Event]:
        # The kind and the price agree by construction (the wire parser sees to it): a mismatch
        # is a programmer error, as in the engine, not a business rejection.
        limit = command.kind is OrderKind.LIMIT
        assert limit == (command.price is not None), f"kind and price disagree: {command!r}"
        reason = self._place_reason(command)
        if reason is not None:
            return [OrderRejected(order_id=command.order_id, symbol=command.symbol, reason=reason)]
        book = self._books[command.symbol]
        order = _Order(
            order_id=command.order_id,
            symbol=command.symbol,
            account=command.account,
            side=command.side,
            kind=command.kind,
            price=command.price,
            open=command.quantity,
            tif=command.tif,
            post_only=command.post_only,
            stp_group=command.stp_group,
            stp_mode=command.stp_mode,
            sequence=self._next_sequence(),
        )
        events: list[Event] = [
            OrderAccepted(
                order_id=order.order_id,
                symbol=order.symbol,
                account=order.account,
                side=order.side,
                kind=order.kind,
                price=order.price,
                quantity=order.open,
                tif=order.tif,
            )
        ]
        if book.phase.is_auction:
            book.orders.append(order)
            return events
        if order.tif is TimeInForce.FOK and self._fillable(book, order) < order.open:
            events.append(_cancelled(order, order.open, CancelReason.FILL_OR_KILL))
            return events
        self._match(book, order, events)
        if order.open == 0:
            return events
        if order.kind is OrderKind.MARKET or order.tif in (TimeInForce.IOC, TimeInForce.FOK):
            events.append(_cancelled(order, order.open, CancelReason.UNFILLED_REMAINDER))
        else:
            book.orders.append(order)
        return events

    def _place_reason(self, command: PlaceOrder) -> RejectReason | None:
        book = self._books.get(command.symbol)
        if book is None:
            return RejectReason.UNKNOWN_INSTRUMENT
        if self._live(command.order_id) is not None:
            return RejectReason.DUPLICATE_ORDER_ID
        reason = _quantity_reason(book.instrument, command.side, command.quantity)
        if reason is not None:
            return reason
        if command.kind is OrderKind.LIMIT:
            reason = _price_reason(book.instrument, command.price)
            if reason is not None:
                return reason
        if command.kind is OrderKind.MARKET and command.post_only:
            return RejectReason.POST_ONLY_MARKET
        if book.phase in (Phase.CLOSED, Phase.HALTED):
            return RejectReason.PHASE_CLOSED
        if book.phase.is_auction and (
            command.kind is OrderKind.MARKET
            or command.tif in (TimeInForce.IOC, TimeInForce.FOK)
            or command.post_only
        ):
            return RejectReason.ORDER_TYPE_NOT_ALLOWED_IN_PHASE
        if len(book.orders) >= self._orders_per_book_max:
            return RejectReason.BOOK_FULL
        if (
            book.phase is Phase.CONTINUOUS
            and command.post_only
            and command.price is not None
            and self._crosses(book, command.side, command.price)
        ):
            return RejectReason.POST_ONLY_WOULD_TAKE
        return None

    def _cancel(self, command: CancelOrder) -> list[Event]:
        book = self._books.get(command.symbol)
        if book is None:
            reason = RejectReason.UNKNOWN_INSTRUMENT
        else:
            order = _find(book, command.order_id)
            if order is not None:
                book.orders.remove(order)
                return [_cancelled(order, order.open, CancelReason.REQUESTED)]
            reason = RejectReason.UNKNOWN_ORDER
        return [CancelRejected(order_id=command.order_id, symbol=command.symbol, reason=reason)]

    def _amend(self, command: AmendOrder) -> list[Event]:
        reason = self._amend_reason(command)
        if reason is not None:
            return [AmendRejected(order_id=command.order_id, symbol=command.symbol, reason=reason)]
        book = self._books[command.symbol]
        order = _find(book, command.order_id)
        assert order is not None and order.price is not None
        price = order.price if command.price is None else command.price
        quantity = order.open if command.quantity is None else command.quantity
        if price == order.price and quantity < order.open:
            order.open = quantity
            return [_amended(order, priority_kept=True)]
        book.orders.remove(order)
        order.price = price
        order.open = quantity
        order.sequence = self._next_sequence()
        events: list[Event] = [_amended(order, priority_kept=False)]
        if book.phase is Phase.CONTINUOUS:
            self._match(book, order, events)
        if order.open > 0:
            book.orders.append(order)
        return events

    def _amend_reason(self, command: AmendOrder) -> RejectReason | None:
        book = self._books.get(command.symbol)
        if book is None:
            return RejectReason.UNKNOWN_INSTRUMENT
        order = _find(book, command.order_id)
        if order is None:
            return RejectReason.UNKNOWN_ORDER
        assert order.price is not None
        if book.phase in (Phase.CLOSED, Phase.HALTED):
            return RejectReason.PHASE_CLOSED
        if command.quantity is not None:
            # A buy may restate its current open quantity even when fills left it odd.
            side = Side.SELL if command.quantity == order.open else order.side
            reason = _quantity_reason(book.instrument, side, command.quantity)
            if reason is not None:
                return reason
        if command.price is not None:
            reason = _price_reason(book.instrument, command.price)
            if reason is not None:
                return reason
        price = order.price if command.price is None else command.price
        quantity = order.open if command.quantity is None else command.quantity
        if price == order.price and quantity == order.open:
            return RejectReason.NO_CHANGE
        loses_priority = price != order.price or quantity > order.open
        if (
            order.post_only
            and loses_priority
            and book.phase is Phase.CONTINUOUS
            and self._crosses(book, order.side, price)
        ):
            return RejectReason.POST_ONLY_WOULD_TAKE
        return None

    # ---------------------------------------------------------------- matching

    def _match(self, book: _Book, taker: _Order, events: list[Event]) -> None:
        """Trade `taker` against the book until it is done or nothing acceptable is left."""
        while taker.open > 0:
            maker = self._best_acceptable(book, taker)
            if maker is None:
                return
            if taker.stp_group and taker.stp_group == maker.stp_group:
                self._prevent_self_trade(book, taker, maker, events)
                continue
            quantity = min(taker.open, maker.open)
            trade = self._trade(taker.symbol, maker.price, quantity, taker, maker, taker.side)
            events.append(trade)
            taker.open -= quantity
            maker.open -= quantity
            if maker.open == 0:
                book.orders.remove(maker)

    def _prevent_self_trade(
        self, book: _Book, taker: _Order, maker: _Order, events: list[Event]
    ) -> None:
        quantity = min(taker.open, maker.open)
        events.append(
            SelfTradePrevented(
                symbol=taker.symbol,
                taker_order_id=taker.order_id,
                maker_order_id=maker.order_id,
                mode=taker.stp_mode,
                quantity=quantity,
            )
        )
        mode = taker.stp_mode
        if mode in (StpMode.CANCEL_OLDEST, StpMode.CANCEL_BOTH):
            book.orders.remove(maker)
            events.append(_cancelled(maker, maker.open, CancelReason.SELF_TRADE))
        if mode in (StpMode.CANCEL_NEWEST, StpMode.CANCEL_BOTH):
            events.append(_cancelled(taker, taker.open, CancelReason.SELF_TRADE))
            taker.open = 0
        if mode is StpMode.DECREMENT_AND_CANCEL:
            for order in (maker, taker):
                order.open -= quantity
                if order.open == 0:
                    events.append(_cancelled(order, quantity, CancelReason.SELF_TRADE))
                else:
                    events.append(
                        OrderReduced(
                            order_id=order.order_id,
                            symbol=order.symbol,
                            quantity=quantity,
                            remaining=order.open,
                            reason=CancelReason.SELF_TRADE,
                        )
                    )
            if maker.open == 0:
                book.orders.remove(maker)

    def _best_acceptable(self, book: _Book, taker: _Order) -> _Order | None:
        """The oldest order at the best opposite level, if the taker accepts that price."""
        opposite = self._side(book, taker.side.opposite)
        if not opposite:
            return None
        maker = opposite[0]
        return maker if _acceptable(taker, _price(maker)) else None

    def _fillable(self, book: _Book, taker: _Order) -> int:
        """Opposite quantity a fok taker could reach, counted in priority order (STP aware)."""
        count = 0
        for maker in self._side(book, taker.side.opposite):
            if count >= taker.open or not _acceptable(taker, _price(maker)):
                break
            if taker.stp_group and taker.stp_group == maker.stp_group:
                if taker.stp_mode is StpMode.CANCEL_OLDEST:
                    continue
                break
            count += maker.open
        return count

    # ---------------------------------------------------------------- auctions

    def _uncross_point(self, book: _Book) -> tuple[int | None, int, int]:
        """(price, volume, imbalance) by max volume, min |imbalance|, near reference, higher."""
        bids = self._side(book, Side.BUY)
        asks = self._side(book, Side.SELL)
        reference = book.instrument.reference_price
        best: tuple[int, int, int, int] | None = None
        best_point: tuple[int | None, int, int] = (None, 0, 0)
        for price in sorted({_price(order) for order in book.orders}):
            bought = sum(order.open for order in bids if _price(order) >= price)
            sold = sum(order.open for order in asks if _price(order) <= price)
            volume = min(bought, sold)
            if volume == 0:
                continue
            key = (volume, -abs(bought - sold), -abs(price - reference), price)
            if best is None or key > best:
                best = key
                best_point = (price, volume, bought - sold)
        return best_point

    def _uncross(self, book: _Book) -> list[Event]:
        price, volume, imbalance = self._uncross_point(book)
        symbol = book.instrument.symbol
        events: list[Event] = [
            AuctionUncrossed(symbol=symbol, price=price, volume=volume, imbalance=imbalance)
        ]
        bids = self._side(book, Side.BUY)
        asks = self._side(book, Side.SELL)
        left = volume
        while left > 0:
            assert price is not None
            bid, ask = bids[0], asks[0]
            quantity = min(bid.open, ask.open, left)
            events.append(self._trade(symbol, price, quantity, bid, ask, None))
            left -= quantity
            for order, queue in ((bid, bids), (ask, asks)):
                order.open -= quantity
                if order.open == 0:
                    queue.pop(0)
                    book.orders.remove(order)
        return events

    # ----------------------------------------------------------------- helpers

    def _trade(
        self,
        symbol: str,
        price: int | None,
        quantity: int,
        one: _Order,
        other: _Order,
        aggressor: Side | None,
    ) -> TradeExecuted:
        assert price is not None
        buy, sell = (one, other) if one.side is Side.BUY else (other, one)
        self._trade_id += 1
        return TradeExecuted(
            trade_id=self._trade_id,
            symbol=symbol,
            price=price,
            quantity=quantity,
            buy_order_id=buy.order_id,
            sell_order_id=sell.order_id,
            buy_account=buy.account,
            sell_account=sell.account,
            aggressor=aggressor,
        )

    def _side(self, book: _Book, side: Side) -> list[_Order]:
        return sorted((order for order in book.orders if order.side is side), key=_priority)

    def _crosses(self, book: _Book, side: Side, price: int) -> bool:
        if side is Side.BUY:
            ask = self.best_ask(book.instrument.symbol)
            return ask is not None and price >= ask
        bid = self.best_bid(book.instrument.symbol)
        return bid is not None and price <= bid

    def _crossed(self, book: _Book) -> bool:
        bid = self.best_bid(book.instrument.symbol)
        ask = self.best_ask(book.instrument.symbol)
        return bid is not None and ask is not None and bid >= ask

    def _live(self, order_id: int) -> _Order | None:
        for book in self._books.values():
            found = _find(book, order_id)
            if found is not None:
                return found
        return None

    def _next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence


def _find(book: _Book, order_id: int) -> _Order | None:
    for order in book.orders:
        if order.order_id == order_id:
            return order
    return None


def _price(order: _Order) -> int:
    assert order.price is not None, f"order {order.order_id} has no price"
    return order.price


def _acceptable(taker: _Order, price: int) -> bool:
    if taker.kind is OrderKind.MARKET:
        return True
    assert taker.price is not None
    return price <= taker.price if taker.side is Side.BUY else price >= taker.price


def _quantity_reason(instrument: Instrument, side: Side, quantity: int) -> RejectReason | None:
    if quantity <= 0:
        return RejectReason.NON_POSITIVE_QUANTITY
    if quantity > QUANTITY_MAX:
        return RejectReason.QUANTITY_TOO_LARGE
    if side is Side.BUY and quantity % instrument.lot != 0:
        return RejectReason.QUANTITY_NOT_A_LOT
    return None


def _price_reason(instrument: Instrument, price: int | None) -> RejectReason | None:
    assert price is not None
    if price <= 0:
        return RejectReason.NON_POSITIVE_PRICE
    if price % instrument.tick_size != 0:
        return RejectReason.PRICE_NOT_ON_TICK
    if not instrument.lower_limit <= price <= instrument.upper_limit:
        return RejectReason.PRICE_OUTSIDE_LIMITS
    return None


def _levels(orders: list[_Order], levels: int) -> list[tuple[int, int, int]]:
    """(price, quantity, order count) per price level of one side already in priority order."""
    result: list[tuple[int, int, int]] = []
    for order in orders:
        price = _price(order)
        if result and result[-1][0] == price:
            _, quantity, count = result[-1]
            result[-1] = (price, quantity + order.open, count + 1)
        elif len(result) < levels:
            result.append((price, order.open, 1))
        else:
            break
    return result


def _cancelled(order: _Order, quantity: int, reason: CancelReason) -> OrderCancelled:
    return OrderCancelled(
        order_id=order.order_id, symbol=order.symbol, quantity=quantity, reason=reason
    )


def _amended(order: _Order, *, priority_kept: bool) -> OrderAmended:
    return OrderAmended(
        order_id=order.order_id,
        symbol=order.symbol,
        price=_price(order),
        quantity=order.open,
        priority_kept=priority_kept,
    )
