"""Sweeps (a scenario's [sweep] grid, run point by point in worker processes or on a Dask
cluster) and the --no-ledger mode they use to run fast."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from exchange.cli import main
from simulator.run import run_inprocess
from simulator.scenario import ScenarioError, load_scenario, parse_scenario
from simulator.sweep import RESULTS_FILE, run_point, run_sweep

BASE = """
name = "sweepy"
duration_s = 20
brokers = 1
block_interval_ms = 1000

[[instruments]]
symbol = "600000.SH"
reference_price = 1000

[[agents]]
kind = "noise"
count = 4
rate_per_s = 2.0

[[agents]]
kind = "market_maker"
count = 1
rate_per_s = 2.0
"""

GRID = (
    BASE
    + """
[sweep]
seeds = [1, 2]
"agents[0].rate_per_s" = [1.0, 3.0]
instruments.0.volatility_bps = [5, 20.5]
"""
)

FRAGILE = """
from simulator.agents import Agent


class Fragile(Agent):
    kind = "fragile"
    parameters = {"explode": False}

    def act(self, now_ns, market):
        if self.group.parameters["explode"]:
            raise RuntimeError(f"exploded at {now_ns}")
        return []
"""


def test_the_grid_is_the_product_of_values_and_seeds() -> None:
    sweep = parse_scenario(GRID.encode()).sweep
    assert sweep is not None and sweep.size == 8
    assert [path for path, _ in sweep.parameters] == [
        "agents[0].rate_per_s",
        "instruments[0].volatility_bps",
    ]
    points = sweep.points()
    assert [(p.seed, dict(p.values)) for p in points[:3]] == [
        (1, {"agents[0].rate_per_s": 1.0, "instruments[0].volatility_bps": 5}),
        (2, {"agents[0].rate_per_s": 1.0, "instruments[0].volatility_bps": 5}),
        (1, {"agents[0].rate_per_s": 1.0, "instruments[0].volatility_bps": 20.5}),
    ]
    point, scenario = sweep.point(7)
    assert point.seed == 2
    assert scenario.agents[0].rate_per_s == 3.0
    assert scenario.instruments[0].volatility_bps == 20.5
    assert scenario.sweep is None


@pytest.mark.parametrize(
    ("line", "field", "problem"),
    [
        ('"agents[0].spread_tick" = [3]', "sweep.agents[0].spread_tick", "unknown field"),
        ('"agents[5].count" = [3]', "sweep.agents[5].count", "no entry 5"),
        ('"market.open_s" = [3]', "sweep.market.open_s", "has no 'market'"),
        ('"agents[0].count" = [2, -1]', "sweep.agents[0].count", "-1: agents[0].count"),
        ('"agents[0].count" = []', "sweep.agents[0].count", "non-empty list"),
        ("seeds = [-1]", "sweep.seeds", "list of seeds"),
    ],
)
def test_a_bad_sweep_is_refused_by_name(line: str, field: str, problem: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario((BASE + "\n[sweep]\n" + line + "\n").encode())
    assert caught.value.field == field
    assert problem in caught.value.problem


def test_point_k_runs_alone_into_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "grid.toml"
    path.write_text(GRID)
    out = tmp_path / "point"
    assert main(["simulate", str(path), "--point", "6", "--out", str(out)]) == 0
    row = json.loads((out / "point.json").read_text())
    assert (row["point"], row["seed"], row["status"]) == (6, 1, "ok")
    assert row["agents[0].rate_per_s"] == 3.0
    assert (out / "scenario.toml").read_text() == GRID
    report = json.loads((out / "report.json").read_text())
    assert report["final_state_hash"] == row["final_state_hash"]
    assert (out / "bank1" / "ledger.sqlite").exists()
    assert main(["simulate", str(path), "--point", "8", "--out", str(tmp_path / "x")]) == 2


def test_a_sweep_runs_in_workers_and_a_failed_point_is_a_row(tmp_path: Path) -> None:
    (tmp_path / "fragile.py").write_text(FRAGILE)
    path = tmp_path / "grid.toml"
    path.write_text(
        BASE
        + """
[[agents]]
class = "fragile:Fragile"
count = 1
rate_per_s = 1.0

[sweep]
seeds = [4]
"agents[2].explode" = [false, true]
"agents[0].rate_per_s" = [1.0, 2.0]
"""
    )
    table = run_sweep(str(path), tmp_path / "out", workers=2, ledger=False)
    assert table.equals(pq.read_table(tmp_path / "out" / RESULTS_FILE))
    rows = table.to_pylist()
    assert [row["point"] for row in rows] == [0, 1, 2, 3]
    assert [row["status"] for row in rows] == ["ok", "ok", "failed", "failed"]
    assert all("RuntimeError: exploded at" in row["error"] for row in rows[2:])
    assert rows[0]["trades"] > 0 and rows[0]["messages"] < rows[1]["messages"]
    assert table.schema.field("error").type == "string"  # typed even where all are null
    for row in rows:
        directory = Path(row["directory"])
        assert (directory / "scenario.toml").exists() and (directory / "point.json").exists()
        assert not (directory / "genesis.json").exists()  # --no-ledger: no consortium
    # a second run of one point gives the same figures
    again = run_point(str(path), 1, tmp_path / "again", ledger=False)
    assert again["final_state_hash"] == rows[1]["final_state_hash"]


def test_no_ledger_runs_the_same_market_without_blocks(tmp_path: Path) -> None:
    scenario = load_scenario("smoke")
    fast = run_inprocess(scenario, 2, tmp_path / "fast", ledger=False)
    full = run_inprocess(scenario, 2, tmp_path / "full")
    assert fast.state_hash == full.state_hash
    assert fast.tables["orders"].equals(full.tables["orders"])
    columns = [name for name in full.tables["trades"].column_names if name != "height"]
    assert fast.tables["trades"].select(columns).equals(full.tables["trades"].select(columns))
    assert (fast.messages, fast.blocks) == (full.messages, 0)
    assert list((tmp_path / "fast").iterdir()) == []  # no consortium


def test_a_two_point_sweep_of_smoke_on_a_local_dask_cluster(tmp_path: Path) -> None:
    distributed = pytest.importorskip("dask.distributed")
    smoke = resources.files("simulator.scenarios").joinpath("smoke.toml").read_text()
    path = tmp_path / "smoke-sweep.toml"
    path.write_text(smoke + "\n[sweep]\nseeds = [1, 2]\n")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        table = run_sweep(
            str(path), tmp_path / "out", executor=f"dask://{cluster.scheduler_address}",
            ledger=False,
        )  # fmt: skip
    rows = table.to_pylist()
    assert [(row["point"], row["seed"], row["status"]) for row in rows] == [
        (0, 1, "ok"),
        (1, 2, "ok"),
    ]
    assert rows[0]["final_state_hash"] != rows[1]["final_state_hash"]
