"""Seeded, realistic order flows for the benchmarks.

`make_flow`, the dense flow (`jinlian bench matching --flow dense`, the default): one A-share
style instrument (tick 1 fen, lot 100, 10% limits) with a deep book, then a mix of
passive limits near the touch, cancels, amends, marketable IOC limits and market orders, while
the mid price wanders. The generator keeps a shadow `BaselineBook` so that cancels and amends
target orders that are still live, as a real broker's would. Every order is valid for the
engine, and no order uses self-trade prevention, so the engine and the baseline build the same
book from the same flow. Same seed, same flow, on every machine (`random.Random(seed)`).

`make_sparse_flow` (`--flow sparse-deep`, `--flow sparse-shallow`): a high-priced share (tick
1 fen on a price of 1,800 CNY), where most passive orders open a new price level and most
cancels and fills close one. Its resting orders spread over a band of ticks four times as wide
as the orders resting on a side, so about one tick in four holds an order. The deep variant
rests 20,000 orders first (a band of 40,000 ticks a side), the shallow one 500.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from exchange.bench.baseline import BaselineBook, BaselineMessage
from matching.commands import AddInstrument, AmendOrder, CancelOrder, Command, PlaceOrder, SetPhase
from matching.types import OrderKind, Phase, Side, TimeInForce

SYMBOL = "600000.SH"
LOT = 100
REFERENCE_PRICE = 10_000  # 100.00 CNY in fen
ACCOUNTS = tuple(f"A{number:04d}" for number in range(1, 201))


@dataclass(slots=True)
class Flow:
    setup: list[Command] = field(default_factory=list)  # instrument, phase, the deep book
    commands: list[Command] = field(default_factory=list)  # the timed messages
    baseline_setup: list[BaselineMessage] = field(default_factory=list)
    baseline: list[BaselineMessage] = field(default_factory=list)
    rested: int = 0  # timed placements that rested (after any fills)
    opened: int = 0  # ... of which opened a new price level

    @property
    def new_level_share(self) -> float:
        """The share of the timed placements that rested and opened a new price level."""
        return self.opened / self.rested if self.rested else 0.0


class _Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.shadow = BaselineBook()
        self.next_id = 1
        self.mid = REFERENCE_PRICE
        self.passive: list[int] = []  # ids that may still rest, for cancels and amends
        self.rested = 0
        self.opened = 0

    def place(
        self, side: Side, price: int | None, quantity: int, tif: TimeInForce
    ) -> tuple[Command, BaselineMessage]:
        order_id = self.next_id
        self.next_id += 1
        kind = OrderKind.LIMIT if price is not None else OrderKind.MARKET
        command = PlaceOrder(
            order_id=order_id,
            symbol=SYMBOL,
            account=self.rng.choice(ACCOUNTS),
            side=side,
            kind=kind,
            price=price,
            quantity=quantity,
            tif=tif,
        )
        message: BaselineMessage = (
            "place",
            order_id,
            side is Side.BUY,
            price,
            quantity,
            tif is TimeInForce.IOC or price is None,
        )
        self.shadow.place(*message[1:])  # type: ignore[arg-type]
        if price is not None and tif is not TimeInForce.IOC:
            self.passive.append(order_id)
            if order_id in self.shadow.live:
                self.rested += 1
                book = self.shadow.bids if side is Side.BUY else self.shadow.asks
                self.opened += len(book[-price if side is Side.BUY else price]) == 1
        return command, message

    def passive_limit(self, offset_max: int) -> tuple[Command, BaselineMessage]:
        rng = self.rng
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        offset = 1 + min(int(rng.expovariate(1 / 6)), offset_max)
        price = self.mid - offset if side is Side.BUY else self.mid + offset
        tif = TimeInForce.GTC if rng.random() < 0.1 else TimeInForce.DAY
        return self.place(side, price, LOT * rng.randint(1, 10), tif)

    def live_id(self) -> int | None:
        """A random order that still rests, dropping dead ones met on the way."""
        while self.passive:
            position = self.rng.randrange(len(self.passive))
            order_id = self.passive[position]
            if order_id in self.shadow.live:
                return order_id
            self.passive[position] = self.passive[-1]
            self.passive.pop()
        return None

    def step(self) -> tuple[Command, BaselineMessage]:
        rng = self.rng
        if rng.random() < 0.02:
            self.mid += rng.choice((-1, 1))
        draw = rng.random()
        if draw < 0.25:
            order_id = self.live_id()
            if order_id is not None:
                self.shadow.cancel(order_id)
                return CancelOrder(order_id=order_id, symbol=SYMBOL), ("cancel", order_id)
        elif draw < 0.33:
            order_id = self.live_id()
            if order_id is not None:
                return self.amend(order_id)
        elif draw < 0.43:
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            price = self.mid + 3 if side is Side.BUY else self.mid - 3
            return self.place(side, price, LOT * rng.randint(1, 5), TimeInForce.IOC)
        elif draw < 0.48:
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            return self.place(side, None, LOT * rng.randint(1, 5), TimeInForce.IOC)
        return self.passive_limit(40)

    def amend(self, order_id: int) -> tuple[Command, BaselineMessage]:
        order = self.shadow.live[order_id]
        price, quantity = order[2], order[3]
        if self.rng.random() < 0.5 and quantity > LOT:
            quantity -= LOT  # keeps priority
        else:
            away = 1 if order[1] else -1  # buys move down, sells up: stay passive mostly
            price = price - away * self.rng.randint(-2, 3)
            if price == order[2]:
                quantity += LOT
        self.shadow.amend(order_id, price, quantity)
        command = AmendOrder(order_id=order_id, symbol=SYMBOL, price=price, quantity=quantity)
        return command, ("amend", order_id, price, quantity)


def make_flow(seed: int, messages: int, depth_orders: int = 20_000) -> Flow:
    """`depth_orders` passive orders to build the book, then `messages` timed messages."""
    generator = _Generator(seed)
    flow = Flow()
    flow.setup.append(
        AddInstrument(
            symbol=SYMBOL, tick_size=1, lot=LOT, reference_price=REFERENCE_PRICE, price_limit_pct=10
        )
    )
    flow.setup.append(SetPhase(symbol=SYMBOL, phase=Phase.CONTINUOUS))
    for _ in range(depth_orders):
        command, message = generator.passive_limit(200)
        flow.setup.append(command)
        flow.baseline_setup.append(message)
    _timed(generator, flow, messages)
    return flow


def _timed(generator: _Generator, flow: Flow, messages: int) -> None:
    generator.rested = generator.opened = 0
    for _ in range(messages):
        command, message = generator.step()
        flow.commands.append(command)
        flow.baseline.append(message)
    flow.rested, flow.opened = generator.rested, generator.opened


SPARSE_REFERENCE_PRICE = 180_000  # 1,800.00 CNY in fen, tick 1 fen: a high-priced share
SPARSE_LIMIT_PCT = 30  # limits [126,000, 234,000]: room for the deep book's band and drift
SPARSE_DEEP_ORDERS = 20_000
SPARSE_SHALLOW_ORDERS = 500


class _SparseGenerator(_Generator):
    """Orders spread thin. The book built first is uniform over a band of `band_ticks` a side
    (one tick in four holds an order); timed passive orders land near the touch (exponential
    offsets, mean `near_ticks`) and most cancels take back recent orders, as quoting firms do,
    at a rate that keeps the book near its first size."""

    def __init__(self, seed: int, band_ticks: int, resting_target: int) -> None:
        super().__init__(seed)
        self.mid = SPARSE_REFERENCE_PRICE
        self.band_ticks = band_ticks
        self.near_ticks = min(400, band_ticks // 4)
        self.resting_target = max(resting_target, 100)
        self.lower = SPARSE_REFERENCE_PRICE * (100 - SPARSE_LIMIT_PCT) // 100
        self.upper = SPARSE_REFERENCE_PRICE * (100 + SPARSE_LIMIT_PCT) // 100

    def band_limit(self) -> tuple[Command, BaselineMessage]:
        return self.limit_at(self.rng.randint(1, self.band_ticks))

    def passive_limit(self, offset_max: int) -> tuple[Command, BaselineMessage]:
        offset = 1 + min(int(self.rng.expovariate(1 / self.near_ticks)), offset_max - 1)
        return self.limit_at(offset)

    def limit_at(self, offset: int) -> tuple[Command, BaselineMessage]:
        rng = self.rng
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        price = self.mid - offset if side is Side.BUY else self.mid + offset
        price = min(max(price, self.lower), self.upper)
        tif = TimeInForce.GTC if rng.random() < 0.1 else TimeInForce.DAY
        return self.place(side, price, LOT * rng.randint(1, 10), tif)

    def recent_id(self) -> int | None:
        """A live order, most likely one of the last hundred or so placed."""
        passive, live = self.passive, self.shadow.live
        while passive:
            back = min(int(self.rng.expovariate(1 / 100)), len(passive) - 1)
            position = len(passive) - 1 - back
            order_id = passive[position]
            if order_id in live:
                return order_id
            del passive[position]
        return None

    def follow_touch(self) -> None:
        """Keep the mid between the best bid and the best ask, so passive orders stay passive."""
        bids, asks = self.shadow.bids, self.shadow.asks
        if bids and asks:
            self.mid = (-bids.peekitem(0)[0] + asks.peekitem(0)[0]) // 2

    def step(self) -> tuple[Command, BaselineMessage]:
        rng = self.rng
        self.follow_touch()
        cancel_share = min(0.6, 0.4 * (len(self.shadow.live) / self.resting_target) ** 4)
        draw = rng.random()
        if draw < cancel_share:
            order_id = self.recent_id()
            if order_id is not None:
                self.shadow.cancel(order_id)
                return CancelOrder(order_id=order_id, symbol=SYMBOL), ("cancel", order_id)
        elif draw < cancel_share + 0.10:
            order_id = self.recent_id()
            if order_id is not None:
                return self.amend(order_id)
        elif draw < cancel_share + 0.18:
            return self.sweep()
        elif draw < cancel_share + 0.20:
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            return self.place(side, None, LOT * rng.randint(1, 5), TimeInForce.IOC)
        return self.passive_limit(self.band_ticks)

    def sweep(self) -> tuple[Command, BaselineMessage]:
        """A marketable IOC limit up to 40 ticks through the opposite best price."""
        rng = self.rng
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        opposite = self.shadow.asks if side is Side.BUY else self.shadow.bids
        if not opposite:
            return self.passive_limit(self.band_ticks)
        best = abs(opposite.peekitem(0)[0])
        through = rng.randint(0, 40)
        price = best + through if side is Side.BUY else best - through
        price = min(max(price, self.lower), self.upper)
        return self.place(side, price, LOT * rng.randint(1, 5), TimeInForce.IOC)

    def amend(self, order_id: int) -> tuple[Command, BaselineMessage]:
        """A new price up to 100 ticks away (a new level, mostly), or a smaller quantity."""
        order = self.shadow.live[order_id]
        price, quantity = order[2], order[3]
        if self.rng.random() < 0.2 and quantity > LOT:
            quantity -= LOT  # keeps priority
        else:
            price = min(
                max(price + self.rng.choice((-1, 1)) * self.rng.randint(1, 100), self.lower),
                self.upper,
            )
            if price == order[2]:
                quantity += LOT
        self.shadow.amend(order_id, price, quantity)
        command = AmendOrder(order_id=order_id, symbol=SYMBOL, price=price, quantity=quantity)
        return command, ("amend", order_id, price, quantity)


def make_sparse_flow(seed: int, messages: int, depth_orders: int = SPARSE_DEEP_ORDERS) -> Flow:
    """`depth_orders` passive orders over a band of `2 * depth_orders` ticks a side, then
    `messages` timed messages in which most placements open a price level."""
    generator = _SparseGenerator(seed, 2 * max(depth_orders, 1), depth_orders)
    flow = Flow()
    flow.setup.append(
        AddInstrument(
            symbol=SYMBOL,
            tick_size=1,
            lot=LOT,
            reference_price=SPARSE_REFERENCE_PRICE,
            price_limit_pct=SPARSE_LIMIT_PCT,
        )
    )
    flow.setup.append(SetPhase(symbol=SYMBOL, phase=Phase.CONTINUOUS))
    for _ in range(depth_orders):
        command, message = generator.band_limit()
        flow.setup.append(command)
        flow.baseline_setup.append(message)
    _timed(generator, flow, messages)
    return flow


FLOWS: dict[str, tuple[Callable[[int, int, int], Flow], int]] = {
    "dense": (make_flow, 20_000),
    "sparse-deep": (make_sparse_flow, SPARSE_DEEP_ORDERS),
    "sparse-shallow": (make_sparse_flow, SPARSE_SHALLOW_ORDERS),
}
"""The benchmark flows by name: (maker, resting orders it builds first by default)."""


def named_flow(name: str, seed: int, messages: int, depth_orders: int | None = None) -> Flow:
    """The flow called `name` (a key of FLOWS); `depth_orders` None takes its default."""
    try:
        maker, default_depth = FLOWS[name]
    except KeyError:
        raise ValueError(f"unknown flow {name!r}: one of {', '.join(FLOWS)}") from None
    return maker(seed, messages, default_depth if depth_orders is None else depth_orders)
