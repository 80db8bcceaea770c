"""One instrument's order book: price levels in price-time priority, continuous matching and
the call-auction uncross.

Structure: per side its levels (`Level`: a FIFO queue of orders, a list read from a head index,
with its total open quantity and live order count) filed by price, and the best price cached.
A side whose price-limit band spans at most BAND_TICKS_MAX ticks files its levels in an array
indexed by tick (`BandSide`); a wider band or no limits, in a dict with the sorted level keys
(`KeyedSide`).

A cancelled order is not searched for in its queue: it is marked dead (open quantity 0) and
left as a tombstone, the head of a queue is always live, and a queue is compacted once its
tombstones outnumber its live orders. So with L levels on a side: add O(1); cancel O(1)
amortised; each fill O(1); plus, when a level opens or closes, O(1) on a banded side (closing
the best level scans for the next, see `BandSide`) and O(log L) on a keyed one (which also
moves the keys between the level and the touch, at most LEVELS_FLAT_MAX of them).
Real books hold thousands of orders at the touch, where a linear search per cancel
(deque.remove) cost more than everything else together.

The book never validates: the engine checks every command before it reaches the book.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator
from typing import Final

from sortedcontainers import SortedList

from matching.changes import OrderChanges
from matching.events import (
    AuctionUncrossed,
    Event,
    OrderCancelled,
    OrderReduced,
    SelfTradePrevented,
    TradeExecuted,
)
from matching.instrument import Instrument
from matching.types import CancelReason, Phase, Side, StpMode, TimeInForce

BUY: Final = Side.BUY
SELL: Final = Side.SELL
CANCEL_NEWEST: Final = StpMode.CANCEL_NEWEST
CANCEL_OLDEST: Final = StpMode.CANCEL_OLDEST
CANCEL_BOTH: Final = StpMode.CANCEL_BOTH
SELF_TRADE: Final = CancelReason.SELF_TRADE
# Final: the compiled build (exchange/compiled.py) keeps these in C statics, not in a dict.
# A record built by `tuple.__new__(cls, values)` skips the NamedTuple's Python `__new__` frame
# (0.5 us -> 0.17 us per record). Only the hottest events (an accept per order, a cancel, a
# fill) are built so, their values in field order; the differential tests against the naive
# model (tests/test_matching_model.py) compare every field of every event.
_new: Final = tuple.__new__
# Final aliases of what the hot paths call or build: in the compiled build a plain module name
# of a Python function or class is a dict lookup in the module's globals at every use.
_insort: Final = insort
_bisect_left: Final = bisect_left
_TRADE: Final = TradeExecuted


class Order:
    """A resting (or incoming) limit order. Mutable: only `quantity` and `price` change."""

    __slots__ = (
        "account",
        "order_id",
        "post_only",
        "price",
        "quantity",
        "side",
        "stp_group",
        "stp_mode",
        "symbol",
        "tif",
    )

    def __init__(
        self,
        order_id: int,
        symbol: str,
        account: str,
        side: Side,
        price: int,
        quantity: int,
        tif: TimeInForce,
        post_only: bool,
        stp_group: str,
        stp_mode: StpMode,
    ) -> None:
        self.order_id = order_id
        self.symbol = symbol
        self.account = account
        self.side = side
        self.price = price
        self.quantity = quantity
        self.tif = tif
        self.post_only = post_only
        self.stp_group = stp_group
        self.stp_mode = stp_mode

    def moved(self, price: int, quantity: int) -> Order:
        """A copy at a new price and open quantity, for an amend that loses priority."""
        return Order(
            self.order_id,
            self.symbol,
            self.account,
            self.side,
            price,
            quantity,
            self.tif,
            self.post_only,
            self.stp_group,
            self.stp_mode,
        )

    def __repr__(self) -> str:
        return (
            f"Order({self.order_id}, {self.symbol}, {self.side.name}, "
            f"{self.quantity}@{self.price}, {self.tif.name})"
        )


TOMBSTONES_MAX: Final = 16  # dead orders a queue may hold beyond its live count before compaction


class Level:
    """The orders resting at one price, oldest first, with their total open quantity.

    The queue is `orders[head:]`: a plain list read from a head index rather than a deque,
    because most levels of a sparse book hold one order, and a one-element list costs a
    fraction of a deque (which allocates a block of 64 slots). Orders before `head` are gone;
    the prefix is cut off once it is at least half of the list and longer than
    TOMBSTONES_MAX, so taking the head is O(1) amortised. The queue may hold dead orders (open
    quantity 0) behind its live head (`orders[head]`, while any order is live); `count` is the
    number of live ones. An empty queue is an empty list with `head` 0.
    """

    __slots__ = ("count", "head", "orders", "price", "quantity")

    def __init__(self, first: Order) -> None:
        """A level opened by the order `first`, at its price."""
        self.price = first.price
        self.quantity = first.quantity
        self.count = 1
        self.orders: list[Order] = [first]
        self.head = 0

    def live(self) -> Iterator[Order]:
        """The live orders, oldest first."""
        return (order for order in self.orders[self.head :] if order.quantity)

    def pop_head(self) -> None:
        """Drop the head (filled or cancelled) and any dead orders behind it."""
        orders = self.orders
        end = len(orders)
        head = self.head + 1
        while head < end and not orders[head].quantity:
            head += 1
        if head == end:  # nothing live is left
            orders.clear()
            head = 0
        elif head > TOMBSTONES_MAX and 2 * head >= end:
            del orders[:head]
            head = 0
        self.head = head


class TradeCounter:
    """The engine-wide trade id sequence, shared by every book."""

    __slots__ = ("last",)

    def __init__(self, last: int = 0) -> None:
        self.last = last


LEVELS_FLAT_MAX: Final = 16_384  # levels a keyed side keeps its keys for in a plain list
BAND_TICKS_MAX: Final = 262_144  # ticks of price-limit band up to which a side is a BandSide
BLOCK_BITS: Final = 6
BLOCK_TICKS: Final = 1 << BLOCK_BITS  # ticks per block of a BandSide
BLOCK_MASK: Final = BLOCK_TICKS - 1
GROUP_BITS: Final = 6  # a group holds 1 << GROUP_BITS blocks: 64 groups in the widest band


class BookSide:
    """One side of a book: its levels by price and its best price (`top`), cached for the hot
    path. `sign` is -1 for bids and +1 for asks: `sign * price` grows away from the touch.

    Two layouts, chosen per book by the width of its price-limit band (`side_for`): a
    `BandSide` (an array of levels indexed by tick) for a band of at most BAND_TICKS_MAX ticks,
    a `KeyedSide` (a dict by price and the sorted keys) for a wider band or no limits.
    """

    __slots__ = ("sign", "top")

    def __init__(self, side: Side) -> None:
        self.sign = -1 if side is BUY else 1
        self.top: int | None = None

    def __iter__(self) -> Iterator[Level]:
        """The levels, best price first."""
        raise NotImplementedError

    def level(self, price: int) -> Level | None:
        """The level at `price`, or None."""
        raise NotImplementedError

    def rest(self, order: Order) -> None:
        """Put `order` at the back of the level at its price, opening the level if needed."""
        raise NotImplementedError

    def drop(self, level: Level) -> None:
        """Close an empty level."""
        raise NotImplementedError

    def between(self, low: int, high: int) -> list[int]:
        """The prices of the levels priced in [low, high], ascending."""
        raise NotImplementedError

    def prices(self) -> list[int]:
        """The prices of every level as the side files them, in any order (for `check`)."""
        raise NotImplementedError

    def check(self) -> None:
        """Assert the invariants of the side's own structure (the levels are the book's)."""
        levels = list(self)
        prices = [level.price for level in levels]
        assert sorted(prices) == sorted(self.prices()), "iterated and filed levels differ"
        assert prices == sorted(prices, key=lambda price: self.sign * price), "levels out of order"
        assert len(set(prices)) == len(prices), "a price filed twice"
        assert self.top == (prices[0] if prices else None), f"top {self.top} != {prices[:1]}"
        for level in levels:
            assert self.level(level.price) is level, f"level {level.price} not found by price"


def _append(level: Level, order: Order) -> None:
    order.price = level.price  # share one int object per level: memory per order
    level.orders.append(order)
    level.quantity += order.quantity
    level.count += 1


class BandSide(BookSide):
    """A side whose prices lie in a price-limit band of at most BAND_TICKS_MAX ticks: the
    levels sit in an array indexed by tick (`(price - low) // tick`), in blocks of BLOCK_TICKS
    slots allocated when a level first opens in them, with the count of open levels per block
    and per group of GROUP_BLOCKS blocks.

    Finding, opening or closing a level is O(1): no comparison of prices, no hashing, no move
    of other levels. Closing the best level scans towards worse prices for the next one,
    skipping empty blocks and groups by their counts: at most 63 slots, 63 blocks, all groups
    (64 for the widest band) and 63 blocks and 64 slots again, and a few slots in a book with
    levels near the touch. Memory: 16 bytes per block of the band, plus 8 bytes per tick of
    each block that ever held a level (about 0.5 kB a block).
    """

    __slots__ = ("blocks", "counts", "groups", "low", "size", "tick")

    def __init__(self, side: Side, low: int, high: int, tick: int) -> None:
        super().__init__(side)
        self.low = low
        self.tick = tick
        blocks = ((high - low) // tick >> BLOCK_BITS) + 1
        self.blocks: list[list[Level | None] | None] = [None] * blocks
        self.counts: list[int] = [0] * blocks  # open levels per block
        self.groups: list[int] = [0] * ((blocks - 1 >> GROUP_BITS) + 1)  # ... per group
        self.size = 0  # open levels on the side

    def __iter__(self) -> Iterator[Level]:
        blocks, counts = self.blocks, self.counts
        downwards = self.sign < 0  # bids: the highest price first
        numbers = range(len(blocks) - 1, -1, -1) if downwards else range(len(blocks))
        slots = range(BLOCK_MASK, -1, -1) if downwards else range(BLOCK_TICKS)
        for number in numbers:
            block = blocks[number]
            if counts[number] and block is not None:
                for slot in slots:
                    level = block[slot]
                    if level is not None:
                        yield level

    def level(self, price: int) -> Level | None:
        index = (price - self.low) // self.tick
        block = self.blocks[index >> BLOCK_BITS]
        return None if block is None else block[index & BLOCK_MASK]

    def rest(self, order: Order) -> None:
        price = order.price
        index = (price - self.low) // self.tick
        assert index >= 0, f"price {price} below the band from {self.low}"
        number = index >> BLOCK_BITS
        block = self.blocks[number]
        if block is None:
            block = self.blocks[number] = [None] * BLOCK_TICKS
        level = block[index & BLOCK_MASK]
        if level is not None:  # `_append`, written out: the dense books' common case
            order.price = level.price
            level.orders.append(order)
            level.quantity += order.quantity
            level.count += 1
            return
        block[index & BLOCK_MASK] = Level(order)
        self.counts[number] += 1
        self.groups[number >> GROUP_BITS] += 1
        self.size += 1
        top = self.top
        if top is None or self.sign * price < self.sign * top:
            self.top = price

    def drop(self, level: Level) -> None:
        assert not level.count, f"closing level {level.price} with {level.count} orders"
        price = level.price
        index = (price - self.low) // self.tick
        number = index >> BLOCK_BITS
        block = self.blocks[number]
        assert block is not None and block[index & BLOCK_MASK] is level, f"level {price} lost"
        block[index & BLOCK_MASK] = None
        self.counts[number] -= 1
        self.groups[number >> GROUP_BITS] -= 1
        self.size -= 1
        if price == self.top:
            self.top = self._next(index) if self.size else None

    def _next(self, index: int) -> int | None:
        """The price of the best level worse than the tick `index` (no level is better)."""
        down = self.sign < 0  # bids: towards lower prices
        number = index >> BLOCK_BITS
        slot = index & BLOCK_MASK
        found = self._first_in_block(number, slot - 1 if down else slot + 1)
        if found is not None:
            return found
        group = number >> GROUP_BITS
        found = self._first_in_group(group, number - 1 if down else number + 1)
        if found is not None:
            return found
        groups = self.groups
        for other in range(group - 1, -1, -1) if down else range(group + 1, len(groups)):
            if groups[other]:
                first = ((other + 1) << GROUP_BITS) - 1 if down else other << GROUP_BITS
                return self._first_in_group(other, min(first, len(self.blocks) - 1))
        return None

    def _first_in_group(self, group: int, number: int) -> int | None:
        """The price of the first level from block `number` on, towards worse prices, within
        the group `group`."""
        counts = self.counts
        if self.sign < 0:
            numbers = range(number, (group << GROUP_BITS) - 1, -1)
        else:
            numbers = range(number, min((group + 1) << GROUP_BITS, len(counts)))
        for other in numbers:
            if counts[other]:
                return self._first_in_block(other, BLOCK_MASK if self.sign < 0 else 0)
        return None

    def _first_in_block(self, number: int, slot: int) -> int | None:
        """The price of the first level from `slot` on, towards worse prices, in block
        `number` (none when `slot` is past its end)."""
        block = self.blocks[number]
        if block is None or not self.counts[number]:
            return None
        for other in range(slot, -1, -1) if self.sign < 0 else range(slot, BLOCK_TICKS):
            level = block[other]
            if level is not None:
                return level.price
        return None

    def between(self, low: int, high: int) -> list[int]:
        inside = [level.price for level in self if low <= level.price <= high]
        return inside if self.sign > 0 else inside[::-1]

    def prices(self) -> list[int]:
        found = []
        groups = [0] * len(self.groups)
        for number, block in enumerate(self.blocks):
            count = 0
            for level in block or ():
                if level is not None:
                    found.append(level.price)
                    count += 1
            assert count == self.counts[number], f"block {number}: {count} != {self.counts[number]}"
            groups[number >> GROUP_BITS] += count
        assert groups == self.groups, f"group counts {self.groups} != {groups}"
        assert len(found) == self.size, f"{len(found)} levels, size {self.size}"
        return found


class KeyedSide(BookSide):
    """A side with a wide band (or none): a dict from price to level, and the level keys
    `-sign * price` ascending towards the best price, which is the last key.

    The keys live in a plain list while the side has at most LEVELS_FLAT_MAX levels: the levels
    that open and close most often, near the touch, sit at its end, where `insort` (in C) and
    `del` move few elements and closing the best level is a `pop`, several times cheaper than a
    `SortedList`. A level far from the touch moves up to 8 bytes per level behind it, so past
    LEVELS_FLAT_MAX levels the keys move into a `SortedList` (O(log L) wherever the level is),
    and back into a list below half that.
    """

    __slots__ = ("keys", "levels")

    def __init__(self, side: Side) -> None:
        super().__init__(side)
        self.levels: dict[int, Level] = {}
        self.keys: list[int] | SortedList[int] = []

    def __iter__(self) -> Iterator[Level]:
        levels, sign = self.levels, self.sign
        return (levels[-sign * key] for key in reversed(self.keys))

    def level(self, price: int) -> Level | None:
        return self.levels.get(price)

    def rest(self, order: Order) -> None:
        """O(1) at an open level; O(log L) compares to open one, plus moving the keys of the
        levels between its price and the touch while they are few."""
        price = order.price
        level = self.levels.get(price)
        if level is not None:
            _append(level, order)
            return
        self.levels[price] = Level(order)
        key = -self.sign * price
        keys = self.keys
        if not keys or key > keys[-1]:
            self.top = price
            if isinstance(keys, list):
                keys.append(key)
                return
        if isinstance(keys, list):
            _insort(keys, key)
            if len(keys) > LEVELS_FLAT_MAX:
                self.keys = SortedList(keys)
        else:
            keys.add(key)

    def drop(self, level: Level) -> None:
        assert not level.count, f"closing level {level.price} with {level.count} orders"
        price = level.price
        del self.levels[price]
        keys = self.keys
        if price == self.top:
            keys.pop()
            self.top = -self.sign * keys[-1] if keys else None
        elif isinstance(keys, list):
            del keys[_bisect_left(keys, -self.sign * price)]
        else:
            keys.remove(-self.sign * price)
            if len(keys) < LEVELS_FLAT_MAX // 2:
                self.keys = list(keys)

    def between(self, low: int, high: int) -> list[int]:
        sign, keys = self.sign, self.keys
        first, last = (low, high) if sign < 0 else (-high, -low)  # the range of their keys
        if isinstance(keys, list):
            inside = keys[bisect_left(keys, first) : bisect_right(keys, last)]
        else:
            inside = list(keys.irange(first, last))
        return inside if sign < 0 else [-key for key in reversed(inside)]

    def prices(self) -> list[int]:
        keys = self.keys
        assert list(keys) == sorted(keys), "keys out of order"
        assert isinstance(keys, list) or len(keys) >= LEVELS_FLAT_MAX // 2, "sparse side"
        assert sorted(self.levels) == sorted(-self.sign * key for key in keys), "keys differ"
        return list(self.levels)


def side_for(side: Side, instrument: Instrument) -> BookSide:
    """The layout for one side of `instrument`'s book: a `BandSide` when its price-limit band
    spans at most BAND_TICKS_MAX ticks, else a `KeyedSide`."""
    low, high, tick = instrument.lower_limit, instrument.upper_limit, instrument.tick_size
    if (high - low) // tick < BAND_TICKS_MAX:
        return BandSide(side, low, high, tick)
    return KeyedSide(side)


class OrderBook:
    """Bids and asks of one instrument, with its phase."""

    __slots__ = (
        "_index",
        "_trades",
        "asks",
        "bids",
        "changes",
        "instrument",
        "lower_limit",
        "order_count",
        "phase",
        "upper_limit",
    )

    def __init__(
        self, instrument: Instrument, index: dict[int, Order], trades: TradeCounter
    ) -> None:
        self.instrument = instrument
        self.lower_limit = instrument.lower_limit  # cached: read by every order
        self.upper_limit = instrument.upper_limit
        self.phase = Phase.CLOSED
        self.order_count = 0
        self._index = index  # engine-wide: order id -> live order
        self._trades = trades
        self.bids = side_for(BUY, instrument)
        self.asks = side_for(SELL, instrument)
        self.changes: OrderChanges | None = None  # the engine's, while a reader follows it

    # -- queries ---------------------------------------------------------------------------

    def best_bid(self) -> int | None:
        return self.bids.top

    def best_ask(self) -> int | None:
        return self.asks.top

    def is_crossed(self) -> bool:
        bid, ask = self.bids.top, self.asks.top
        return bid is not None and ask is not None and bid >= ask

    def levels(self, side: Side) -> Iterator[Level]:
        """The levels of one side, best price first."""
        return iter(self.bids if side is BUY else self.asks)

    def resting(self) -> Iterator[Order]:
        """Every resting order: bids then asks, each side in priority order."""
        for side in (self.bids, self.asks):
            for level in side:
                yield from level.live()

    def would_take(self, side: Side, price: int) -> bool:
        """Whether a limit order at `price` would trade against the opposite side now."""
        if side is BUY:
            return self.asks.top is not None and price >= self.asks.top
        return self.bids.top is not None and price <= self.bids.top

    # -- structure -------------------------------------------------------------------------

    def add(self, order: Order) -> None:
        """Rest `order` at the back of its price level. O(1), or O(log L) for a new level."""
        (self.bids if order.side is BUY else self.asks).rest(order)
        self._index[order.order_id] = order
        self.order_count += 1
        changes = self.changes
        if changes is not None:  # at the back of its queue, behind every order there now
            queued = changes.queued
            queued.pop(order.order_id, None)
            queued[order.order_id] = None

    def remove(self, order: Order) -> None:
        """Take a resting order off the book; it is dead (open quantity 0) afterwards.

        O(1) amortised: the order stays in its queue as a tombstone until it reaches the head
        or the queue is compacted. A removed order object is never put back on the book.
        """
        side = self.bids if order.side is BUY else self.asks
        level = side.level(order.price)
        assert level is not None, f"order {order.order_id} at no level"
        level.quantity -= order.quantity
        level.count -= 1
        order.quantity = 0
        del self._index[order.order_id]
        self.order_count -= 1
        if self.changes is not None:
            self.changes.orders.add(order.order_id)
        if not level.count:
            side.drop(level)
        elif level.orders[level.head] is order:
            level.pop_head()
        elif len(level.orders) - level.head > 2 * level.count + TOMBSTONES_MAX:
            level.orders = list(level.live())
            level.head = 0

    def reduce(self, order: Order, quantity: int) -> None:
        """Lower a resting order's open quantity in place, keeping its priority."""
        assert 0 < quantity < order.quantity, (quantity, order)
        level = (self.bids if order.side is BUY else self.asks).level(order.price)
        assert level is not None, f"order {order.order_id} at no level"
        level.quantity -= quantity
        order.quantity -= quantity
        if self.changes is not None:
            self.changes.orders.add(order.order_id)

    # -- continuous matching ---------------------------------------------------------------

    def fillable(self, taker: Order, limit: int) -> bool:
        """Whether `taker` could fill completely now (the fill-or-kill test)."""
        needed = taker.quantity
        group = taker.stp_group
        for level in self.levels(taker.side.opposite):
            if (level.price > limit) if taker.side is BUY else (level.price < limit):
                return False
            for maker in level.live():
                if group and maker.stp_group == group:
                    if taker.stp_mode is CANCEL_OLDEST:
                        continue
                    return False
                needed -= maker.quantity
                if needed <= 0:
                    return True
        return False

    def match(self, taker: Order, limit: int, events: list[Event]) -> None:
        """Trade `taker` against the opposite side at prices up to `limit`, makers' prices.

        Leaves the taker's open quantity in `taker.quantity` (0 when filled or cancelled by
        self-trade prevention); the caller rests or cancels what is left.
        """
        side = self.asks if taker.side is BUY else self.bids
        sign = side.sign
        limit_key = sign * limit
        while taker.quantity:
            top = side.top
            if top is None or sign * top > limit_key:
                break
            level = side.level(top)
            assert level is not None, f"no level at the top {top}"
            self._match_level(taker, level, events)
            if not level.count:
                side.drop(level)

    def _match_level(self, taker: Order, level: Level, events: list[Event]) -> None:
        orders = level.orders
        index = self._index
        trades = self._trades
        symbol = self.instrument.symbol
        price = level.price
        aggressor = taker.side
        taker_is_buy = aggressor is BUY
        group = taker.stp_group
        changes = self.changes
        while taker.quantity and orders:
            maker = orders[level.head]
            if group and maker.stp_group == group:
                self._prevent_self_trade(taker, maker, level, events)
                continue
            quantity = taker.quantity if taker.quantity < maker.quantity else maker.quantity
            trades.last += 1
            if taker_is_buy:
                buy, sell = taker, maker
            else:
                buy, sell = maker, taker
            events.append(
                _new(
                    _TRADE,
                    (
                        trades.last,
                        symbol,
                        price,
                        quantity,
                        buy.order_id,
                        sell.order_id,
                        buy.account,
                        sell.account,
                        aggressor,
                    ),
                )
            )
            taker.quantity -= quantity
            level.quantity -= quantity
            maker.quantity -= quantity
            if changes is not None:
                changes.orders.add(maker.order_id)
            if not maker.quantity:
                level.count -= 1
                level.pop_head()
                del index[maker.order_id]
                self.order_count -= 1

    def _prevent_self_trade(
        self, taker: Order, maker: Order, level: Level, events: list[Event]
    ) -> None:
        """Apply the taker's STP mode against `maker`, the head of `level`."""
        mode = taker.stp_mode
        symbol = self.instrument.symbol
        both = taker.quantity if taker.quantity < maker.quantity else maker.quantity
        if self.changes is not None:
            self.changes.orders.add(maker.order_id)
        events.append(
            SelfTradePrevented(
                symbol=symbol,
                taker_order_id=taker.order_id,
                maker_order_id=maker.order_id,
                mode=mode,
                quantity=both,
            )
        )
        if mode is CANCEL_NEWEST:
            self._cancel_taker(taker, taker.quantity, events)
            return
        cut = maker.quantity if mode is not StpMode.DECREMENT_AND_CANCEL else both
        if cut == maker.quantity:
            level.quantity -= cut
            level.count -= 1
            maker.quantity = 0
            level.pop_head()
            del self._index[maker.order_id]
            self.order_count -= 1
            events.append(
                OrderCancelled(
                    order_id=maker.order_id, symbol=symbol, quantity=cut, reason=SELF_TRADE
                )
            )
        else:
            level.quantity -= cut
            maker.quantity -= cut
            events.append(
                OrderReduced(
                    order_id=maker.order_id,
                    symbol=symbol,
                    quantity=cut,
                    remaining=maker.quantity,
                    reason=SELF_TRADE,
                )
            )
        if mode is CANCEL_BOTH:
            self._cancel_taker(taker, taker.quantity, events)
        elif mode is StpMode.DECREMENT_AND_CANCEL:
            if both == taker.quantity:
                self._cancel_taker(taker, both, events)
            else:
                taker.quantity -= both
                events.append(
                    OrderReduced(
                        order_id=taker.order_id,
                        symbol=symbol,
                        quantity=both,
                        remaining=taker.quantity,
                        reason=SELF_TRADE,
                    )
                )

    def _cancel_taker(self, taker: Order, quantity: int, events: list[Event]) -> None:
        taker.quantity = 0
        events.append(
            OrderCancelled(
                order_id=taker.order_id,
                symbol=self.instrument.symbol,
                quantity=quantity,
                reason=SELF_TRADE,
            )
        )

    # -- call auction ----------------------------------------------------------------------

    def indicative(self) -> tuple[int | None, int, int]:
        """The uncross that the book would make now: (price, volume, imbalance).

        Maximum executable volume, then the smallest |imbalance|, then the price closest to the
        reference price, then the higher price. O(L log L) in the crossed levels.
        """
        if not self.is_crossed():
            return None, 0, 0
        low, high = self.asks.top, self.bids.top
        assert low is not None and high is not None
        bid_prices = self.bids.between(low, high)[::-1]  # descending
        ask_prices = self.asks.between(low, high)  # ascending
        bid_totals = _running_totals(_quantities(self.bids, bid_prices))
        ask_totals = _running_totals(_quantities(self.asks, ask_prices))
        ascending_bids = bid_prices[::-1]
        reference = self.instrument.reference_price
        best: tuple[int, int, int, int] | None = None
        best_price = 0
        best_imbalance = 0
        for price in sorted(set(bid_prices) | set(ask_prices)):
            # bids priced >= price: those before the insertion point in the descending list
            bought = bid_totals[len(bid_prices) - bisect_left(ascending_bids, price)]
            sold = ask_totals[bisect_right(ask_prices, price)]
            volume = min(bought, sold)
            score = (volume, -abs(bought - sold), -abs(price - reference), price)
            if best is None or score > best:
                best, best_price, best_imbalance = score, price, bought - sold
        assert best is not None and best[0] > 0
        return best_price, best[0], best_imbalance

    def uncross(self, events: list[Event]) -> None:
        """Execute the call auction at its indicative price, price-time on each side."""
        price, volume, imbalance = self.indicative()
        symbol = self.instrument.symbol
        events.append(
            AuctionUncrossed(symbol=symbol, price=price, volume=volume, imbalance=imbalance)
        )
        if price is None:
            return
        left = volume
        trades = self._trades
        while left:
            assert self.bids.top is not None and self.asks.top is not None
            bids = self.bids.level(self.bids.top)
            asks = self.asks.level(self.asks.top)
            assert bids is not None and asks is not None, "no level at a top"
            buy = bids.orders[bids.head]
            sell = asks.orders[asks.head]
            quantity = min(buy.quantity, sell.quantity, left)
            trades.last += 1
            events.append(
                TradeExecuted(
                    trade_id=trades.last,
                    symbol=symbol,
                    price=price,
                    quantity=quantity,
                    buy_order_id=buy.order_id,
                    sell_order_id=sell.order_id,
                    buy_account=buy.account,
                    sell_account=sell.account,
                    aggressor=None,
                )
            )
            left -= quantity
            for order in (buy, sell):
                if order.quantity == quantity:
                    self.remove(order)
                else:
                    self.reduce(order, quantity)

    # -- phases ----------------------------------------------------------------------------

    def expire_day_orders(self) -> list[tuple[int, int]]:
        """Take every `day` order off the book: (order id, open quantity), bids then asks, in
        priority order."""
        expired = [order for order in self.resting() if order.tif is TimeInForce.DAY]
        rows = [(order.order_id, order.quantity) for order in expired]
        for order in expired:
            self.remove(order)
        return rows

    # -- invariants ------------------------------------------------------------------------

    def check(self) -> None:
        """Assert every structural invariant of the book."""
        count = 0
        for side, book_side in ((BUY, self.bids), (SELL, self.asks)):
            book_side.check()
            for level in book_side:
                price = level.price
                live = list(level.live())
                assert live and level.count == len(live), f"level {price}: count {level.count}"
                queue, head = level.orders, level.head
                assert queue[head].quantity, f"dead order at the head of level {price}"
                assert len(queue) - head <= 2 * level.count + TOMBSTONES_MAX, f"level {price}"
                assert head <= TOMBSTONES_MAX or 2 * head < len(queue), f"level {price}: {head}"
                total = sum(order.quantity for order in live)
                assert level.quantity == total, f"level {price}: {level.quantity} != {total}"
                for order in live:
                    assert order.side is side and order.price == price, f"misfiled {order}"
                    assert order.symbol == self.instrument.symbol, f"foreign order {order}"
                    assert self._index.get(order.order_id) is order, f"not indexed: {order}"
                    count += 1
        assert count == self.order_count, f"order count {self.order_count} != {count}"
        if self.is_crossed():
            assert self.phase.is_auction or self.phase is Phase.HALTED, (
                f"{self.instrument.symbol} crossed in phase {self.phase.name}"
            )


def _quantities(side: BookSide, prices: list[int]) -> Iterator[int]:
    """The open quantity of the level at each of `prices` (every one has a level)."""
    for price in prices:
        level = side.level(price)
        assert level is not None, f"no level at {price}"
        yield level.quantity


def _running_totals(quantities: Iterator[int]) -> list[int]:
    """[0, q0, q0+q1, ...]: element k is the sum of the first k quantities."""
    totals = [0]
    for quantity in quantities:
        totals.append(totals[-1] + quantity)
    return totals
