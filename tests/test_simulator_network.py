"""The simulator's network mode against a real consortium on loopback: `jinlian simulate smoke
--mode network` starts the scenario's consortium (exchange and four members as processes),
trades through client processes for a few wall seconds (time compressed), and stops it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hdrh.log import HistogramLogReader

from exchange.consortium import audit as ledger_audit
from exchange.consortium.init import init_consortium
from ledger.genesis import load_genesis
from ledger.store import BlockStore
from simulator.network import NetworkError, check_funding, trades_table
from simulator.scenario import load_scenario
from simulator.simulation import Simulation
from tests.consortium_net import free_base_port

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"


def test_a_network_run_trades_with_a_real_consortium(tmp_path: Path) -> None:
    out = tmp_path / "run"
    completed = subprocess.run(
        [sys.executable, "-m", "exchange.cli", "simulate", "smoke", "--mode", "network",
         "--speed", "20", "--base-port", str(free_base_port(5)), "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    for figure in ("latency p50", "latency p99", "latency p99.9", "achieved messages/s"):
        assert figure in completed.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "network" and report["scenario"] == "smoke"
    assert report["sessions"] == 2 and report["client_processes"] == 2
    assert report["messages"] > 1000 and report["replies"] == report["messages"]
    late_cancels = {"order_not_open", "unknown_order"}  # the order ended before its cancel
    assert set(report["errors"]) <= late_cancels, report["errors"]
    assert report["achieved_messages_per_s"] > 0.5 * report["offered_messages_per_s"]
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p99"]

    orders = pq.read_table(out / "orders.parquet").to_pydict()
    places = [i for i, action in enumerate(orders["action"]) if action == "place"]
    accepted = [i for i in places if orders["outcome"][i] == "accepted"]
    assert len(accepted) > 0.9 * len(places)  # acknowledged, with the exchange's order ids
    assert all(type(orders["exchange_order_id"][i]) is int for i in accepted)
    assert all(orders["latency_us"][i] > 0 for i in places)

    trades = pq.read_table(out / "trades.parquet")
    assert trades.num_rows > 20
    assert -1 not in trades.column("buy_agent_id").to_pylist()  # both sides are agents'
    with BlockStore.open(out / "bank1" / "ledger.sqlite") as store:
        rows = store.read("SELECT trade_id, price, quantity FROM trades ORDER BY trade_id")
    columns = [trades.column(name).to_pylist() for name in ("trade_id", "price", "quantity")]
    assert rows == list(zip(*columns, strict=True))  # every trade in the ledger, reported

    histogram = HistogramLogReader(str(out / "latency.hlog"), None).get_next_interval_histogram()
    assert histogram is not None and histogram.get_total_count() == report["replies"]
    assert (out / "latency_percentiles.txt").read_text().split()[:2] == ["Value", "Percentile"]
    for chart in ("latency.png", "throughput.png", "price_volume.png"):
        assert (out / chart).read_bytes()[:8] == PNG

    genesis = load_genesis(out / "genesis.json")
    for member in genesis.members:
        if member.voting:
            audit = ledger_audit.verify_node(out / member.name)
            assert audit.ok, (member.name, audit.failure)
            assert audit.blocks > 0
    assert report["verified"].startswith("OK")


def test_a_consortium_that_does_not_fund_the_agents_is_refused(tmp_path: Path) -> None:
    scenario = load_scenario("smoke")
    genesis = init_consortium(tmp_path / "c", members=4, brokers=2)  # 2 accounts per broker
    with pytest.raises(NetworkError, match="no account 10003 at broker1"):
        check_funding(scenario, genesis, Simulation(scenario, 1).specs)


def test_a_trade_is_assembled_from_its_two_sides_reports() -> None:
    # (trade_id, time_ns, height, symbol, price, quantity, side, order_id, account, agent, liq.)
    buy = (7, 2_000, 3, "600000.SH", 1001, 200, "buy", 2_000_000_001, "10001", 1, "taker")
    sell = (7, 1_500, 3, "600000.SH", 1001, 200, "sell", 5_000_000_004, "20001", 4, "maker")
    auction = (8, 9_000, 5, "600000.SH", 1000, 100, "sell", 5_000_000_005, "20001", 4, "auction")
    table = trades_table([buy, auction, sell]).to_pylist()
    assert table == [
        {"trade_id": 7, "time_ns": 1_500, "height": 3, "symbol": "600000.SH", "price": 1001,
         "quantity": 200, "buy_order_id": 2_000_000_001, "sell_order_id": 5_000_000_004,
         "buy_account": "10001", "sell_account": "20001", "buy_agent_id": 1, "sell_agent_id": 4,
         "aggressor": "buy"},
        {"trade_id": 8, "time_ns": 9_000, "height": 5, "symbol": "600000.SH", "price": 1000,
         "quantity": 100, "buy_order_id": None, "sell_order_id": 5_000_000_005,
         "buy_account": None, "sell_account": "20001", "buy_agent_id": -1, "sell_agent_id": 4,
         "aggressor": None},
    ]  # fmt: skip
