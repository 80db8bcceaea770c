"""Agents a researcher adds (a class named in the scenario), every order type the venue has,
and noise traders that never trade with themselves."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from simulator.run import RunResult, run_inprocess, write_outputs
from simulator.scenario import ScenarioError, load_scenario
from simulator.simulation import Simulation

CONTRARIAN = '''
"""A researcher's agent: buys after a fall, sells after a rise, with post-only limits."""
from simulator.agents import BUY, SELL, CONTINUOUS, Agent


class Contrarian(Agent):
    kind = "contrarian"
    parameters = {"quantity_lots": 1, "edge_ticks": 1, "quiet": False}

    def act(self, now_ns, market):
        symbol = self.pick_symbol()
        if market.phase(symbol) is not CONTINUOUS:
            return []
        value = self.fundamentals.value(symbol, now_ns)
        last = market.last_price(symbol)
        edge = int(self.group.parameters["edge_ticks"]) * self.instruments[symbol].tick_size
        side = BUY if last < value else SELL
        price = value - edge if side is BUY else value + edge
        lots = int(self.group.parameters["quantity_lots"])
        return [self.place(now_ns, symbol, side, price, lots)]
'''

SCENARIO = """
name = "researcher"
duration_s = 20
brokers = 1
block_interval_ms = 1000

[[instruments]]
symbol = "600000.SH"
reference_price = 1000

[[phases]]
at_s = 0
phase = "continuous"

[[agents]]
kind = "noise"
count = 4
rate_per_s = 2.0

[[agents]]
class = "my_agents:Contrarian"
count = 3
rate_per_s = 1.0
quantity_lots = 2
"""


def write_researcher(folder: Path, scenario: str = SCENARIO) -> Path:
    (folder / "my_agents.py").write_text(CONTRARIAN)
    path = folder / "researcher.toml"
    path.write_text(scenario)
    return path


def test_an_agent_class_named_in_the_scenario_trades(tmp_path: Path) -> None:
    path = write_researcher(tmp_path)
    scenario = load_scenario(path)
    group = scenario.agents[1]
    assert (group.kind, group.class_path) == ("contrarian", "my_agents:Contrarian")
    assert group.parameters == {"quantity_lots": 2, "edge_ticks": 1, "quiet": False}
    result = run_inprocess(scenario, 1, tmp_path / "out")
    write_outputs(result)
    agents = pq.read_table(tmp_path / "out" / "agents.parquet").to_pylist()
    mine = {row["agent_id"] for row in agents if row["kind"] == "contrarian"}
    assert len(mine) == 3
    orders = pq.read_table(tmp_path / "out" / "orders.parquet").to_pylist()
    placed = [row for row in orders if row["agent_id"] in mine and row["action"] == "place"]
    assert placed and all(row["quantity"] == 200 for row in placed)
    assert all(row["outcome"] == "accepted" for row in placed)


def test_a_spawned_client_process_imports_the_agent_class(tmp_path: Path) -> None:
    path = write_researcher(tmp_path)
    scenario = load_scenario(path)
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        kinds = pool.apply(_simulation_kinds, (scenario,))
    assert kinds == ["noise"] * 4 + ["contrarian"] * 3


def _simulation_kinds(scenario: object) -> list[str]:
    from simulator.scenario import Scenario

    assert isinstance(scenario, Scenario)
    return [agent.kind for agent in Simulation(scenario, 1).agents]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('class = "no_such_module:Agent"', "cannot import 'no_such_module'"),
        ('class = "my_agents:Missing"', "is not a subclass of simulator.agents.Agent"),
        ('class = "my_agents"', 'is not "package.module:Class"'),
        ('class = "pathlib:Path"', "is not a subclass"),
    ],
)
def test_a_bad_agent_class_is_refused_by_name(tmp_path: Path, line: str, problem: str) -> None:
    path = write_researcher(tmp_path, SCENARIO.replace('class = "my_agents:Contrarian"', line))
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.field == "agents[1].class"
    assert problem in caught.value.problem


def test_a_class_parameter_keeps_its_type(tmp_path: Path) -> None:
    path = write_researcher(tmp_path, SCENARIO.replace("quantity_lots = 2", "quiet = 1"))
    with pytest.raises(ScenarioError, match=r"agents\[1\]\.quiet: must be true or false"):
        load_scenario(path)
    path = write_researcher(tmp_path, SCENARIO.replace("quantity_lots = 2", "loud = true"))
    with pytest.raises(ScenarioError, match=r"agents\[1\]\.loud: unknown field"):
        load_scenario(path)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    return run_inprocess(load_scenario("smoke"), 3, tmp_path_factory.mktemp("agents") / "out")


def test_the_agents_use_every_order_type(smoke: RunResult) -> None:
    orders = smoke.tables["orders"].to_pylist()
    places = [row for row in orders if row["action"] == "place"]
    market = [row for row in places if row["price"] is None]
    fok = [row for row in places if row["tif"] == "fok"]
    post_only = [row for row in places if row["post_only"]]
    amends = [row for row in orders if row["action"] == "amend"]
    assert market and fok and post_only and amends
    assert {row["outcome"] for row in amends} >= {"amended"}
    assert {row["outcome"] for row in market} & {"accepted", "cancelled"}
    # a fill-or-kill order trades all or nothing: never partly
    traded: dict[int, int] = {}
    for trade in smoke.tables["trades"].to_pylist():
        for side in ("buy", "sell"):
            traded[trade[f"{side}_order_id"]] = (
                traded.get(trade[f"{side}_order_id"], 0) + trade["quantity"]
            )
    assert {traded.get(row["order_id"], 0) for row in fok} <= {0} | {r["quantity"] for r in fok}
    assert any(traded.get(row["order_id"], 0) == row["quantity"] for row in fok)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_noise_traders_never_trade_with_themselves(seed: int, tmp_path: Path) -> None:
    result = run_inprocess(load_scenario("smoke"), seed, tmp_path / "out")
    kinds = {row["agent_id"]: row["kind"] for row in result.tables["agents"].to_pylist()}
    own = [
        trade
        for trade in result.tables["trades"].to_pylist()
        if trade["buy_agent_id"] == trade["sell_agent_id"]
    ]
    assert {kinds[trade["buy_agent_id"]] for trade in own} <= {"wash_trader"}
    noise = sum(
        1
        for trade in result.tables["trades"].to_pylist()
        if kinds[trade["buy_agent_id"]] == "noise"
    )
    assert noise > 0


def test_a_kind_registered_by_an_installed_package_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what `importlib.metadata.entry_points(group="jinlian.agents")` lists once a package
    # declaring `contrarian = "my_agents:Contrarian"` is installed
    import simulator.scenario as scenario_module

    monkeypatch.setattr(
        scenario_module, "_entry_points", lambda: {"contrarian": "my_agents:Contrarian"}
    )
    path = write_researcher(
        tmp_path, SCENARIO.replace('class = "my_agents:Contrarian"', 'kind = "contrarian"')
    )
    group = load_scenario(path).agents[1]
    assert (group.kind, group.class_path) == ("contrarian", "my_agents:Contrarian")
    with pytest.raises(ScenarioError, match=r"agents\[1\]\.kind: 'insider' is not one of"):
        load_scenario(write_researcher(tmp_path, SCENARIO.replace(
            'class = "my_agents:Contrarian"', 'kind = "insider"')))  # fmt: skip


def test_a_class_and_a_different_kind_are_refused(tmp_path: Path) -> None:
    both = 'class = "my_agents:Contrarian"\nkind = "noise"'
    path = write_researcher(tmp_path, SCENARIO.replace('class = "my_agents:Contrarian"', both))
    with pytest.raises(ScenarioError, match=r"agents\[1\]\.kind: 'noise' is not"):
        load_scenario(path)
