"""A docs/ page's ```jsonl commands``` example, run through `jinlian venue`, against the
```jsonl events``` block the page documents."""

from __future__ import annotations

import io
import re
from pathlib import Path

from exchange.cli import run_venue

DOCS = Path(__file__).resolve().parent.parent / "docs"


def block(page: str, name: str) -> list[bytes]:
    """The lines of the page's ```jsonl NAME``` block."""
    text = (DOCS / page).read_text()
    found = re.search(rf"```jsonl {name}\n(.*?)```", text, re.DOTALL)
    assert found is not None, f"{page}: no jsonl {name} block"
    return [line.encode() for line in found.group(1).splitlines() if line.strip()]


def assert_documented_events(page: str) -> None:
    """The page's commands give exactly its documented events."""
    out = io.BytesIO()
    code = run_venue(
        block(page, "commands"),
        out,
        operator="EXCHANGE",
        regulator="CSRC",
        final_book=False,
        state_hash=False,
    )
    assert code == 0
    assert out.getvalue().splitlines() == block(page, "events")
