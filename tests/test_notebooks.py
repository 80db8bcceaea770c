"""Every notebook in notebooks/ runs top to bottom, headless, on a seeded session's ledger.

The ledger comes from one fixture, `notebook_inputs`, which returns the consortium directory
(one node directory per member), the node the notebooks read and the labels file. It has two
sources: the seeded session of `tests.analysis_ledger` (planted abuse on the `Chain` fixture,
every voting member's store written) and, once the `simulator` package is installed, a
`jinlian simulate smoke --mode inprocess --seed 1` run (its consortium directory, `bank1`,
`labels.parquet`). The notebooks assert what they show, so a broken analysis fails here. The
parameters are injected papermill-style: a cell after the one tagged `parameters` overrides
its values.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from exchange.cli import main
from tests.analysis_ledger import Session, generate_session

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 120


SOURCES = ["session"] + (["simulator"] if importlib.util.find_spec("simulator") else [])


@pytest.fixture(scope="module", params=SOURCES)
def notebook_inputs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                    ) -> Session:  # fmt: skip
    directory = tmp_path_factory.mktemp(request.param)
    if request.param == "session":
        return generate_session(directory, seed=3, blocks=80)
    out = directory / "smoke"
    command = ["simulate", "smoke", "--mode", "inprocess", "--seed", "1", "--out", str(out)]
    assert main(command) == 0
    return Session(consortium=out, node=out / "bank1", labels=out / "labels.parquet")


def test_notebooks_are_committed_without_outputs() -> None:
    assert len(NOTEBOOKS) == 4
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: one cell tagged 'parameters'"
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_on_a_seeded_session(path: Path, notebook_inputs: Session) -> None:
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
