"""A short seeded trading session on a real chain, with planted abuse and its labels: the input
of the analysis tests and of the notebooks' test.

`generate_session(tmp_path, seed)` builds a consortium with `tests.chain.Chain` (real signed,
certified blocks, venue indexer) whose blocks are written identically to every voting member's
store, one block per second of a trading day:

- a market maker (account 10001) quotes both sides of 600000.SH (gross) and 000001.SZ
  (cash_net) around a random walk, renewing its quotes every block;
- noise traders take the market maker's quotes (20001 buys, 40001 sells: one side each, so
  they never trade with themselves);
- a wash trader (broker3: 30001 sells, 30002 buys the same quantity at the same price, inside
  the spread) twice;
- a spoofer (20002) layers three large bids behind the touch, sells a little inside the spread,
  is filled, and cancels the bids a second later (10002 is the buyer that fills it);
- a closer (40002) sweeps the ask through the last seconds before the close, moving the price;
- at the end the operator settles the cash_net cycle and ends the day (resting orders expire).

The labels are written to `labels.parquet` beside the consortium with the columns the
simulator is expected to write: agent, kind, account, order_id, trade_id, label.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from exchange.venue import wire
from exchange.venue.types import EndDay
from matching.types import Side
from settlement.commands import SettleCycle
from tests.chain import SYMBOLS, TIME_NS_START, Chain

SECOND_NS = 1_000_000_000
GROSS, NET = SYMBOLS[0], SYMBOLS[1]  # 600000.SH (gross), 000001.SZ (cash_net)
MAKER, NOISE_BUYER, NOISE_SELLER, SPOOF_TAKER = "10001", "20001", "40001", "10002"
SPOOFER, WASH_SELLER, WASH_BUYER, CLOSER = "20002", "30001", "30002", "40002"
REPLICAS = ("depository1", "regulator1", "broker-node1")


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    consortium: Path  # the consortium directory: one node directory per member
    node: Path  # the member node the notebooks read (bank1)
    labels: Path  # labels.parquet


@dataclass(kw_only=True)
class _Generator:
    chain: Chain
    rng: random.Random
    mids: dict[str, int] = field(default_factory=lambda: {GROSS: 1000, NET: 1200})
    next_order: int = 1
    quotes: list[tuple[int, str]] = field(default_factory=list)  # the maker's resting orders
    labels: list[dict[str, Any]] = field(default_factory=list)
    second: int = 0

    def order(self, account: str, side: Side, price: int, quantity: int, symbol: str = GROSS
              ) -> tuple[int, dict[str, Any]]:  # fmt: skip
        order_id = self.next_order
        self.next_order += 1
        return order_id, self.chain.place(order_id, account, side, price, quantity, symbol)

    def block(self, commands: list[dict[str, Any]]) -> list[tuple[int, int, int]]:
        """Add a block one second after the last; its trades (trade id, buy, sell order)."""
        self.second += 1
        self.chain.add_block(commands, time_ns=TIME_NS_START + self.second * SECOND_NS)
        rows = self.chain.store.read(
            "SELECT trade_id, buy_order_id, sell_order_id FROM trades WHERE height = ?",
            (self.chain.height,),
        )
        return [(int(t), int(b), int(s)) for t, b, s in rows]

    def requote(self, half_spread: int = 2) -> list[dict[str, Any]]:
        """Cancel the maker's quotes and quote both symbols around their mids."""
        commands = [self.chain.cancel(order_id, MAKER, symbol) for order_id, symbol in self.quotes]
        self.quotes = []
        for symbol, mid in self.mids.items():
            for side, price in ((Side.BUY, mid - half_spread), (Side.SELL, mid + half_spread)):
                quantity = 100 * self.rng.randint(4, 8)
                order_id, command = self.order(MAKER, side, price, quantity, symbol)
                self.quotes.append((order_id, symbol))
                commands.append(command)
        return commands

    def noise(self, symbol: str = GROSS) -> dict[str, Any]:
        """A noise trader takes the maker's quote on a random side (100 to 300 shares)."""
        side = self.rng.choice((Side.BUY, Side.SELL))
        price = self.mids[symbol] + (2 if side is Side.BUY else -2)
        account = NOISE_BUYER if side is Side.BUY else NOISE_SELLER
        return self.order(account, side, price, 100 * self.rng.randint(1, 3), symbol)[1]

    def label(self, agent: str, kind: str, account: str, label: str, *, order_id: int | None = None,
              trade_id: int | None = None) -> None:  # fmt: skip
        self.labels.append(
            {"agent": agent, "kind": kind, "account": account, "order_id": order_id,
             "trade_id": trade_id, "label": label}
        )  # fmt: skip

    def walk(self) -> None:
        for symbol in self.mids:
            self.mids[symbol] += self.rng.choice((-1, 0, 0, 1))

    def normal_block(self) -> None:
        self.walk()
        commands = self.requote()
        commands += [self.noise() for _ in range(self.rng.randint(0, 2))]
        if self.rng.random() < 0.4:
            commands.append(self.noise(NET))
        self.block(commands)

    def wash(self, number: int) -> None:
        self.walk()
        mid = self.mids[GROSS]
        quantity = 100 * self.rng.randint(3, 6)
        sell_side, buy_side = (WASH_SELLER, WASH_BUYER) if number % 2 else (WASH_BUYER, WASH_SELLER)
        sell_id, sell = self.order(sell_side, Side.SELL, mid, quantity)
        buy_id, buy = self.order(buy_side, Side.BUY, mid, quantity)
        trades = self.block([*self.requote(), sell, buy])
        for trade_id, buy_order, sell_order in trades:
            if (buy_order, sell_order) == (buy_id, sell_id):
                self.label(f"wash-{number}", "wash_trader", buy_side, "wash_trade",
                           trade_id=trade_id)  # fmt: skip

    def spoof(self) -> None:
        self.walk()
        mid = self.mids[GROSS]
        commands = self.requote()
        layers = []
        for ticks in (4, 5, 6):
            order_id, command = self.order(SPOOFER, Side.BUY, mid - ticks, 6000)
            layers.append(order_id)
            commands.append(command)
        _, small = self.order(SPOOFER, Side.SELL, mid + 1, 200)
        _, hit = self.order(SPOOF_TAKER, Side.BUY, mid + 1, 200)
        self.block([*commands, small, hit])
        self.block([*self.requote(), *(self.chain.cancel(o, SPOOFER) for o in layers)])
        for order_id in layers:
            self.label("spoofer-1", "spoofer", SPOOFER, "spoofing", order_id=order_id)

    def mark_close(self, blocks: int) -> None:
        for _ in range(blocks):
            commands = self.requote()
            ask = self.mids[GROSS] + 2
            order_id, sweep = self.order(CLOSER, Side.BUY, ask, 400)
            commands.append(sweep)
            if self.rng.random() < 0.5:
                commands.append(self.noise())
            for trade_id, buy_order, _ in self.block(commands):
                if buy_order == order_id:
                    self.label("closer-1", "closer", CLOSER, "marking_the_close",
                               trade_id=trade_id)  # fmt: skip
            self.mids[GROSS] += 3


def generate_session(tmp_path: Path, seed: int = 1, blocks: int = 120) -> Session:
    """A seeded session of about `blocks` one-second blocks with planted abuse; see the module
    docstring. Deterministic for a seed except for the keys `init_consortium` generates."""
    chain = Chain.create(tmp_path, brokers=4, replicas=REPLICAS)
    generator = _Generator(chain=chain, rng=random.Random(seed))
    generator.block(chain.opening())
    plan = {blocks // 5: lambda: generator.wash(1), blocks // 3: generator.spoof,
            blocks // 2: lambda: generator.wash(2)}  # fmt: skip
    closing = 8
    for index in range(blocks - closing):
        action = plan.get(index)
        (action or generator.normal_block)()
    generator.mark_close(closing)
    operator = chain.genesis.exchange.name
    generator.block(
        [
            wire.venue_command_to_dict(SettleCycle(command_id=1_000_000, actor=operator)),
            wire.venue_command_to_dict(EndDay(day=20260105)),
        ]
    )
    chain.close()
    labels = tmp_path / "labels.parquet"
    frame = pd.DataFrame.from_records(
        generator.labels, columns=["agent", "kind", "account", "order_id", "trade_id", "label"]
    )
    frame.astype({"order_id": "Int64", "trade_id": "Int64"}).to_parquet(labels, index=False)
    return Session(consortium=chain.directory, node=chain.node, labels=labels)
