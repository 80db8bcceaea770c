"""The matching engine: one book per instrument, commands in, events out.

Pure and deterministic: the same commands produce the same events and the same state hash on
every machine. Validation runs in the fixed order of docs/matching.md and answers with a
rejection event; the books only ever see valid commands.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from matching.book import Order, OrderBook, TradeCounter
from matching.changes import OrderChanges
from matching.commands import AddInstrument, AmendOrder, CancelOrder, Command, PlaceOrder, SetPhase
from matching.events import (
    AmendRejected,
    CancelRejected,
    CommandRejected,
    Event,
    InstrumentAdded,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    OrderRejected,
    PhaseChanged,
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

ORDERS_PER_BOOK_MAX = 2_000_000
SNAPSHOT_VERSION = 1

# Final: the compiled build (exchange/compiled.py) keeps these in C statics, not in a dict.
BUY: Final = Side.BUY
MARKET: Final = OrderKind.MARKET
CONTINUOUS: Final = Phase.CONTINUOUS
IOC: Final = TimeInForce.IOC
FOK: Final = TimeInForce.FOK
UNFILLED_REMAINDER: Final = CancelReason.UNFILLED_REMAINDER
_new: Final = tuple.__new__  # the hottest records' constructor: see matching/book.py
# The classes the hot paths build or dispatch on, as Final aliases: in the compiled build a
# plain module name of a Python class is a dict lookup in the module's globals at every use.
_PLACE: Final = PlaceOrder
_CANCEL: Final = CancelOrder
_AMEND: Final = AmendOrder
_ACCEPTED: Final = OrderAccepted
_CANCELLED: Final = OrderCancelled
CLOSED_PHASES: Final = frozenset((Phase.CLOSED, Phase.HALTED))


@dataclass(frozen=True, slots=True, kw_only=True)
class RestingOrder:
    """A read-only view of an order on the book."""

    order_id: int
    side: Side
    price: int
    quantity: int
    account: str


class MatchingEngine:
    """Books for every instrument, an engine-wide order index and the trade id sequence."""

    __slots__ = ("_books", "_changes", "_handlers", "_index", "_trades")

    def __init__(self) -> None:
        self._books: dict[str, OrderBook] = {}
        self._changes: OrderChanges | None = None  # see `track_changes`
        self._index: dict[int, Order] = {}  # live orders of every book, by id
        self._trades = TradeCounter()
        self._handlers: dict[type, Callable[[Any], list[Event]]] = {
            PlaceOrder: self.place,
            CancelOrder: self.cancel,
            AmendOrder: self.amend,
            SetPhase: self.set_phase,
            AddInstrument: self.add_instrument,
        }

    def apply(self, command: Command) -> list[Event]:
        """Apply one command and return its events."""
        kind = type(command)
        # The order commands are dispatched directly: the compiled build then calls the
        # method natively instead of through a bound method's argument parsing.
        if kind is _PLACE:
            return self.place(command)  # type: ignore[arg-type]
        if kind is _CANCEL:
            return self.cancel(command)  # type: ignore[arg-type]
        if kind is _AMEND:
            return self.amend(command)  # type: ignore[arg-type]
        return self._handlers[kind](command)

    # -- orders ----------------------------------------------------------------------------

    def place(self, command: PlaceOrder) -> list[Event]:
        book = self._books.get(command.symbol)
        reason = self.place_reason_in(book, command)
        if reason is not None:
            return [OrderRejected(command.order_id, command.symbol, reason)]
        assert book is not None
        return self.place_in(book, command)

    def place_reason(self, command: PlaceOrder) -> RejectReason | None:
        """Why `place(command)` would be rejected now, or None. Changes nothing."""
        return self.place_reason_in(self._books.get(command.symbol), command)

    def place_checked(self, command: PlaceOrder) -> list[Event]:
        """Place an order that `place_reason` has just accepted (the venue funds it between)."""
        return self.place_in(self._books[command.symbol], command)

    def place_in(self, book: OrderBook, command: PlaceOrder) -> list[Event]:
        """`place_checked` with the command's book (`book(command.symbol)`) given: the
        venue's hot path, which keeps each listing's book and has passed it to
        `place_reason_in` already."""
        # Commands are tuples: one unpacking reads every field faster than attribute access.
        order_id, symbol, account, side, kind, price, quantity, tif, post_only, group, mode = (
            command
        )
        # OrderAccepted's fields are PlaceOrder's first eight, in order: a slice of the
        # command keeps its objects. Sliced as a `tuple[object, ...]`, because the compiled
        # build unboxes a slice of a typed tuple into C values and boxes its ints again.
        fields: tuple[object, ...] = command
        events: list[Event] = [_new(_ACCEPTED, fields[:8])]
        is_market = kind is MARKET
        if is_market:
            limit = book.upper_limit if side is BUY else book.lower_limit
        else:
            assert price is not None
            limit = price
        order = Order(order_id, symbol, account, side, limit, quantity, tif, post_only, group, mode)
        if book.phase is not CONTINUOUS:  # a call auction: the order rests unmatched
            book.add(order)
            return events
        if tif is FOK and not book.fillable(order, limit):
            events.append(OrderCancelled(order_id, symbol, quantity, CancelReason.FILL_OR_KILL))
            return events
        book.match(order, limit, events)
        if order.quantity:
            if is_market or tif is IOC:
                events.append(OrderCancelled(order_id, symbol, order.quantity, UNFILLED_REMAINDER))
            else:
                book.add(order)
        return events

    def place_reason_in(self, book: OrderBook | None, command: PlaceOrder) -> RejectReason | None:
        """`place_reason` with the command's book given (None for an unknown symbol)."""
        if book is None:
            return RejectReason.UNKNOWN_INSTRUMENT
        order_id, _, _, side, kind, price, quantity, tif, post_only, _, _ = command
        if order_id in self._index:
            return RejectReason.DUPLICATE_ORDER_ID
        reason = _quantity_reason(book, quantity, whole_lots=side is BUY)
        if reason is not None:
            return reason
        if kind is MARKET:
            assert price is None, f"market order {order_id} with a price"
            if post_only:
                return RejectReason.POST_ONLY_MARKET
        else:
            assert price is not None, f"limit order {order_id} without a price"
            reason = _price_reason(book, price)
            if reason is not None:
                return reason
        phase = book.phase
        if phase in CLOSED_PHASES:
            return RejectReason.PHASE_CLOSED
        if phase is not CONTINUOUS:
            if kind is MARKET or tif is IOC or tif is FOK:
                return RejectReason.ORDER_TYPE_NOT_ALLOWED_IN_PHASE
            if post_only:
                return RejectReason.ORDER_TYPE_NOT_ALLOWED_IN_PHASE
        if book.order_count >= ORDERS_PER_BOOK_MAX:
            return RejectReason.BOOK_FULL
        if post_only and phase is CONTINUOUS and book.would_take(side, price):  # type: ignore[arg-type]
            return RejectReason.POST_ONLY_WOULD_TAKE
        return None

    def cancel(self, command: CancelOrder, why: CancelReason | None = None) -> list[Event]:
        """Cancel a live order (`why`: the venue's reason; None: the command's own)."""
        order_id, symbol, reason_given = command
        book = self._books.get(symbol)
        if book is None:
            reason = RejectReason.UNKNOWN_INSTRUMENT
        else:
            order = self._index.get(order_id)
            if order is not None and order.symbol == symbol:
                # `cancel_checked`, written out: a cancel is a quarter of all commands.
                event = _new(
                    _CANCELLED,
                    (order_id, symbol, order.quantity, reason_given if why is None else why),
                )
                book.remove(order)
                return [event]
            reason = RejectReason.UNKNOWN_ORDER
        return [CancelRejected(order_id, symbol, reason)]

    def cancel_checked(
        self, order: Order, why: CancelReason = CancelReason.REQUESTED
    ) -> list[Event]:
        """Cancel a live order the caller has just looked up in `order_index` (as `cancel`
        would, with its command's symbol matching the order's): the venue checks who may
        cancel it, then cancels without a second lookup."""
        event = _new(_CANCELLED, (order.order_id, order.symbol, order.quantity, why))
        self._books[order.symbol].remove(order)
        return [event]

    def amend(self, command: AmendOrder) -> list[Event]:
        reason = self.amend_reason(command)
        if reason is not None:
            return [AmendRejected(command.order_id, command.symbol, reason)]
        return self.amend_checked(command)

    def amend_reason(self, command: AmendOrder) -> RejectReason | None:
        """Why `amend(command)` would be rejected now, or None. Changes nothing."""
        return _amend_reason(
            self._books.get(command.symbol), self._index.get(command.order_id), command
        )

    def amend_checked(self, command: AmendOrder) -> list[Event]:
        """Amend an order as `amend_reason` has just accepted (the venue funds it between)."""
        book = self._books[command.symbol]
        order = self._index[command.order_id]
        price = order.price if command.price is None else command.price
        quantity = order.quantity if command.quantity is None else command.quantity
        if price == order.price and quantity < order.quantity:
            book.reduce(order, order.quantity - quantity)
            return [_amended(order, priority_kept=True)]
        book.remove(order)
        order = order.moved(price, quantity)  # a removed order object never rests again
        events: list[Event] = [_amended(order, priority_kept=False)]
        if book.phase is CONTINUOUS:
            book.match(order, price, events)
        if order.quantity:
            book.add(order)
        return events

    # -- instruments and phases ------------------------------------------------------------

    def add_instrument(self, command: AddInstrument) -> list[Event]:
        instrument = Instrument(
            symbol=command.symbol,
            tick_size=command.tick_size,
            lot=command.lot,
            reference_price=command.reference_price,
            price_limit_pct=command.price_limit_pct,
        )
        if command.symbol in self._books:
            reason: RejectReason | None = RejectReason.DUPLICATE_INSTRUMENT
        else:
            reason = instrument_reason(instrument)
        if reason is not None:
            return [CommandRejected(command="add_instrument", symbol=command.symbol, reason=reason)]
        book = self._books[command.symbol] = OrderBook(instrument, self._index, self._trades)
        book.changes = changes = self._changes
        if changes is not None:
            changes.books.add(command.symbol)
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

    def set_phase(self, command: SetPhase) -> list[Event]:
        book = self._books.get(command.symbol)
        if book is None or book.phase is command.phase:
            reason = RejectReason.UNKNOWN_INSTRUMENT if book is None else RejectReason.NO_CHANGE
            return [CommandRejected(command="set_phase", symbol=command.symbol, reason=reason)]
        previous = book.phase
        events: list[Event] = []
        uncross_due = previous.is_auction or book.is_crossed()
        if uncross_due and (command.phase is CONTINUOUS or command.phase is Phase.CLOSED):
            book.uncross(events)
        book.phase = command.phase
        if self._changes is not None:
            self._changes.books.add(command.symbol)
        events.append(PhaseChanged(symbol=command.symbol, phase=command.phase, previous=previous))
        if command.phase is Phase.CLOSED:
            for order_id, quantity in book.expire_day_orders():
                events.append(
                    OrderExpired(order_id=order_id, symbol=command.symbol, quantity=quantity)
                )
        return events

    # -- changes -------------------------------------------------------------------------

    def track_changes(self) -> OrderChanges:
        """From now on, record the orders and books every command changes (see
        `matching.changes`), and return the record. Once per engine: the record has one
        reader, which clears it when it has read it (a second reader would drain what the
        first must see). O(books)."""
        assert self._changes is None, "the matching engine's changes have a reader already"
        changes = self._changes = OrderChanges()
        for book in self._books.values():
            book.changes = changes
        return changes

    # -- queries ---------------------------------------------------------------------------

    def symbols(self) -> list[str]:
        return sorted(self._books)

    def book(self, symbol: str) -> OrderBook:
        """The book of `symbol`; raises KeyError naming it if there is none."""
        try:
            return self._books[symbol]
        except KeyError:
            raise KeyError(f"unknown instrument {symbol!r}") from None

    def resting_order(self, order_id: int) -> Order | None:
        """The live order object itself, for the venue's hot path. Read it; never change it."""
        return self._index.get(order_id)

    def order_index(self) -> Mapping[int, Order]:
        """Every live order object by id, read-only: the venue's hot path looks orders up
        there without a call to `resting_order`. The same mapping for this engine's life."""
        return self._index

    def order(self, order_id: int) -> RestingOrder | None:
        order = self._index.get(order_id)
        return None if order is None else _view(order)

    def best_bid(self, symbol: str) -> int | None:
        return self.book(symbol).best_bid()

    def best_ask(self, symbol: str) -> int | None:
        return self.book(symbol).best_ask()

    def depth(
        self, symbol: str, levels: int
    ) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """Up to `levels` (price, quantity, order count) per side, best price first."""
        book = self.book(symbol)
        sides = []
        for side in (Side.BUY, Side.SELL):
            rows: list[tuple[int, int, int]] = []
            for level in book.levels(side):
                if len(rows) == levels:
                    break
                rows.append((level.price, level.quantity, level.count))
            sides.append(rows)
        return sides[0], sides[1]

    def orders(self, symbol: str) -> list[RestingOrder]:
        """Resting orders of `symbol`: bids then asks, each side in priority order."""
        return [_view(order) for order in self.book(symbol).resting()]

    def indicative(self, symbol: str) -> tuple[int | None, int, int]:
        """(price, volume, imbalance) of the uncross the book would make now."""
        return self.book(symbol).indicative()

    @property
    def last_trade_id(self) -> int:
        return self._trades.last

    def __len__(self) -> int:
        """The number of resting orders in every book."""
        return len(self._index)

    # -- state -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The whole engine as plain JSON-able data, from which `restore` rebuilds it."""
        books = []
        for symbol in sorted(self._books):
            book = self._books[symbol]
            instrument = book.instrument
            books.append(
                {
                    "symbol": symbol,
                    "tick_size": instrument.tick_size,
                    "lot": instrument.lot,
                    "reference_price": instrument.reference_price,
                    "price_limit_pct": instrument.price_limit_pct,
                    "phase": int(book.phase),
                    "orders": [_order_row(order) for order in book.resting()],
                }
            )
        return {"version": SNAPSHOT_VERSION, "last_trade_id": self._trades.last, "books": books}

    @classmethod
    def restore(cls, snapshot: dict[str, Any]) -> MatchingEngine:
        """An engine identical to the one that produced `snapshot`."""
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported snapshot version {snapshot.get('version')!r}")
        engine = cls()
        engine._trades.last = snapshot["last_trade_id"]
        for row in snapshot["books"]:
            instrument = Instrument(
                symbol=row["symbol"],
                tick_size=row["tick_size"],
                lot=row["lot"],
                reference_price=row["reference_price"],
                price_limit_pct=row["price_limit_pct"],
            )
            book = OrderBook(instrument, engine._index, engine._trades)
            book.phase = Phase(row["phase"])
            engine._books[instrument.symbol] = book
            for order_id, side, price, quantity, account, tif, post_only, group, mode in row[
                "orders"
            ]:
                book.add(
                    Order(
                        order_id,
                        instrument.symbol,
                        account,
                        Side(side),
                        price,
                        quantity,
                        TimeInForce(tif),
                        post_only,
                        group,
                        StpMode(mode),
                    )
                )
        return engine

    def state_hash(self) -> str:
        """SHA-256 (hex) of the canonical snapshot: equal engines, equal hashes."""
        canonical = json.dumps(self.snapshot(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def check(self) -> None:
        """Assert every structural invariant of every book and of the order index."""
        for symbol, book in self._books.items():
            assert book.instrument.symbol == symbol, f"book {symbol} holds {book.instrument}"
            book.check()
        total = sum(book.order_count for book in self._books.values())
        assert total == len(self._index), f"index holds {len(self._index)}, books {total}"


def _quantity_reason(book: OrderBook, quantity: int, *, whole_lots: bool) -> RejectReason | None:
    """`whole_lots`: the quantity must be a whole number of lots (a buy's new quantity)."""
    if quantity <= 0:
        return RejectReason.NON_POSITIVE_QUANTITY
    if quantity > QUANTITY_MAX:
        return RejectReason.QUANTITY_TOO_LARGE
    if whole_lots and quantity % book.instrument.lot:
        return RejectReason.QUANTITY_NOT_A_LOT
    return None


def _price_reason(book: OrderBook, price: int) -> RejectReason | None:
    if price <= 0:
        return RejectReason.NON_POSITIVE_PRICE
    if price % book.instrument.tick_size:
        return RejectReason.PRICE_NOT_ON_TICK
    if not book.lower_limit <= price <= book.upper_limit:
        return RejectReason.PRICE_OUTSIDE_LIMITS
    return None


def _amend_reason(
    book: OrderBook | None, order: Order | None, command: AmendOrder
) -> RejectReason | None:
    if book is None:
        return RejectReason.UNKNOWN_INSTRUMENT
    if order is None or order.symbol != command.symbol:
        return RejectReason.UNKNOWN_ORDER
    if book.phase in CLOSED_PHASES:
        return RejectReason.PHASE_CLOSED
    quantity = order.quantity if command.quantity is None else command.quantity
    price = order.price if command.price is None else command.price
    if command.quantity is not None:
        # A buy may restate the odd open quantity fills left it with, not choose a new one.
        whole_lots = order.side is BUY and quantity != order.quantity
        reason = _quantity_reason(book, quantity, whole_lots=whole_lots)
        if reason is not None:
            return reason
    if command.price is not None:
        reason = _price_reason(book, price)
        if reason is not None:
            return reason
    if price == order.price and quantity == order.quantity:
        return RejectReason.NO_CHANGE
    loses_priority = price != order.price or quantity > order.quantity
    crosses = book.phase is CONTINUOUS and book.would_take(order.side, price)
    if order.post_only and loses_priority and crosses:
        return RejectReason.POST_ONLY_WOULD_TAKE
    return None


def _amended(order: Order, *, priority_kept: bool) -> OrderAmended:
    return OrderAmended(order.order_id, order.symbol, order.price, order.quantity, priority_kept)


def _view(order: Order) -> RestingOrder:
    return RestingOrder(
        order_id=order.order_id,
        side=order.side,
        price=order.price,
        quantity=order.quantity,
        account=order.account,
    )


def _order_row(order: Order) -> list[Any]:
    return [
        order.order_id,
        int(order.side),
        order.price,
        order.quantity,
        order.account,
        int(order.tif),
        order.post_only,
        order.stp_group,
        int(order.stp_mode),
    ]
