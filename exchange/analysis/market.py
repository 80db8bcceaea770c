"""Market quality from the ledger: bars, VWAP, the book, spreads, volatility, concentration.

Prices are in ticks and quantities in shares, as in the ledger; ratios are floats. Time is the
block's `time_ns` (set by the sequencer): every event of one block has the same time, and its
`event_idx` orders it within the block.

The book is rebuilt from the order events and trades (`rebuild_book`): each change of an
order's open quantity is exactly one trade, cancel, reduce, amend or expiry event, so folding
them in ledger order gives the resting orders after every event. A test compares the result
with the matching engine's own book after re-execution. An incoming order that crosses is
accepted first and its trades follow, so the book is crossed for those few events; such
quotes are marked `crossed` and left out of the spreads.

Spreads (Bessembinder's definitions; bps of the midpoint `m`):

- quoted: `ask - bid`, time-weighted over the continuous book;
- effective: `2 * d * (p - m0) / m0`, `d` +1 when the buyer was the aggressor and -1 when the
  seller was, `m0` the midpoint just before the aggressive order arrived;
- realized: `2 * d * (p - m1) / m0`, `m1` the midpoint `horizon_ns` after the trade;
  effective minus realized is the price impact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd
from sortedcontainers import SortedDict

from exchange.analysis.tables import _order_changes

QUOTE_COLUMNS: Final = [
    "height", "event_idx", "time_ns", "symbol", "bid", "bid_size", "ask", "ask_size",
    "bid_depth", "ask_depth", "mid", "crossed",
]  # fmt: skip


def ohlcv(trades: pd.DataFrame, freq: str = "1min") -> pd.DataFrame:
    """Bars per symbol and period `freq` (a pandas offset alias): open, high, low, close,
    volume (shares), notional, trade count and VWAP. Periods without trades are left out."""
    frame = trades.set_index("time").sort_index()
    grouped = frame.groupby(["symbol", pd.Grouper(freq=freq)])
    bars = grouped.agg(
        open=("price", "first"),
        high=("price", "max"),
        low=("price", "min"),
        close=("price", "last"),
        volume=("quantity", "sum"),
        notional=("notional", "sum"),
        trades=("trade_id", "count"),
    )
    bars = bars[bars["trades"] > 0].copy()
    bars["vwap"] = bars["notional"] / bars["volume"]
    return bars.reset_index()


def vwap(trades: pd.DataFrame, by: Sequence[str] = ("symbol",)) -> pd.Series:
    """Volume-weighted average price, sum(price x quantity) / sum(quantity), per group."""
    grouped = trades.groupby(list(by))
    return (grouped["notional"].sum() / grouped["quantity"].sum()).rename("vwap")


def realized_volatility(bars: pd.DataFrame) -> pd.DataFrame:
    """Per symbol, from consecutive bar closes: the number of log returns and the realized
    volatility sqrt(sum r^2) over the whole sample (not annualised)."""
    records = []
    for symbol, group in bars.sort_values("time").groupby("symbol"):
        returns = np.diff(np.log(group["close"].to_numpy(dtype=float)))
        records.append(
            {"symbol": symbol, "returns": len(returns),
             "realized_volatility": float(math.sqrt(float(np.sum(returns**2))))}
        )  # fmt: skip
    return pd.DataFrame.from_records(records, columns=["symbol", "returns", "realized_volatility"])


def concentration(trades: pd.DataFrame, by: str = "account") -> pd.DataFrame:
    """Participant concentration per symbol: each participant's share of traded volume (both
    sides counted, so shares sum to 1) and the Herfindahl-Hirschman index, sum of squared
    shares x 10,000 (10,000: one participant; 10,000 / n: n equal ones). `by` is `account` or
    `broker`. Returns symbol, participants, hhi, top (largest participant), top_share."""
    if by not in ("account", "broker"):
        raise ValueError(f"by {by!r} is not 'account' or 'broker'")
    sides = pd.concat(
        [
            trades[["symbol", f"buy_{by}", "quantity"]].set_axis(["symbol", "who", "quantity"],
                                                                  axis=1),
            trades[["symbol", f"sell_{by}", "quantity"]].set_axis(["symbol", "who", "quantity"],
                                                                   axis=1),
        ]
    )  # fmt: skip
    volume = sides.groupby(["symbol", "who"])["quantity"].sum()
    records = []
    for symbol, group in volume.groupby(level="symbol"):
        shares = group / group.sum()
        top = shares.droplevel("symbol").idxmax()
        records.append(
            {"symbol": symbol, "participants": len(shares),
             "hhi": float((shares**2).sum() * 10_000), "top": top,
             "top_share": float(shares.max())}
        )  # fmt: skip
    return pd.DataFrame.from_records(
        records, columns=["symbol", "participants", "hhi", "top", "top_share"]
    )


@dataclass(kw_only=True)
class _Side:
    levels: SortedDict[int, int] = field(default_factory=SortedDict)

    def add(self, price: int, quantity: int) -> None:
        if not quantity:
            return
        left = self.levels.get(price, 0) + quantity
        if left:
            self.levels[price] = left
        else:
            del self.levels[price]


@dataclass(kw_only=True)
class _Book:
    bids: _Side = field(default_factory=_Side)
    asks: _Side = field(default_factory=_Side)
    orders: dict[int, tuple[str, int, int]] = field(default_factory=dict)  # side, price, open

    def change(self, order_id: int, open_delta: int, price: int | None = None) -> None:
        side, old_price, left = self.orders[order_id]
        book = self.bids if side == "buy" else self.asks
        book.add(old_price, -left)
        new_price = old_price if price is None else price
        left = left + open_delta if price is None else open_delta
        if left > 0:
            self.orders[order_id] = (side, new_price, left)
            book.add(new_price, left)
        else:
            del self.orders[order_id]

    def quote(self, depth_ticks: int) -> tuple[Any, ...]:
        bid = self.bids.levels.peekitem(-1) if self.bids.levels else (None, 0)
        ask = self.asks.levels.peekitem(0) if self.asks.levels else (None, 0)
        bid_depth = (
            sum(self.bids.levels[p] for p in self.bids.levels.irange(bid[0] - depth_ticks))
            if bid[0] is not None else 0
        )  # fmt: skip
        ask_depth = (
            sum(self.asks.levels[p] for p in self.asks.levels.irange(None, ask[0] + depth_ticks))
            if ask[0] is not None else 0
        )  # fmt: skip
        return bid[0], bid[1], ask[0], ask[1], bid_depth, ask_depth


@dataclass(frozen=True, slots=True, kw_only=True)
class BookHistory:
    """The rebuilt book: `quotes` (one row per order event or trade, the touch and the depth
    within `depth_ticks` after it), `arrival` (order id -> the best bid and ask, None when
    a side is empty, just before the order was accepted or last amended) and `resting` (symbol ->
    {order id: (side, price, open quantity)} at the tip)."""

    quotes: pd.DataFrame
    arrival: dict[int, tuple[int | None, int | None]]
    resting: dict[str, dict[int, tuple[str, int, int]]]


def rebuild_book(orders: pd.DataFrame, trades: pd.DataFrame, depth_ticks: int = 10) -> BookHistory:
    """Fold the order events and trades into each symbol's book. O(events x log levels)."""
    books: dict[str, _Book] = {}
    quotes: list[tuple[Any, ...]] = []
    arrival: dict[int, tuple[int | None, int | None]] = {}
    changes = _order_changes(orders, trades)
    row: Any
    for row in changes.itertuples(index=False):
        book = books.get(row.symbol)
        if book is None:
            book = books[row.symbol] = _Book()
        event, order_id = row.event, row.order_id
        if event in ("accepted", "amended"):
            bid, _, ask, _, _, _ = book.quote(0)
            arrival[order_id] = (bid, ask)
        if event == "accepted":
            if pd.isna(row.price):  # a market order never rests
                continue
            book.orders[order_id] = (row.side, int(row.price), 0)
            book.change(order_id, int(row.quantity))
        elif order_id not in book.orders:
            continue  # a market order's fills and remainder; refused commands
        elif event == "amended":
            book.change(order_id, int(row.quantity), int(row.price))
        elif event in ("trade", "cancelled", "reduced", "expired"):
            book.change(order_id, -int(row.quantity))
        else:
            continue
        bid, bid_size, ask, ask_size, bid_depth, ask_depth = book.quote(depth_ticks)
        crossed = bid is not None and ask is not None and bid >= ask
        quotes.append((row.height, row.event_idx, row.time_ns, row.symbol, bid, bid_size, ask,
                       ask_size, bid_depth, ask_depth, _mid(bid, ask), crossed))  # fmt: skip
    frame = pd.DataFrame(quotes, columns=QUOTE_COLUMNS)
    frame = frame.astype({"bid": "Int64", "ask": "Int64"})
    return BookHistory(
        quotes=frame,
        arrival=arrival,
        resting={symbol: dict(book.orders) for symbol, book in books.items()},
    )


def _mid(bid: int | None, ask: int | None) -> float:
    if bid is None or ask is None or bid >= ask:
        return math.nan
    return (bid + ask) / 2


def quoted_spreads(quotes: pd.DataFrame) -> pd.DataFrame:
    """Per symbol: the time-weighted quoted spread in ticks and in bps of the midpoint over
    the two-sided, uncrossed book (each quote weighs until the symbol's next quote; the last
    one weighs nothing), its plain average over quotes, and the average depth at the touch."""
    records = []
    for symbol, unsorted in quotes.groupby("symbol"):
        group = unsorted.sort_values(["height", "event_idx"])
        weight = group["time_ns"].shift(-1).fillna(group["time_ns"]) - group["time_ns"]
        good = group["mid"].notna()
        spread = (group["ask"] - group["bid"]).astype(float)
        bps = spread / group["mid"] * 10_000
        total = float(weight[good].sum())
        records.append(
            {
                "symbol": symbol,
                "quotes": int(good.sum()),
                "spread_ticks_tw": float((spread[good] * weight[good]).sum() / total)
                if total
                else math.nan,
                "spread_bps_tw": float((bps[good] * weight[good]).sum() / total)
                if total
                else math.nan,
                "spread_ticks_mean": float(spread[good].mean()),
                "touch_depth_mean": float(
                    ((group["bid_size"] + group["ask_size"]) / 2)[good].mean()
                ),
            }
        )
    return pd.DataFrame.from_records(records)


def trade_spreads(
    trades: pd.DataFrame, history: BookHistory, horizon_ns: int = 60_000_000_000
) -> pd.DataFrame:
    """One row per trade with an aggressor: `mid_before` (the midpoint when the aggressive
    order arrived), `mid_after` (the last uncrossed midpoint at most `horizon_ns` after the
    trade), and the effective and realized spreads and price impact in bps. Auction trades
    (no aggressor) and trades without a two-sided book before them are left out."""
    frame = trades[trades["aggressor"].isin(["buy", "sell"])].copy()
    direction = np.where(frame["aggressor"] == "buy", 1, -1)
    aggressor_order = np.where(
        frame["aggressor"] == "buy", frame["buy_order_id"], frame["sell_order_id"]
    )
    frame["direction"] = direction
    frame["mid_before"] = [
        _mid(*history.arrival.get(int(o), (None, None))) for o in aggressor_order
    ]
    quotes = history.quotes[history.quotes["mid"].notna()]
    frame["target_ns"] = frame["time_ns"] + horizon_ns
    frame = frame.sort_values("target_ns")
    after = pd.merge_asof(
        frame[["trade_id", "symbol", "target_ns"]],
        quotes[["symbol", "time_ns", "mid"]].sort_values("time_ns"),
        left_on="target_ns",
        right_on="time_ns",
        by="symbol",
        direction="backward",
    ).set_index("trade_id")["mid"]
    frame["mid_after"] = frame["trade_id"].map(after)
    frame = frame.sort_values("trade_id").dropna(subset=["mid_before"])
    price = frame["price"].astype(float)
    frame["effective_bps"] = (
        2 * frame["direction"] * (price - frame["mid_before"]) / frame["mid_before"] * 10_000
    )
    frame["realized_bps"] = (
        2 * frame["direction"] * (price - frame["mid_after"]) / frame["mid_before"] * 10_000
    )
    frame["impact_bps"] = frame["effective_bps"] - frame["realized_bps"]
    columns = ["trade_id", "symbol", "time_ns", "price", "quantity", "aggressor", "mid_before",
               "mid_after", "effective_bps", "realized_bps", "impact_bps"]  # fmt: skip
    return frame[columns].reset_index(drop=True)


def spread_summary(spreads: pd.DataFrame) -> pd.DataFrame:
    """Per symbol: volume-weighted effective, realized spreads and price impact in bps."""
    records = []
    for symbol, group in spreads.groupby("symbol"):
        weight = group["quantity"].astype(float)
        record: dict[str, Any] = {"symbol": symbol, "trades": len(group)}
        for column in ("effective_bps", "realized_bps", "impact_bps"):
            valid = group[column].notna()
            record[column] = (
                float((group[column][valid] * weight[valid]).sum() / weight[valid].sum())
                if valid.any() else math.nan
            )  # fmt: skip
        records.append(record)
    return pd.DataFrame.from_records(records)
