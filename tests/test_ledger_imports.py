"""The ledger stays generic: stdlib, cryptography, orjson and aiohttp only; no venue packages."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

LEDGER = Path(__file__).resolve().parent.parent / "ledger"
ALLOWED = set(sys.stdlib_module_names) | {"cryptography", "orjson", "aiohttp", "ledger"}


def test_ledger_imports_only_what_design_allows() -> None:
    for path in sorted(LEDGER.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert roots <= ALLOWED, f"{path.name} imports {sorted(roots - ALLOWED)}"
