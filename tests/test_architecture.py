"""The package rules of DESIGN.md, checked on the source: pure cores, no cross imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PURE = ("matching", "settlement", "exchange/venue")
IMPURE_MODULES = {"asyncio", "aiohttp", "time", "random", "os", "socket", "datetime", "secrets"}
MAY_NOT_IMPORT = {
    "matching": {"settlement", "ledger", "exchange", "simulator"},
    "settlement": {"matching", "ledger", "exchange", "simulator"},
    "ledger": {"matching", "settlement", "exchange", "simulator"},
}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PURE)
def test_pure_packages_touch_no_clock_randomness_or_io(package: str) -> None:
    for path in sources(package):
        bad = imported_roots(path) & IMPURE_MODULES
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("package", sorted(MAY_NOT_IMPORT))
def test_core_packages_do_not_import_each_other(package: str) -> None:
    for path in sources(package):
        bad = imported_roots(path) & MAY_NOT_IMPORT[package]
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_matching_imports_only_stdlib_and_sortedcontainers() -> None:
    import sys

    allowed = set(sys.stdlib_module_names) | {"sortedcontainers", "matching"}
    for path in sources("matching"):
        extra = imported_roots(path) - allowed
        assert not extra, f"{path.relative_to(ROOT)} imports {sorted(extra)}"


ANALYSIS_LIBRARIES = {"pandas", "numpy", "pyarrow", "matplotlib"}


@pytest.mark.parametrize("package", ["matching", "settlement", "ledger", "exchange"])
def test_only_the_analysis_package_needs_the_data_stack(package: str) -> None:
    """pandas and friends stay in `exchange.analysis` (and the benchmarks, which measure on
    purpose and are imported only by their `jinlian bench` subcommand): a node, the CLI's
    start-up and the pure cores never load them (the CLI imports `exchange.analysis` lazily,
    inside `export`)."""
    for path in sources(package):
        if path.is_relative_to(ROOT / "exchange" / "analysis") or path.is_relative_to(
            ROOT / "exchange" / "bench"
        ):
            continue
        bad = imported_roots(path) & ANALYSIS_LIBRARIES
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_the_analysis_package_is_imported_only_by_the_export_command() -> None:
    for package in ("matching", "settlement", "ledger", "exchange"):
        for path in sources(package):
            if path.is_relative_to(ROOT / "exchange" / "analysis"):
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "exchange.analysis"
                ):
                    assert path.name == "cli.py", f"{path.relative_to(ROOT)} imports {node.module}"
                    assert not any(node in ast.iter_child_nodes(top) for top in [tree]), (
                        "exchange.cli imports exchange.analysis at module level"
                    )


def test_simulator_imports_the_exchange_and_below_and_its_libraries() -> None:
    import sys

    allowed = set(sys.stdlib_module_names) | {
        "matching", "settlement", "ledger", "exchange", "simulator",
        "numpy", "pyarrow", "matplotlib", "rich",
        "hdrh",  # the network mode's latency histograms (a dependency already: bench gateway)
        "dask",  # sweeps on a Dask cluster (the optional `dask` extra, imported only there)
    }  # fmt: skip
    for path in sources("simulator"):
        extra = imported_roots(path) - allowed
        assert not extra, f"{path.relative_to(ROOT)} imports {sorted(extra)}"


def test_only_the_command_line_of_the_exchange_reaches_the_simulator() -> None:
    for path in sources("exchange"):
        if path.name != "cli.py":
            assert "simulator" not in imported_roots(path), f"{path.relative_to(ROOT)}"


def test_the_venue_core_imports_only_the_cores_and_itself() -> None:
    """`exchange/venue/` is the composition of the pure cores: it may import matching,
    settlement, the ledger's canonical encoding and itself, never the shell (the gateway, the
    nodes, the CLI) nor a library that does IO."""
    import sys

    # cryptography: the Ed25519 check of participants' signatures (supply-chain finance), a
    # pure function of the bytes, key and signature (exchange/venue/supply_chain.py)
    allowed = set(sys.stdlib_module_names) | {"matching", "settlement", "orjson", "cryptography"}
    for path in sources("exchange/venue"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                module = node.module
                if module.startswith(("exchange.venue", "ledger.canonical")):
                    continue
                if module == "exchange":  # `from exchange import venue` would be the shell too
                    raise AssertionError(f"{path.relative_to(ROOT)} imports from exchange")
                assert module.split(".")[0] in allowed, f"{path.relative_to(ROOT)}: {module}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    root = alias.name.split(".")[0]
                    assert root in allowed, f"{path.relative_to(ROOT)}: {alias.name}"


def test_broker_reports_are_pure_like_the_venue_core() -> None:
    """Broker reports are a pure function of the ledger (a replayed report is byte-identical to
    the live one), so `exchange/gateway/broker_reports.py` is held to the purity rule although
    it lives with the gateway."""
    path = ROOT / "exchange/gateway/broker_reports.py"
    bad = imported_roots(path) & IMPURE_MODULES
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
    shell = {
        module
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module
        for module in [node.module]
        if module.startswith("exchange.") and not module.startswith("exchange.venue")
    }
    assert not shell, f"{path.relative_to(ROOT)} imports the shell: {sorted(shell)}"
