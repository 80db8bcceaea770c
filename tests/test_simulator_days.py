"""Multi-day runs: the calendar (begin_day/end_day per trading date), T+1 and net settlement
cycles in the outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from exchange.analysis import desk
from exchange.analysis.source import open_source
from exchange.consortium.audit import verify_node
from exchange.consortium.init import free_base_port
from ledger.store import BlockStore
from simulator.inprocess import day_start_ns
from simulator.run import run_inprocess, write_outputs
from simulator.scenario import ScenarioError, parse_scenario

ROOT = Path(__file__).resolve().parent.parent
DAYS = (20260105, 20260106, 20260107)
MULTI = f"""
name = "multi"
duration_s = 30
days = {list(DAYS)}
block_interval_ms = 1000
brokers = 2

[[instruments]]
symbol = "600000.SH"
reference_price = 1000

[[instruments]]
symbol = "000001.SZ"
reference_price = 1200
settlement = "cash_net"

[[instruments]]
symbol = "601318.SH"
reference_price = 4500
settlement = "net_net"

[[phases]]
at_s = 0
phase = "call_auction"

[[phases]]
at_s = 3
phase = "continuous"

[[phases]]
at_s = 25
phase = "closing_auction"

[[phases]]
at_s = 29
phase = "closed"

[[agents]]
kind = "noise"
count = 10
rate_per_s = 2.0

[[agents]]
kind = "market_maker"
count = 2
rate_per_s = 1.0
symbols = ["600000.SH"]
"""


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("days") / "out"
    write_outputs(run_inprocess(parse_scenario(MULTI.encode()), 5, out))
    return out


def test_every_trading_day_is_in_the_ledger_at_its_date(multi: Path) -> None:
    days = pq.read_table(multi / "days.parquet").to_pylist()
    assert [row["day"] for row in days] == list(DAYS)
    assert [row["start_ns"] for row in days] == [0, 30 * 10**9, 60 * 10**9]
    assert [row["start_epoch_ns"] for row in days] == [day_start_ns(day) for day in DAYS]
    with BlockStore.open(multi / "bank1" / "ledger.sqlite") as store:
        tip = store.tip()
        assert tip is not None
        times = [store.header(height).time_ns for height in range(1, tip[0] + 1)]  # type: ignore[union-attr]
    for day in DAYS:  # blocks of every day, inside its 30 virtual seconds from 09:30
        start = day_start_ns(day)
        assert any(start <= time < start + 31 * 10**9 for time in times)
    trades = pq.read_table(multi / "trades.parquet").to_pylist()
    for day in DAYS:  # the simulator's files in epoch ns too, each day's on its date
        start = day_start_ns(day)
        assert any(start <= row["time_ns"] < start + 30 * 10**9 for row in trades)
    starts = [day_start_ns(day) for day in DAYS]
    assert all(any(start <= row["time_ns"] < start + 30 * 10**9 for start in starts)
               for row in trades)  # fmt: skip
    report = verify_node(multi / "bank1")
    assert report.failure is None and report.blocks == report.certified_height == tip[0]


def test_t_plus_1_and_net_deliveries_are_visible(multi: Path) -> None:
    positions = pq.read_table(multi / "positions.parquet").to_pylist()
    for day in DAYS:
        today = [row for row in positions if row["day"] == day]
        bought = {s: sum(r["bought_today"] for r in today if r["symbol"] == s) for s in
                  ("600000.SH", "000001.SZ", "601318.SH")}  # fmt: skip
        pending = {s: sum(r["net_pending"] for r in today if r["symbol"] == s) for s in bought}
        assert bought["600000.SH"] > 0 and bought["000001.SZ"] > 0  # T+1: sellable tomorrow
        assert pending["601318.SH"] > 0  # net_net: delivered by the day's cycle
        assert pending["600000.SH"] == pending["000001.SZ"] == 0
        assert all(row["sellable"] >= 0 for row in today)


def test_a_net_cycle_settles_each_days_net_trades(multi: Path) -> None:
    cycles = pq.read_table(multi / "cycles.parquet").to_pylist()
    assert [(row["day"], row["cycle_id"], row["status"]) for row in cycles] == [
        (day, number + 1, "settled") for number, day in enumerate(DAYS)
    ]
    trades = pq.read_table(multi / "trades.parquet").to_pylist()
    for number, cycle in enumerate(cycles):
        start = day_start_ns(DAYS[number])  # the files' times are epoch ns, on each day's date
        net = [row for row in trades if row["symbol"] != "600000.SH"
               and start <= row["time_ns"] < start + 30 * 10**9]  # fmt: skip
        assert cycle["trade_count"] == len(net) > 0
        assert cycle["net_value"] <= cycle["gross_value"]
        assert cycle["time_ns"] == start + 30 * 10**9  # at its own day's end, on its date


@pytest.mark.parametrize(
    ("edit", "field", "problem"),
    [
        ("days = [20260106, 20260105]", "days[1]", "is not after"),
        ("days = [20260105, 20260105]", "days[1]", "is not after"),
        ("days = [20260231]", "days[0]", "is not a date"),
        ("days = []", "days", "list of 1 to"),
        ("day = 20260105\ndays = [20260105]", "day", "either day or days"),
        ('days = [20260105]\nsettle_cycle = "hourly"', "settle_cycle", "not one of"),
    ],
)
def test_a_bad_calendar_is_refused(edit: str, field: str, problem: str) -> None:
    text = MULTI.replace(f"days = {list(DAYS)}", edit)
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text.encode())
    assert (caught.value.field, problem in caught.value.problem) == (field, True)


def test_two_days_over_the_network_keep_the_calendar(tmp_path: Path) -> None:
    """A 2-day run against a real consortium (exchange and four members as processes): the
    operator begins and ends each day and runs its net cycle, the positions and cycles come
    from a re-execution of the exchange's chain, every file's times on each day's date."""
    days = DAYS[:2]
    path = tmp_path / "two.toml"
    path.write_text(MULTI.replace(f"days = {list(DAYS)}", f"days = {list(days)}"))
    out = tmp_path / "out"
    completed = subprocess.run(
        [sys.executable, "-m", "exchange.cli", "simulate", str(path), "--mode", "network",
         "--speed", "20", "--base-port", str(free_base_port(5)), "--out", str(out)],
        capture_output=True, text=True, timeout=180, cwd=ROOT, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["days"] == list(days) and report["cycles"] == ["settled", "settled"]
    assert report["verified"].startswith("OK") and report["replies"] == report["messages"]

    with BlockStore.open(out / "bank1" / "ledger.sqlite") as store:  # the calendar, in order
        tip = store.tip()
        assert tip is not None
        calendar = [
            (value["type"], value.get("day"))
            for height in range(1, tip[0] + 1)
            for command in store.block(height).commands  # type: ignore[union-attr]
            if (value := json.loads(command))["type"] in ("begin_day", "settle_cycle", "end_day")
        ]
        net_trades = store.read("SELECT COUNT(*) FROM trades WHERE symbol != '600000.SH'")[0][0]
    assert calendar == [
        step for day in days
        for step in (("begin_day", day), ("settle_cycle", None), ("end_day", day))
    ]  # fmt: skip

    cycles = pq.read_table(out / "cycles.parquet").to_pylist()
    assert [(row["day"], row["cycle_id"], row["status"]) for row in cycles] == [
        (days[0], 1, "settled"), (days[1], 2, "settled")]  # fmt: skip
    assert sum(row["trade_count"] for row in cycles) == net_trades > 0  # each settled once
    positions = pq.read_table(out / "positions.parquet").to_pylist()
    for day in days:
        today = [row for row in positions if row["day"] == day]
        assert sum(row["bought_today"] for row in today if row["symbol"] == "600000.SH") > 0
        assert sum(row["net_pending"] for row in today if row["symbol"] == "601318.SH") > 0
        assert sum(row["net_pending"] for row in today if row["symbol"] == "600000.SH") == 0
    for name in ("trades", "orders", "cycles", "positions"):
        times = pq.read_table(out / f"{name}.parquet").column("time_ns").to_pylist()
        for day in days:  # every row within a day's 30 virtual s from its 09:30, both days used
            start = day_start_ns(day)
            assert any(start <= time <= start + 30 * 10**9 for time in times), (name, day)
        assert all(any(day_start_ns(day) <= time <= day_start_ns(day) + 30 * 10**9
                       for day in days) for time in times), name  # fmt: skip
    audit = verify_node(out / "bank1")
    assert audit.ok and audit.blocks == tip[0]

    # the analysts' per-day questions group by the calendar, not the exchange's clock date
    with open_source(out / "bank1") as source:
        tables = source.tables()
    assert sorted(set(desk.positions_pnl(tables)["day"])) == list(days)
    assert sorted(set(desk.order_ratios(tables)["day"])) == list(days)
    opening = desk.auction_summary(tables)
    assert sorted(set(opening["day"])) == list(days)
    bought = desk.positions_pnl(tables).groupby("day")["bought"].sum()
    assert bought.sum() == tables.trades["quantity"].sum() and (bought > 0).all()
