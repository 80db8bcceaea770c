"""Market abuse detectors over the ledger, and their scores against ground-truth labels.

Each detector returns a DataFrame of what it flags (trades or orders) with the evidence for
it, so an analyst can read why. They are simple, explainable rules with parameters, not
models:

- `wash_trades`: a trade whose two sides have the same beneficial owner (the same account, or
  accounts that `owners` maps to one owner), or whose two accounts belong to the same broker
  when the two orders look arranged: both were for exactly the traded quantity and the
  aggressive one arrived within `window_ns` of the passive one.
- `spoofing`: an order that is large (at least `size_factor` times the symbol's median order
  size), rests away from the touch (behind the same side's best price when it arrived by at
  least one tick and `away_bps` of that price: relative to the price, as the agents'
  distances are, so one threshold fits a 10 yuan and a 200 yuan name), fills less than
  `fill_ratio_max` of itself, and is cancelled within `cancel_window_ns` after its account
  got a fill on the opposite side. Several such orders of one account at once are layering;
  each is flagged.
- `marking_the_close`: in the last `window_ns` before a symbol's close, an account whose
  aggressive trades are at least `share_min` of the window's volume and push the price in
  their direction by at least `move_bps_min` from the last price before the window. Its
  aggressive trades in the window are flagged.

Labels (`read_labels`) are a Parquet or CSV file with a `label` column (`wash_trade`,
`spoofing`, `marking_the_close` or the simulator's `marking_close`; anything else is
background) and `trade_id` and/or `order_id`: what the manipulating agents did. The
simulator labels orders (with a `role`: layer, genuine, sell_leg, buy_leg, mark); `truth`
maps them to the trades they made. `score` gives precision (flagged that are labelled) and
recall (labelled that are flagged) per detector.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from exchange.analysis.market import BookHistory
from exchange.analysis.schema import TABLE_KEY, VERSION_KEY, check_file

LABELS: Final = {"wash_trade": "trade_id", "spoofing": "order_id", "marking_the_close": "trade_id"}
NANOSECONDS_PER_SECOND: Final = 1_000_000_000


def wash_trades(
    trades: pd.DataFrame,
    lifecycle: pd.DataFrame,
    owners: Mapping[str, str] | None = None,
    window_ns: int = 5 * NANOSECONDS_PER_SECOND,
    orders_between_max: int = 0,
) -> pd.DataFrame:
    """The trades flagged as wash trades, with `reason` (same_owner or same_broker), the time
    between the two orders' acceptance (`gap_ns`, block time) and `orders_between`, how many
    other orders the venue accepted between them (0: back to back)."""
    owner = (lambda account: account) if owners is None else (lambda a: owners.get(a, a))
    accepted = lifecycle[lifecycle["accepted_height"].notna()].sort_values(
        ["accepted_height", "accepted_event_idx"]
    )
    rank = pd.Series(range(len(accepted)), index=accepted["order_id"])
    accepted_ns = accepted.set_index("order_id")["accepted_time_ns"].astype("float64")
    quantity = lifecycle.set_index("order_id")["quantity"]
    frame = trades.copy()
    frame["buy_owner"] = frame["buy_account"].map(owner)
    frame["sell_owner"] = frame["sell_account"].map(owner)
    buy, sell = frame["buy_order_id"], frame["sell_order_id"]
    whole = (buy.map(quantity) == frame["quantity"]) & (sell.map(quantity) == frame["quantity"])
    frame["gap_ns"] = (buy.map(accepted_ns) - sell.map(accepted_ns)).abs().astype("Int64")
    frame["orders_between"] = ((buy.map(rank) - sell.map(rank)).abs() - 1).astype("Int64")
    same_owner = frame["buy_owner"] == frame["sell_owner"]
    arranged = (
        (frame["buy_broker"] == frame["sell_broker"])
        & whole.fillna(False)
        & (frame["gap_ns"] <= window_ns).fillna(False)
        & (frame["orders_between"] <= orders_between_max).fillna(False)
    )
    frame["reason"] = np.where(same_owner, "same_owner", np.where(arranged, "same_broker", ""))
    columns = ["trade_id", "symbol", "time_ns", "price", "quantity", "buy_account",
               "sell_account", "buy_broker", "sell_broker", "gap_ns", "orders_between",
               "reason"]  # fmt: skip
    return frame.loc[frame["reason"] != "", columns].reset_index(drop=True)


def spoofing(
    lifecycle: pd.DataFrame,
    orders: pd.DataFrame,
    trades: pd.DataFrame,
    history: BookHistory,
    *,
    size_factor: float = 3.0,
    away_bps: float = 10.0,
    fill_ratio_max: float = 0.1,
    cancel_window_ns: int = 10 * NANOSECONDS_PER_SECOND,
    opposite: str = "fill",
) -> pd.DataFrame:
    """The orders flagged as spoofing or layering. The trigger before each cancel is, with
    `opposite="fill"`, the account's last fill on the other side while the order rested
    (`trigger_id` a trade id); with `opposite="order"`, its last order on the other side
    accepted meanwhile (`trigger_id` an order id), for spoofers whose genuine order has not
    filled yet when they cancel. Each flagged order's distance behind the touch is given in
    ticks (`ticks_behind_touch`) and in bps of the touch (`bps_behind_touch`). Raises
    ValueError naming another `opposite` or a negative `away_bps`."""
    if opposite not in ("fill", "order"):
        raise ValueError(f"opposite {opposite!r} is not 'fill' or 'order'")
    if not away_bps >= 0:
        raise ValueError(f"away_bps {away_bps!r} is not a distance in bps (>= 0)")
    accepted = lifecycle[lifecycle["accepted_height"].notna() & lifecycle["price"].notna()]
    median = accepted.groupby("symbol")["quantity"].median()
    large = accepted[accepted["quantity"] >= accepted["symbol"].map(median) * size_factor]
    cancels = orders[orders["event"] == "cancelled"].drop_duplicates("order_id")
    cancel_ns = cancels.set_index("order_id")["time_ns"]
    triggers = _triggers(trades, accepted, opposite)
    records = []
    order: Any
    for order in large.itertuples(index=False):
        if order.order_id not in cancel_ns.index or order.filled > fill_ratio_max * order.quantity:
            continue
        bid, ask = history.arrival.get(int(order.order_id), (None, None))
        touch = bid if order.side == "buy" else ask
        if touch is None:
            continue
        behind = touch - order.price if order.side == "buy" else order.price - touch
        behind_bps = behind / touch * 10_000
        if behind <= 0 or behind_bps < away_bps:
            continue
        cancelled_ns = int(cancel_ns[order.order_id])
        opposite_side = "sell" if order.side == "buy" else "buy"
        times, ids = triggers.get((order.account, order.symbol, opposite_side), _NO_TRIGGERS)
        last = int(np.searchsorted(times, cancelled_ns, side="right")) - 1
        if last < 0 or times[last] < order.accepted_time_ns:
            continue
        delay = cancelled_ns - int(times[last])
        if delay > cancel_window_ns:
            continue
        records.append(
            {"order_id": order.order_id, "account": order.account, "symbol": order.symbol,
             "side": order.side, "price": order.price, "quantity": order.quantity,
             "ticks_behind_touch": behind, "bps_behind_touch": behind_bps, "trigger": opposite,
             "trigger_id": int(ids[last]), "trigger_time_ns": int(times[last]),
             "cancel_delay_ns": delay}
        )  # fmt: skip
    columns = ["order_id", "account", "symbol", "side", "price", "quantity",
               "ticks_behind_touch", "bps_behind_touch", "trigger", "trigger_id",
               "trigger_time_ns", "cancel_delay_ns"]  # fmt: skip
    return pd.DataFrame.from_records(records, columns=columns)


_NO_TRIGGERS: Final = (np.array([], dtype="int64"), np.array([], dtype="int64"))


def _triggers(
    trades: pd.DataFrame, accepted: pd.DataFrame, opposite: str
) -> dict[tuple[str, str, str], tuple[Any, Any]]:
    """What may trigger a cancel, per (account, symbol, side): times and ids in time order."""
    columns = ["id", "time_ns", "symbol", "account", "side"]
    if opposite == "order":
        frame = accepted[["order_id", "accepted_time_ns", "symbol", "account", "side"]]
        frame = frame.set_axis(columns, axis=1)
    else:
        frame = pd.concat(
            [
                trades[["trade_id", "time_ns", "symbol", f"{side}_account"]]
                .set_axis(columns[:4], axis=1)
                .assign(side=side)
                for side in ("buy", "sell")
            ]
        )
    frame = frame.astype({"time_ns": "int64", "id": "int64"}).sort_values("time_ns", kind="stable")
    return {
        (str(account), str(symbol), str(side)): (
            group["time_ns"].to_numpy(),
            group["id"].to_numpy(),
        )
        for (account, symbol, side), group in frame.groupby(["account", "symbol", "side"])
    }


def marking_the_close(
    trades: pd.DataFrame,
    *,
    window_ns: int = 10 * NANOSECONDS_PER_SECOND,
    share_min: float = 0.5,
    move_bps_min: float = 50.0,
    close_ns: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """The trades flagged as marking the close: per symbol, the close is `close_ns[symbol]`
    or else its last trade (a closing auction's uncross). In the window, an account's volume
    in one direction counts its aggressive trades and its side of auction trades (no
    aggressor). Columns: the trade, the `account` and `direction` flagged, its `share` of the
    window's volume and the `move_bps` from the last price before the window to the close."""
    flagged = []
    for symbol, group in trades.sort_values("trade_id").groupby("symbol"):
        close = int(group["time_ns"].max()) if close_ns is None else int(close_ns[str(symbol)])
        start = close - window_ns
        earlier = group[group["time_ns"] < start]
        window = group[(group["time_ns"] >= start) & (group["time_ns"] <= close)]
        if earlier.empty or window.empty:
            continue
        reference = float(earlier["price"].iloc[-1])
        move_bps = (float(window["price"].iloc[-1]) - reference) / reference * 10_000
        volume = float(window["quantity"].sum())
        sides = _initiators(window)
        for (_, direction), mine in sides.groupby(["account", "direction"]):
            share = float(mine["quantity"].sum()) / volume
            sign = 1 if direction == "buy" else -1
            if share >= share_min and sign * move_bps >= move_bps_min:
                flagged.append(mine.assign(share=share, move_bps=move_bps))
    columns = ["trade_id", "symbol", "time_ns", "price", "quantity", "aggressor", "account",
               "direction", "share", "move_bps"]  # fmt: skip
    if not flagged:
        return pd.DataFrame(columns=columns)
    return pd.concat(flagged)[columns].sort_values("trade_id").reset_index(drop=True)


def _initiators(window: pd.DataFrame) -> pd.DataFrame:
    """Who pushed each trade: the aggressor's account and side; for an auction trade (no
    aggressor) both the buyer (buy) and the seller (sell)."""
    aggressive = window[window["aggressor"].isin(["buy", "sell"])]
    auction = window[~window["aggressor"].isin(["buy", "sell"])]
    parts = [
        aggressive.assign(
            account=np.where(
                aggressive["aggressor"] == "buy",
                aggressive["buy_account"],
                aggressive["sell_account"],
            ),
            direction=aggressive["aggressor"],
        ),
        auction.assign(account=auction["buy_account"], direction="buy"),
        auction.assign(account=auction["sell_account"], direction="sell"),
    ]
    return pd.concat([part for part in parts if not part.empty] or [aggressive])


def read_labels(path: Path | str) -> pd.DataFrame:
    """Ground-truth labels from a Parquet or CSV file, with `label` normalised (the
    simulator's `marking_close` is `marking_the_close`). Raises ValueError naming the file and
    what is missing: a `label` column and, for every label kind present, `order_id` or its
    own id column."""
    path = Path(path)
    if path.suffix == ".csv":
        frame = pd.read_csv(path)
    else:
        _check_simulator_labels(path)
        frame = pd.read_parquet(path)
    if "label" not in frame.columns:
        raise ValueError(f"{path}: no 'label' column (columns: {', '.join(frame.columns)})")
    frame["label"] = frame["label"].replace(LABEL_ALIASES)
    for label, column in LABELS.items():
        present = (frame["label"] == label).any()
        if present and column not in frame.columns and "order_id" not in frame.columns:
            raise ValueError(f"{path}: {label} labels need a {column!r} column")
    for column in ("trade_id", "order_id"):
        if column in frame.columns:
            frame[column] = frame[column].astype("Int64")
    return frame


def _check_simulator_labels(path: Path) -> None:
    """Refuse the simulator's labels of another schema version (schema.check_file): before
    version 2 they named the agents' own order ids in network mode and counted time from the
    start of the virtual day. Hand-made label files (no metadata) are read as they are."""
    parquet_schema = pq.read_schema(path)
    metadata = parquet_schema.metadata or {}
    old_simulator = set(parquet_schema.names) == _UNVERSIONED_SIMULATOR_LABELS
    if TABLE_KEY in metadata or VERSION_KEY in metadata or old_simulator:
        check_file(path, "simulator", "labels")


_UNVERSIONED_SIMULATOR_LABELS: Final = frozenset(
    {"time_ns", "agent_id", "label", "role", "order_id", "symbol"}
)
LABEL_ALIASES: Final = {"marking_close": "marking_the_close"}
SUPPORTING_ROLES: Final = frozenset({"genuine"})  # a spoofer's small real order: not a spoof


def truth(labels: pd.DataFrame, label: str, trades: pd.DataFrame | None = None) -> set[int]:
    """The labelled ids of one kind: order ids for spoofing (without the supporting `genuine`
    orders when the labels have a `role`), trade ids for the others. Labels that name orders
    rather than trades (the simulator's) are mapped to `trades`: a wash trade is a trade whose
    two orders are both labelled, a marked close a trade with a labelled order on either
    side. Raises ValueError if that mapping is needed and `trades` is None."""
    column = LABELS[label]
    mine = labels[labels["label"] == label]
    if column == "order_id":
        if "role" in mine.columns:
            mine = mine[~mine["role"].isin(SUPPORTING_ROLES)]
        return {int(x) for x in mine["order_id"].dropna()}
    if "trade_id" in mine.columns and mine["trade_id"].notna().any():
        return {int(x) for x in mine["trade_id"].dropna()}
    if mine.empty:
        return set()
    if trades is None:
        raise ValueError(f"{label} labels name orders: pass the trades to map them")
    orders = set(mine["order_id"].dropna().astype("int64"))
    buy, sell = trades["buy_order_id"].isin(orders), trades["sell_order_id"].isin(orders)
    hit = (buy & sell) if label == "wash_trade" else (buy | sell)
    return {int(x) for x in trades.loc[hit, "trade_id"]}


def score(flagged: set[int], labelled: set[int]) -> dict[str, float | int]:
    """Precision and recall of a detector: true positives, false positives, false negatives.
    Precision is NaN when nothing is flagged, recall NaN when nothing is labelled."""
    hits = len(flagged & labelled)
    return {
        "flagged": len(flagged),
        "labelled": len(labelled),
        "true_positives": hits,
        "false_positives": len(flagged - labelled),
        "false_negatives": len(labelled - flagged),
        "precision": hits / len(flagged) if flagged else float("nan"),
        "recall": hits / len(labelled) if labelled else float("nan"),
    }


def scores(
    detections: Mapping[str, pd.DataFrame],
    labels: pd.DataFrame,
    trades: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per detector (named by label: wash_trade, spoofing, marking_the_close) with its
    `score` against `labels` (`trades` maps order-level labels to trades, see `truth`)."""
    records = []
    for label, found in detections.items():
        column = LABELS[label]
        flagged = {int(x) for x in found[column]} if not found.empty else set()
        records.append({"detector": label, **score(flagged, truth(labels, label, trades))})
    return pd.DataFrame.from_records(records)
