"""Reading a node or its export (fixed schemas, versions, DuckDB), the simulator's files,
reconciliation against independent copies, and the settlement view's fee tables."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from exchange.analysis import checks, post_trade
from exchange.analysis.export import export_node
from exchange.analysis.schema import (
    LEDGER_SCHEMAS,
    SCHEMA_VERSION,
    TABLE_KEY,
    VERSION_KEY,
    SchemaError,
    check_file,
    conform,
)
from exchange.analysis.source import SourceError, open_source
from exchange.venue.setup import FEE_ACCOUNT, TAX_ACCOUNT
from simulator.outputs import as_written, exchange_labels
from tests.analysis_ledger import Session, generate_session

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    return generate_session(tmp_path_factory.mktemp("session"), seed=5, blocks=40)


@pytest.fixture(scope="module")
def exported(session: Session, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    export_node(session.node, out)
    return out


def test_a_node_and_its_export_give_the_same_tables(session: Session, exported: Path) -> None:
    with open_source(session.node) as node, open_source(exported) as export:
        assert (node.kind, export.kind) == ("node", "export") and export.ledger is None
        for name, frame in node.tables().as_dict().items():
            pd.testing.assert_frame_equal(frame, getattr(export.tables(), name), obj=name)
            assert list(frame.columns) == LEDGER_SCHEMAS[name].names
        sql = "SELECT symbol, sum(quantity) AS volume FROM trades GROUP BY 1 ORDER BY 1"
        pd.testing.assert_frame_equal(node.query(sql), export.query(sql))
        trades = node.tables().trades
        expected = trades.groupby("symbol")["quantity"].sum()
        assert node.query(sql).set_index("symbol")["volume"].to_dict() == expected.to_dict()
        assert node.query(sql)["volume"].dtype == "int64"  # DuckDB's HUGEINT sum, back to int64


def test_every_exported_file_has_its_fixed_schema_and_version(exported: Path) -> None:
    for name, schema in LEDGER_SCHEMAS.items():
        stored = pq.read_schema(exported / f"{name}.parquet")
        assert stored.remove_metadata().equals(schema), name
        assert stored.metadata[VERSION_KEY] == str(SCHEMA_VERSION).encode()
        assert stored.metadata[TABLE_KEY] == f"ledger.{name}".encode()
    # an empty table (no evidence on an honest consortium) keeps its types, never Arrow null
    evidence = pq.read_table(exported / "evidence.parquet")
    assert evidence.num_rows == 0 and not any(pa.types.is_null(t) for t in evidence.schema.types)
    times = pq.read_schema(exported / "trades.parquet").field("time").type
    assert times == pa.timestamp("ns", tz="UTC")


def test_conform_types_empty_and_missing_columns_and_refuses_extra_ones() -> None:
    schema = LEDGER_SCHEMAS["accounts"]
    table = conform(pa.table({"account": pa.nulls(2)}), schema)
    assert table.schema.equals(schema) and table.column("broker").null_count == 2
    with pytest.raises(SchemaError, match=r"columns \['colour'\] are not in the schema"):
        conform(pa.table({"account": ["1"], "colour": ["red"]}), schema)
    with pytest.raises(SchemaError, match="column 'account' of type"):
        conform(pa.table({"account": [[1]]}), schema)


def test_readers_refuse_other_versions_and_tables_by_name(exported: Path, tmp_path: Path) -> None:
    trades = pq.read_table(exported / "trades.parquet")
    old = tmp_path / "trades.parquet"
    pq.write_table(trades.replace_schema_metadata({}), old)  # as written before versions
    with pytest.raises(SchemaError, match=r"trades.parquet: schema version 1 .* needs version 2"):
        check_file(old, "ledger", "trades")
    metadata = {VERSION_KEY: b"1", TABLE_KEY: b"ledger.trades"}
    pq.write_table(trades.replace_schema_metadata(metadata), old)
    with pytest.raises(SchemaError, match="schema version 1 is older than this reader's 2"):
        check_file(old, "ledger", "trades")
    metadata[VERSION_KEY] = b"3"
    pq.write_table(trades.replace_schema_metadata(metadata), old)
    with pytest.raises(SchemaError, match="schema version 3 is newer"):
        check_file(old, "ledger", "trades")
    with pytest.raises(SchemaError, match=r"holds the table 'ledger\.trades', not ledger\.orders"):
        check_file(exported / "trades.parquet", "ledger", "orders")
    # a whole export directory with one old file is refused when opened
    copy = tmp_path / "export"
    shutil.copytree(exported, copy)
    pq.write_table(trades.replace_schema_metadata({}), copy / "trades.parquet")
    with pytest.raises(SchemaError, match="schema version 1"):
        open_source(copy)
    (copy / "fees.parquet").unlink()
    with pytest.raises(SourceError, match=r"the export lacks fees \(.parquet\)"):
        open_source(copy)
    with pytest.raises(SourceError, match="neither a node directory"):
        open_source(tmp_path / "nothing")


def test_the_documented_queries_run(exported: Path) -> None:
    """Every ```sql block of docs/analysis.md runs on an export and returns rows."""
    text = (ROOT / "docs" / "analysis.md").read_text()
    queries = re.findall(r"```sql\n(.*?)```", text, flags=re.DOTALL)
    assert len(queries) >= 3
    with open_source(exported) as source:
        for sql in queries:
            assert len(source.query(sql)) > 0, sql


def test_simulator_labels_name_the_exchange_order_ids() -> None:
    """Network mode: the agent's ids map to the exchange's through the orders table."""
    labels = pa.table({"time_ns": [5, 6, 7], "agent_id": [1, 1, 1],
                       "label": ["spoofing"] * 3, "role": ["layer"] * 3,
                       "order_id": [101, 102, 103], "symbol": ["A"] * 3})  # fmt: skip
    orders = pa.table({"order_id": [101, 102, 101], "action": ["place", "place", "cancel"],
                       "exchange_order_id": [9001, 9002, None]})  # fmt: skip
    mapped = exchange_labels(labels, orders)
    assert mapped.column("order_id").to_pylist() == [9001, 9002, None]  # 103 never acknowledged
    assert mapped.column("client_order_id").to_pylist() == [101, 102, 103]
    in_process = exchange_labels(labels, orders.drop_columns(["exchange_order_id"]))
    assert in_process.column("order_id").equals(in_process.column("client_order_id"))


def test_simulator_files_state_epoch_times() -> None:
    day_start = 1_767_576_600_000_000_000  # 2026-01-05 09:30 Shanghai
    trades = pa.table({"trade_id": [1], "time_ns": [2_500_000_000], "price": [1000]})
    written = as_written({"trades": trades}, day_start)["trades"]
    assert written.column("time_ns").to_pylist() == [day_start + 2_500_000_000]
    moment = written.column("time").to_pylist()[0]
    assert (
        str(pd.Timestamp(moment).tz_convert("Asia/Shanghai")) == "2026-01-05 09:30:02.500000+08:00"
    )
    assert written.column("quantity").null_count == 1  # fixed schema: absent column typed


def test_reconciliation_compares_independent_copies(session: Session, tmp_path: Path) -> None:
    result = checks.reconcile_copies(session.node, session.consortium)
    assert result.copies[0] == session.node.name and result.copies[-1] == checks.REEXECUTION
    assert len(set(result.copies)) == len(result.copies) >= 3  # members and the re-execution
    assert result.frame["agree"].all()
    assert result.frame[checks.REEXECUTION].notna().all()
    # one node alone: compared with the re-execution, and said so
    alone = tmp_path / "alone"
    shutil.copytree(session.node, alone / session.node.name)
    shutil.copy(session.consortium / "genesis.json", alone / "genesis.json")
    single = checks.reconcile_copies(alone / session.node.name, alone)
    assert single.copies == [session.node.name, checks.REEXECUTION]
    assert "no other member's store" in single.method
    assert single.frame["agree"].all()


def _fees(rows: list[tuple[int, str, str, int, int, int]]) -> pd.DataFrame:
    columns = ["trade_id", "buyer_broker", "seller_broker", "notional", "commission",
               "stamp_duty"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns).assign(currency="CNY")


def test_broker_fees_charge_each_side_to_its_own_broker() -> None:
    # trade 1: A buys from B, commission 3 a side, stamp duty 5; trade 2: B buys from A, 2 and 4
    fees = _fees([(1, "A", "B", 1000, 3, 5), (2, "B", "A", 600, 2, 4)])
    table = post_trade.broker_fees(fees).set_index("broker")
    # A: its buyer's commission of trade 1 (3) + its seller's of trade 2 (2) and stamp duty 4
    both = {"trades_bought": 1, "trades_sold": 1, "notional": 1600, "commission": 5}
    assert table.loc["A"].to_dict() == {**both, "stamp_duty": 4, "fees_total": 9}
    assert table.loc["B"].to_dict() == {**both, "stamp_duty": 5, "fees_total": 10}


def test_fee_accounts_explain_the_fees_of_unsettled_cycles() -> None:
    fees = _fees([(1, "A", "B", 1000, 3, 5), (2, "B", "A", 600, 2, 4)])
    timing = pd.DataFrame({"trade_id": [1, 2], "status": ["settled", "pending"]})
    changes = pd.DataFrame({
        "height": [0, 3, 3], "account": [FEE_ACCOUNT, FEE_ACCOUNT, TAX_ACCOUNT],
        "asset": ["CNY"] * 3, "holding_delta": [100, 6, 5],
    })  # fmt: skip
    row = post_trade.fee_accounts(fees, timing, changes).iloc[0].to_dict()
    assert row == {"currency": "CNY", "commission_settled": 6, "stamp_duty_settled": 5,
                   "commission_pending": 4, "stamp_duty_pending": 4, "pending_trades": 1,
                   "fee_account_received": 6, "tax_account_received": 5,
                   "explained": True}  # fmt: skip
