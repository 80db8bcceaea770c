"""The questions a member's analysts ask, per trading day: positions and P&L, order-to-trade
and cancel ratios, auctions, execution quality, who owns which account.

Every function takes the tables (`source.Source.tables()`: a node or an export) and `days`,
an inclusive range of trading days `(first, last)` as `yyyymmdd` integers (None: every day),
and groups by `day`. The trading day of a row is the day of the last `begin_day` before it on
the chain (the `days` table, by height and event index), so a multi-day run over the network,
whose exchange clock reads one date for every day, still groups by its calendar; a row before
any `begin_day`, or a ledger without a calendar, takes its date in the exchange's time zone
(`tz`, Asia/Shanghai for the A-share profile), where a session opens and closes within one date.
Money is in fen (price ticks x shares with the A-share tick of one fen), integers; only ratios
and spreads in bps are floats.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import pandas as pd

from exchange.analysis.market import BookHistory, trade_spreads
from exchange.analysis.tables import Tables

EXCHANGE_TZ: Final = "Asia/Shanghai"
Days = tuple[int, int] | None
POSITION: Final = ("height", "event_idx")  # a row's place on the chain
ACCEPTED_AT: Final = ("accepted_height", "accepted_event_idx")  # an order's acceptance


def trading_day(times: pd.Series, tz: str = EXCHANGE_TZ) -> pd.Series:
    """The `yyyymmdd` trading day of UTC timestamps, as an int64 series (the date in `tz`)."""
    local = times.dt.tz_convert(tz)
    day: pd.Series = (local.dt.year * 10_000 + local.dt.month * 100 + local.dt.day).astype("int64")
    return day


def day_of(
    frame: pd.DataFrame,
    calendar: pd.DataFrame,
    tz: str = EXCHANGE_TZ,
    time: str = "time",
    at: tuple[str, str] = POSITION,
) -> pd.Series:
    """The `yyyymmdd` trading day of each row of `frame`: the `day` of the last row of
    `calendar` (the `days` table: one row per `day_begun`) at or before the row's position
    `at` (height, event index) on the chain; a row before the first, or without a position,
    takes `trading_day` of its `time`. O(rows x log days)."""
    dated = trading_day(frame[time], tz)
    if calendar.empty or frame.empty:
        return dated
    begun = calendar.sort_values(["height", "event_idx"])
    starts = _positions(begun["height"], begun["event_idx"])
    height, event = frame[at[0]], frame[at[1]]
    known = (height.notna() & event.notna()).to_numpy()
    rows = _positions(height.fillna(0), event.fillna(0))
    index = np.searchsorted(starts, rows, side="right") - 1
    numbers = begun["day"].to_numpy(np.int64)[np.maximum(index, 0)]
    day = np.where(known & (index >= 0), numbers, dated.to_numpy(np.int64))
    return pd.Series(day, index=frame.index, dtype="int64")


def _positions(height: pd.Series, event: pd.Series) -> np.ndarray:
    """(height, event index) as one sortable int64: event indexes within a block are below
    2^32 (a block's events are bounded far below that) and -1 for a block's own rows."""
    position: np.ndarray = (height.to_numpy(np.int64) << 32) + (event.to_numpy(np.int64) + 1)
    return position


def _in_days(frame: pd.DataFrame, days: Days) -> pd.DataFrame:
    if days is None:
        return frame
    first, last = days
    if first > last:
        raise ValueError(f"days {days!r}: the first day is after the last")
    return frame[(frame["day"] >= first) & (frame["day"] <= last)]


def _with_day(
    frame: pd.DataFrame,
    tables: Tables,
    days: Days,
    tz: str,
    column: str = "time",
    at: tuple[str, str] = POSITION,
) -> pd.DataFrame:
    frame = frame[frame[column].notna()].copy()
    frame["day"] = day_of(frame, tables.days, tz, column, at)
    return _in_days(frame, days)


def account_owners(tables: Tables) -> pd.DataFrame:
    """Who owns which account: account, broker (None for the operator's fee and tax
    accounts), and the account's trades and volume over the ledger (both sides)."""
    trades = tables.trades
    sides = pd.concat([
        trades[["buy_account", "quantity"]].set_axis(["account", "quantity"], axis=1),
        trades[["sell_account", "quantity"]].set_axis(["account", "quantity"], axis=1),
    ])  # fmt: skip
    activity = sides.groupby("account")["quantity"].agg(trades="count", volume="sum")
    frame = tables.accounts.merge(activity, on="account", how="left")
    frame[["trades", "volume"]] = frame[["trades", "volume"]].fillna(0).astype("int64")
    return frame.sort_values("account").reset_index(drop=True)


def order_ratios(tables: Tables, days: Days = None, tz: str = EXCHANGE_TZ) -> pd.DataFrame:
    """Per day and broker: orders accepted, orders with a fill, fills (trade sides), cancels
    (orders cancelled away, wholly or in part, and rejected cancels excluded), and the ratios
    `order_to_trade` (orders / fills) and `cancel_ratio` (cancelled orders / orders)."""
    life = tables.order_lifecycle
    life = life[life["accepted_time"].notna()]
    life = _with_day(life, tables, days, tz, "accepted_time", ACCEPTED_AT)
    fills = pd.concat([
        tables.trades[[*POSITION, "time", "buy_broker"]].rename(columns={"buy_broker": "broker"}),
        tables.trades[[*POSITION, "time", "sell_broker"]].rename(columns={"sell_broker": "broker"}),
    ])  # fmt: skip
    fills = _with_day(fills, tables, days, tz)
    by = ["day", "broker"]
    frame = pd.DataFrame({
        "orders": life.groupby(by)["order_id"].count(),
        "orders_filled": life[life["filled"] > 0].groupby(by)["order_id"].count(),
        "orders_cancelled": life[life["cancelled"] > 0].groupby(by)["order_id"].count(),
        "fills": fills.groupby(by)["time"].count(),
    }).fillna(0).astype("int64")  # fmt: skip
    frame["order_to_trade"] = frame["orders"] / frame["fills"].replace(0, np.nan)
    frame["cancel_ratio"] = frame["orders_cancelled"] / frame["orders"].replace(0, np.nan)
    return frame.reset_index()


def auction_summary(tables: Tables, days: Days = None, tz: str = EXCHANGE_TZ) -> pd.DataFrame:
    """Per day, symbol and auction (`opening` or `closing`): uncross price (None if nothing
    executed), volume, notional, imbalance (buy minus sell quantity at the price) and its
    side, from the `auctions` table."""
    frame = _with_day(tables.auctions, tables, days, tz)
    frame["auction"] = frame["phase"].map({"call_auction": "opening", "closing_auction": "closing"})
    frame["notional"] = (frame["price"] * frame["volume"]).astype("Int64")
    columns = ["day", "symbol", "auction", "time", "price", "volume", "notional", "imbalance",
               "imbalance_side"]  # fmt: skip
    return frame[columns].sort_values(["day", "symbol", "time"]).reset_index(drop=True)


def execution_quality(
    tables: Tables,
    history: BookHistory,
    horizon_ns: int,
    days: Days = None,
    tz: str = EXCHANGE_TZ,
) -> pd.DataFrame:
    """Per day and broker, for the broker's aggressive trades (the side that took liquidity):
    trades, volume-weighted effective and realized spreads in bps (realized at `horizon_ns`
    after the trade, `market.trade_spreads`), and over its accepted orders the fill rate
    (shares filled / shares ordered, each order's size after its amends) and the share of
    orders with any fill. `history` is
    `market.rebuild_book(tables.orders, tables.trades)`."""
    spreads = trade_spreads(tables.trades, history, horizon_ns=horizon_ns)
    brokers = tables.trades.set_index("trade_id")[[*POSITION, "buy_broker", "sell_broker", "time"]]
    spreads = spreads.join(brokers, on="trade_id")
    spreads["broker"] = np.where(
        spreads["aggressor"] == "buy", spreads["buy_broker"], spreads["sell_broker"]
    )
    spreads = _with_day(spreads, tables, days, tz)
    by = ["day", "broker"]
    weights = spreads["quantity"].astype("float64")
    spreads = spreads.assign(
        effective_w=spreads["effective_bps"] * weights,
        realized_w=spreads["realized_bps"] * weights,
        realized_q=weights.where(spreads["realized_bps"].notna(), 0.0),
    )
    taken = spreads.groupby(by).agg(
        aggressive_trades=("trade_id", "count"),
        aggressive_volume=("quantity", "sum"),
        effective_w=("effective_w", "sum"),
        realized_w=("realized_w", "sum"),
        realized_q=("realized_q", "sum"),
    )
    taken["effective_bps"] = taken["effective_w"] / taken["aggressive_volume"]
    taken["realized_bps"] = taken["realized_w"] / taken["realized_q"].replace(0, np.nan)
    life = tables.order_lifecycle
    life = _with_day(
        life[life["accepted_time"].notna()], tables, days, tz, "accepted_time", ACCEPTED_AT
    )
    # an order's size after its amends: every share it held was filled, cancelled or reduced,
    # expired, or is open (an amend may raise the quantity accepted, so that is not the size)
    life = life.assign(size=life["filled"] + life["cancelled"] + life["expired"] + life["open"])
    orders = life.groupby(by).agg(
        orders=("order_id", "count"),
        ordered=("size", "sum"),
        filled=("filled", "sum"),
        orders_filled=("filled", lambda f: int((f > 0).sum())),
    )
    frame = orders.join(taken[["aggressive_trades", "aggressive_volume", "effective_bps",
                               "realized_bps"]], how="outer")  # fmt: skip
    counts = ["orders", "ordered", "filled", "orders_filled", "aggressive_trades",
              "aggressive_volume"]  # fmt: skip
    frame[counts] = frame[counts].fillna(0).astype("int64")
    frame["fill_rate"] = frame["filled"] / frame["ordered"].replace(0, np.nan)
    frame["orders_filled_share"] = frame["orders_filled"] / frame["orders"].replace(0, np.nan)
    return frame.reset_index()


def closing_prices(tables: Tables, days: Days = None, tz: str = EXCHANGE_TZ) -> pd.DataFrame:
    """Per day and symbol the price positions are marked to, and which: the closing
    auction's price if it traded (`close_auction`), else the day's last trade (`last_trade`),
    else the previous day's mark, else the instrument's reference price (`reference`)."""
    trades = _with_day(tables.trades, tables, None, tz)
    auctions = _with_day(tables.auctions, tables, None, tz)
    closes = auctions[(auctions["phase"] == "closing_auction") & (auctions["volume"] > 0)]
    auction_close = closes.groupby(["day", "symbol"])["price"].last()
    ordered = trades.sort_values(["height", "event_idx"])
    last_trade = ordered.groupby(["day", "symbol"])["price"].last()
    all_days = sorted(set(trades["day"]) | set(auctions["day"]))
    reference = dict(zip(tables.instruments["symbol"], tables.instruments["reference_price"],
                         strict=True))  # fmt: skip
    records = []
    for symbol, reference_price in reference.items():
        mark, source = int(reference_price), "reference"
        for day in all_days:
            if (day, symbol) in auction_close.index:
                mark, source = int(auction_close[(day, symbol)]), "close_auction"
            elif (day, symbol) in last_trade.index:
                mark, source = int(last_trade[(day, symbol)]), "last_trade"
            elif source != "reference":
                source = "previous_mark"
            records.append({"day": day, "symbol": symbol, "close_price": mark, "mark": source})
    frame = pd.DataFrame.from_records(records, columns=["day", "symbol", "close_price", "mark"])
    return _in_days(frame, days).reset_index(drop=True)


def positions_pnl(tables: Tables, days: Days = None, tz: str = EXCHANGE_TZ) -> pd.DataFrame:
    """End-of-day position and P&L in fen per day, account and symbol held or traded: bought,
    sold, `position` (shares at the close, genesis holdings included), `cost` (the position's
    cost on average cost: genesis holdings at the reference price), `realized_pnl` (the day's
    sells against the average cost), `close_price` and `mark` (`closing_prices`),
    `unrealized_pnl` (position x close - cost), `commission` and `stamp_duty` the account paid
    that day, and `pending_t1`: shares bought that day that T+n settlement keeps unsellable
    until a later day. Average cost: a buy adds its notional to the cost; a sell takes
    cost x sold / position (rounded to the fen) out of it. O(trades + accounts x days)."""
    marks = closing_prices(tables, None, tz)
    trading_days = sorted(set(marks["day"]))
    t_plus = dict(zip(tables.instruments["symbol"], tables.instruments["t_plus"], strict=True))
    reference = dict(zip(tables.instruments["symbol"], tables.instruments["reference_price"],
                         strict=True))  # fmt: skip
    genesis = tables.holding_changes
    genesis = genesis[(genesis["height"] == 0) & genesis["asset"].isin(list(reference))]
    books: dict[tuple[str, str], list[int]] = {}  # (account, symbol) -> [position, cost]
    row: Any
    for row in genesis.itertuples(index=False):
        book = books.setdefault((str(row.account), str(row.asset)), [0, 0])
        book[0] += int(row.holding_delta)
        book[1] += int(row.holding_delta) * int(reference[str(row.asset)])
    trades = _with_day(tables.trades, tables, None, tz).sort_values(["height", "event_idx"])
    fees = _with_day(tables.fees, tables, None, tz)
    paid: dict[tuple[int, str, str], list[int]] = {}
    for row in fees.itertuples(index=False):
        commission, stamp_duty = int(row.commission), int(row.stamp_duty)
        paid.setdefault((row.day, str(row.buyer), str(row.asset)), [0, 0])[0] += commission
        seller = paid.setdefault((row.day, str(row.seller), str(row.asset)), [0, 0])
        seller[0] += commission
        seller[1] += stamp_duty
    by_day = {day: group for day, group in trades.groupby("day")}
    mark_of: dict[tuple[int, str], tuple[int, str]] = {
        (int(day), str(symbol)): (int(price), str(mark))
        for day, symbol, price, mark in marks.itertuples(index=False)
    }
    records = []
    for day in trading_days:
        flows: dict[tuple[str, str], list[int]] = {}  # -> [bought, sold, realized]
        group = by_day.get(day)
        for row in [] if group is None else group.itertuples(index=False):
            symbol, price, quantity = str(row.symbol), int(row.price), int(row.quantity)
            buyer = books.setdefault((str(row.buy_account), symbol), [0, 0])
            buyer[0] += quantity
            buyer[1] += price * quantity
            flows.setdefault((str(row.buy_account), symbol), [0, 0, 0])[0] += quantity
            seller = books.setdefault((str(row.sell_account), symbol), [0, 0])
            taken = round(seller[1] * quantity / seller[0]) if seller[0] > 0 else 0
            seller[0] -= quantity
            seller[1] -= taken
            flow = flows.setdefault((str(row.sell_account), symbol), [0, 0, 0])
            flow[1] += quantity
            flow[2] += price * quantity - taken
        for (account, symbol), (position, cost) in sorted(books.items()):
            bought, sold, realized = flows.get((account, symbol), [0, 0, 0])
            if position == 0 and bought == 0 and sold == 0:
                continue
            close, mark = mark_of[(int(day), symbol)]
            commission, stamp = paid.get((day, account, symbol), [0, 0])
            records.append({
                "day": day, "account": account, "symbol": symbol, "bought": bought,
                "sold": sold, "position": position, "cost": cost, "realized_pnl": realized,
                "close_price": close, "mark": mark,
                "market_value": position * close, "unrealized_pnl": position * close - cost,
                "commission": commission, "stamp_duty": stamp,
                "pending_t1": bought if int(t_plus.get(symbol, 0)) > 0 else 0,
            })  # fmt: skip
    columns = ["day", "account", "symbol", "bought", "sold", "position", "cost", "realized_pnl",
               "close_price", "mark", "market_value", "unrealized_pnl", "commission",
               "stamp_duty", "pending_t1"]  # fmt: skip
    return _in_days(pd.DataFrame.from_records(records, columns=columns), days).reset_index(
        drop=True
    )
