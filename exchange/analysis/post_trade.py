"""Settlement as the ledger recorded it: DvP timing, locks, netting, fees and taxes, fails.

- `dvp_timing`: for every trade, when its delivery and payment happened. A gross trade settles
  in the event right after it (`trade_settled`, same block); a net-mode trade is cleared at
  once (`trade_cleared`) and settles with the next `cycle_settled` after it (a failed cycle
  settles nothing and is retried under the same cycle id). A trade with neither is
  `unsettled`, which pre-funded DvP should never show.
- `locks_over_time`: locked balances after every block. Order funding (holds and locks) is
  inside the venue and emits no event (docs/ledger.md), so it is read from the venue
  re-executed from the genesis (`checks.replay`), not guessed from the order events.
- `netting`: per cycle, the gross value of the trades against the net value that moved, from
  the `cycle_settled` and `asset_netted` events (the derived table keeps only the net).
- `fees_and_taxes`: commission (charged to each side) and stamp duty per symbol and broker.
- `fails`: `cycle_failed` shortfalls and orders refused as unfunded.
"""

from __future__ import annotations

from typing import Final

import pandas as pd

from exchange.analysis.checks import replay
from exchange.analysis.tables import NodeLedger, events
from exchange.venue.setup import FEE_ACCOUNT, TAX_ACCOUNT

_SEQUENCE_SCALE: Final = 1 << 32  # event_idx < 2**32: (height, event_idx) as one sortable key


def _sequence(frame: pd.DataFrame) -> pd.Series:
    return frame["height"].astype("int64") * _SEQUENCE_SCALE + frame["event_idx"].astype("int64")


def dvp_timing(trades: pd.DataFrame, settlements: pd.DataFrame) -> pd.DataFrame:
    """One row per trade: symbol, mode (gross, cash_net, net_net), the trade's height and time,
    the settling event's height and time, the cycle id for net trades, the delay in blocks and
    nanoseconds, and `status` (settled, pending: cleared into a cycle not settled yet, or
    unsettled: neither settled nor cleared)."""
    base = trades[["trade_id", "symbol", "height", "event_idx", "time_ns", "quantity"]].rename(
        columns={"height": "trade_height", "time_ns": "trade_time_ns"}
    )
    gross = settlements[settlements["event"] == "trade_settled"]
    gross = gross[["trade_id", "height", "time_ns"]].assign(mode="gross")
    cleared = settlements[settlements["event"] == "trade_cleared"].copy()
    cycles = settlements[settlements["event"] == "cycle_settled"].copy()
    cleared["sequence"] = _sequence(cleared)
    cycles["sequence"] = _sequence(cycles)
    cycles["cycle_row"] = range(len(cycles))
    # Match on the cycle's row number, then join its integers: a merge_asof that finds no
    # cycle for a trade would turn the times into floats, which round nanoseconds.
    matched = pd.merge_asof(
        cleared[["trade_id", "mode", "sequence"]].sort_values("sequence"),
        cycles[["sequence", "cycle_row"]].sort_values("sequence"),
        on="sequence",
        direction="forward",
    )
    matched["cycle_row"] = matched["cycle_row"].astype("Int64")
    cycle_columns = cycles[["cycle_row", "height", "time_ns", "cycle_id"]].astype(
        {"cycle_row": "Int64", "height": "Int64", "time_ns": "Int64", "cycle_id": "Int64"}
    )
    netted = matched.merge(cycle_columns, on="cycle_row", how="left").drop(
        columns=["sequence", "cycle_row"]
    )
    gross = gross.astype({"height": "Int64", "time_ns": "Int64"})
    settled = pd.concat([gross, netted], ignore_index=True).rename(
        columns={"height": "settled_height", "time_ns": "settled_time_ns"}
    )
    frame = base.merge(settled, on="trade_id", how="left", validate="one_to_one")
    frame["status"] = "settled"
    frame.loc[frame["settled_height"].isna(), "status"] = "pending"
    frame.loc[frame["mode"].isna(), "status"] = "unsettled"
    frame["settled_height"] = frame["settled_height"].astype("Int64")
    frame["settled_time_ns"] = frame["settled_time_ns"].astype("Int64")
    frame["cycle_id"] = frame["cycle_id"].astype("Int64")
    frame["delay_blocks"] = frame["settled_height"] - frame["trade_height"]
    frame["delay_ns"] = frame["settled_time_ns"] - frame["trade_time_ns"]
    return frame.drop(columns="event_idx")


def locks_over_time(ledger: NodeLedger) -> pd.DataFrame:
    """After every block: per asset, the total locked (order holds and locks plus cycle
    escrow) and the number of accounts with something locked, from the venue re-executed from
    the genesis. O(blocks x accounts x assets): fine for a session, slow for a year."""
    records = []
    for header, venue in replay(ledger):
        engine = venue.settlement
        for asset in engine.assets():
            locked = [engine.locked(asset, account) for account in engine.accounts()]
            records.append(
                {"height": header.height, "time_ns": header.time_ns, "asset": asset,
                 "locked": sum(locked), "accounts_locked": sum(1 for x in locked if x)}
            )  # fmt: skip
    frame = pd.DataFrame.from_records(
        records, columns=["height", "time_ns", "asset", "locked", "accounts_locked"]
    )
    frame["time"] = pd.to_datetime(frame["time_ns"], unit="ns", utc=True)
    return frame


def netting(ledger: NodeLedger) -> pd.DataFrame:
    """One row per settled cycle: trades, gross value (fen, both legs at trade value), net
    value that moved, `ratio` gross / net (as `CycleSettled.netting_efficiency`) and `saved`,
    the share of the gross value that did not have to move (1 - net / gross); and per asset the
    gross and net quantities as `<asset>_gross` and `<asset>_net`."""
    cycles = events(ledger, ["cycle_settled"])
    if cycles.empty:
        return pd.DataFrame(
            columns=["cycle_id", "height", "time_ns", "trade_count", "gross_value", "net_value",
                     "ratio", "saved"]
        )  # fmt: skip
    frame = cycles[["cycle_id", "height", "time_ns", "trade_count", "gross_value", "net_value"]]
    frame = frame.copy()
    frame["ratio"] = frame["gross_value"] / frame["net_value"].where(frame["net_value"] != 0)
    frame["saved"] = 1 - frame["net_value"] / frame["gross_value"].where(frame["gross_value"] != 0)
    assets = events(ledger, ["asset_netted"])
    if not assets.empty:
        wide = assets.pivot_table(
            index="cycle_id", columns="asset", values=["gross", "net"], aggfunc="sum"
        )
        wide.columns = [f"{column[1]}_{column[0]}" for column in wide.columns]
        frame = frame.merge(wide.reset_index(), on="cycle_id", how="left")
    return frame


def fees_and_taxes(fees: pd.DataFrame, by: str = "asset") -> pd.DataFrame:
    """Totals of `tables.fees` per `by` (asset, buyer_broker, seller_broker, mode): trades,
    notional, commission (both sides), stamp duty, all fees, and fees in bps of notional."""
    grouped = fees.groupby(by)
    frame = pd.DataFrame(
        {
            "trades": grouped["trade_id"].count(),
            "notional": grouped["notional"].sum(),
            "commission": grouped["commission"].sum() * 2,
            "stamp_duty": grouped["stamp_duty"].sum(),
        }
    )
    frame["fees_total"] = frame["commission"] + frame["stamp_duty"]
    frame["fees_bps"] = frame["fees_total"] / frame["notional"] * 10_000
    return frame.reset_index()


def broker_fees(fees: pd.DataFrame) -> pd.DataFrame:
    """What each broker's clients paid, each side charged to its own broker: the buyer's
    commission to the buyer's broker, the seller's commission and the stamp duty (a seller's
    tax) to the seller's broker. One row per broker: trades bought and sold, notional of both,
    commission, stamp duty, fees_total. The commission column sums to 2 x the trades'
    commission and stamp duty to theirs, as `fees_and_taxes` by asset."""
    buys = fees.assign(broker=fees["buyer_broker"], bought=1, sold=0, stamp=0)
    sells = fees.assign(broker=fees["seller_broker"], bought=0, sold=1, stamp=fees["stamp_duty"])
    sides = pd.concat([buys, sells], ignore_index=True)
    grouped = sides.groupby("broker", dropna=False)
    frame = pd.DataFrame(
        {
            "trades_bought": grouped["bought"].sum(),
            "trades_sold": grouped["sold"].sum(),
            "notional": grouped["notional"].sum(),
            "commission": grouped["commission"].sum(),
            "stamp_duty": grouped["stamp"].sum(),
        }
    ).astype("int64")
    frame["fees_total"] = frame["commission"] + frame["stamp_duty"]
    return frame.reset_index()


def fee_accounts(
    fees: pd.DataFrame, timing: pd.DataFrame, holding_changes: pd.DataFrame
) -> pd.DataFrame:
    """Why the fee totals and the fee and tax accounts' balances can differ, in fen: per
    currency, the commission (both sides) and stamp duty of trades whose cash has settled, of
    trades cleared into a net cycle that has not settled yet (`pending`: their fees reach the
    accounts with the cycle), the accounts' balances moved since the genesis, and `explained`
    (settled fees = what the accounts received). `timing` is `dvp_timing`."""
    status = timing.set_index("trade_id")["status"]
    frame = fees.assign(status=fees["trade_id"].map(status).fillna("unsettled"))
    frame["commission_both"] = frame["commission"] * 2
    records = []
    received = holding_changes[holding_changes["height"] > 0]
    for currency, mine in frame.groupby("currency"):
        settled = mine[mine["status"] == "settled"]
        pending = mine[mine["status"] != "settled"]
        cash = received[received["asset"] == currency]
        record = {
            "currency": currency,
            "commission_settled": int(settled["commission_both"].sum()),
            "stamp_duty_settled": int(settled["stamp_duty"].sum()),
            "commission_pending": int(pending["commission_both"].sum()),
            "stamp_duty_pending": int(pending["stamp_duty"].sum()),
            "pending_trades": len(pending),
            "fee_account_received": int(
                cash.loc[cash["account"] == FEE_ACCOUNT, "holding_delta"].sum()
            ),
            "tax_account_received": int(
                cash.loc[cash["account"] == TAX_ACCOUNT, "holding_delta"].sum()
            ),
        }
        record["explained"] = (
            record["commission_settled"] == record["fee_account_received"]
            and record["stamp_duty_settled"] == record["tax_account_received"]
        )
        records.append(record)
    return pd.DataFrame.from_records(records)


def fails(settlements: pd.DataFrame, orders: pd.DataFrame) -> pd.DataFrame:
    """Every settlement fail (`cycle_failed`: cycle, asset, account, shortfall) and every order
    refused because its account could not fund it (`order_unfunded`: the amount required of
        the asset the event names, which the derived table does not keep), as one frame with `kind`
    cycle_failed or order_unfunded."""
    failed = settlements[settlements["event"] == "cycle_failed"]
    cycle = pd.DataFrame(
        {"kind": "cycle_failed", "height": failed["height"], "time_ns": failed["time_ns"],
         "cycle_id": failed["cycle_id"], "order_id": pd.NA, "symbol": pd.NA,
         "asset": failed["asset"],
         "account": failed["account"], "amount": failed["amount"]}
    )  # fmt: skip
    unfunded = orders[orders["event"] == "order_unfunded"]
    order = pd.DataFrame(
        {"kind": "order_unfunded", "height": unfunded["height"], "time_ns": unfunded["time_ns"],
         "cycle_id": pd.NA, "order_id": unfunded["order_id"], "symbol": unfunded["symbol"],
         "asset": pd.NA,
         "account": unfunded["account"], "amount": unfunded["quantity"]}
    )  # fmt: skip
    parts = [part for part in (cycle, order) if not part.empty]
    if not parts:
        return cycle
    return pd.concat(parts, ignore_index=True)
