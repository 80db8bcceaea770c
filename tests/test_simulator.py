"""The market simulator: scenarios, agents' claimed behaviour, determinism, the CLI."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.consortium import audit as ledger_audit
from ledger.canonical import canonical_bytes
from ledger.genesis import load_genesis
from ledger.store import BlockStore
from matching.types import Phase, Side
from simulator.agents import Cancel, MomentumTrader, Place, Spoofer, ValueTrader
from simulator.inprocess import (
    NODE,
    DivergenceError,
    InProcessDriver,
    MemberProcessError,
    day_start_ns,
)
from simulator.outputs import as_written
from simulator.run import RunResult, run_inprocess
from simulator.scenario import (
    Scenario,
    ScenarioError,
    load_scenario,
    parse_scenario,
    shipped_names,
)
from simulator.simulation import Simulation, assign_accounts

ROOT = Path(__file__).resolve().parent.parent

TINY = """
name = "tiny"
duration_s = 30
brokers = 1
block_interval_ms = 1000

[[instruments]]
symbol = "600000.SH"
reference_price = 1000

[[phases]]
at_s = 0
phase = "call_auction"

[[phases]]
at_s = 2
phase = "continuous"

[[phases]]
at_s = 25
phase = "closing_auction"

[[phases]]
at_s = 29
phase = "closed"

[[agents]]
kind = "noise"
count = 6
rate_per_s = 2.0

[[agents]]
kind = "market_maker"
count = 1
rate_per_s = 2.0
inventory_limit_lots = 1000
"""


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    return run_inprocess(load_scenario("smoke"), 7, tmp_path_factory.mktemp("smoke") / "out")


def blocks_of(node: Path) -> list[tuple[bytes, list[bytes], list[bytes]]]:
    with BlockStore.open(node / "ledger.sqlite") as store:
        tip = store.tip()
        assert tip is not None
        return [
            (
                store.header(height).hash,  # type: ignore[union-attr]
                store.commands(height) or [],
                store.events(height) or [],
            )
            for height in range(1, tip[0] + 1)
        ]


# -- scenarios -------------------------------------------------------------------------------


def test_shipped_scenarios_parse() -> None:
    assert {"smoke", "realistic", "stress"} <= set(shipped_names())
    realistic = load_scenario("realistic")
    assert sum(group.count for group in realistic.agents) >= 300
    assert len(realistic.instruments) >= 3
    assert [change.phase for change in realistic.phases] == [
        "call_auction",
        "continuous",
        "closing_auction",
        "closed",
    ]


def test_a_scenario_loads_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    assert load_scenario(path).name == "tiny"


@pytest.mark.parametrize(
    ("edit", "field", "problem"),
    [
        (("duration_s = 30", "duration_s = -1"), "duration_s", "not between"),
        (("rate_per_s = 2.0\n\n[[agents]]", "rate_per_s = 0\n\n[[agents]]"),
         "agents[0].rate_per_s", "not between"),
        (('kind = "noise"', 'kind = "insider"'), "agents[0].kind", "'insider' is not one of"),
        (("count = 6", "count = 6\nspread_tick = 3"), "agents[0].spread_tick", "unknown field"),
        (("count = 6", 'count = "six"'), "agents[0].count", "must be an integer"),
        (("reference_price = 1000", "reference_price = 10.5"),
         "instruments[0].reference_price", "must be an integer"),
        (('phase = "continuous"', 'phase = "lunch"'), "phases[1].phase", "'lunch' is not one of"),
        (("at_s = 25", "at_s = 1"), "phases[2].at_s", "not after the previous phase"),
        (("at_s = 29", "at_s = 31"), "phases[3].at_s", "not before duration_s"),
        (('name = "tiny"\n', ""), "name", "missing"),
        (("inventory_limit_lots = 1000", 'symbols = ["000001.SZ"]'),
         "agents[1].symbols[0]", "not a scenario instrument"),
        (("duration_s = 30", "duration_s = 30\nduration_s = 40"), "file", "not valid TOML"),
    ],
)  # fmt: skip
def test_a_bad_scenario_names_the_field(edit: tuple[str, str], field: str, problem: str) -> None:
    old, new = edit
    assert old in TINY
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(TINY.replace(old, new, 1).encode())
    assert caught.value.field == field
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"{field}: ")


def test_an_unknown_scenario_name_is_an_error() -> None:
    with pytest.raises(ScenarioError, match=r"file: 'no-such' is neither a shipped scenario"):
        load_scenario("no-such")


# -- seeds and schedules ---------------------------------------------------------------------


def test_adding_an_agent_leaves_the_others_draws_unchanged() -> None:
    base = parse_scenario(TINY.encode())
    more = parse_scenario(
        (TINY + '\n[[agents]]\nkind = "value"\ncount = 1\nrate_per_s = 3.0\n').encode()
    )
    a, b = Simulation(base, 5), Simulation(more, 5)
    for index in range(len(a.agents)):
        mine_a = a.schedule_ns[a.schedule_agents == index]
        mine_b = b.schedule_ns[b.schedule_agents == index]
        assert np.array_equal(mine_a, mine_b)
        assert a.agents[index].rng.random() == b.agents[index].rng.random()
    assert a.fundamentals.value("600000.SH", 20 * 10**9) == b.fundamentals.value(
        "600000.SH", 20 * 10**9
    )


def test_arrivals_are_poisson_at_the_scenario_rate() -> None:
    simulation = Simulation(parse_scenario(TINY.encode()), 1)
    gaps = np.diff(simulation.schedule_ns[simulation.schedule_agents == 0]) / 1e9
    assert 0.3 < gaps.mean() < 0.7  # rate 2 per second
    assert np.all(np.diff(simulation.schedule_ns) >= 0)


# -- the run and its ledger ------------------------------------------------------------------


def test_same_seed_same_ledger_and_tables(smoke: RunResult, tmp_path: Path) -> None:
    again = run_inprocess(smoke.scenario, 7, tmp_path / "again")
    assert again.state_hash == smoke.state_hash
    assert blocks_of(again.directory / NODE) == blocks_of(smoke.directory / NODE)
    assert (again.directory / "genesis.json").read_bytes() == (
        smoke.directory / "genesis.json"
    ).read_bytes()
    for name, table in smoke.tables.items():
        assert again.tables[name].equals(table), name


def test_different_seeds_differ(smoke: RunResult, tmp_path: Path) -> None:
    other = run_inprocess(smoke.scenario, 8, tmp_path / "other")
    assert other.state_hash != smoke.state_hash
    assert not other.tables["trades"].equals(smoke.tables["trades"])


def test_the_output_is_a_node_directory_that_verifies(smoke: RunResult) -> None:
    report = ledger_audit.verify_node(smoke.directory / NODE)
    assert report.ok, ledger_audit.format_report(report)
    assert smoke.blocks >= 10 and smoke.trades > 50 and smoke.messages > 1000
    assert report.state_hash is not None and report.state_hash.hex() == smoke.state_hash
    assert report.certified_height == smoke.blocks


def test_the_exchange_and_the_replica_store_one_certified_chain(smoke: RunResult) -> None:
    """The exchange's `Proposer` stored the same blocks as the re-executing member, both verify
    and both are indexed alike, and every certificate holds the re-executing member's vote and
    a quorum."""
    exchange = smoke.directory / "exchange"
    report = ledger_audit.verify_node(exchange)
    assert report.ok, ledger_audit.format_report(report)
    assert report.certified_height == smoke.blocks
    assert blocks_of(exchange) == blocks_of(smoke.directory / NODE)
    trades = "SELECT * FROM trades ORDER BY trade_id"
    tables = []
    for node in (exchange, smoke.directory / NODE):
        with BlockStore.open(node / "ledger.sqlite") as store:
            assert store.indexed_height() == smoke.blocks  # both indexing nodes, to the tip
            tables.append(store.read(trades))
    assert tables[0] == tables[1] and len(tables[0]) == smoke.trades
    genesis = load_genesis(smoke.directory / "genesis.json")
    replica = next(member.id for member in genesis.members if member.name == NODE)
    for node in (exchange, smoke.directory / NODE):
        with BlockStore.open(node / "ledger.sqlite") as store:
            for height in range(1, smoke.blocks + 1):
                certificate = store.certificate(height)
                header = store.header(height)
                assert certificate is not None and header is not None, height
                assert certificate.verify(genesis.voters(), genesis.quorum()) is None
                assert certificate.header_hash == header.hash
                assert certificate.votes[0].member == replica


def test_a_block_the_replica_does_not_reproduce_is_not_certified(tmp_path: Path) -> None:
    """Change the exchange's venue behind the ledger's back: the re-executing member (its own
    process) refuses the next block, records why, and the run stops instead of certifying it
    with the votes signed without re-execution."""
    scenario = parse_scenario(TINY.encode())
    simulation = Simulation(scenario, 3)
    brokers = {account: spec.broker for spec in simulation.specs for account in spec.accounts}
    driver = InProcessDriver(scenario, 3, tmp_path / "run", simulation.agents, brokers)
    try:
        driver.begin(0)
        driver.advance(scenario.block_interval_ns)  # block 1: begin_day
        assert driver.height == 1
        behind_its_back = {"type": "set_phase", "symbol": "600000.SH", "phase": "continuous"}
        driver.machine.apply(canonical_bytes(behind_its_back), 0)
        driver.set_phase(scenario.block_interval_ns, "call_auction")
        with pytest.raises(DivergenceError, match=r"block 2: member bank1 refused it.*state_hash"):
            driver.advance(2 * scenario.block_interval_ns)
            driver.end(2 * scenario.block_interval_ns)
    finally:
        driver.close()
    with BlockStore.open(tmp_path / "run" / NODE / "ledger.sqlite") as store:
        assert store.tip() is not None and store.tip()[0] == 1  # type: ignore[index]
        # block 1's certificate may or may not have reached bank1 before the run stopped it
        assert store.certified_height() <= 1
        assert [evidence.kind for evidence in store.evidence()] == ["diverged"]


def test_a_run_whose_member_process_dies_stops_with_an_error(tmp_path: Path) -> None:
    """kill -9 of the re-executing member's process: the run fails at once, naming it."""
    scenario = parse_scenario(TINY.encode())
    simulation = Simulation(scenario, 3)
    brokers = {account: spec.broker for spec in simulation.specs for account in spec.accounts}
    driver = InProcessDriver(scenario, 3, tmp_path / "run", simulation.agents, brokers)
    try:
        driver.begin(0)
        driver.advance(scenario.block_interval_ns)
        pid = driver.ledger.member_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(MemberProcessError, match="bank1's process"):
            driver.set_phase(scenario.block_interval_ns, "call_auction")
            driver.advance(2 * scenario.block_interval_ns)
            driver.end(2 * scenario.block_interval_ns)
    finally:
        driver.close()


def test_the_trades_table_matches_the_ledger(smoke: RunResult) -> None:
    with BlockStore.open(smoke.directory / NODE / "ledger.sqlite") as store:
        rows = store.read("SELECT trade_id, price, quantity FROM trades ORDER BY trade_id")
    table = smoke.tables["trades"]
    assert rows == list(
        zip(
            table.column("trade_id").to_pylist(),
            table.column("price").to_pylist(),
            table.column("quantity").to_pylist(),
            strict=True,
        )
    )


# -- what each agent claims to do ------------------------------------------------------------


def kinds_by_id(result: RunResult) -> dict[int, str]:
    agents = result.tables["agents"]
    return dict(
        zip(agents.column("agent_id").to_pylist(), agents.column("kind").to_pylist(), strict=True)
    )


def test_the_wash_traders_trades_are_with_itself_and_carry_its_label(smoke: RunResult) -> None:
    kinds = kinds_by_id(smoke)
    labels = smoke.tables["labels"].to_pylist()
    wash = {row["order_id"]: row for row in labels if row["label"] == "wash_trade"}
    assert wash
    trades = smoke.tables["trades"].to_pylist()
    wash_trades = [t for t in trades if kinds.get(t["buy_agent_id"]) == "wash_trader"
                   or kinds.get(t["sell_agent_id"]) == "wash_trader"]  # fmt: skip
    assert wash_trades
    for trade in wash_trades:
        assert trade["buy_order_id"] in wash and trade["sell_order_id"] in wash
        assert wash[trade["buy_order_id"]]["role"] == "buy_leg"
        assert wash[trade["sell_order_id"]]["role"] == "sell_leg"
        assert trade["buy_agent_id"] == trade["sell_agent_id"]
        assert trade["buy_account"] != trade["sell_account"]  # two accounts, one broker


def test_the_spoofers_layers_are_cancelled_and_labelled(smoke: RunResult) -> None:
    labels = smoke.tables["labels"].to_pylist()
    layers = {row["order_id"] for row in labels if row["role"] == "layer"}
    assert layers
    orders = smoke.tables["orders"].to_pylist()
    cancelled = {row["order_id"] for row in orders if row["action"] == "cancel"}
    trades = smoke.tables["trades"].to_pylist()
    traded = {t["sell_order_id"] for t in trades} | {t["buy_order_id"] for t in trades}
    assert len(layers & cancelled) >= 0.8 * len(layers)  # the last layers may meet the close
    assert len(layers & traded) < len(layers) / 4  # placed away from the touch: rarely filled


class StaticMarket:
    """A fixed market: the MarketView protocol over constants."""

    def __init__(self, bid: int | None, ask: int | None, last: int, phase: Phase) -> None:
        self.bid, self.ask, self.last, self.current = bid, ask, last, phase

    def best_bid(self, symbol: str) -> int | None:
        return self.bid

    def best_ask(self, symbol: str) -> int | None:
        return self.ask

    def last_price(self, symbol: str) -> int:
        return self.last

    def phase(self, symbol: str) -> Phase:
        return self.current


def agent_of(scenario: Scenario, kind: str, seed: int = 3):  # type: ignore[no-untyped-def]
    simulation = Simulation(scenario, seed)
    return next(agent for agent in simulation.agents if agent.kind == kind)


def test_the_spoofer_layers_away_from_the_touch_then_cancels() -> None:
    spoofer = agent_of(load_scenario("smoke"), "spoofer")
    assert isinstance(spoofer, Spoofer)
    market = StaticMarket(990, 1000, 995, Phase.CONTINUOUS)
    placed = spoofer.act(10**9, market)
    layers = [i for i in placed if isinstance(i, Place) and i.quantity == 20 * 100]
    genuine = [i for i in placed if isinstance(i, Place) and i.quantity == 100]
    assert len(layers) == 3 and len(genuine) == 1
    for layer in layers:
        assert layer.price >= 1003 if layer.side is Side.SELL else layer.price <= 987
        assert layer.side is not genuine[0].side
    assert genuine[0].price in (990, 1000)
    assert spoofer.act(10**9 + 100_000_000, market) == []  # too early to cancel
    cancels = spoofer.act(2 * 10**9, market)
    assert sorted(c.order_id for c in cancels if isinstance(c, Cancel)) == sorted(
        layer.order_id for layer in layers
    )


def test_the_value_trader_buys_below_the_fundamental_and_sells_above() -> None:
    trader = agent_of(
        parse_scenario(TINY.replace('kind = "noise"', 'kind = "value"').encode()), "value"
    )
    assert isinstance(trader, ValueTrader)
    value = trader.fundamentals.value(trader.symbols[0], 10**9)
    cheap = trader.act(10**9, StaticMarket(value - 60, value - 50, value, Phase.CONTINUOUS))
    assert cheap and isinstance(cheap[0], Place) and cheap[0].side is Side.BUY and cheap[0].ioc
    dear = trader.act(10**9, StaticMarket(value + 50, value + 60, value, Phase.CONTINUOUS))
    assert dear and isinstance(dear[0], Place) and dear[0].side is Side.SELL
    assert trader.act(10**9, StaticMarket(value - 1, value + 1, value, Phase.CONTINUOUS)) == []


def test_the_momentum_trader_follows_the_trend() -> None:
    trader = agent_of(
        parse_scenario(TINY.replace('kind = "noise"', 'kind = "momentum"').encode()), "momentum"
    )
    assert isinstance(trader, MomentumTrader)
    assert trader.act(0, StaticMarket(999, 1001, 1000, Phase.CONTINUOUS)) == []
    rising = trader.act(6 * 10**9, StaticMarket(1019, 1021, 1020, Phase.CONTINUOUS))
    assert rising and isinstance(rising[0], Place) and rising[0].side is Side.BUY
    falling = trader.act(12 * 10**9, StaticMarket(979, 981, 980, Phase.CONTINUOUS))
    assert falling and isinstance(falling[0], Place) and falling[0].side is Side.SELL


def test_marking_the_close_buys_aggressively_late_in_the_day(smoke: RunResult) -> None:
    kinds = kinds_by_id(smoke)
    orders = [row for row in smoke.tables["orders"].to_pylist()
              if kinds[row["agent_id"]] == "marking_close"]  # fmt: skip
    assert orders
    scenario = smoke.scenario
    close_ns = scenario.phase_start_ns("closing_auction")
    assert close_ns is not None
    window_ns = int(float(scenario.agents[-1].parameters["window_s"]) * 1e9)
    labelled = {row["order_id"] for row in smoke.tables["labels"].to_pylist()
                if row["label"] == "marking_close"}  # fmt: skip
    for row in orders:
        assert row["time_ns"] >= close_ns - window_ns
        assert row["side"] == "buy" and row["order_id"] in labelled


def test_a_market_maker_keeps_a_two_sided_quote(tmp_path: Path) -> None:
    scenario = parse_scenario(TINY.encode())
    simulation = Simulation(scenario, 11)
    brokers = {account: spec.broker for spec in simulation.specs for account in spec.accounts}
    driver = InProcessDriver(scenario, 11, tmp_path / "mm", simulation.agents, brokers)
    maker = next(agent for agent in simulation.agents if agent.kind == "market_maker")
    checked = 0

    def observe(now_ns: int, agent: object) -> None:
        nonlocal checked
        if agent is not maker or driver.market.phase("600000.SH") is not Phase.CONTINUOUS:
            return
        mine = [o for o in driver.machine.venue.matching.orders("600000.SH")
                if o.account == maker.account]  # fmt: skip
        sides = {order.side for order in mine}
        assert sides == {Side.BUY, Side.SELL}, (now_ns, mine)
        bid, ask = (max(o.price for o in mine if o.side is Side.BUY),
                    min(o.price for o in mine if o.side is Side.SELL))  # fmt: skip
        assert bid < ask
        checked += 1

    try:
        simulation.run(driver, observer=observe)
    finally:
        driver.close()
    assert checked > 20


def test_noise_traders_trade_both_sides_and_cancel(smoke: RunResult) -> None:
    kinds = kinds_by_id(smoke)
    noise = [row for row in smoke.tables["orders"].to_pylist() if kinds[row["agent_id"]] == "noise"]
    sides = {row["side"] for row in noise if row["action"] == "place"}
    assert sides == {"buy", "sell"}
    assert any(row["action"] == "cancel" for row in noise)
    assert any(row["ioc"] for row in noise if row["action"] == "place")


# -- the command line ------------------------------------------------------------------------


def test_jinlian_simulate_as_a_process(tmp_path: Path) -> None:
    out = tmp_path / "run"
    completed = subprocess.run(
        [sys.executable, "-m", "exchange.cli", "simulate", "smoke", "--seed=2", f"--out={out}"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "final state hash" in completed.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["seed"] == 2 and report["scenario"] == "smoke" and report["mode"] == "inprocess"
    assert report["scenario_sha256"] == load_scenario("smoke").sha256
    assert report["final_state_hash"][:40] in completed.stdout
    in_process = run_inprocess(load_scenario("smoke"), 2, tmp_path / "here")
    assert in_process.state_hash == report["final_state_hash"]  # another process, same ledger
    written = as_written(in_process.tables, day_start_ns(in_process.scenario.day))
    assert written["trades"].equals(pq.read_table(out / "trades.parquet"))
    for name in ("orders", "trades", "labels", "agents"):
        assert pq.read_table(out / f"{name}.parquet").num_rows > 0
    for chart in ("price_volume.png", "throughput.png"):
        assert (out / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = subprocess.run(
        [sys.executable, "-m", "exchange.cli", "simulate", "smoke", "--out", str(out)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )  # fmt: skip
    assert again.returncode == 2 and "not an empty directory" in again.stderr


def test_jinlian_simulate_names_a_bad_scenario_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(TINY.replace("count = 6", "count = -6"))
    completed = subprocess.run(
        [sys.executable, "-m", "exchange.cli", "simulate", str(path), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )  # fmt: skip
    assert completed.returncode == 2
    assert "agents[0].count: -6 is not between 0 and 100000" in completed.stderr


# -- properties ------------------------------------------------------------------------------

KINDS = ("noise", "market_maker", "momentum", "value", "spoofer", "wash_trader", "marking_close")


@settings(max_examples=60, deadline=None)
@given(
    brokers=st.integers(1, 7),
    groups=st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 9)), min_size=1, max_size=6),
)
def test_every_agent_gets_its_own_accounts(brokers: int, groups: list[tuple[str, int]]) -> None:
    text = TINY.split("[[agents]]", maxsplit=1)[0].replace("brokers = 1", f"brokers = {brokers}")
    for kind, count in groups:
        text += f'\n[[agents]]\nkind = "{kind}"\ncount = {count}\nrate_per_s = 1.0\n'
    scenario = parse_scenario(text.encode())
    specs = assign_accounts(scenario)
    assert len(specs) == sum(count for _, count in groups)
    accounts = [account for spec in specs for account in spec.accounts]
    assert len(accounts) == len(set(accounts))
    for spec in specs:
        assert len(spec.accounts) == (2 if spec.kind == "wash_trader" else 1)
        number = int(spec.broker.removeprefix("broker"))
        assert 1 <= number <= brokers
        for account in spec.accounts:  # the genesis's numbering: broker * 10_000 + k
            assert int(account) // 10_000 == number
            assert 1 <= int(account) % 10_000 <= scenario.accounts_per_broker()


@settings(max_examples=80, deadline=None)
@given(
    line=st.sampled_from([line for line in TINY.splitlines() if " = " in line]),
    value=st.one_of(
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=8),
        st.booleans(),
        st.lists(st.integers(), max_size=2),
    ),
)
def test_any_bad_value_is_a_scenario_error_or_a_scenario(line: str, value: object) -> None:
    key = line.split(" = ", maxsplit=1)[0]
    if isinstance(value, float) and not math.isfinite(value):
        literal = str(value)  # TOML spells them nan, inf, -inf as Python does
    else:
        literal = json.dumps(value)
    text = TINY.replace(line, f"{key} = {literal}", 1)
    try:
        parse_scenario(text.encode())
    except ScenarioError as error:
        assert error.field and error.problem
