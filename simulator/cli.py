"""`jinlian simulate`: run a scenario, show progress and a summary, write the run's outputs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from exchange.consortium.audit import UsageError
from ledger.genesis import GenesisError
from simulator.inprocess import write_consortium
from simulator.run import run_inprocess, write_outputs
from simulator.scenario import Scenario, ScenarioError, load_scenario


def main(arguments: argparse.Namespace) -> int:
    console = Console(stderr=True)
    try:
        scenario = load_scenario(arguments.scenario)
    except ScenarioError as error:
        print(f"jinlian simulate: {error}", file=sys.stderr)
        return 2
    if not 0 <= arguments.seed < 2**63:
        print(f"jinlian simulate: --seed must be in [0, 2**63), got {arguments.seed}",
              file=sys.stderr)  # fmt: skip
        return 2
    if getattr(arguments, "sweep", False) or getattr(arguments, "point", None) is not None:
        return _sweep(arguments, scenario, console)
    mode = getattr(arguments, "mode", "inprocess")
    suffix = "-network" if mode == "network" else ""
    out: Path = arguments.out or Path(f"sim-{scenario.name}-seed{arguments.seed}{suffix}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(f"jinlian simulate: --out {out} is not an empty directory", file=sys.stderr)
        return 2
    if mode == "network" and getattr(arguments, "no_ledger", False):
        print("jinlian simulate: --no-ledger is for in-process runs", file=sys.stderr)
        return 2
    if mode == "network":
        return _network(arguments, scenario, out, console)
    total_s = scenario.run_ns / 1e9
    with _progress(scenario.name, f"seed {arguments.seed}", console) as progress:
        task = progress.add_task("simulate", total=total_s)
        result = run_inprocess(
            scenario,
            arguments.seed,
            out,
            progress=lambda now_ns: progress.update(task, completed=now_ns / 1e9),
            ledger=not getattr(arguments, "no_ledger", False),
        )
    document = write_outputs(result)
    table = Table(title=f"jinlian simulate {scenario.name} (seed {arguments.seed}, in-process)")
    table.add_column("figure")
    table.add_column("value", justify="right", overflow="fold")
    rows = [
        ("agents", f"{document['agents']:,}"),
        ("messages", f"{result.messages:,}"),
        ("orders", f"{result.orders:,}"),
        ("cancels", f"{result.cancels:,}"),
        ("trades", f"{result.trades:,}"),
        ("labelled orders", f"{document['labels']:,}"),
        ("blocks", f"{result.blocks:,}"),
        ("wall time", f"{result.wall_s:.2f} s"),
        ("messages/s", f"{result.messages_per_s:,.0f}"),
        ("final state hash", result.state_hash),
    ]
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)
    if result.ledger:
        print(f"wrote {out}: report.json, orders/trades/labels/agents.parquet, charts; "
              f"verify with: jinlian verify {out}/{document['node']}")  # fmt: skip
    else:
        print(f"wrote {out}: report.json, orders/trades/labels/agents.parquet, charts "
              "(--no-ledger: no consortium, no blocks)")  # fmt: skip
    return 0


def _sweep(arguments: argparse.Namespace, scenario: Scenario, console: Console) -> int:
    from simulator import sweep  # noqa: PLC0415 - only for sweeps

    if scenario.sweep is None:
        print(f"jinlian simulate: {arguments.scenario} has no [sweep] table", file=sys.stderr)
        return 2
    if getattr(arguments, "mode", "inprocess") != "inprocess":
        print("jinlian simulate: sweeps run in-process only", file=sys.stderr)
        return 2
    ledger = not arguments.no_ledger
    if arguments.point is not None:
        try:
            scenario.sweep.point(arguments.point)
        except ScenarioError as error:
            print(f"jinlian simulate: {error}", file=sys.stderr)
            return 2
        out: Path = arguments.out or Path(f"sim-{scenario.name}-point{arguments.point}")
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            print(f"jinlian simulate: --out {out} is not an empty directory", file=sys.stderr)
            return 2
        row = sweep.run_point(arguments.scenario, arguments.point, out, ledger=ledger)
        print(json.dumps(row))
        return 0 if row["status"] == "ok" else 1
    out = arguments.out or Path(f"sweep-{scenario.name}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(f"jinlian simulate: --out {out} is not an empty directory", file=sys.stderr)
        return 2
    with _progress(scenario.name, f"sweep of {scenario.sweep.size} points", console) as bar:
        task = bar.add_task("sweep", total=scenario.sweep.size)
        try:
            table = sweep.run_sweep(
                arguments.scenario, out, workers=arguments.workers, executor=arguments.executor,
                ledger=ledger, progress=lambda done, _: bar.update(task, completed=done),
            )  # fmt: skip
        except sweep.SweepError as error:
            print(f"jinlian simulate: {error}", file=sys.stderr)
            return 2
    summary = Table(title=f"jinlian simulate {scenario.name} --sweep ({table.num_rows} points)")
    swept = [path for path, _ in scenario.sweep.parameters]
    shown = ["point", "seed", *swept, "status", "messages", "trades", "wall_s", "error"]
    for name in shown:
        summary.add_column(name, overflow="fold")
    for row in table.select(shown).to_pylist():
        summary.add_row(*("" if value is None else str(value) for value in row.values()))
    Console().print(summary)
    failed = sum(1 for status in table["status"].to_pylist() if status != "ok")
    print(f"wrote {out}: results.parquet, results.csv, point-K/ per point; {failed} failed")
    return 0 if not failed else 1


def _network(arguments: argparse.Namespace, scenario: Scenario, out: Path, console: Console) -> int:
    from simulator import network  # noqa: PLC0415 - multiprocessing and the client: only here

    if arguments.init_only:
        genesis = write_consortium(scenario, arguments.seed, out, base_port=arguments.base_port)
        print(f"wrote {out}: the consortium of {scenario.name} (seed {arguments.seed}, chain "
              f"{genesis.chain_id}); start it with: jinlian up {out}; then: jinlian simulate "
              f"{arguments.scenario} --mode network --seed {arguments.seed} --connect "
              f"{genesis.exchange.address} --consortium {out} --out DIR")  # fmt: skip
        return 0
    if (arguments.connect is None) != (arguments.consortium is None):
        print("jinlian simulate: --connect and --consortium go together", file=sys.stderr)
        return 2
    if not 0 < arguments.speed <= 1000:
        print(f"jinlian simulate: --speed must be in (0, 1000], got {arguments.speed}",
              file=sys.stderr)  # fmt: skip
        return 2
    if not 1 <= arguments.processes <= 64:
        print(f"jinlian simulate: --processes must be in 1..64, got {arguments.processes}",
              file=sys.stderr)  # fmt: skip
        return 2
    total_s = scenario.run_ns / 1e9
    try:
        with _progress(scenario.name, f"seed {arguments.seed} (network)", console) as progress:
            task = progress.add_task("simulate", total=total_s)
            result = network.run_network(
                scenario,
                arguments.seed,
                out,
                speed=arguments.speed,
                connect=arguments.connect,
                consortium=arguments.consortium,
                processes=arguments.processes,
                base_port=arguments.base_port,
                progress=lambda now_ns: progress.update(task, completed=now_ns / 1e9),
            )
    except (network.NetworkError, UsageError, GenesisError, OSError, RuntimeError) as error:
        print(f"jinlian simulate: {error}", file=sys.stderr)
        return 1
    document = network.write_outputs(result)
    table = Table(title=f"jinlian simulate {scenario.name} (seed {arguments.seed}, network, "
                        f"speed {arguments.speed:g}x)")  # fmt: skip
    table.add_column("figure")
    table.add_column("value", justify="right", overflow="fold")
    errors = ", ".join(f"{code} {count}" for code, count in sorted(result.errors.items()))
    rows = [
        ("agents", f"{document['agents']:,}"),
        ("client processes / sessions", f"{result.processes} / {result.sessions}"),
        ("messages sent", f"{result.messages:,}"),
        ("replies", f"{result.replies:,}"),
        ("orders", f"{result.orders:,}"),
        ("cancels", f"{result.cancels:,}"),
        ("trades", f"{result.trades:,}"),
        (
            "trading days (net cycles)",
            f"{len(scenario.trading_days)} ({', '.join(document['cycles']) or 'none'})",
        ),
        ("labelled orders", f"{document['labels']:,}"),
        ("errors", errors or "none"),
        ("cancels held (one in flight)", f"{result.cancels_held:,}"),
        ("wall time", f"{result.wall_s:.2f} s"),
        ("offered messages/s", f"{result.offered_per_s:,.0f}"),
        ("achieved messages/s", f"{result.achieved_per_s:,.0f}"),
        ("latency p50", f"{result.latency_ms(50):.2f} ms"),
        ("latency p99", f"{result.latency_ms(99):.2f} ms"),
        ("latency p99.9", f"{result.latency_ms(99.9):.2f} ms"),
        ("final state hash", result.state_hash or "n/a (--connect)"),
        ("member store", result.verified or "n/a (--connect)"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)
    print(f"wrote {out}: report.json, orders/trades/labels/agents/days/positions/cycles.parquet, "
          "latency.hlog, latency_percentiles.txt, charts")  # fmt: skip
    return 0


def _progress(name: str, detail: str, console: Console) -> Progress:
    """The run's progress bar, in virtual seconds."""
    return Progress(
        TextColumn(f"[bold]{name}[/] {detail}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} virtual s"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
