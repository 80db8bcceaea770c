"""The matching engine against its naive reference model, fed the same random command flows.

Every step applies one command to `MatchingEngine` and to `ReferenceBook` and demands the
same events, the same resting orders, the same best prices, depth and indicative auction
result, and a clean `check()`. Flows mix every command kind: two listed instruments with
different tick, lot and limits (and a third that may be listed mid-flow), a narrow price range
so books cross often, every phase, market/ioc/fok/post-only orders, amends up, down and
across, cancels of live and dead ids, duplicate ids, and all four STP modes over a few shared
groups and accounts. A rule snapshots and restores the engine mid-flow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from matching.commands import AddInstrument, AmendOrder, CancelOrder, Command, PlaceOrder, SetPhase
from matching.engine import ORDERS_PER_BOOK_MAX, MatchingEngine
from matching.events import Event
from matching.instrument import QUANTITY_MAX
from matching.types import OrderKind, Phase, Side, StpMode, TimeInForce
from tests.reference_book import ReferenceBook, ReferenceOrder

DEPTH_LEVELS = 4
ORDER_IDS = st.integers(1, 60)  # small, so ids collide with live orders and get reused
ACCOUNTS = st.sampled_from(["alice", "bob", "carol"])
STP_GROUPS = st.sampled_from(["", "", "desk1", "desk2"])
STP_MODES = st.sampled_from(StpMode)
# Continuous most often, so books trade; auctions next, so they cross and uncross.
PHASES = st.sampled_from(
    [Phase.CONTINUOUS] * 4
    + [Phase.CALL_AUCTION] * 2
    + [Phase.CLOSING_AUCTION, Phase.CLOSED, Phase.HALTED]
)
RESTING_TIFS = st.sampled_from([TimeInForce.DAY] * 3 + [TimeInForce.GTC])
TIFS = st.sampled_from(
    [TimeInForce.DAY] * 3 + [TimeInForce.GTC] * 2 + [TimeInForce.IOC, TimeInForce.FOK]
)


@dataclass(frozen=True)
class Listing:
    symbol: str
    tick_size: int
    lot: int
    reference_price: int
    price_limit_pct: int | None
    lower_limit: int
    upper_limit: int

    def command(self) -> AddInstrument:
        return AddInstrument(
            symbol=self.symbol,
            tick_size=self.tick_size,
            lot=self.lot,
            reference_price=self.reference_price,
            price_limit_pct=self.price_limit_pct,
        )


LISTINGS = {
    "AAA": Listing("AAA", 1, 100, 1000, 10, 900, 1100),
    "BBB": Listing("BBB", 5, 10, 2000, 5, 1900, 2100),
    "CCC": Listing("CCC", 10, 1, 500, 20, 400, 600),  # listed only if a rule adds it
}
SYMBOLS = st.sampled_from(["AAA"] * 4 + ["BBB"] * 4 + ["CCC", "GHOST"])
TRADED = st.sampled_from(["AAA", "BBB"])


@st.composite
def prices(draw: st.DrawFn, listing: Listing, *, valid: bool = False) -> int:
    """A few ticks around the reference; unless `valid`, sometimes a limit or a bad price."""
    choice = 0 if valid else draw(st.integers(0, 19))
    tick = listing.tick_size
    if choice < 16:
        return listing.reference_price + tick * draw(st.integers(-4, 4))
    return draw(
        st.sampled_from(
            [
                listing.lower_limit,
                listing.upper_limit,
                listing.lower_limit - tick,
                listing.upper_limit + tick,
                listing.reference_price + tick // 2 if tick > 1 else 0,
                0,
                -tick,
            ]
        )
    )


@st.composite
def quantities(draw: st.DrawFn, listing: Listing, *, valid: bool = False) -> int:
    """Whole lots; unless `valid`, sometimes odd (fine for sells), zero, negative or too large."""
    choice = 0 if valid else draw(st.integers(0, 19))
    lot = listing.lot
    if choice < 15:
        return lot * draw(st.integers(1, 6))
    if choice < 18:
        return lot * draw(st.integers(0, 3)) + draw(st.integers(1, max(1, lot - 1)))
    return draw(st.sampled_from([0, -lot, QUANTITY_MAX + lot, QUANTITY_MAX - QUANTITY_MAX % lot]))


def listing_of(symbol: str) -> Listing:
    return LISTINGS.get(symbol, LISTINGS["AAA"])  # an unknown symbol borrows AAA's prices


@st.composite
def place_orders(
    draw: st.DrawFn, symbol: str, order_id: int, *, resting: bool = False
) -> PlaceOrder:
    """Any order; with `resting`, a valid day or gtc limit order that may well rest."""
    listing = listing_of(symbol)
    market = not resting and draw(st.integers(0, 9)) == 0
    return PlaceOrder(
        order_id=order_id,
        symbol=symbol,
        account=draw(ACCOUNTS),
        side=draw(st.sampled_from(Side)),
        kind=OrderKind.MARKET if market else OrderKind.LIMIT,
        price=None if market else draw(prices(listing, valid=resting)),
        quantity=draw(quantities(listing, valid=resting)),
        tif=draw(RESTING_TIFS if resting else TIFS),
        post_only=draw(st.integers(0, 7)) == 0,
        stp_group=draw(STP_GROUPS),
        stp_mode=draw(STP_MODES),
    )


@st.composite
def amends_of(draw: st.DrawFn, symbol: str, target: ReferenceOrder) -> AmendOrder:
    """An amend of a live order: a few ticks away and/or a few lots up or down (or to zero)."""
    listing = LISTINGS[symbol]
    ticks = draw(st.sampled_from([None, 0, -1, 1, -2, 2, -4, 4]))
    lots = draw(st.sampled_from([None, 0, -1, 1, 2, -target.quantity // listing.lot]))
    price = None if ticks is None else target.price + ticks * listing.tick_size
    quantity = None if lots is None else target.quantity + lots * listing.lot
    if quantity is not None and quantity % listing.lot and draw(st.booleans()):
        quantity -= quantity % listing.lot  # make a buy's odd remainder whole again
    return AmendOrder(order_id=target.order_id, symbol=symbol, price=price, quantity=quantity)


def describe(events: list[Event]) -> str:
    return "\n".join(f"  {event!r}" for event in events) or "  (none)"


class MatchingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine = MatchingEngine()
        self.model = ReferenceBook(orders_per_book_max=ORDERS_PER_BOOK_MAX)

    def step(self, command: Command) -> list[Event]:
        got = self.engine.apply(command)
        want = self.model.apply(command)
        assert got == want, (
            f"{command!r}\nengine events:\n{describe(got)}\nreference events:\n{describe(want)}"
        )
        self.engine.check()
        self.model.check()
        self.compare_books()
        for happened in got:  # shown by --hypothesis-show-statistics: is the flow rich enough?
            event(type(happened).__name__)
            reason = getattr(happened, "reason", None)
            if reason is not None:
                event(f"{type(happened).__name__}.{reason.name}")
        return got

    def compare_books(self) -> None:
        for symbol in self.model.symbols():
            got = [
                (o.order_id, o.side, o.price, o.quantity, o.account)
                for o in self.engine.orders(symbol)
            ]
            want = [
                (o.order_id, o.side, o.price, o.quantity, o.account)
                for o in self.model.orders(symbol)
            ]
            assert got == want, f"{symbol} orders\nengine:    {got}\nreference: {want}"
            assert self.engine.best_bid(symbol) == self.model.best_bid(symbol), symbol
            assert self.engine.best_ask(symbol) == self.model.best_ask(symbol), symbol
            assert self.engine.depth(symbol, DEPTH_LEVELS) == self.model.depth(
                symbol, DEPTH_LEVELS
            ), symbol
            assert self.engine.indicative(symbol) == self.model.indicative(symbol), symbol

    def live(self, symbol: str) -> list[int]:
        return self.model.live_order_ids(symbol) if symbol in self.model.symbols() else []

    @initialize(
        first=st.sampled_from([Phase.CONTINUOUS, Phase.CALL_AUCTION]),
        second=st.sampled_from([Phase.CONTINUOUS, Phase.CLOSING_AUCTION]),
    )
    def list_instruments(self, first: Phase, second: Phase) -> None:
        for symbol, phase in (("AAA", first), ("BBB", second)):
            self.step(LISTINGS[symbol].command())
            self.step(SetPhase(symbol=symbol, phase=phase))

    # Hypothesis enables a random subset of rules per example (swarm testing), so each rule
    # mixes its own variants with fixed weights: no subset can starve the books of orders.

    @rule(symbol=SYMBOLS, order_id=ORDER_IDS, resting=st.integers(0, 3), data=st.data())
    def place(self, symbol: str, order_id: int, resting: int, data: st.DataObject) -> None:
        """Three in four: a valid day/gtc limit order; else anything, valid or not."""
        self.step(data.draw(place_orders(symbol, order_id, resting=resting > 0)))

    @rule(symbol=TRADED, order_id=ORDER_IDS, data=st.data())
    def place_resting(self, symbol: str, order_id: int, data: st.DataObject) -> None:
        self.step(data.draw(place_orders(symbol, order_id, resting=True)))

    @rule(symbol=SYMBOLS, live=st.integers(0, 3), order_id=ORDER_IDS, data=st.data())
    def cancel(self, symbol: str, live: int, order_id: int, data: st.DataObject) -> None:
        """Three in four: a live order; else any id, often a dead or unknown one."""
        ids = self.live(symbol)
        if live and ids:
            order_id = data.draw(st.sampled_from(ids))
        self.step(CancelOrder(order_id=order_id, symbol=symbol))

    @rule(symbol=SYMBOLS, live=st.integers(0, 3), order_id=ORDER_IDS, data=st.data())
    def amend(self, symbol: str, live: int, order_id: int, data: st.DataObject) -> None:
        """Three in four: move a live order a few ticks and/or resize it by whole lots."""
        resting = self.model.orders(symbol) if symbol in self.model.symbols() else []
        if live and resting:
            self.step(data.draw(amends_of(symbol, data.draw(st.sampled_from(resting)))))
            return
        listing = listing_of(symbol)
        price = data.draw(st.none() | prices(listing))
        quantity = data.draw(st.none() | quantities(listing))
        self.step(AmendOrder(order_id=order_id, symbol=symbol, price=price, quantity=quantity))

    @rule(symbol=SYMBOLS, phase=PHASES, listing=st.integers(0, 9))
    def set_phase(self, symbol: str, phase: Phase, listing: int) -> None:
        """Nine in ten: a phase change; else a listing (a duplicate, CCC, or an invalid one)."""
        if listing:
            self.step(SetPhase(symbol=symbol, phase=phase))
        elif symbol in LISTINGS:
            self.step(LISTINGS[symbol].command())
        else:
            self.step(
                AddInstrument(
                    symbol=symbol, tick_size=0, lot=1, reference_price=100, price_limit_pct=10
                )
            )

    @rule(through_json=st.booleans())
    def snapshot_and_restore(self, through_json: bool) -> None:
        state_hash = self.engine.state_hash()
        snapshot = self.engine.snapshot()
        if through_json:
            snapshot = json.loads(json.dumps(snapshot))
        self.engine = MatchingEngine.restore(snapshot)
        self.engine.check()
        assert self.engine.state_hash() == state_hash
        self.compare_books()

    @invariant()
    def engine_is_sound(self) -> None:
        self.engine.check()


MatchingMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestMatchingModel = MatchingMachine.TestCase
