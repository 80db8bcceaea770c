"""One in-process run, start to finish, and what it writes to its output directory.

    DIR/genesis.json, DIR/<member>/...   the consortium; DIR/bank1/ledger.sqlite holds the blocks
    DIR/report.json                      seed, scenario sha256, code version, counts, figures
    DIR/orders.parquet                   every place and cancel an agent sent, with its outcome
    DIR/trades.parquet                   every trade, with the agents on both sides
    DIR/labels.parquet                   manipulators' ground truth, one row per labelled order
    DIR/agents.parquet                   every agent: id, name, kind, broker, accounts
    DIR/price_volume.png, DIR/throughput.png

The tables hold only what the seed determines (virtual times, ids, prices), so two runs of the
same scenario and seed write equal tables; wall-clock figures go to report.json only.
"""

from __future__ import annotations

import contextlib
import gc
import json
import resource
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import pyarrow as pa

from simulator.inprocess import (
    CYCLE_COLUMNS,
    DAY_COLUMNS,
    LEDGER,
    NODE,
    POSITION_COLUMNS,
    InProcessDriver,
    KeptBlock,
    day_start_ns,
)
from simulator.outputs import write_tables
from simulator.scenario import Scenario
from simulator.simulation import Simulation

LABEL_COLUMNS = ("time_ns", "agent_id", "label", "role", "order_id", "symbol")


@dataclass(kw_only=True)
class RunResult:
    scenario: Scenario
    seed: int
    directory: Path
    messages: int
    orders: int
    cancels: int
    trades: int
    events: int
    blocks: int
    arrivals: int
    wall_s: float
    cpu_s: float  # this process's CPU time: the steadier figure on a shared machine
    member_cpu_s: float  # the CPU time of bank1's process (simulator.inprocess.CertifiedLedger)
    state_hash: str
    tip_hash: str  # the last block's header hash
    tables: dict[str, pa.Table]
    blocks_table: dict[str, list[Any]]
    kept_commands: list[KeptBlock] | None
    kept_objects: list[Any] | None  # without a ledger: the command objects the venue applied
    ledger: bool = True  # False: `--no-ledger`, the venue alone, no consortium written

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.wall_s if self.wall_s > 0 else 0.0


def run_inprocess(
    scenario: Scenario,
    seed: int,
    directory: Path,
    *,
    progress: Callable[[int], None] | None = None,
    keep_commands: bool = False,
    ledger: bool = True,
    prepare: Callable[[Simulation], None] | None = None,
) -> RunResult:
    """Run `scenario` under `seed`, writing the consortium and its ledger to `directory` (which
    must be empty or absent). Tables are returned, not written (see `write_outputs`). Without
    `ledger` the venue runs alone: no blocks, no consortium (a directory is still made for the
    outputs). `prepare(simulation)` is called before the run (the benchmark times agents)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    member_cpu_started = children_cpu_s()
    simulation = Simulation(scenario, seed)
    if prepare is not None:
        prepare(simulation)
    brokers = {account: spec.broker for spec in simulation.specs for account in spec.accounts}
    if not ledger:
        directory.mkdir(parents=True, exist_ok=True)
    driver = InProcessDriver(
        scenario, seed, directory, simulation.agents, brokers, keep_commands=keep_commands,
        ledger=ledger,
    )  # fmt: skip
    try:
        with fewer_collections():
            simulation.run(driver, progress=progress)
    finally:
        driver.close()
    wall_s = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started
    member_cpu_s = children_cpu_s() - member_cpu_started
    tables = driver.tables
    orders = pa.table(tables.orders)
    labels: dict[str, list[Any]] = {name: [] for name in LABEL_COLUMNS}
    for agent in simulation.agents:
        for label in agent.labels:
            for name in LABEL_COLUMNS:
                labels[name].append(getattr(label, name))
    agents = {
        "agent_id": [spec.agent_id for spec in simulation.specs],
        "name": [spec.name for spec in simulation.specs],
        "kind": [spec.kind for spec in simulation.specs],
        "broker": [spec.broker for spec in simulation.specs],
        "accounts": [list(spec.accounts) for spec in simulation.specs],
    }
    actions = tables.orders["action"]
    integer, text = pa.int64(), pa.string()
    positions_schema = typed(POSITION_COLUMNS, {"account": text, "symbol": text})
    return RunResult(
        scenario=scenario,
        seed=seed,
        directory=directory,
        messages=driver.messages,
        orders=actions.count("place"),
        cancels=actions.count("cancel"),
        trades=len(tables.trades["trade_id"]),
        events=driver.events,
        blocks=driver.height if ledger else 0,
        arrivals=simulation.arrivals,
        wall_s=wall_s,
        cpu_s=cpu_s,
        member_cpu_s=member_cpu_s,
        state_hash=driver.state_hash.hex(),
        tip_hash=driver.tip_hash.hex(),
        tables={
            "orders": orders,
            "trades": pa.table(tables.trades),
            "labels": pa.table(labels, schema=label_schema()),
            "agents": pa.table(agents),
            "fundamentals": fundamentals_table(simulation),
            "quotes": pa.table(tables.quotes, schema=quote_schema()),
            "days": pa.table(tables.days, schema=typed(DAY_COLUMNS, {"day": integer})),
            "cycles": pa.table(tables.cycles, schema=typed(CYCLE_COLUMNS, {"status": text})),
            "positions": pa.table(tables.positions, schema=positions_schema),
        },
        blocks_table=tables.blocks,
        kept_commands=driver.kept_commands,
        kept_objects=driver.kept_objects,
        ledger=ledger,
    )


GC_THRESHOLDS_RUN: Final = (20_000, 10, 10)  # generation 0 collected every 20,000 allocations


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """The run's loop with the cyclic garbage collector mostly out of its way: the objects made
    so far (agents, their schedules, the venue's starting state) frozen, so that no collection
    traverses them, and a collection of the youngest generation every 20,000 net allocations
    instead of 700 (the run frees nearly everything it allocates by reference counting; on
    realistic the collector took about 0.25 s of a 3.5 s loop, 0.1 s with this). Restored
    after, also on an error."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS_RUN)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def fundamentals_table(simulation: Simulation) -> pa.Table:
    """Each instrument's fundamental value at every whole virtual second: `time_ns`, `symbol`,
    `value` (fen)."""
    times: list[int] = []
    symbols: list[str] = []
    values: list[int] = []
    duration_s = simulation.scenario.run_ns // 1_000_000_000
    for instrument in simulation.scenario.instruments:
        path = simulation.fundamentals.path(instrument.symbol)[: duration_s + 1]
        times.extend(second * 1_000_000_000 for second in range(len(path)))
        symbols.extend([instrument.symbol] * len(path))
        values.extend(path)
    integer = pa.int64()
    return pa.table(
        {"time_ns": pa.array(times, integer), "symbol": pa.array(symbols, pa.string()),
         "value": pa.array(values, integer)}
    )  # fmt: skip


def typed(names: tuple[str, ...], types: dict[str, pa.DataType]) -> pa.Schema:
    """Columns of int64 but those named in `types`: a table's types whatever its rows."""
    return pa.schema([(name, types.get(name, pa.int64())) for name in names])


def quote_schema() -> pa.Schema:
    integer = pa.int64()
    return pa.schema([("time_ns", integer), ("symbol", pa.string()), ("bid", integer),
                      ("ask", integer)])  # fmt: skip


def children_cpu_s() -> float:
    """The CPU time of this process's finished children (bank1's process, once it is joined)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def label_schema() -> pa.Schema:
    text, integer = pa.string(), pa.int64()
    return pa.schema([("time_ns", integer), ("agent_id", integer), ("label", text),
                      ("role", text), ("order_id", integer), ("symbol", text)])  # fmt: skip


def code_version() -> str:
    """The package version, and the git commit of the source if it is a checkout."""
    version = metadata.version("jinlian")
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{version}+g{commit}" if commit else version


def report(result: RunResult) -> dict[str, Any]:
    """The in-process run's report.json."""
    return {
        "scenario": result.scenario.name,
        "scenario_sha256": result.scenario.sha256,
        "seed": result.seed,
        "mode": "inprocess",
        "code_version": code_version(),
        "node": NODE if result.ledger else None,
        "ledger": LEDGER if result.ledger else "none (--no-ledger: the venue alone, no blocks)",
        "messages": result.messages,
        "orders": result.orders,
        "cancels": result.cancels,
        "trades": result.trades,
        "events": result.events,
        "blocks": result.blocks,
        "arrivals": result.arrivals,
        "labels": result.tables["labels"].num_rows,
        "agents": result.tables["agents"].num_rows,
        "wall_s": round(result.wall_s, 3),
        "cpu_s": round(result.cpu_s, 3),
        "member_cpu_s": round(result.member_cpu_s, 3),
        "messages_per_s": round(result.messages_per_s, 1),
        "final_state_hash": result.state_hash,
    }


def write_outputs(result: RunResult) -> dict[str, Any]:
    """Write report.json, the Parquet tables and the charts into the run's directory."""
    directory = result.directory
    write_tables(result.tables, directory, day_start_ns(result.scenario.day))
    from simulator import charts  # noqa: PLC0415  (matplotlib is slow to import: only here)

    charts.price_volume(result.tables["trades"], directory / "price_volume.png")
    charts.market(result.scenario, result.tables, directory / "market.png")
    charts.throughput(result.blocks_table, directory / "throughput.png")
    document = report(result)
    (directory / "report.json").write_text(json.dumps(document, indent=2) + "\n")
    return document
