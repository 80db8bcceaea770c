"""The two layouts of a book side give the same book: a `BandSide` (levels in an array indexed
by tick, for a price-limit band of at most BAND_TICKS_MAX ticks) against a `KeyedSide` (a dict
and sorted keys, for a wider band or none).

The same random commands go to an instrument with 10% limits and to one without limits, all
prices inside the limited one's band (its edges included, and levels in blocks and groups far
apart, so closing the best level scans across empty blocks and groups); both engines must emit
the same events (but the listing's own), keep the same orders, depth and indicative uncross,
and pass `check()`. The layout's bounds are checked at the edges of BAND_TICKS_MAX.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matching.book import BAND_TICKS_MAX, BandSide, KeyedSide
from matching.commands import AddInstrument, AmendOrder, CancelOrder, Command, PlaceOrder, SetPhase
from matching.engine import MatchingEngine
from matching.types import OrderKind, Phase, Side, TimeInForce

REFERENCE = 100_000  # ticks of 1: a 10% band of 20,001 ticks, 313 blocks, 5 groups
LOWER, UPPER = 90_000, 110_000


def engine_for(price_limit_pct: int | None) -> MatchingEngine:
    engine = MatchingEngine()
    engine.apply(
        AddInstrument(
            symbol="X",
            tick_size=1,
            lot=1,
            reference_price=REFERENCE,
            price_limit_pct=price_limit_pct,
        )
    )
    engine.apply(SetPhase(symbol="X", phase=Phase.CONTINUOUS))
    return engine


PRICES = st.one_of(
    st.integers(REFERENCE - 40, REFERENCE + 40),  # near the touch: fills and new levels
    st.integers(LOWER, UPPER),  # anywhere: blocks and groups apart
    st.sampled_from([LOWER, LOWER + 1, LOWER + 64, UPPER - 64, UPPER - 1, UPPER]),  # edges
)


@st.composite
def commands(draw: st.DrawFn) -> list[Command]:
    flow: list[Command] = []
    for order_id in range(1, draw(st.integers(1, 120)) + 1):
        kind = draw(st.integers(0, 9))
        target = draw(st.integers(1, order_id))
        if kind < 5:
            flow.append(
                PlaceOrder(
                    order_id=order_id,
                    symbol="X",
                    account="A",
                    side=draw(st.sampled_from(Side)),
                    kind=OrderKind.LIMIT,
                    price=draw(PRICES),
                    quantity=draw(st.integers(1, 9)),
                    tif=draw(st.sampled_from([TimeInForce.DAY, TimeInForce.IOC])),
                )
            )
        elif kind == 5:
            flow.append(
                PlaceOrder(
                    order_id=order_id,
                    symbol="X",
                    account="A",
                    side=draw(st.sampled_from(Side)),
                    kind=OrderKind.MARKET,
                    price=None,
                    quantity=draw(st.integers(1, 30)),
                    tif=TimeInForce.IOC,
                )
            )
        elif kind < 8:
            flow.append(CancelOrder(order_id=target, symbol="X"))
        elif kind == 8:
            flow.append(AmendOrder(order_id=target, symbol="X", price=draw(PRICES), quantity=None))
        else:
            phase = draw(st.sampled_from([Phase.CALL_AUCTION, Phase.CONTINUOUS]))
            flow.append(SetPhase(symbol="X", phase=phase))
    return flow


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands())
def test_a_banded_side_and_a_keyed_side_make_the_same_book(flow: list[Command]) -> None:
    banded, keyed = engine_for(10), engine_for(None)
    book = banded.book("X")
    assert isinstance(book.bids, BandSide) and isinstance(book.asks, BandSide)
    assert isinstance(keyed.book("X").asks, KeyedSide)
    for command in flow:
        assert banded.apply(command) == keyed.apply(command), command
        banded.check()
        keyed.check()
        assert banded.orders("X") == keyed.orders("X")
        assert banded.depth("X", 5) == keyed.depth("X", 5)
        assert banded.indicative("X") == keyed.indicative("X")
    assert banded.state_hash() != keyed.state_hash() or not banded.orders("X")  # listings differ


def test_the_widest_band_is_banded_and_closing_its_best_level_finds_the_far_one() -> None:
    # Limits 99% either side of a reference chosen so that the band (1.98 x the reference, in
    # ticks of 1) is just inside the maximum, then, for another instrument, just past it.
    engine = MatchingEngine()
    reference = BAND_TICKS_MAX * 100 // 198 - 1
    engine.apply(
        AddInstrument(symbol="W", tick_size=1, lot=1, reference_price=reference, price_limit_pct=99)
    )
    engine.apply(SetPhase(symbol="W", phase=Phase.CONTINUOUS))
    book = engine.book("W")
    assert isinstance(book.asks, BandSide)
    assert BAND_TICKS_MAX - 8 < book.upper_limit - book.lower_limit < BAND_TICKS_MAX
    low, high = book.lower_limit, book.upper_limit
    for order_id, price in enumerate([high, low + 1, low], start=1):
        engine.apply(
            PlaceOrder(
                order_id=order_id,
                symbol="W",
                account="A",
                side=Side.SELL,
                kind=OrderKind.LIMIT,
                price=price,
                quantity=1,
            )
        )
    assert book.best_ask() == low
    engine.apply(CancelOrder(order_id=3, symbol="W"))
    assert book.best_ask() == low + 1
    engine.apply(CancelOrder(order_id=2, symbol="W"))  # the next level is 1 band away
    assert book.best_ask() == high
    engine.apply(CancelOrder(order_id=1, symbol="W"))
    assert book.best_ask() is None
    engine.check()
    wider = MatchingEngine()
    wider.apply(
        AddInstrument(
            symbol="V", tick_size=1, lot=1, reference_price=reference + 3, price_limit_pct=99
        )
    )
    assert wider.book("V").upper_limit - wider.book("V").lower_limit >= BAND_TICKS_MAX
    assert isinstance(wider.book("V").asks, KeyedSide)
