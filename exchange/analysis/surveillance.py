"""Market abuse detectors over the ledger, and their scores against ground-truth labels.

Each detector returns a DataFrame of what it flags (trades or orders) with the evidence for
it, so an analyst can read why. They are simple, explainable rules with parameters, not
models:

- `wash_trades`: a trade whose two sides have the same beneficial owner (the same account, or
  accounts that `owners` maps to one owner), or whose two accounts belong to the same broker
  when the two orders look arranged: both were for exactly the traded quantity and the
  aggressive one arrived within `window_ns` of the passive one.
- `spoofing`: an order that is large (at least `size_factor` times the symbol's median order
  size), rests away from the touch (at least `away_ticks` behind the same side's best price
  when it arrived), fills less than `fill_ratio_max` of itself, and is cancelled within
  `cancel_window_ns` after its account got a fill on the opposite side. Several such orders of
  one account at once are layering; each is flagged.
- `marking_the_close`: in the last `window_ns` before a symbol's close, an account whose
  aggressive trades are at least `share_min` of the window's volume and push the price in
  their direction by at least `move_bps_min` from the last price before the window. Its
  aggressive trades in the window are flagged.

Labels (`read_labels`) are a Parquet or CSV file with a `label` column (`wash_trade`,
`spoofing`, `marking_the_close`; anything else is background) and `trade_id` and/or
`order_id`: what the simulator's manipulating agents did. `score` gives precision
(flagged that are labelled) and recall (labelled that are flagged) per detector.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from exchange.analysis.market import BookHistory

LABELS: Final = {"wash_trade": "trade_id", "spoofing": "order_id", "marking_the_close": "trade_id"}
NANOSECONDS_PER_SECOND: Final = 1_000_000_000


def wash_trades(
    trades: pd.DataFrame,
    lifecycle: pd.DataFrame,
    owners: Mapping[str, str] | None = None,
    window_ns: int = 5 * NANOSECONDS_PER_SECOND,
) -> pd.DataFrame:
    """The trades flagged as wash trades, with `reason` (same_owner or same_broker)."""
    owner = (lambda account: account) if owners is None else (lambda a: owners.get(a, a))
    terms = lifecycle.set_index("order_id")[["quantity", "accepted_time_ns"]]
    frame = trades.copy()
    frame["buy_owner"] = frame["buy_account"].map(owner)
    frame["sell_owner"] = frame["sell_account"].map(owner)
    buy = terms.reindex(frame["buy_order_id"]).to_numpy()
    sell = terms.reindex(frame["sell_order_id"]).to_numpy()
    whole = (buy[:, 0] == frame["quantity"].to_numpy()) & (
        sell[:, 0] == frame["quantity"].to_numpy()
    )
    gap = np.abs(buy[:, 1].astype(float) - sell[:, 1].astype(float))
    frame["whole"] = whole
    frame["gap_ns"] = pd.Series(gap, index=frame.index).astype("Int64")
    same_owner = frame["buy_owner"] == frame["sell_owner"]
    arranged = (frame["buy_broker"] == frame["sell_broker"]) & frame["whole"] & (gap <= window_ns)
    frame["reason"] = np.where(same_owner, "same_owner", np.where(arranged, "same_broker", ""))
    columns = ["trade_id", "symbol", "time_ns", "price", "quantity", "buy_account",
               "sell_account", "buy_broker", "sell_broker", "gap_ns", "reason"]  # fmt: skip
    return frame.loc[frame["reason"] != "", columns].reset_index(drop=True)


def spoofing(
    lifecycle: pd.DataFrame,
    orders: pd.DataFrame,
    trades: pd.DataFrame,
    history: BookHistory,
    *,
    size_factor: float = 5.0,
    away_ticks: int = 2,
    fill_ratio_max: float = 0.1,
    cancel_window_ns: int = 10 * NANOSECONDS_PER_SECOND,
) -> pd.DataFrame:
    """The orders flagged as spoofing or layering, with the opposite fill that preceded each
    cancel (`fill_trade_id`, `fill_time_ns`) and `cancel_delay_ns` after it."""
    accepted = lifecycle[lifecycle["accepted_height"].notna() & lifecycle["price"].notna()]
    median = accepted.groupby("symbol")["quantity"].median()
    large = accepted[accepted["quantity"] >= accepted["symbol"].map(median) * size_factor]
    cancels = orders[orders["event"] == "cancelled"].drop_duplicates("order_id")
    cancel_ns = cancels.set_index("order_id")["time_ns"]
    fills = pd.concat(
        [
            trades[["trade_id", "time_ns", "symbol", "sell_account"]].set_axis(
                ["trade_id", "time_ns", "symbol", "account"], axis=1).assign(side="sell"),
            trades[["trade_id", "time_ns", "symbol", "buy_account"]].set_axis(
                ["trade_id", "time_ns", "symbol", "account"], axis=1).assign(side="buy"),
        ]
    ).sort_values("time_ns")  # fmt: skip
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
        if behind < away_ticks:
            continue
        cancelled_ns = int(cancel_ns[order.order_id])
        opposite = "sell" if order.side == "buy" else "buy"
        before = fills[
            (fills["account"] == order.account) & (fills["symbol"] == order.symbol)
            & (fills["side"] == opposite) & (fills["time_ns"] >= order.accepted_time_ns)
            & (fills["time_ns"] <= cancelled_ns)
        ]  # fmt: skip
        if before.empty:
            continue
        last = before.iloc[-1]
        delay = cancelled_ns - int(last["time_ns"])
        if delay > cancel_window_ns:
            continue
        records.append(
            {"order_id": order.order_id, "account": order.account, "symbol": order.symbol,
             "side": order.side, "price": order.price, "quantity": order.quantity,
             "ticks_behind_touch": behind, "fill_trade_id": int(last["trade_id"]),
             "fill_time_ns": int(last["time_ns"]), "cancel_delay_ns": delay}
        )  # fmt: skip
    columns = [
        "order_id",
        "account",
        "symbol",
        "side",
        "price",
        "quantity",
        "ticks_behind_touch",
        "fill_trade_id",
        "fill_time_ns",
        "cancel_delay_ns",
    ]
    return pd.DataFrame.from_records(records, columns=columns)  # fmt: skip


def marking_the_close(
    trades: pd.DataFrame,
    *,
    window_ns: int = 10 * NANOSECONDS_PER_SECOND,
    share_min: float = 0.5,
    move_bps_min: float = 50.0,
    close_ns: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """The trades flagged as marking the close: per symbol, the close is `close_ns[symbol]`
    or else its last trade. Columns: the trade, the aggressor `account`, its `share` of the
    window's volume and the `move_bps` from the last price before the window to the close."""
    frame = trades[trades["aggressor"].isin(["buy", "sell"])].copy()
    frame["account"] = np.where(
        frame["aggressor"] == "buy", frame["buy_account"], frame["sell_account"]
    )
    flagged = []
    for symbol, group in trades.sort_values("trade_id").groupby("symbol"):
        close = int(group["time_ns"].max()) if close_ns is None else int(close_ns[str(symbol)])
        start = close - window_ns
        earlier = group[group["time_ns"] < start]
        if earlier.empty:
            continue
        reference = float(earlier["price"].iloc[-1])
        last = float(group[group["time_ns"] <= close]["price"].iloc[-1])
        move_bps = (last - reference) / reference * 10_000
        window = frame[(frame["symbol"] == symbol) & (frame["time_ns"] >= start)
                       & (frame["time_ns"] <= close)]  # fmt: skip
        volume = group[(group["time_ns"] >= start) & (group["time_ns"] <= close)]["quantity"].sum()
        for (_, side), mine in window.groupby(["account", "aggressor"]):
            share = float(mine["quantity"].sum()) / float(volume)
            direction = 1 if side == "buy" else -1
            if share >= share_min and direction * move_bps >= move_bps_min:
                flagged.append(mine.assign(share=share, move_bps=move_bps))
    columns = ["trade_id", "symbol", "time_ns", "price", "quantity", "aggressor", "account",
               "share", "move_bps"]  # fmt: skip
    if not flagged:
        return pd.DataFrame(columns=columns)
    return pd.concat(flagged)[columns].sort_values("trade_id").reset_index(drop=True)


def read_labels(path: Path | str) -> pd.DataFrame:
    """Ground-truth labels from a Parquet or CSV file. Raises ValueError naming the file and
    what is missing: a `label` column and, for every label kind present, its id column."""
    path = Path(path)
    frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    if "label" not in frame.columns:
        raise ValueError(f"{path}: no 'label' column (columns: {', '.join(frame.columns)})")
    for label, column in LABELS.items():
        if (frame["label"] == label).any() and column not in frame.columns:
            raise ValueError(f"{path}: {label} labels need a {column!r} column")
    for column in ("trade_id", "order_id"):
        if column in frame.columns:
            frame[column] = frame[column].astype("Int64")
    return frame


def truth(labels: pd.DataFrame, label: str) -> set[int]:
    """The labelled ids of one kind (trade ids or order ids, as `LABELS` says)."""
    column = LABELS[label]
    ids = labels.loc[labels["label"] == label, column].dropna()
    return {int(x) for x in ids}


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


def scores(detections: Mapping[str, pd.DataFrame], labels: pd.DataFrame) -> pd.DataFrame:
    """One row per detector (named by label: wash_trade, spoofing, marking_the_close) with its
    `score` against `labels`."""
    records = []
    for label, found in detections.items():
        column = LABELS[label]
        flagged = {int(x) for x in found[column]} if not found.empty else set()
        records.append({"detector": label, **score(flagged, truth(labels, label))})
    return pd.DataFrame.from_records(records)
