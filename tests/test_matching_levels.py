"""A book side whose level count crosses LEVELS_FLAT_MAX: its keys move from a plain list into
a SortedList and back, and the book stays the same book (depth, best prices, the auction's
price range, every invariant), checked against a plain dict of the resting orders."""

from __future__ import annotations

import os
import random

import pytest
from sortedcontainers import SortedList

from matching.book import LEVELS_FLAT_MAX
from matching.commands import AddInstrument, CancelOrder, PlaceOrder, SetPhase
from matching.engine import MatchingEngine
from matching.types import OrderKind, Phase, Side

SYMBOL = "600519.SH"
MID = 10_000_000


def test_a_side_past_the_flat_maximum_and_back_stays_the_same_book() -> None:
    past_the_flat_maximum_and_back(17)


@pytest.mark.skipif(os.environ.get("JINLIAN_CHECK_ALL") != "1", reason="JINLIAN_CHECK_ALL=1")
def test_past_the_flat_maximum_and_back_over_many_seeds() -> None:
    for seed in range(1, 21):
        past_the_flat_maximum_and_back(seed)


def past_the_flat_maximum_and_back(seed: int) -> None:
    rng = random.Random(seed)
    engine = MatchingEngine()
    engine.apply(
        AddInstrument(symbol=SYMBOL, tick_size=1, lot=1, reference_price=MID, price_limit_pct=None)
    )
    engine.apply(SetPhase(symbol=SYMBOL, phase=Phase.CONTINUOUS))
    book = engine.book(SYMBOL)
    resting: dict[int, tuple[Side, int, int]] = {}  # the model: order id -> side, price, qty
    next_id = 1

    def place(side: Side, price: int) -> None:
        nonlocal next_id
        quantity = rng.randint(1, 9)
        command = PlaceOrder(
            order_id=next_id,
            symbol=SYMBOL,
            account="A1",
            side=side,
            kind=OrderKind.LIMIT,
            price=price,
            quantity=quantity,
        )
        assert [type(event).__name__ for event in engine.apply(command)] == ["OrderAccepted"]
        resting[next_id] = (side, price, quantity)
        next_id += 1

    def cancel(order_id: int) -> None:
        events = engine.apply(CancelOrder(order_id=order_id, symbol=SYMBOL))
        assert type(events[0]).__name__ == "OrderCancelled", events
        del resting[order_id]

    def agree() -> None:
        engine.check()
        for side, book_side in ((Side.BUY, book.bids), (Side.SELL, book.asks)):
            totals: dict[int, int] = {}
            for order_side, price, quantity in resting.values():
                if order_side is side:
                    totals[price] = totals.get(price, 0) + quantity
            prices = sorted(totals, reverse=side is Side.BUY)
            rows = [(level.price, level.quantity) for level in book_side]
            assert rows == [(price, totals[price]) for price in prices]
            low, high = MID - 3_000, MID + 3_000
            assert book_side.between(low, high) == sorted(p for p in totals if low <= p <= high)

    # Asks at random distinct prices, far from and near the touch, past the flat maximum.
    prices = rng.sample(range(MID + 1, MID + 4 * LEVELS_FLAT_MAX), LEVELS_FLAT_MAX + 500)
    for price in prices:
        place(Side.SELL, price)
        if rng.random() < 0.05:
            place(Side.BUY, MID - rng.randint(0, 5_000))
    assert isinstance(book.asks.keys, SortedList) and isinstance(book.bids.keys, list)
    agree()
    # Churn in the SortedList: new levels anywhere, cancels anywhere, the best one included.
    for _ in range(2_000):
        if rng.random() < 0.5:
            place(Side.SELL, MID + rng.randint(1, 4 * LEVELS_FLAT_MAX))
        else:
            best = book.best_ask()
            order_id = rng.choice(list(resting))
            if rng.random() < 0.2 and best is not None:
                order_id = next(o for o, row in resting.items() if row[1] == best)
            cancel(order_id)
    agree()
    # Cancel asks until the side falls below half the maximum: the keys are a list again.
    asks = [order_id for order_id, row in resting.items() if row[0] is Side.SELL]
    rng.shuffle(asks)
    for order_id in asks:
        cancel(order_id)
        if len(book.asks.levels) < LEVELS_FLAT_MAX // 2 - 100:
            break
    assert isinstance(book.asks.keys, list)
    agree()
    # A crossing buy sweeps the best asks at their own prices, best first.
    best_prices = [level.price for level in book.asks][:20]
    events = engine.apply(
        PlaceOrder(
            order_id=next_id,
            symbol=SYMBOL,
            account="B1",
            side=Side.BUY,
            kind=OrderKind.LIMIT,
            price=best_prices[-1],
            quantity=10**6,
        )
    )
    traded = [event.price for event in events if type(event).__name__ == "TradeExecuted"]
    assert sorted(set(traded)) == best_prices and traded == sorted(traded)
    engine.check()
