"""Trading agents: each decides, at its Poisson arrival times, what orders to send.

The seam between order-flow generation and execution: an agent never talks to the venue. At an
arrival `act(now_ns, market)` returns order *intents* (`Place`, `Cancel`), and a driver executes
them and feeds back what happened (`on_fill`, `on_done`). The driver also supplies the
`MarketView` the agent reads (best bid and ask, last price, phase). The in-process driver
(`simulator.inprocess`) applies intents to the venue at once, so the feedback arrives before the
next arrival; the network mode (`simulator.network`) sends them through the broker client and
delivers execution reports and market data as they come back, later. Agents therefore keep
their own view of their open orders and positions, updated only from feedback.

Order ids are allocated by the agent, from a range of its own (`(agent_id + 1) * 10**9 + n`),
so that they do not depend on any other agent's activity or on the driver.

Each agent draws from its own numpy `Generator` (spawned from the run's `SeedSequence`), in
pre-drawn batches of uniforms: a draw is a list index, not a call into numpy. Manipulators
(spoofer, wash trader, marking the close) write ground-truth `Label`s of what they did, so that
surveillance analyses can be scored.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from typing import Any, Final, NamedTuple, Protocol

import numpy as np

from matching.types import Phase, Side
from simulator.scenario import AgentGroup, Instrument

BUY: Final = Side.BUY
SELL: Final = Side.SELL
ORDER_IDS_PER_AGENT: Final = 10**9
UNIFORM_BATCH: Final = 1024
CONTINUOUS: Final = Phase.CONTINUOUS


TIFS: Final = ("day", "ioc", "fok")  # the venue's time in force an agent may give (no gtc)


# Intents are NamedTuples: an agent makes one per message, and a NamedTuple is about five
# times cheaper to build than a frozen dataclass (0.25 against 1.2 µs for `Place`), which
# sets each field through object.__setattr__ (STYLE.md, "Shapes we want").
class Place(NamedTuple):
    """Place an order: a limit order at `price`, or a market order (`price` None, which the
    venue executes at once, IOC or FOK). `tif`: `day` rests, `ioc` trades what it can at once
    and cancels the rest, `fok` trades all at once or nothing. `post_only`: a limit order that
    would trade on arrival is rejected instead (it only ever adds liquidity)."""

    order_id: int
    account: str
    symbol: str
    side: Side
    price: int | None
    quantity: int
    tif: str = "day"
    post_only: bool = False

    @property
    def ioc(self) -> bool:
        return self.tif == "ioc"

    @property
    def market(self) -> bool:
        return self.price is None


class Cancel(NamedTuple):
    order_id: int
    account: str
    symbol: str


class Amend(NamedTuple):
    """Change a resting order's price and/or open quantity (None: unchanged). A new price, or a
    larger quantity, loses time priority; an amend that crosses trades at once."""

    order_id: int
    account: str
    symbol: str
    price: int | None
    quantity: int | None


Intent = Place | Cancel | Amend


@dataclass(frozen=True, slots=True)
class Label:
    """Ground truth of a manipulation: which order was part of what, and in what role."""

    time_ns: int
    agent_id: int
    label: str  # spoofing, wash_trade, marking_close
    role: str  # layer, genuine, sell_leg, buy_leg, mark
    order_id: int
    symbol: str


class MarketView(Protocol):
    """What an agent may see of the market: the driver's view, not the venue's internals."""

    def best_bid(self, symbol: str) -> int | None: ...

    def best_ask(self, symbol: str) -> int | None: ...

    def last_price(self, symbol: str) -> int: ...

    def phase(self, symbol: str) -> Phase: ...


class Fundamentals:
    """Each instrument's fundamental value: a geometric random walk in ticks sampled once per
    virtual second, drawn up front in one vectorised pass from the market's own stream."""

    def __init__(
        self, instruments: tuple[Instrument, ...], duration_ns: int, rng: np.random.Generator
    ) -> None:
        seconds = duration_ns // 1_000_000_000 + 2
        self._values: dict[str, list[int]] = {}
        for instrument in instruments:
            steps = rng.standard_normal(seconds) * (instrument.volatility_bps / 10_000)
            steps[0] = 0.0
            path = instrument.reference_price * np.exp(np.cumsum(steps))
            low, high = instrument.band()
            ticks = np.rint(path / instrument.tick_size) * instrument.tick_size
            self._values[instrument.symbol] = np.clip(ticks, low, high).astype(np.int64).tolist()

    def value(self, symbol: str, now_ns: int) -> int:
        return self._values[symbol][now_ns // 1_000_000_000]

    def path(self, symbol: str) -> list[int]:
        """The value at each whole virtual second of the day, from 0."""
        return self._values[symbol]


@dataclass(slots=True)
class OpenOrder:
    symbol: str
    side: Side
    price: int
    remaining: int
    placed_ns: int


class Agent:
    """The common part: identity, accounts, draws, open orders and positions."""

    kind = "agent"

    def __init__(
        self,
        *,
        agent_id: int,
        accounts: tuple[str, ...],
        group: AgentGroup,
        instruments: dict[str, Instrument],
        rng: np.random.Generator,
        fundamentals: Fundamentals,
    ) -> None:
        self.agent_id = agent_id
        self.accounts = accounts
        self.account = accounts[0]
        self.group = group
        self.rate_per_s = group.rate_per_s
        self.symbols = group.symbols
        self.instruments = instruments
        self._bands = {symbol: instrument.band() for symbol, instrument in instruments.items()}
        self.rng = rng
        self.fundamentals = fundamentals
        self.open_orders: dict[int, OpenOrder] = {}
        self.position: dict[str, int] = dict.fromkeys(instruments, 0)  # shares, bought - sold
        self.labels: list[Label] = []
        self._next_order = (agent_id + 1) * ORDER_IDS_PER_AGENT
        # `uniform()`: the next uniform in [0, 1) from this agent's stream, from pre-drawn
        # batches (the next drawn when one is used up), read without a Python frame
        batches = iter(lambda: rng.random(UNIFORM_BATCH).tolist(), None)
        self.uniform: Callable[[], float] = chain.from_iterable(batches).__next__
        self._ticks: dict[tuple[str, float], int] = {}

    # -- draws ---------------------------------------------------------------------------

    def below(self, count: int) -> int:
        """A uniform integer in [0, count)."""
        return int(self.uniform() * count)

    def pick_symbol(self) -> str:
        symbols = self.symbols
        count = len(symbols)
        return symbols[0] if count == 1 else symbols[int(self.uniform() * count)]  # below(count)

    # -- arrivals ------------------------------------------------------------------------

    def arrival_window_ns(self, duration_ns: int, close_ns: int | None) -> tuple[int, int]:
        """When this agent is active; by default the whole day."""
        return 0, duration_ns

    # -- orders --------------------------------------------------------------------------

    def place(
        self,
        now_ns: int,
        symbol: str,
        side: Side,
        price: int | None,
        lots: int,
        *,
        tif: str = "day",
        post_only: bool = False,
        account: str | None = None,
    ) -> Place:
        """A new order of `lots` lots: a limit order at `price` (kept inside the daily band), or
        a market order if `price` is None (`tif` `ioc` or `fok`)."""
        assert tif in TIFS, tif
        assert price is not None or (tif != "day" and not post_only), "a market order is IOC/FOK"
        instrument = self.instruments[symbol]
        low, high = self._bands[symbol]
        if price is not None:
            price = self.clamp(symbol, price)
        self._next_order += 1
        order_id = self._next_order
        quantity = lots * instrument.lot
        # a market order is kept at the band's edge it may reach, for `crosses_own`
        kept = price if price is not None else (high if side is BUY else low)
        self.open_orders[order_id] = OpenOrder(symbol, side, kept, quantity, now_ns)
        return Place(order_id, account or self.account, symbol, side, price, quantity, tif,
                     post_only)  # fmt: skip

    def cancel(self, order_id: int) -> Cancel:
        order = self.open_orders[order_id]
        return Cancel(order_id, self.account, order.symbol)

    def amend(self, order_id: int, *, price: int | None = None, lots: int | None = None) -> Amend:
        """Amend one of its open orders (kept inside the band); its own view changes at once
        (an amend refused because the order has just traded or gone is then corrected by the
        fill or done feedback that ended it)."""
        order = self.open_orders[order_id]
        instrument = self.instruments[order.symbol]
        if price is not None:
            price = self.clamp(order.symbol, price)
            order.price = price
        quantity = None if lots is None else lots * instrument.lot
        if quantity is not None:
            order.remaining = quantity
        return Amend(order_id, self.account, order.symbol, price, quantity)

    def crosses_own(self, symbol: str, side: Side, price: int | None) -> int | None:
        """The oldest of its own open orders that an order (`price` None: a market order)
        would trade with, or None: the agent's own self-trade prevention. Its view holds every
        order it has not heard the end of, so in network mode it errs on the safe side."""
        for order_id, order in self.open_orders.items():
            if order.symbol != symbol or order.side is side:
                continue
            if price is None or (price >= order.price if side is BUY else price <= order.price):
                return order_id
        return None

    def ticks(self, symbol: str, bps: float) -> int:
        """`bps` of the instrument's reference price in whole ticks (at least one if `bps` > 0):
        how agents' parameters, given in bps, become prices on every instrument alike."""
        known = self._ticks.get((symbol, bps))
        if known is None:
            instrument = self.instruments[symbol]
            exact = instrument.reference_price * bps / 10_000 / instrument.tick_size
            known = max(1, round(exact)) if bps > 0 else 0
            self._ticks[(symbol, bps)] = known
        return known

    def clamp(self, symbol: str, price: int) -> int:
        """`price` kept inside the instrument's band, as `place` keeps it."""
        low, high = self._bands[symbol]
        return low if price < low else high if price > high else price

    def reference(self, market: MarketView, symbol: str) -> int:
        """The mid if the book is two-sided, else the last price."""
        bid, ask = market.best_bid(symbol), market.best_ask(symbol)
        if bid is not None and ask is not None:
            tick = self.instruments[symbol].tick_size
            return (bid + ask) // (2 * tick) * tick
        return market.last_price(symbol)

    # -- feedback from the driver --------------------------------------------------------

    def on_fill(self, order_id: int, symbol: str, side: Side, quantity: int) -> None:
        """One of its orders traded `quantity` (even one it has already given up on)."""
        self.position[symbol] += quantity if side is BUY else -quantity
        order = self.open_orders.get(order_id)
        if order is None:
            return
        order.remaining -= quantity
        if order.remaining <= 0:
            del self.open_orders[order_id]

    def on_done(self, order_id: int) -> None:
        """The order left the book without (further) trading: cancelled, expired, refused."""
        self.open_orders.pop(order_id, None)

    def act(self, now_ns: int, market: MarketView) -> list[Intent]:
        raise NotImplementedError


class NoiseTrader(Agent):
    """Zero intelligence: a random side, a random passive price up to `spread_bps` from the mid
    (pulled toward the fundamental by `value_weight`) or a marketable order; in a call auction
    (with `auction_cross`) a price up to `spread_bps` either side of the fundamental; or a
    cancel of its oldest order. Keeps at most `open_orders_max` orders. Never
    trades with itself: an order that would meet one of its own resting orders is not sent,
    and the oldest such order is cancelled instead (`crosses_own`)."""

    kind = "noise"

    def __init__(self, **kwargs: Any) -> None:  # the keywords of Agent
        super().__init__(**kwargs)
        # the group's parameters read once, with each symbol's spread in ticks: act runs at
        # most arrivals of a run (about 70% of realistic's messages)
        p = self.group.parameters
        self._open_max = int(p["open_orders_max"])
        self._cancel_fraction = float(p["cancel_fraction"])
        self._lots_max = int(p["quantity_lots_max"])
        self._marketable = float(p["marketable_fraction"])
        self._auction_cross = bool(p["auction_cross"])
        self._weight = float(p["value_weight"])
        self._spreads = {symbol: self.ticks(symbol, float(p["spread_bps"]))
                         for symbol in self.symbols}  # fmt: skip

    def act(self, now_ns: int, market: MarketView) -> list[Intent]:
        open_orders = self.open_orders
        uniform = self.uniform
        if open_orders and (
            len(open_orders) >= self._open_max or uniform() < self._cancel_fraction
        ):
            return [self.cancel(next(iter(open_orders)))]
        symbol = self.pick_symbol()
        phase = market.phase(symbol)
        if phase is Phase.CLOSED or phase is Phase.HALTED:
            return []
        side = BUY if uniform() < 0.5 else SELL
        lots = 1 + self.below(self._lots_max)
        tick = self.instruments[symbol].tick_size
        continuous = phase is CONTINUOUS
        if continuous and uniform() < self._marketable:
            touch = market.best_ask(symbol) if side is BUY else market.best_bid(symbol)
            if touch is not None:
                return self._unless_own(now_ns, symbol, side, touch, lots, "ioc")
        spread = self._spreads[symbol]
        if not continuous and self._auction_cross:
            # an auction order at a price either side of the fundamental: buyers above it and
            # sellers below it overlap, so the uncross trades, as real openings do
            offset = (self.below(2 * spread + 1) - spread) * tick
            price = self.fundamentals.value(symbol, now_ns) + offset
            return self._unless_own(now_ns, symbol, side, price, lots, "day")
        offset = (1 + self.below(spread)) * tick
        middle = self.reference(market, symbol)
        weight = self._weight
        if weight:
            value = self.fundamentals.value(symbol, now_ns)
            middle = round((weight * value + (1 - weight) * middle) / tick) * tick
        price = middle - offset if side is BUY else middle + offset
        return self._unless_own(now_ns, symbol, side, price, lots, "day")

    def _unless_own(
        self, now_ns: int, symbol: str, side: Side, price: int, lots: int, tif: str
    ) -> list[Intent]:
        own = self.crosses_own(symbol, side, self.clamp(symbol, price))
        if own is not None:
            return [self.cancel(own)]
        return [self.place(now_ns, symbol, side, price, lots, tif=tif)]


class MarketMaker(Agent):
    """Quotes both sides around its fair value (the fundamental, which it is assumed to
    estimate), `half_spread_bps` away, skewed against its inventory, and never through the
    book; at each arrival it moves its quotes there by amending them (`amend` 1; 0: cancels
    and places anew), as post-only orders (`post_only` 1), which the venue rejects rather than
    trade on arrival. Past `inventory_limit_lots` it stops quoting the side that would add to
    its inventory."""

    kind = "market_maker"

    def __init__(self, **kwargs: Any) -> None:  # the keywords of Agent
        super().__init__(**kwargs)
        # the group's parameters read once (act runs at each of its arrivals)
        p = self.group.parameters
        symbol = self.symbols[0]
        instrument = self.instruments[symbol]
        self._limit = int(p["inventory_limit_lots"]) * instrument.lot
        self._skew_ticks = self.ticks(symbol, float(p["skew_bps"]))
        self._half = self.ticks(symbol, float(p["half_spread_bps"])) * instrument.tick_size
        self._lots = int(p["quote_lots"])
        self._amend = bool(p["amend"])
        self._post_only = bool(p["post_only"])

    def act(self, now_ns: int, market: MarketView) -> list[Intent]:
        symbol = self.symbols[0]
        phase = market.phase(symbol)
        if phase is not CONTINUOUS and phase is not Phase.CALL_AUCTION:
            return []
        instrument = self.instruments[symbol]
        tick, lot = instrument.tick_size, instrument.lot
        limit = self._limit
        inventory = self.position[symbol]
        skew = round(self._skew_ticks * inventory / limit) * tick if limit else 0
        fair = self.fundamentals.value(symbol, now_ns) - skew
        half = self._half
        lots = self._lots
        bid, ask = fair - half, fair + half
        # never cross the book: a quote that traded at once would leave that side empty
        best_bid, best_ask = market.best_bid(symbol), market.best_ask(symbol)
        if best_ask is not None:
            bid = min(bid, best_ask - tick)
        if best_bid is not None:
            ask = max(ask, best_bid + tick)
        wanted = {BUY: bid if inventory < limit else None,
                  SELL: ask if inventory > -limit else None}  # fmt: skip
        if not self._amend:
            intents: list[Intent] = [self.cancel(order_id) for order_id in list(self.open_orders)]
            for side, price in wanted.items():
                if price is not None:
                    intents.append(self._quote(now_ns, symbol, side, price, lots))
            return intents
        return self._move_quotes(now_ns, symbol, wanted, lots * lot)

    def _move_quotes(
        self, now_ns: int, symbol: str, wanted: dict[Side, int | None], quantity: int
    ) -> list[Intent]:
        """One quote a side, amended to its new price and size; extra or unwanted ones
        cancelled, missing ones placed."""
        intents: list[Intent] = []
        held: dict[Side, int] = {}
        for order_id, order in list(self.open_orders.items()):
            if order.side in held or wanted[order.side] is None:
                intents.append(self.cancel(order_id))
            else:
                held[order.side] = order_id
        lots = quantity // self.instruments[symbol].lot
        for side, price in wanted.items():
            if price is None:
                continue
            quote = held.get(side)
            if quote is None:
                intents.append(self._quote(now_ns, symbol, side, price, lots))
                continue
            order = self.open_orders[quote]
            if order.price != self.clamp(symbol, price) or order.remaining != quantity:
                intents.append(self.amend(quote, price=price, lots=lots))
        return intents

    def _quote(self, now_ns: int, symbol: str, side: Side, price: int, lots: int) -> Place:
        return self.place(now_ns, symbol, side, price, lots, post_only=self._post_only)

    def cancel(self, order_id: int) -> Cancel:
        # a quote being replaced is forgotten at once: its cancel's outcome does not matter
        order = self.open_orders.pop(order_id)
        return Cancel(order_id, self.account, order.symbol)


class ExecutionTrader(Agent):
    """Works a parent order through the continuous session: its side is drawn at its first
    arrival, then each arrival sends a child order of `child_lots`, a market order (a fraction
    `market_fraction` of them, IOC) or else a fill-or-kill limit order `limit_bps` through
    the touch (all of it or nothing); it stops in an instrument once `parent_lots` have
    traded there."""

    kind = "execution"

    def __init__(self, **kwargs: Any) -> None:  # the keywords of Agent
        super().__init__(**kwargs)
        self._side: Side | None = None

    def act(self, now_ns: int, market: MarketView) -> list[Intent]:
        symbol = self.pick_symbol()
        if market.phase(symbol) is not CONTINUOUS:
            return []
        p = self.group.parameters
        if self._side is None:
            self._side = BUY if self.uniform() < 0.5 else SELL
        side = self._side
        if abs(self.position[symbol]) >= int(p["parent_lots"]) * self.instruments[symbol].lot:
            return []
        lots = int(p["child_lots"])
        if self.uniform() < float(p["market_fraction"]):
            return [self.place(now_ns, symbol, side, None, lots, tif="ioc")]
        touch = market.best_ask(symbol) if side is BUY else market.best_bid(symbol)
        if touch is None:
            return []
        through = self.ticks(symbol, float(p["limit_bps"])) * self.instruments[symbol].tick_size
        price = touch + through if side is BUY else touch - through
        return [self.place(now_ns, symbol, side, price, lots, tif="fok")]


class MomentumTrader(Agent):
    """Buys after the price rose more than `threshold_bps` over `lookback_s`, sells after it
    fell, with marketable IOC orders; continuous trading only."""

    kind = "momentum"

    def __init__(self, **kwargs: Any) -> None:  # the keywords of Agent
        super().__init__(**kwargs)
        self._seen: dict[str, deque[tuple[int, int]]] = {s: deque() for s in self.symbols}

    def act(self, now_ns: int, market: MarketView) -> list[Intent]:
        symbol = self.pick_symbol()
        if market.phase(symbol) is not CONTINUOUS:
            return []
        p = self.group.parameters
        price = market.last_price(symbol)
        seen = self._seen[symbol]
        seen.append((now_ns, price))
        horizon = now_ns - round(float(p["lookback_s"]) * 1e9)
        while len(seen) > 1 and seen[1][0] <= horizon:
            seen.popleft()
        then_ns, then = seen[0]
        if then_ns > horizon or then <= 0:
            return []
        change_bps = (price - then) * 10_000 / then
        threshold = float(p["threshold_bps"])
        lots = int(p["quantity_lots"])
        if change_bps > threshold and (ask := market.best_ask(symbol)) is not None:
            return [self.place(now_ns, symbol, BUY, ask, lots, tif="ioc")]
        if change_bps < -threshold and (bid := market.best_bid(symbol)) is not None:
            return [self.place(now_ns, symbol, SELL, bid, lots, tif="ioc")]
        return []


class ValueTrader(Agent):
    """Trades toward the fundamental: buys when the ask is `threshold_bps` below it, sells when
    the bid is that far above it; continuous trading only."""

    kind = "value"

    def act(self, now_ns: int, market: MarketView) -> list[Intent]:
        symbol = self.pick_symbol()
        if market.phase(symbol) is not CONTINUOUS:
            return []
        p = self.group.parameters
        value = self.fundamentals.value(symbol, now_ns)
        margin = value * float(p["threshold_bps"]) / 10_000
        lots = int(p["quantity_lots"])
        ask, bid = market.best_ask(symbol), market.best_bid(symbol)
        if ask is not None and ask < value - margin:
            return [self.place(now_ns, symbol, BUY, ask, lots, tif="ioc")]
        if bid is not None and bid > value + margin:
            return [self.place(now_ns, symbol, SELL, bid, lots, tif="ioc")]
        return []


class Spoofer(Agent):
    """Layering: places `layers` large orders on one side, `distance_bps` and more away from
    the touch (so they are unlikely to trade), a small genuine order on the other side at its
    touch, and cancels the layers at its first arrival `cancel_after_ms` later."""

    kind = "spoofer"

    def __init__(self, **kwargs: Any) -> None:  # the keywords of Agent
        super().__init__(**kwargs)
        self._layers: list[int] = []
        self._layered_ns = 0

    def act(self, now_ns: int, market: MarketView) -> list[Intent]:
        p = self.group.parameters
        if self._layers:
            if now_ns - self._layered_ns < float(p["cancel_after_ms"]) * 1e6:
                return []
            intents: list[Intent] = [
                self.cancel(order_id) for order_id in self._layers if order_id in self.open_orders
            ]
            self._layers = []
            return intents
        symbol = self.pick_symbol()
        bid, ask = market.best_bid(symbol), market.best_ask(symbol)
        if market.phase(symbol) is not CONTINUOUS or bid is None or ask is None:
            return []
        tick = self.instruments[symbol].tick_size
        distance = self.ticks(symbol, float(p["distance_bps"])) * tick
        spoof_side = SELL if self.uniform() < 0.5 else BUY  # sell layers push the price down
        intents = []
        for layer in range(int(p["layers"])):
            price = (
                ask + distance + layer * tick
                if spoof_side is SELL
                else bid - distance - layer * tick
            )
            order = self.place(now_ns, symbol, spoof_side, price, int(p["layer_lots"]))
            self._layers.append(order.order_id)
            self.labels.append(
                Label(now_ns, self.agent_id, "spoofing", "layer", order.order_id, symbol)
            )
            intents.append(order)
        genuine_side, touch = (BUY, bid) if spoof_side is SELL else (SELL, ask)
        genuine = self.place(now_ns, symbol, genuine_side, touch, int(p["genuine_lots"]))
        self.labels.append(
            Label(now_ns, self.agent_id, "spoofing", "genuine", genuine.order_id, symbol)
        )
        intents.append(genuine)
        self._layered_ns = now_ns
        return intents


class WashTrader(Agent):
    """Trades with itself: sells from one of its two accounts (of one broker) at a price
    strictly inside the spread, then buys the same quantity at that price from the other,
    back to back, so the two orders meet each other and nobody else."""

    kind = "wash_trader"

    def act(self, now_ns: int, market: MarketView) -> list[Intent]:
        symbol = self.pick_symbol()
        if market.phase(symbol) is not CONTINUOUS:
            return []
        tick = self.instruments[symbol].tick_size
        bid, ask = market.best_bid(symbol), market.best_ask(symbol)
        low = bid + tick if bid is not None else None
        high = ask - tick if ask is not None else None
        if low is not None and high is not None:
            if low > high:
                return []
            price = low + self.below((high - low) // tick + 1) * tick
        else:
            price = market.last_price(symbol)
            if (low is not None and price < low) or (high is not None and price > high):
                return []
        first, second = (0, 1) if self.uniform() < 0.5 else (1, 0)
        lots = int(self.group.parameters["quantity_lots"])
        sell = self.place(now_ns, symbol, SELL, price, lots, account=self.accounts[first])
        buy = self.place(now_ns, symbol, BUY, price, lots, account=self.accounts[second], tif="ioc")
        if sell.price != price or buy.price != price:  # clamped to the band: would not meet
            return []
        self.labels.append(
            Label(now_ns, self.agent_id, "wash_trade", "sell_leg", sell.order_id, symbol)
        )
        self.labels.append(
            Label(now_ns, self.agent_id, "wash_trade", "buy_leg", buy.order_id, symbol)
        )
        return [sell, buy]


class MarkingClose(Agent):
    """Marks the close: active only from `window_s` before the closing auction to the close,
    it buys aggressively (`aggression_bps` through the ask, or above the last price in the
    auction) to lift the closing price."""

    kind = "marking_close"

    def arrival_window_ns(self, duration_ns: int, close_ns: int | None) -> tuple[int, int]:
        end = close_ns if close_ns is not None else duration_ns
        start = max(0, end - round(float(self.group.parameters["window_s"]) * 1e9))
        return start, duration_ns

    def act(self, now_ns: int, market: MarketView) -> list[Intent]:
        symbol = self.pick_symbol()
        phase = market.phase(symbol)
        if phase not in (CONTINUOUS, Phase.CLOSING_AUCTION):
            return []
        p = self.group.parameters
        tick = self.instruments[symbol].tick_size
        push = self.ticks(symbol, float(p["aggression_bps"])) * tick
        ask = market.best_ask(symbol)
        base = ask if ask is not None and phase is CONTINUOUS else market.last_price(symbol)
        order = self.place(now_ns, symbol, BUY, base + push, int(p["quantity_lots"]))
        self.labels.append(
            Label(now_ns, self.agent_id, "marking_close", "mark", order.order_id, symbol)
        )
        return [order]


AGENT_TYPES: Final[dict[str, type[Agent]]] = {
    cls.kind: cls
    for cls in (NoiseTrader, MarketMaker, MomentumTrader, ValueTrader, Spoofer, WashTrader,
                MarkingClose, ExecutionTrader)
}  # fmt: skip


def arrival_times_ns(
    rng: np.random.Generator, rate_per_s: float, start_ns: int, end_ns: int
) -> np.ndarray:
    """Poisson arrivals in [start_ns, end_ns): exponential gaps drawn in vectorised batches."""
    span_s = (end_ns - start_ns) / 1e9
    expected = rate_per_s * span_s
    chunks: list[np.ndarray] = []
    elapsed_s = 0.0
    while elapsed_s < span_s:
        size = int(expected + 6 * math.sqrt(expected) + 16)
        gaps = rng.exponential(1.0 / rate_per_s, size)
        times = elapsed_s + np.cumsum(gaps)
        chunks.append(times)
        elapsed_s = float(times[-1])
    seconds = np.concatenate(chunks) if chunks else np.empty(0)
    seconds = seconds[seconds < span_s]
    return start_ns + (seconds * 1e9).astype(np.int64)
