"""A seeded, realistic order flow for the benchmarks.

One A-share style instrument (tick 1 fen, lot 100, 10% limits) with a deep book, then a mix of
passive limits near the touch, cancels, amends, marketable IOC limits and market orders, while
the mid price wanders. The generator keeps a shadow `BaselineBook` so that cancels and amends
target orders that are still live, as a real broker's would. Every order is valid for the
engine, and no order uses self-trade prevention, so the engine and the baseline build the same
book from the same flow. Same seed, same flow, on every machine (`random.Random(seed)`).
"""

from __future__ import annotations

import random
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


class _Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.shadow = BaselineBook()
        self.next_id = 1
        self.mid = REFERENCE_PRICE
        self.passive: list[int] = []  # ids that may still rest, for cancels and amends

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
    for _ in range(messages):
        command, message = generator.step()
        flow.commands.append(command)
        flow.baseline.append(message)
    return flow
