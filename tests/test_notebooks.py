"""Every notebook in notebooks/ runs top to bottom, headless, on every kind of ledger.

The ledger comes from one fixture, `notebook_inputs`, shared by the four notebooks of a source,
which returns the consortium directory (one node directory per member), the node the notebooks
read and the labels file. Its sources: the seeded session of `tests.analysis_ledger` (planted
abuse on the `Chain` fixture, every voting member's store written); `jinlian simulate smoke`
in process and over the network (its consortium directory, `bank1`, `labels.parquet`); the
in-process smoke run's `jinlian export` directory instead of the node; one `realistic`
in-process run (about four minutes); and, under `JINLIAN_CHECK_ALL=1`, `make demo`'s
consortium after its session. The supply-chain notebook (05) runs on a seeded supply-chain
ledger (`tests.scf_ledger`), its export, and under `JINLIAN_CHECK_ALL=1` on the same demo
consortium, whose session ends with a supply-chain flow. The notebooks
assert what must hold (conservation, agreement, re-execution) and report detector quality, so
a broken analysis fails here. The parameters are injected papermill-style: a cell after the
one tagged `parameters` overrides its values.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from exchange.cli import main
from exchange.consortium.init import init_consortium
from tests.analysis_ledger import Session, generate_session
from tests.consortium_net import free_base_port
from tests.scf_ledger import generate_scf_ledger

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SUPPLY_CHAIN = ROOT / "notebooks" / "05_supply_chain.ipynb"
TRADING = [path for path in NOTEBOOKS if path != SUPPLY_CHAIN]
CELL_TIMEOUT_S = 120


# the CI set: smoke in process, exported and over the network, and one shared realistic
# in-process run (about four minutes of the suite); the demo consortium only under check-all
SIMULATED = ["smoke-inprocess", "smoke-export", "smoke-network", "realistic-inprocess"]
SOURCES = ["session"] + (SIMULATED if importlib.util.find_spec("simulator") else [])
SCF_SOURCES = ["supply-chain", "supply-chain-export"]
if os.environ.get("JINLIAN_CHECK_ALL") == "1":
    SOURCES.append("demo")
    if importlib.util.find_spec("simulator"):  # smoke on two trading days over the network
        SOURCES.append("smokedays-network")
    SCF_SOURCES.append("demo")


@pytest.fixture(scope="session")
def demo_session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    """The demo consortium, made once (when asked for) for every notebook that reads it."""
    return demo_consortium(tmp_path_factory.mktemp("demo") / "demo")


def demo_consortium(directory: Path) -> Session:
    """`jinlian up --demo` on a fresh consortium, stopped with Ctrl-C after its session."""
    init_consortium(directory, members=4, brokers=3, base_port=free_base_port(5))
    up = subprocess.Popen([sys.executable, "-m", "exchange.cli", "up", str(directory), "--demo"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        assert up.stdout is not None
        for line in up.stdout:
            if "the consortium keeps running" in line:
                break
        up.send_signal(signal.SIGINT)
        up.communicate(timeout=30)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0
    return Session(consortium=directory, node=directory / "bank1", labels=directory / "none")


@pytest.fixture(scope="module", params=SOURCES)
def notebook_inputs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                    ) -> Session:  # fmt: skip
    directory = tmp_path_factory.mktemp(request.param)
    if request.param == "session":
        return generate_session(directory, seed=3, blocks=80)
    if request.param == "demo":
        return request.getfixturevalue("demo_session")  # type: ignore[no-any-return]
    scenario, mode = request.param.split("-")
    out = directory / scenario
    if scenario == "smokedays":
        smoke = (ROOT / "simulator" / "scenarios" / "smoke.toml").read_text()
        scenario = str(directory / "smokedays.toml")
        Path(scenario).write_text(smoke.replace("day = 20260105", "days = [20260105, 20260106]"))
    command = ["simulate", scenario, "--mode", "inprocess", "--seed", "1", "--out", str(out)]
    if mode == "network":
        command[3:4] = ["network", "--speed", "20", "--base-port", str(free_base_port(5))]
        done = subprocess.run([sys.executable, "-m", "exchange.cli", *command],
                              capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    else:
        assert main(command) == 0
    node = out / "bank1"
    if mode == "export":  # the tables only, read through DuckDB and pyarrow
        assert main(["export", str(node), "--out", str(directory / "export")]) == 0
        node = directory / "export"
    return Session(consortium=out, node=node, labels=out / "labels.parquet")


@pytest.fixture(scope="module", params=SCF_SOURCES)
def scf_inputs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
               ) -> Session:  # fmt: skip
    if request.param == "demo":
        return request.getfixturevalue("demo_session")  # type: ignore[no-any-return]
    directory = tmp_path_factory.mktemp(request.param)
    ledger = generate_scf_ledger(directory, seed=1)
    node = ledger.node
    if request.param == "supply-chain-export":
        assert main(["export", str(node), "--out", str(directory / "export")]) == 0
        node = directory / "export"
    return Session(consortium=ledger.consortium, node=node, labels=directory / "none")


def test_notebooks_are_committed_without_outputs() -> None:
    assert len(NOTEBOOKS) == 5 and SUPPLY_CHAIN in NOTEBOOKS
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: one cell tagged 'parameters'"
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", TRADING, ids=[path.stem for path in TRADING])
def test_notebook_runs_on_a_seeded_session(path: Path, notebook_inputs: Session) -> None:
    run_notebook(path, notebook_inputs)


@pytest.mark.slow
def test_the_supply_chain_notebook_runs(scf_inputs: Session) -> None:
    run_notebook(SUPPLY_CHAIN, scf_inputs)


def run_notebook(path: Path, notebook_inputs: Session) -> None:
    """Run the notebook top to bottom with the inputs as its parameters; raises at the first
    cell that fails (an assertion of what must hold, say)."""
    notebook = nbformat.read(path, as_version=4)
    parameters = {
        "NODE": str(notebook_inputs.node),
        "CONSORTIUM": str(notebook_inputs.consortium),
        "LABELS": str(notebook_inputs.labels),
    }
    index = next(
        i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])
    )
    declared = notebook.cells[index].source
    source = "\n".join(f"{k} = {v!r}" for k, v in parameters.items() if f"{k} =" in declared)
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(source))
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT)}},  # import this checkout's packages
    )
    client.execute()
