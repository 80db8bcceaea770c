"""The supply-chain tables for analysts (`exchange.analysis.supply_chain`) on a seeded ledger
of real certified blocks (`tests.scf_ledger`): the same from the node and from its export,
true to the venue's own state at the end, fixed types when empty, and the invariants the
notebook asserts."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.analysis import checks
from exchange.analysis import supply_chain as sc
from exchange.analysis.export import export_node
from exchange.analysis.schema import LEDGER_SCHEMAS
from exchange.analysis.source import open_source
from exchange.analysis.tables import Tables, arrow_frame
from settlement.supply_chain_types import LIVE_STATUSES, PieceStatus
from tests.scf_ledger import ScfLedger, generate_scf_ledger


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> ScfLedger:
    return generate_scf_ledger(tmp_path_factory.mktemp("scf"), seed=1)


@pytest.fixture(scope="module")
def tables(ledger: ScfLedger) -> Tables:
    with open_source(ledger.node) as source:
        return source.tables()


def test_the_export_holds_the_same_tables(
    ledger: ScfLedger, tables: Tables, tmp_path: Path
) -> None:
    counts = export_node(ledger.node, tmp_path / "out")
    assert counts["commitments"] == len(tables.commitments) > 20
    with open_source(tmp_path / "out") as exported:
        again = exported.tables()
        sql = exported.query(
            "SELECT issuer, sum(amount) AS amount FROM commitments "
            "WHERE status = 'outstanding' GROUP BY 1 ORDER BY 1"
        )
    for name in ("days", *sc.TABLES, "holding_changes"):
        pd.testing.assert_frame_equal(getattr(tables, name), getattr(again, name), obj=name)
    live = tables.commitments[tables.commitments["status"] == "outstanding"]
    assert sql.set_index("issuer")["amount"].to_dict() == live.groupby("issuer")["amount"].sum(
    ).to_dict()  # fmt: skip


def test_the_tables_tell_what_the_venue_holds(ledger: ScfLedger, tables: Tables) -> None:
    pieces = tables.commitments.set_index("piece")
    assert sorted(pieces.index) == sorted(ledger.pieces)
    for piece_id, (status, holder, amount, parent, pledgee) in ledger.pieces.items():
        row = pieces.loc[piece_id]
        assert (row["holder"], row["amount"]) == (holder, amount), piece_id
        assert (0 if pd.isna(row["parent"]) else row["parent"]) == parent, piece_id
        expected = {PieceStatus.SPLIT: "split", PieceStatus.PAID: "paid",
                    PieceStatus.FAILED: "failed", PieceStatus.RECOVERED: "failed"}  # fmt: skip
        assert row["status"] == expected.get(status, "outstanding"), piece_id
        assert row["pledged"] == (status is PieceStatus.PLEDGED), piece_id
        assert (row["pledgee"] or "") == pledgee if row["pledged"] else True, piece_id
        assert (row["recovered"] == amount) == (status is PieceStatus.RECOVERED), piece_id
        assert row["confirmed"] == (status is not PieceStatus.UNCONFIRMED), piece_id
    live = [p for p, (status, *_) in ledger.pieces.items() if status in LIVE_STATUSES]
    assert sorted(tables.commitments.query("status == 'outstanding'")["piece"]) == sorted(live)
    assert tables.days["day"].tolist() == list(ledger.days)


def test_what_must_hold_holds(ledger: ScfLedger, tables: Tables) -> None:
    commitments, payments = tables.commitments, tables.commitment_payments
    assert sc.split_sums(commitments)["ok"].all()
    settled = sc.settled_once(commitments, payments, sc.last_day(tables.days))
    assert settled["ok"].all(), settled[~settled["ok"]]
    assert settled["matured"].any() and (~settled["matured"]).any()
    issued = sc.issued_conservation(commitments)
    assert issued["ok"].all(), issued
    assert set(payments["event"]) == {"paid", "failed", "recourse_claimed", "recourse_failed"}
    # the cash the supply chain moves is in holding_changes: the balances match the venue's
    assert checks.conservation(tables.holding_changes)["conserved"].all()
    with open_source(ledger.node) as source:
        assert source.ledger is not None
        balances = checks.state_balances(source.ledger, tables.holding_changes)
    assert balances["matches"].all(), balances[~balances["matches"]]
    assert (sc.cash_flows(tables.holding_changes)["net"] == 0).all()


def test_the_analysts_questions(tables: Tables) -> None:
    commitments, payments = tables.commitments, tables.commitment_payments
    live = commitments[commitments["status"] == "outstanding"]
    by_tier = sc.outstanding(commitments)
    assert by_tier["amount"].sum() == live["amount"].sum()
    assert by_tier.groupby("issuer")["issuer_share"].sum().round(9).eq(1).all()
    usage = sc.credit_usage(commitments, tables.participants).set_index("issuer")
    assert (usage["outstanding"] == live.groupby("issuer")["amount"].sum()).all()
    costs = sc.financing_costs(tables.commitment_transfers)
    assert len(costs) == (tables.commitment_transfers["kind"] == "financing").sum() > 0
    # the generator prices at 3 to 6% a year on face, ACT/360, the discount rounded down
    assert costs["discount_rate"].between(0.0, 0.0601).all(), costs
    assert (costs["yield_365"] > costs["discount_rate"]).all()
    summary = sc.financing_summary(costs)
    assert summary["discount"].sum() == costs["discount"].sum()
    ladder = sc.maturity_ladder(commitments, sc.issuer_cash(tables.holding_changes, commitments))
    assert ladder["amount"].sum() == live["amount"].sum()
    assert not ladder.set_index("issuer").loc["CORE3", "covered"].any()  # short of cash
    failed = sc.failures(commitments, payments)
    assert set(failed["issuer"]) == {"CORE3"}
    assert (failed["loss"] + failed["recovered"] == failed["amount"]).all()
    assert failed["recovered"].sum() == payments.query("event == 'recourse_claimed'")[
        "moved"].sum()  # fmt: skip


def test_empty_tables_keep_their_types() -> None:
    empty = {name: arrow_frame(table) for name, table in sc.fold([]).items()}
    for name, frame in empty.items():
        assert frame.empty and list(frame.columns) == LEDGER_SCHEMAS[name].names, name
    commitments, payments = empty["commitments"], empty["commitment_payments"]
    assert sc.outstanding(commitments).empty
    assert sc.credit_usage(commitments, empty["participants"]).empty
    assert sc.financing_summary(sc.financing_costs(empty["commitment_transfers"])).empty
    assert sc.maturity_ladder(commitments, pd.Series(dtype="int64")).empty
    assert sc.failures(commitments, payments).empty
    assert sc.split_sums(commitments).empty
    assert sc.settled_once(commitments, payments, sc.last_day(empty["days"])).empty
    assert sc.issued_conservation(commitments).empty
    assert sc.cash_changes(empty["commitment_transfers"], payments).empty


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), days=st.integers(3, 5))
def test_on_any_seed_the_tables_hold_what_must_hold(seed: int, days: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        ledger = generate_scf_ledger(Path(directory), seed=seed, days=days)
        with open_source(ledger.node) as source:
            tables = source.tables()
    commitments, payments = tables.commitments, tables.commitment_payments
    assert sc.split_sums(commitments)["ok"].all()
    assert sc.settled_once(commitments, payments, sc.last_day(tables.days))["ok"].all()
    assert sc.issued_conservation(commitments)["ok"].all()
    assert checks.conservation(tables.holding_changes)["conserved"].all()
    rows = commitments.set_index("piece")
    for piece_id, (status, holder, amount, *_) in ledger.pieces.items():
        row = rows.loc[piece_id]
        assert (row["holder"], row["amount"]) == (holder, amount), piece_id
        assert (row["status"] == "outstanding") == (status in LIVE_STATUSES), piece_id
