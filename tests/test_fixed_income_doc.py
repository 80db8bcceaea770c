"""docs/fixed_income.md's example runs as documented through `jinlian venue`."""

from __future__ import annotations

import io
import re
from pathlib import Path

from exchange.cli import run_venue

DOC = Path(__file__).resolve().parent.parent / "docs" / "fixed_income.md"


def block(name: str) -> list[bytes]:
    found = re.search(rf"```jsonl {name}\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert found is not None, name
    return [line.encode() for line in found.group(1).splitlines() if line.strip()]


def test_the_documented_bond_and_dividend_flow_gives_the_documented_events() -> None:
    out = io.BytesIO()
    code = run_venue(
        block("commands"),
        out,
        operator="EXCHANGE",
        regulator="CSRC",
        final_book=False,
        state_hash=False,
    )
    assert code == 0
    assert out.getvalue().splitlines() == block("events")
