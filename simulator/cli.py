"""`jinlian simulate`: run a scenario, show progress and a summary, write the run's outputs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from simulator.run import run_inprocess, write_outputs
from simulator.scenario import ScenarioError, load_scenario


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
    out: Path = arguments.out or Path(f"sim-{scenario.name}-seed{arguments.seed}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(f"jinlian simulate: --out {out} is not an empty directory", file=sys.stderr)
        return 2
    total_s = scenario.duration_ns / 1e9
    with Progress(
        TextColumn(f"[bold]{scenario.name}[/] seed {arguments.seed}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} virtual s"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("simulate", total=total_s)
        result = run_inprocess(
            scenario,
            arguments.seed,
            out,
            progress=lambda now_ns: progress.update(task, completed=now_ns / 1e9),
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
    print(f"wrote {out}: report.json, orders/trades/labels/agents.parquet, charts; "
          f"verify with: jinlian verify {out}/{document['node']}")  # fmt: skip
    return 0
