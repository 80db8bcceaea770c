"""How every benchmark hands its figures to the user: a table, or one JSON object."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import orjson


def emit(report: dict[str, Any], render: Callable[[dict[str, Any]], str], as_json: bool) -> int:
    """Print the report; exit status 1 when the compared runs disagreed on the final books."""
    if as_json:
        sys.stdout.write(orjson.dumps(report).decode() + "\n")
    else:
        print(render(report))
    return 0 if report["books_agree"] else 1
