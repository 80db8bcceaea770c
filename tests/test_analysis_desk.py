"""The analysts' questions (`exchange.analysis.desk`) against answers computed by hand, on
small tables built in the fixed schemas, and on a seeded session's ledger."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from exchange.analysis import desk, market
from exchange.analysis import tables as t
from exchange.analysis.schema import LEDGER_SCHEMAS
from tests.analysis_ledger import Session, generate_session

DAY1 = pd.Timestamp("2026-01-05 01:35", tz="UTC")  # 09:35 in Shanghai, trading day 20260105
DAY2 = pd.Timestamp("2026-01-05 17:00", tz="UTC")  # 01:00 on the 6th in Shanghai: 20260106


def _frame(name: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=LEDGER_SCHEMAS[name].names)
    return t.typed(frame, name)


def _tables(**frames: list[dict[str, Any]]) -> t.Tables:
    return t.Tables(**{name: _frame(name, frames.get(name, [])) for name in LEDGER_SCHEMAS})


def _trade(trade_id: int, time: pd.Timestamp, buyer: str, seller: str, price: int, quantity: int,
           aggressor: str | None = "buy") -> dict[str, Any]:  # fmt: skip
    return {"trade_id": trade_id, "height": trade_id, "event_idx": 0, "symbol": "X",
            "price": price, "quantity": quantity, "buy_account": buyer, "sell_account": seller,
            "aggressor": aggressor, "time": time, "time_ns": time.value,
            "buy_broker": f"broker-{buyer}", "sell_broker": f"broker-{seller}",
            "notional": price * quantity}  # fmt: skip


@pytest.fixture
def two_days() -> t.Tables:
    """A holds 100 X and C 300 X at the genesis (reference price 1000). Day 1: A sells 100 to
    B at 1100, then buys 200 from C at 1050 (no closing auction: marked to the last trade).
    Day 2: B sells its 100 to C at 1200 in the closing auction."""
    genesis = [{"height": 0, "event_idx": -1, "leg": leg, "account": account, "asset": "X",
                "holding_delta": amount, "event": "genesis"}
               for leg, (account, amount) in enumerate([("A", 100), ("C", 300)])]  # fmt: skip
    auction = {"height": 3, "event_idx": 0, "time": DAY2, "time_ns": DAY2.value, "symbol": "X",
               "phase": "closing_auction", "price": 1200, "volume": 100, "imbalance": -300,
               "imbalance_side": "sell"}  # fmt: skip
    fee = {"time": DAY1, "time_ns": DAY1.value, "trade_id": 1, "asset": "X", "currency": "CNY",
           "buyer": "B", "seller": "A", "commission": 33, "stamp_duty": 55}  # fmt: skip
    return _tables(
        instruments=[{"symbol": "X", "reference_price": 1000, "t_plus": 1}],
        holding_changes=genesis,
        trades=[
            _trade(1, DAY1, "B", "A", 1100, 100),
            _trade(2, DAY1, "A", "C", 1050, 200),
            _trade(3, DAY2, "C", "B", 1200, 100, aggressor=None),
        ],
        auctions=[auction],
        fees=[fee],
    )


def test_positions_and_pnl_on_average_cost(two_days: t.Tables) -> None:
    frame = desk.positions_pnl(two_days).set_index(["day", "account"])
    columns = ["bought", "sold", "position", "cost", "realized_pnl", "close_price", "mark",
               "unrealized_pnl", "commission", "stamp_duty", "pending_t1"]  # fmt: skip
    expected = {
        # A: sells its 100 (cost 100 x 1000) at 1100: +10,000; buys 200 at 1050
        (20260105, "A"): [200, 100, 200, 210_000, 10_000, 1050, "last_trade", 0, 33, 55, 200],
        (20260105, "B"): [100, 0, 100, 110_000, 0, 1050, "last_trade", -5_000, 33, 0, 100],
        # C: 300 at 1000, sells 200 at 1050: cost out 200,000, +10,000; 100 left at 1050
        (20260105, "C"): [0, 200, 100, 100_000, 10_000, 1050, "last_trade", 5_000, 0, 0, 0],
        (20260106, "A"): [0, 0, 200, 210_000, 0, 1200, "close_auction", 30_000, 0, 0, 0],
        (20260106, "B"): [0, 100, 0, 0, 10_000, 1200, "close_auction", 0, 0, 0, 0],
        (20260106, "C"): [100, 0, 200, 220_000, 0, 1200, "close_auction", 20_000, 0, 0, 100],
    }
    assert sorted(frame.index) == sorted(expected)
    for key, values in expected.items():
        assert frame.loc[key, columns].tolist() == values, key
    only = desk.positions_pnl(two_days, days=(20260106, 20260106))
    assert set(only["day"]) == {20260106} and len(only) == 3
    with pytest.raises(ValueError, match=r"days \(2, 1\): the first day is after the last"):
        desk.positions_pnl(two_days, days=(2, 1))


def test_closing_prices_and_auctions(two_days: t.Tables) -> None:
    marks = desk.closing_prices(two_days)
    assert marks[["day", "close_price", "mark"]].values.tolist() == [
        [20260105, 1050, "last_trade"], [20260106, 1200, "close_auction"]]  # fmt: skip
    auctions = desk.auction_summary(two_days)
    columns = ["day", "auction", "price", "volume", "notional", "imbalance"]
    assert auctions[columns].values.tolist() == [[20260106, "closing", 1200, 100, 120_000, -300]]


def test_order_ratios_per_broker_and_day() -> None:
    def order(order_id: int, broker: str, quantity: int, filled: int, cancelled: int
              ) -> dict[str, Any]:  # fmt: skip
        return {
            "order_id": order_id,
            "broker": broker,
            "quantity": quantity,
            "filled": filled,
            "cancelled": cancelled,
            "accepted_time": DAY1,
            "accepted_time_ns": DAY1.value,
        }

    tables = _tables(
        order_lifecycle=[order(1, "b1", 100, 100, 0), order(2, "b1", 100, 0, 100),
                         order(3, "b1", 100, 0, 0), order(4, "b2", 300, 100, 200)],
        trades=[{**_trade(1, DAY1, "A", "B", 1000, 100), "buy_broker": "b1",
                 "sell_broker": "b2"}],
    )  # fmt: skip
    frame = desk.order_ratios(tables).set_index("broker")
    assert frame.loc["b1", ["orders", "orders_filled", "orders_cancelled", "fills"]].tolist() \
        == [3, 1, 1, 1]  # fmt: skip
    assert frame.loc["b1", "order_to_trade"] == 3.0
    assert frame.loc["b1", "cancel_ratio"] == pytest.approx(1 / 3)
    assert frame.loc["b2", ["orders", "orders_cancelled", "fills", "cancel_ratio"]].tolist() \
        == [1, 1, 1, 1.0]  # fmt: skip


def test_a_rows_day_is_the_last_begin_day_before_it_on_the_chain() -> None:
    """Two days begun on one exchange date (a network run's clock): the day comes from the
    calendar by position, not from the clock; a row before the first begin_day, or without a
    position, keeps its date in the exchange's time zone."""
    days = [
        {"day": 20260107, "height": 2, "event_idx": 0, "time": DAY1, "time_ns": DAY1.value},
        {"day": 20260108, "height": 5, "event_idx": 3, "time": DAY1, "time_ns": DAY1.value},
    ]
    trades = [_trade(trade_id, DAY1, "A", "B", 1000, 100) for trade_id in range(1, 8)]
    for trade, event_idx in zip(trades, [0, 0, 1, 0, 2, 4, 0], strict=True):
        trade["event_idx"] = event_idx  # heights 1-7: 1 before the calendar, (5, 2) before day 2
    tables = _tables(days=days, trades=trades)
    found = desk.day_of(tables.trades, tables.days).tolist()
    assert found == [20260105, 20260107, 20260107, 20260107, 20260107, 20260108, 20260108]
    assert desk.order_ratios(tables)["day"].unique().tolist() == [20260105, 20260107, 20260108]
    unplaced = tables.trades.assign(height=pd.array([None] * 7, dtype="Int64"))
    assert desk.day_of(unplaced, tables.days).tolist() == [20260105] * 7
    assert desk.day_of(tables.trades, tables.days.iloc[:0]).tolist() == [20260105] * 7


def test_account_owners(two_days: t.Tables) -> None:
    tables = _tables(accounts=[{"account": "A", "broker": "b1"}, {"account": "B", "broker": "b2"},
                               {"account": "FEES", "broker": None}],
                     trades=[_trade(1, DAY1, "B", "A", 1100, 100)])  # fmt: skip
    owners = desk.account_owners(tables).fillna({"broker": "-"})
    assert owners.values.tolist() == [["A", "b1", 1, 100], ["B", "b2", 1, 100],
                                      ["FEES", "-", 0, 0]]  # fmt: skip


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    return generate_session(tmp_path_factory.mktemp("session"), seed=11, blocks=40)


def test_the_questions_hold_together_on_a_real_ledger(session: Session) -> None:
    with t.NodeLedger.open(session.node) as ledger:
        tables = t.load(ledger)
    history = market.rebuild_book(tables.orders, tables.trades)
    quality = desk.execution_quality(tables, history, horizon_ns=5_000_000_000)
    spreads = market.trade_spreads(tables.trades, history, horizon_ns=5_000_000_000)
    assert quality["aggressive_trades"].sum() == len(spreads)
    accepted = tables.order_lifecycle[tables.order_lifecycle["accepted_time"].notna()]
    assert quality["filled"].sum() == accepted["filled"].sum()
    assert ((quality["fill_rate"] >= 0) & (quality["fill_rate"] <= 1)).all()
    positions = desk.positions_pnl(tables)
    # every share is somewhere: the day's positions sum to the genesis supply of each symbol
    supply = tables.holding_changes[tables.holding_changes["height"] == 0]
    supply = supply.groupby("asset")["holding_delta"].sum()
    last = positions[positions["day"] == positions["day"].max()]
    for symbol, held in last.groupby("symbol")["position"].sum().items():
        assert held == supply[symbol], symbol
    ratios = desk.order_ratios(tables)
    assert ratios["fills"].sum() == 2 * len(tables.trades)
