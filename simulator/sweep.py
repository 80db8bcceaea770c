"""Parameter sweeps: every point of a scenario's `[sweep]` grid, each a run of its own.

    [sweep]
    seeds = [1, 2, 3]
    "agents[0].rate_per_s" = [0.2, 0.4]     # or, as a TOML nested key: agents.0.rate_per_s
    "instruments[0].volatility_bps" = [4, 8]

`jinlian simulate FILE --sweep --out DIR` runs the grid's points (parameters in file order,
seeds fastest: point K) in worker processes, at most `--workers` at a time (one per core by
default): each point is `jinlian simulate FILE --point K --out DIR/point-K` in a process of
its own (`run_point_process`), so a point that fails, even by killing its process, is a row
with its error and the others go on. Each point's directory holds its run's outputs, the
scenario file (`scenario.toml`) and `point.json` (its row). `DIR/results.parquet` (and
`results.csv`) is the tidy table: one row a point, a column a swept parameter (named by its
path), its status, error and figures. With `--executor dask://HOST:PORT` the same point
processes are started by the workers of a Dask cluster (`dask.distributed`, an optional
extra), which must see the same file system.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from simulator.run import run_inprocess, write_outputs
from simulator.scenario import (
    SCENARIOS_PACKAGE,
    Sweep,
    load_scenario,
    shipped_names,
)

POINT_FILE: Final = "point.json"
SCENARIO_FILE: Final = "scenario.toml"
RESULTS_FILE: Final = "results.parquet"
STDERR_TAIL_CHARACTERS: Final = 2000  # of a failed point process's stderr, into its row
WORKERS_MAX: Final = 256
# the row's fixed columns and their types, whatever the values (a column of nulls keeps its type)
FIGURES: Final = (
    ("status", pa.string()),  # ok, failed
    ("error", pa.string()),
    ("messages", pa.int64()),
    ("orders", pa.int64()),
    ("cancels", pa.int64()),
    ("trades", pa.int64()),
    ("volume", pa.int64()),
    ("wall_s", pa.float64()),
    ("messages_per_s", pa.float64()),
    ("final_state_hash", pa.string()),
    ("directory", pa.string()),
)


class SweepError(Exception):
    """A sweep that cannot start (no [sweep] table, bad --workers or --executor)."""


def point_directory(out: Path, index: int) -> Path:
    return out / f"point-{index:04d}"


def scenario_bytes(name_or_path: str) -> bytes:
    if name_or_path in shipped_names():
        folder = resources.files(SCENARIOS_PACKAGE)
        return folder.joinpath(f"{name_or_path}.toml").read_bytes()
    return Path(name_or_path).read_bytes()


def sweep_of(name_or_path: str) -> Sweep:
    sweep = load_scenario(name_or_path).sweep
    if sweep is None:
        raise SweepError(f"{name_or_path} has no [sweep] table")
    return sweep


def run_point(name_or_path: str, index: int, out: Path, *, ledger: bool = True) -> dict[str, Any]:
    """Run point `index` of the scenario's sweep in this process into `out` (empty or
    absent): the run's outputs, the scenario file and `point.json` (the row, returned). A run
    that raises is a row with status `failed` and the error. Raises ScenarioError or
    SweepError for a point that cannot be made at all."""
    point, scenario = sweep_of(name_or_path).point(index)
    row: dict[str, Any] = {"point": point.index, "seed": point.seed, **dict(point.values)}
    row |= dict.fromkeys(name for name, _ in FIGURES)
    row["directory"] = str(out)
    try:
        result = run_inprocess(scenario, point.seed, out, ledger=ledger)
        write_outputs(result)
        trades = result.tables["trades"]
        row |= {
            "status": "ok",
            "messages": result.messages,
            "orders": result.orders,
            "cancels": result.cancels,
            "trades": result.trades,
            "volume": int(pa.compute.sum(trades["quantity"]).as_py() or 0),
            "wall_s": round(result.wall_s, 3),
            "messages_per_s": round(result.messages_per_s, 1),
            "final_state_hash": result.state_hash,
        }
    except Exception as error:  # the point's failure is its row; the sweep goes on
        row |= {"status": "failed", "error": f"{type(error).__name__}: {error}"}
    finally:
        out.mkdir(parents=True, exist_ok=True)
        (out / SCENARIO_FILE).write_bytes(scenario_bytes(name_or_path))
        (out / POINT_FILE).write_text(json.dumps(row, indent=2) + "\n")
    return row


def run_point_process(
    name_or_path: str, index: int, out: str, ledger: bool, values: dict[str, Any], seed: int
) -> dict[str, Any]:
    """`jinlian simulate SCENARIO --point K --out OUT` in a process of its own; its row (from
    its point.json), or a failed row with its exit code and the end of its stderr."""
    command = [sys.executable, "-c", "import sys; from exchange.cli import main; "
               "sys.exit(main(sys.argv[1:]))", "simulate", name_or_path, "--point", str(index),
               "--out", out]  # fmt: skip
    if not ledger:
        command.append("--no-ledger")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    written = Path(out) / POINT_FILE
    if written.exists():
        row: dict[str, Any] = json.loads(written.read_text())
        return row
    failed: dict[str, Any] = {"point": index, "seed": seed, **values}
    failed |= dict.fromkeys(name for name, _ in FIGURES)
    tail = done.stderr[-STDERR_TAIL_CHARACTERS:].strip()
    error = f"the point's process exited with code {done.returncode}: {tail}"
    failed |= {"status": "failed", "directory": out, "error": error}
    return failed


def run_sweep(
    name_or_path: str,
    out: Path,
    *,
    workers: int | None = None,
    executor: str = "local",
    ledger: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> pa.Table:
    """Run every point of the sweep (see the module doc); write and return the results."""
    sweep = sweep_of(name_or_path)
    workers = workers or os.cpu_count() or 1
    if not 1 <= workers <= WORKERS_MAX:
        raise SweepError(f"--workers must be in 1..{WORKERS_MAX}, got {workers}")
    path = name_or_path if name_or_path in shipped_names() else str(Path(name_or_path).resolve())
    out.mkdir(parents=True, exist_ok=True)
    jobs = [
        (path, point.index, str(point_directory(out, point.index)), ledger, dict(point.values),
         point.seed)
        for point in sweep.points()
    ]  # fmt: skip
    if executor == "local":
        rows = _run_local(jobs, workers, progress)
    elif executor.startswith("dask://"):
        rows = _run_dask(jobs, executor.removeprefix("dask://"), progress)
    else:
        raise SweepError(f"--executor must be local or dask://HOST:PORT, got {executor!r}")
    table = results_table(sweep, rows)
    pq.write_table(table, out / RESULTS_FILE)
    pacsv.write_csv(table, out / "results.csv")
    return table


Job = tuple[str, int, str, bool, dict[str, Any], int]


def _run_local(
    jobs: list[Job], workers: int, progress: Callable[[int, int], None] | None
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sweep") as pool:
        futures: list[Future[dict[str, Any]]] = [pool.submit(run_point_process, *j) for j in jobs]
        for future in futures:
            rows.append(future.result())
            if progress is not None:
                progress(len(rows), len(jobs))
    return rows


def _run_dask(
    jobs: list[Job], address: str, progress: Callable[[int, int], None] | None
) -> list[dict[str, Any]]:
    try:
        from dask.distributed import Client, as_completed  # noqa: PLC0415 - an optional extra
    except ImportError as error:
        raise SweepError(
            f"--executor dask:// needs dask.distributed (pip install 'jinlian[dask]'): {error}"
        ) from None
    with Client(address, timeout=30) as client:  # type: ignore[no-untyped-call]
        futures = [client.submit(run_point_process, *job, pure=False) for job in jobs]
        by_point: dict[int, dict[str, Any]] = {}
        for future in as_completed(futures):  # type: ignore[no-untyped-call]
            row = future.result()
            by_point[row["point"]] = row
            if progress is not None:
                progress(len(by_point), len(jobs))
    return [by_point[job[1]] for job in jobs]


def results_table(sweep: Sweep, rows: list[dict[str, Any]]) -> pa.Table:
    """One row a point, in point order: point, seed, the swept parameters (each a column named
    by its path), then the fixed figures with their fixed types."""
    rows = sorted(rows, key=lambda row: int(row["point"]))
    columns: dict[str, pa.Array] = {
        "point": pa.array([row["point"] for row in rows], pa.int64()),
        "seed": pa.array([row["seed"] for row in rows], pa.int64()),
    }
    for path, values in sweep.parameters:
        kinds = {type(value) for value in values}
        kind = pa.float64() if kinds <= {int, float} and float in kinds else None
        columns[path] = pa.array([row.get(path) for row in rows], kind)
    for name, kind in FIGURES:
        columns[name] = pa.array([row.get(name) for row in rows], kind)
    return pa.table(columns)
