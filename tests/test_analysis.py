"""The analysis library on small hand-made ledgers with answers computed by hand, and on the
seeded session of `tests.analysis_ledger` (book rebuilt against the engine's, reconciliation,
conservation, detectors against the planted abuse)."""

from __future__ import annotations

import math
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from exchange.analysis import checks, market, post_trade, surveillance
from exchange.analysis import tables as t
from exchange.analysis.schema import SchemaError, write_table
from exchange.cli import main
from exchange.consortium.audit import UsageError
from exchange.venue import wire
from matching.types import Side, name_of
from settlement.commands import SettleCycle
from tests.analysis_ledger import Session, generate_session
from tests.chain import SYMBOLS, TIME_NS_START, Chain

SECOND = 1_000_000_000
GROSS, NET = SYMBOLS[0], SYMBOLS[1]


def at(seconds: int) -> int:
    return TIME_NS_START + seconds * SECOND


@pytest.fixture
def vwap_chain(tmp_path: Path) -> Chain:
    """Three trades: 200 @ 1000 and 100 @ 1000 (order 1), 100 @ 1005 (order 3).
    VWAP = (200 x 1000 + 100 x 1000 + 100 x 1005) / 400 = 1001.25."""
    chain = Chain.create(tmp_path)
    chain.add_block(
        [*chain.opening(), chain.place(1, "10001", Side.SELL, 1000, 300)], time_ns=at(0)
    )
    chain.add_block([chain.place(2, "20001", Side.BUY, 1000, 200)], time_ns=at(10))
    chain.add_block(
        [
            chain.place(3, "10002", Side.SELL, 1005, 100),
            chain.place(4, "20002", Side.BUY, 1005, 200),
            chain.place(5, "20001", Side.BUY, 990, 100),
            chain.cancel(5, "20001"),
        ],
        time_ns=at(70),
    )
    chain.close()
    return chain


def test_tables_of_a_hand_made_ledger(vwap_chain: Chain) -> None:
    with t.NodeLedger.open(vwap_chain.node) as ledger:
        tables = t.load(ledger)
    assert list(tables.blocks["height"]) == [1, 2, 3]
    assert list(tables.blocks["votes"]) == [4, 4, 4]
    assert list(tables.trades["price"]) == [1000, 1000, 1005]
    assert list(tables.trades["quantity"]) == [200, 100, 100]
    assert list(tables.trades["buy_broker"]) == ["broker2", "broker2", "broker2"]
    assert tables.trades["time_ns"].tolist() == [at(10), at(70), at(70)]
    life = tables.order_lifecycle.set_index("order_id")
    assert life.loc[1, "status"] == "filled" and life.loc[1, "filled"] == 300
    assert life.loc[4, "filled"] == 200 and life.loc[4, "open"] == 0
    assert life.loc[5, "status"] == "cancelled" and life.loc[5, "cancelled"] == 100
    assert tables.commands["type"].tolist().count("place") == 5
    assert tables.evidence.empty
    # Every holding change sums to the genesis supply: trades and fees only move assets.
    totals = t.balances_at(tables.holding_changes).sum()
    assert totals["CNY"] == 4 * 100_000_000 and totals[GROSS] == 4 * 100_000
    # The fee account got the commission of both sides of every trade: 3 bps, rounded down.
    fees = t.balances_at(tables.holding_changes).loc["FEES", "CNY"]
    assert fees == 2 * (60 + 30 + 30)


def test_vwap_and_bars_by_hand(vwap_chain: Chain) -> None:
    with t.NodeLedger.open(vwap_chain.node) as ledger:
        trades = t.trades(ledger)
    assert market.vwap(trades)[GROSS] == pytest.approx(1001.25)
    bars = market.ohlcv(trades, "1min")
    assert bars[["open", "high", "low", "close", "volume", "trades"]].values.tolist() == [
        [1000, 1000, 1000, 1000, 200, 1],
        [1000, 1005, 1000, 1005, 200, 2],
    ]
    assert bars["vwap"].tolist() == pytest.approx([1000.0, 1002.5])
    volatility = market.realized_volatility(bars).set_index("symbol")
    assert volatility.loc[GROSS, "realized_volatility"] == pytest.approx(math.log(1005 / 1000))
    # Volume by account: 10001 300, 10002 100, 20001 200, 20002 200 of 800 (both sides).
    hhi = market.concentration(trades).set_index("symbol").loc[GROSS, "hhi"]
    assert hhi == pytest.approx(10_000 * ((3 / 8) ** 2 + (1 / 8) ** 2 + 2 * (2 / 8) ** 2))


def test_spreads_by_hand(tmp_path: Path) -> None:
    chain = Chain.create(tmp_path)
    chain.add_block(
        [*chain.opening(), chain.place(1, "10001", Side.BUY, 998, 500),
         chain.place(2, "10002", Side.SELL, 1002, 500)],
        time_ns=at(0),
    )  # fmt: skip
    chain.add_block([chain.place(3, "20001", Side.BUY, 1002, 100)], time_ns=at(10))
    chain.add_block([chain.place(4, "20002", Side.SELL, 1001, 100)], time_ns=at(20))
    chain.close()
    with t.NodeLedger.open(chain.node) as ledger:
        orders, trades = t.orders(ledger), t.trades(ledger)
    history = market.rebuild_book(orders, trades)
    last = history.quotes.iloc[-1]
    assert (last["bid"], last["ask"], last["bid_size"], last["ask_size"]) == (998, 1001, 500, 100)
    # One trade: a buy at 1002 when the mid was 1000: effective spread 2 x 2 / 1000 = 40 bps.
    # Ten seconds later the mid is (998 + 1001) / 2 = 999.5: realized 2 x 2.5 / 1000 = 50 bps.
    spreads = market.trade_spreads(trades, history, horizon_ns=15 * SECOND)
    assert spreads["effective_bps"].tolist() == pytest.approx([40.0])
    assert spreads["realized_bps"].tolist() == pytest.approx([50.0])
    quoted = market.quoted_spreads(history.quotes).set_index("symbol").loc[GROSS]
    # 4 ticks for 10 s, 4 ticks (998/1002, 400 left) for 10 s, then the last quote weighs 0.
    assert quoted["spread_ticks_tw"] == pytest.approx(4.0)


def test_the_rebuilt_book_is_the_engines_book(session: Session) -> None:
    with t.NodeLedger.open(session.node) as ledger:
        orders, trades = t.orders(ledger), t.trades(ledger)
        for header, venue in checks.replay(ledger):
            if header.height % 17 and header.height != 2:
                continue
            done = orders[orders["height"] <= header.height]
            history = market.rebuild_book(done, trades[trades["height"] <= header.height])
            for symbol in (GROSS, NET):
                engine = {
                    order.order_id: (name_of(order.side), order.price, order.quantity)
                    for order in venue.matching.orders(symbol)
                }
                assert history.resting.get(symbol, {}) == engine, (header.height, symbol)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    return generate_session(tmp_path_factory.mktemp("session"), seed=7, blocks=80)


def test_verification_of_a_session(session: Session) -> None:
    report = checks.audit(session.node)
    assert report.ok and report.blocks == 83  # opening, 80 with the spoof's two, close, end
    with t.NodeLedger.open(session.node) as ledger:
        assert checks.state_hash_reproduced(ledger, report)
        assert checks.certificate_checks(ledger)["failure"].isna().all()
        proofs = checks.trade_proofs(ledger, [1, 2, 10**6])
        changes = t.holding_changes(ledger)
        state = checks.state_balances(ledger, changes)
    assert proofs["verified"].tolist() == [True, True, False]
    assert proofs["failure"][2] == "trade 1000000 is not in the store"
    assert state["matches"].all() and len(state) > 8
    assert checks.conservation(changes)["conserved"].all()


def test_a_trade_in_an_uncertified_block_has_no_proof(tmp_path: Path) -> None:
    chain = Chain.create(tmp_path)
    chain.add_block([*chain.opening(), chain.place(1, "10001", Side.SELL, 1000, 100)])
    chain.add_block([chain.place(2, "20001", Side.BUY, 1000, 100)], certified=False)
    chain.close()
    with t.NodeLedger.open(chain.node) as ledger:
        proofs = checks.trade_proofs(ledger, [1])
        certified = checks.certificate_checks(ledger)["certified"].tolist()
    assert not proofs["verified"][0] and "not certified" in proofs["failure"][0]
    assert certified == [True, False]


def test_reconciliation_finds_the_node_that_differs(session: Session, tmp_path: Path) -> None:
    nodes = checks.member_nodes(session.consortium)
    assert [node.name for node in nodes] == ["bank1", "broker-node1", "depository1", "regulator1"]
    agreed = checks.reconcile(nodes)
    assert agreed["agree"].all() and (agreed["nodes"] == 4).all()
    # A copy of a member whose derived trade rows were changed after the fact.
    copy = shutil.copytree(session.consortium, tmp_path / "copy")
    with sqlite3.connect(copy / "broker-node1" / "ledger.sqlite") as db:
        height = db.execute("SELECT height FROM trades WHERE trade_id = 3").fetchone()[0]
        db.execute("UPDATE trades SET price = price + 1 WHERE trade_id = 3")
    found = checks.reconcile(checks.member_nodes(copy)).set_index("height")
    assert found.loc[height, "differs"] == "trades"
    assert found.drop(index=height)["agree"].all()
    with t.NodeLedger.open(copy / "broker-node1") as ledger:
        changes = t.holding_changes(ledger)
    assert checks.conservation(changes)["conserved"].all()  # prices move no holding


def test_conservation_fails_on_a_tampered_balance(session: Session, tmp_path: Path) -> None:
    copy = shutil.copytree(session.consortium, tmp_path / "copy")
    with sqlite3.connect(copy / "bank1" / "ledger.sqlite") as db:
        db.execute(
            "UPDATE balance_changes SET holding_delta = holding_delta + 1 "
            "WHERE (height, event_idx, leg) = "
            "(SELECT height, event_idx, leg FROM balance_changes WHERE asset = 'CNY' LIMIT 1)"
        )
    with t.NodeLedger.open(copy / "bank1") as ledger:
        changes = t.holding_changes(ledger)
        state = checks.state_balances(ledger, changes)
    conservation = checks.conservation(changes).set_index("asset")
    assert not conservation.loc["CNY", "conserved"]
    assert conservation.loc["CNY", "movements_net"] == 1
    assert conservation.drop(index="CNY")["conserved"].all()
    assert (~state["matches"]).sum() == 1


def test_settlement_timing_fees_netting_and_locks(tmp_path: Path) -> None:
    chain = Chain.create(tmp_path)
    chain.add_block(
        [*chain.opening(), chain.place(1, "10001", Side.SELL, 1000, 200),
         chain.place(2, "20001", Side.BUY, 1000, 200),
         chain.place(3, "10002", Side.SELL, 1200, 100, NET),
         chain.place(4, "20002", Side.BUY, 1190, 100, NET)],
        time_ns=at(0),
    )  # fmt: skip
    chain.add_block([chain.place(5, "20002", Side.BUY, 1200, 100, NET)], time_ns=at(5))
    chain.add_block([chain.cancel(4, "20002", NET)], time_ns=at(9))
    operator = chain.genesis.exchange.name
    settle = wire.venue_command_to_dict(SettleCycle(command_id=10**6, actor=operator))
    chain.add_block([settle], time_ns=at(30))
    chain.close()
    with t.NodeLedger.open(chain.node) as ledger:
        tables = t.load(ledger)
        locks = post_trade.locks_over_time(ledger).set_index(["height", "asset"])["locked"]
        netting = post_trade.netting(ledger)
    timing = post_trade.dvp_timing(tables.trades, tables.settlements).set_index("trade_id")
    assert timing.loc[1, "mode"] == "gross" and timing.loc[1, "delay_blocks"] == 0
    assert timing.loc[2, "mode"] == "cash_net" and timing.loc[2, "delay_blocks"] == 2
    assert timing.loc[2, "delay_ns"] == 25 * SECOND and timing.loc[2, "cycle_id"] == 1
    assert (timing["status"] == "settled").all()
    # Resting after block 1: order 4 (buy 100 @ 1190, cash plus its commission) and order 3.
    assert locks[(1, NET)] == 100 and locks[(1, "CNY")] >= 119_000
    assert locks[(3, NET)] == 0
    assert locks[(4, "CNY")] == 0  # the cycle used the escrow up
    fees = post_trade.fees_and_taxes(tables.fees).set_index("asset")
    # 200 @ 1000: commission 3 bps = 60 a side, stamp duty 5 bps = 100.
    assert fees.loc[GROSS, "commission"] == 120 and fees.loc[GROSS, "stamp_duty"] == 100
    assert netting["trade_count"].tolist() == [1]
    assert netting["ratio"][0] == pytest.approx(netting["gross_value"][0] / netting["net_value"][0])
    assert post_trade.fails(tables.settlements, tables.orders).empty


def test_detectors_by_hand(tmp_path: Path) -> None:
    chain = Chain.create(tmp_path, brokers=3)
    chain.add_block(
        [*chain.opening(), chain.place(1, "20001", Side.SELL, 1004, 200),
         chain.place(2, "20002", Side.BUY, 998, 200)],
        time_ns=at(0),
    )  # fmt: skip
    # A wash trade: broker3's two accounts, the same quantity, inside the spread.
    chain.add_block(
        [chain.place(3, "30001", Side.SELL, 1001, 300),
         chain.place(4, "30002", Side.BUY, 1001, 300)],
        time_ns=at(5),
    )  # fmt: skip
    # Spoofing: 10001 bids 6,000 three ticks behind the touch, sells 100 inside the spread,
    # is filled, cancels the bid a second later. 10002 bids 6,000 too but nothing fills it.
    chain.add_block(
        [chain.place(5, "10001", Side.BUY, 995, 6000),
         chain.place(6, "10002", Side.BUY, 995, 6000),
         chain.place(7, "10001", Side.SELL, 1002, 100),
         chain.place(8, "20002", Side.BUY, 1002, 100)],
        time_ns=at(10),
    )  # fmt: skip
    chain.add_block([chain.cancel(5, "10001"), chain.cancel(6, "10002")], time_ns=at(11))
    # A trade between two brokers is not a wash trade.
    chain.add_block([chain.place(9, "30001", Side.BUY, 1004, 100)], time_ns=at(20))
    # Marking the close: 30002 buys through the ask in the last seconds, moving the price.
    chain.add_block(
        [chain.place(10, "20001", Side.SELL, 1030, 500),
         chain.place(11, "30002", Side.BUY, 1030, 300)],
        time_ns=at(58),
    )  # fmt: skip
    chain.close()
    with t.NodeLedger.open(chain.node) as ledger:
        tables = t.load(ledger)
    history = market.rebuild_book(tables.orders, tables.trades)
    wash = surveillance.wash_trades(tables.trades, tables.order_lifecycle)
    assert wash["reason"].tolist() == ["same_broker"]
    assert (wash["buy_account"][0], wash["sell_account"][0]) == ("30002", "30001")
    owners = {"20001": "fund-a", "30001": "fund-a"}  # one beneficial owner, two brokers
    same_owner = surveillance.wash_trades(tables.trades, tables.order_lifecycle, owners)
    assert "same_owner" in same_owner["reason"].tolist()
    spoof = surveillance.spoofing(tables.order_lifecycle, tables.orders, tables.trades, history,
                                  size_factor=5)  # fmt: skip
    assert spoof["order_id"].tolist() == [5]
    assert spoof["ticks_behind_touch"][0] == 3 and spoof["cancel_delay_ns"][0] == SECOND
    # the distance is relative to the touch's price: 3 ticks behind it, in bps of it
    price = int(spoof["price"][0])
    touch = price + 3 if spoof["side"][0] == "buy" else price - 3
    behind_bps = 3 / touch * 10_000
    assert spoof["bps_behind_touch"][0] == pytest.approx(behind_bps)
    for away_bps, flagged in ((behind_bps - 0.01, [5]), (behind_bps + 0.01, [])):
        found = surveillance.spoofing(tables.order_lifecycle, tables.orders, tables.trades,
                                      history, size_factor=5, away_bps=away_bps)  # fmt: skip
        assert found["order_id"].tolist() == flagged, away_bps
    with pytest.raises(ValueError, match="away_bps -1"):
        surveillance.spoofing(tables.order_lifecycle, tables.orders, tables.trades, history,
                              away_bps=-1)  # fmt: skip
    close = surveillance.marking_the_close(tables.trades, window_ns=10 * SECOND)
    # 100 @ 1004 (what was left of order 1), then 200 @ 1030; before the window the last price
    # was 1004 (at 20 s), so the close moved the price by 26 / 1004 = 259 bps.
    assert close["price"].tolist() == [1004, 1030] and set(close["account"]) == {"30002"}
    assert close["move_bps"][0] == pytest.approx((1030 - 1004) / 1004 * 10_000)
    wash_id = int(wash["trade_id"][0])
    labels = pd.DataFrame(
        {"label": ["wash_trade", "wash_trade", "spoofing"], "trade_id": [wash_id, 999, None],
         "order_id": [None, None, 5]}
    )  # fmt: skip
    path = tmp_path / "labels.csv"
    labels.to_csv(path, index=False)
    scores = surveillance.scores(
        {"wash_trade": wash, "spoofing": spoof}, surveillance.read_labels(path)
    ).set_index("detector")
    assert scores.loc["wash_trade", "precision"] == 1.0
    assert scores.loc["wash_trade", "recall"] == 0.5
    assert scores.loc["spoofing", "recall"] == 1.0


def test_labels_must_name_their_ids(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    pd.DataFrame({"label": ["spoofing"], "trade_id": [1]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="spoofing labels need a 'order_id' column"):
        surveillance.read_labels(path)


def test_the_detectors_find_the_planted_abuse(session: Session) -> None:
    with t.NodeLedger.open(session.node) as ledger:
        tables = t.load(ledger)
    history = market.rebuild_book(tables.orders, tables.trades)
    found = {
        "wash_trade": surveillance.wash_trades(tables.trades, tables.order_lifecycle),
        "spoofing": surveillance.spoofing(
            tables.order_lifecycle, tables.orders, tables.trades, history
        ),
        "marking_the_close": surveillance.marking_the_close(tables.trades),
    }
    scores = surveillance.scores(found, surveillance.read_labels(session.labels))
    assert scores["labelled"].tolist() == [2, 3, 8]
    assert (scores["recall"] == 1.0).all() and (scores["precision"] == 1.0).all()


def test_export_writes_parquet(
    vwap_chain: Chain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["export", str(vwap_chain.node), "--out", str(out)]) == 0
    assert f"{out / 'trades.parquet'}: 3 rows" in capsys.readouterr().out
    trades = pd.read_parquet(out / "trades.parquet")
    assert trades["price"].tolist() == [1000, 1000, 1005]
    assert str(trades["price"].dtype) == "int64"
    assert sorted(path.name for path in out.iterdir()) == sorted(
        f"{name}.parquet" for name in t.Tables.__dataclass_fields__
    )
    assert main(["export", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "node.json" in capsys.readouterr().err
    with pytest.raises(UsageError):
        t.NodeLedger.open(tmp_path / "nowhere")


def test_order_level_labels_map_to_the_trades_they_made(session: Session, tmp_path: Path) -> None:
    """The simulator's shape: one row per labelled order, a role, `marking_close`."""
    with t.NodeLedger.open(session.node) as ledger:
        trades = t.trades(ledger)
    planted = surveillance.read_labels(session.labels)
    wash = trades[trades["trade_id"].isin(surveillance.truth(planted, "wash_trade"))]
    closing = trades[trades["trade_id"].isin(surveillance.truth(planted, "marking_the_close"))]
    rows = [("wash_trade", "sell_leg", order) for order in wash["sell_order_id"]]
    rows += [("wash_trade", "buy_leg", order) for order in wash["buy_order_id"]]
    rows += [("marking_close", "mark", order) for order in closing["buy_order_id"].unique()]
    rows += [("spoofing", "layer", order) for order in surveillance.truth(planted, "spoofing")]
    rows += [("spoofing", "genuine", 999_999)]
    path = tmp_path / "labels.parquet"
    frame = pd.DataFrame(rows, columns=["label", "role", "order_id"])
    frame = frame.assign(time_ns=0, agent_id=1, symbol=GROSS)
    frame.to_parquet(path)  # as the simulator wrote it before schema versions: refused
    with pytest.raises(SchemaError, match=r"labels.parquet: schema version 1 .* needs version 2"):
        surveillance.read_labels(path)
    write_table(pa.Table.from_pandas(frame, preserve_index=False), path, "simulator", "labels")
    labels = surveillance.read_labels(path)
    for label in ("wash_trade", "marking_the_close", "spoofing"):
        assert surveillance.truth(labels, label, trades) == surveillance.truth(planted, label)
    with pytest.raises(ValueError, match="pass the trades"):
        surveillance.truth(labels, "wash_trade")


def test_nanosecond_times_stay_exact(tmp_path: Path) -> None:
    """Times past 2**53 ns would be rounded by a float64 column (to multiples of 256 ns)."""
    chain = Chain.create(tmp_path)
    odd = at(0) + 7
    chain.add_block([*chain.opening(), chain.place(1, "10001", Side.SELL, 1000, 100)], time_ns=odd)
    chain.add_block([chain.place(2, "20001", Side.BUY, 1000, 100)], time_ns=odd + 1)
    chain.close()
    with t.NodeLedger.open(chain.node) as ledger:
        tables = t.load(ledger)
    assert tables.blocks["time_ns"].tolist() == [odd, odd + 1]
    assert tables.trades["time_ns"].tolist() == [odd + 1]
    assert tables.holding_changes["time_ns"].dropna().unique().tolist() == [odd + 1]
    assert tables.order_lifecycle["accepted_time_ns"].tolist() == [odd, odd + 1]
    timing = post_trade.dvp_timing(tables.trades, tables.settlements)
    assert timing["settled_time_ns"].tolist() == [odd + 1] and timing["delay_ns"].tolist() == [0]
