"""The compiled build of the pure core (exchange/compiled.py, exchange/compiled_build.py).

Both builds run the same seeded flows in their own processes and must write the same bytes;
an edited source is never shadowed by a build of other sources; `JINLIAN_BUILD` is checked.
The build is made here if `make compiled` did not make it (once per source hash); the tests
that need it skip, naming the reason, only when no C compiler or no Python headers can be had.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from exchange import compiled
from exchange.compiled_build import ToolchainMissingError, build

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 600


def run(
    arguments: list[str], build_name: str | None, **variables: str
) -> subprocess.CompletedProcess[bytes]:
    environment = {k: v for k, v in os.environ.items() if k != compiled.VARIABLE}
    if build_name is not None:
        environment[compiled.VARIABLE] = build_name
    environment.update(variables)
    return subprocess.run(
        [sys.executable, *arguments],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        timeout=TIMEOUT_S,
        check=False,
    )


@pytest.fixture(scope="module")
def compiled_directory() -> Path:
    try:
        directory, _ = build()
    except ToolchainMissingError as error:
        pytest.skip(f"no compiled build can be made here: {error}")
    return directory


def test_both_builds_write_the_same_events_and_state_hashes_byte_for_byte(
    compiled_directory: Path,
) -> None:
    outputs = {}
    for name in compiled.CHOICES:
        done = run(["-m", "tests.compiled_flows"], name)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        report = json.loads(done.stderr.splitlines()[-1])
        assert report["build"] == name, report
        assert report["source_hash"] == compiled.source_hash()
        suffix = compiled.EXTENSION_SUFFIX if name == "compiled" else ".py"
        assert report["file"].endswith(suffix), report
        outputs[name] = done.stdout
    pure, native = (outputs[name].splitlines() for name in compiled.CHOICES)
    assert len(pure) > 20_000, len(pure)
    first = next((n for n, (a, b) in enumerate(zip(pure, native, strict=False)) if a != b), None)
    assert first is None, f"line {first + 1 if first is not None else 0}: {pure[first or 0]!r}"
    assert outputs["pure"] == outputs["compiled"]


def test_the_replay_tests_pass_on_the_compiled_build(compiled_directory: Path) -> None:
    tests = [
        "tests/test_venue.py::test_replay_gives_the_same_events_and_state_hash",
        "tests/test_venue.py::test_replay_from_json_lines_gives_the_same_events_and_state_hash",
        "tests/test_matching_edges.py::test_replay_is_deterministic",
        # bonds and dividends with the commitment after every command: entity keys of every
        # length go through the compiled digest (a loop variable typed by another loop's keys
        # failed there only compiled)
        "tests/test_bonds.py",
    ]
    done = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], "compiled")
    assert done.returncode == 0, done.stdout.decode()[-3000:]


CORE_TESTS = [  # every test file of the pure core and of the venue's ledger adapter
    "tests/test_matching_commands.py",
    "tests/test_matching_edges.py",
    "tests/test_matching_flow.py",
    "tests/test_matching_levels.py",
    "tests/test_matching_model.py",
    "tests/test_settlement.py",
    "tests/test_settlement_machine.py",
    "tests/test_venue.py",
    "tests/test_venue_machine.py",
    "tests/test_venue_machine_ledger.py",
    "tests/test_state_commitment.py",
    "tests/test_commitment_windows.py",
    "tests/test_wire.py",
    "tests/test_wire_fast.py",
    "tests/test_one_rule.py",  # skips on the compiled build: it patches functions' code
    "tests/test_bonds.py",
    "tests/test_bonds_machine.py",
    "tests/test_supply_chain.py",
]


@pytest.mark.skipif(
    os.environ.get("JINLIAN_CHECK_ALL") != "1", reason="about 2 minutes: JINLIAN_CHECK_ALL=1"
)
def test_the_core_tests_pass_on_the_compiled_build(compiled_directory: Path) -> None:
    arguments = ["-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *CORE_TESTS]
    done = run(arguments, "compiled", JINLIAN_CHECK_ALL="0")
    assert done.returncode == 0, done.stdout.decode()[-3000:]


def test_a_consortium_trades_on_the_compiled_build(
    compiled_directory: Path, tmp_path: Path
) -> None:
    """The shell (the gateway's `ObservedVenueMachine`, the nodes) on the compiled core."""
    done = run(["-m", "tests.compiled_consortium", str(tmp_path / "c")], "compiled")
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["build"] == "compiled"
    assert result["trade"]["price"] == 1002 and result["trade"]["quantity"] == 300, result
    assert result["final_height"] >= 1 and result["signers"] >= 3, result


FINDER_SCRIPT = """
import json, logging, sys
from pathlib import Path
from exchange import compiled
logging.basicConfig(level=logging.DEBUG, format="%(name)s %(message)s")
sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, compiled.CompiledFinder)]
finder = compiled.CompiledFinder(root=Path(sys.argv[1]))
sys.meta_path.insert(0, finder)
import matching.engine, exchange.venue.venue
print(json.dumps({"build": finder.selection().build, "file": matching.engine.__file__,
                  "venue": exchange.venue.venue.__file__}))
"""


def copy_core(destination: Path) -> None:
    for source in compiled.core_sources(ROOT):
        target = destination / source.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def test_an_edited_source_is_never_shadowed_by_a_build_of_other_sources(
    compiled_directory: Path, tmp_path: Path
) -> None:
    copy_core(tmp_path)
    same = run(["-c", FINDER_SCRIPT, str(tmp_path)], None)
    assert same.returncode == 0, same.stderr.decode()
    loaded = json.loads(same.stdout)
    assert loaded["build"] == "compiled"
    assert loaded["file"].startswith(str(compiled_directory)), loaded
    with (tmp_path / "settlement" / "fees.py").open("a") as source:
        source.write("# an edit: the compiled build is now of other sources\n")
    edited = run(["-c", FINDER_SCRIPT, str(tmp_path)], None)
    assert edited.returncode == 0, edited.stderr.decode()
    loaded = json.loads(edited.stdout)
    assert loaded == {
        "build": "pure",
        "file": str(tmp_path / "matching" / "engine.py"),
        "venue": str(tmp_path / "exchange" / "venue" / "venue.py"),
    }
    why = [line for line in edited.stderr.decode().splitlines() if "exchange.compiled" in line]
    assert len(why) == 1 and "no compiled build of sources" in why[0], why
    asked = run(["-c", FINDER_SCRIPT, str(tmp_path)], "compiled")
    assert asked.returncode == 2
    assert b"JINLIAN_BUILD=compiled but no compiled build of sources" in asked.stderr


def test_a_malformed_build_selection_exits_2_naming_it() -> None:
    done = run(["-m", "exchange.cli", "bench", "matching", "--messages", "10"], "fast")
    assert done.returncode == 2
    assert done.stderr.decode().strip() == (
        "jinlian: JINLIAN_BUILD='fast' is not one of pure, compiled "
        "(unset: the compiled build when it is fresh, else pure)"
    )


def test_selection_rules(tmp_path: Path) -> None:
    copy_core(tmp_path)
    digest = compiled.source_hash(tmp_path)
    builds = tmp_path / "builds"
    pure = compiled.select({"JINLIAN_BUILD": "pure"}, tmp_path, builds)
    assert (pure.build, pure.source_hash, pure.reason) == ("pure", digest, "JINLIAN_BUILD=pure")
    absent = compiled.select({}, tmp_path, builds)
    assert absent.build == "pure" and absent.reason.startswith("no compiled build of sources")
    with pytest.raises(compiled.BuildSelectionError, match="JINLIAN_BUILD=compiled but no"):
        compiled.select({"JINLIAN_BUILD": "compiled"}, tmp_path, builds)
    with pytest.raises(compiled.BuildSelectionError, match="JINLIAN_BUILD='Pure' is not one"):
        compiled.select({"JINLIAN_BUILD": "Pure"}, tmp_path, builds)
    half = compiled.build_directory(digest, builds)  # a manifest of other sources
    half.mkdir(parents=True)
    (half / compiled.MANIFEST).write_text(json.dumps({"source_hash": "0" * 64}))
    assert "records other sources" in compiled.select({}, tmp_path, builds).reason
    (half / compiled.MANIFEST).write_text(json.dumps({"source_hash": digest, "modules": []}))
    assert "another set of compiled modules" in compiled.select({}, tmp_path, builds).reason
    modules = [compiled.module_name(path, tmp_path) for path in compiled.compiled_sources(tmp_path)]
    (half / compiled.MANIFEST).write_text(json.dumps({"source_hash": digest, "modules": modules}))
    assert "lacks exchange.venue.changes" in compiled.select({}, tmp_path, builds).reason


def test_a_machine_without_a_compiler_is_told_so() -> None:
    done = run(["-m", "exchange.cli", "build", "--check"], None, PATH="")
    assert done.returncode == 3
    assert done.stdout.decode().startswith("no C compiler:")


@pytest.mark.parametrize("build_name", compiled.CHOICES)
def test_the_benchmarks_and_the_demo_print_the_build_they_run(
    compiled_directory: Path, build_name: str
) -> None:
    expected = compiled.Selection(build_name, compiled.source_hash(), None, "").describe()
    expected = expected.split(" (")[0] if build_name == "pure" else expected
    flow = ["--messages", "500", "--depth", "200", "--rounds", "1"]
    commands = [
        ["bench", "matching", *flow, "--memory-orders", "0"],
        ["bench", "venue", *flow, "--net-trades", "0"],
        ["demo"],
    ]
    for command in commands:
        done = run(["-m", "exchange.cli", *command], build_name)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        assert expected in done.stdout.decode(), (command, done.stdout.decode()[:300])
