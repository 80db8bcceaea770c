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

from exchange import ledger_audit
from exchange.consortium import init_consortium
from ledger.genesis import load_genesis
from ledger.store import BlockStore
from simulator.network import NetworkError, check_funding
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
    assert set(report["errors"]) <= {"order_not_open"}, report["errors"]  # late cancels only
    assert report["achieved_messages_per_s"] > 0.9 * report["offered_messages_per_s"]
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
