"""The console's speed on a large store (issue #20), in headless Chromium: the market page, the
health page, the block list, a 2,000-command block and a receipt each reach `load` with their
data rendered within 1 s at p95 (`exchange.bench.console_bench`). The issue's run, on a store
of 1,000,000 commands with 20 loads a page, takes minutes: JINLIAN_CHECK_ALL=1 (`make
check-all`). The default run builds 2 blocks and loads each page twice: the bench's path, kept
working, with the same checks of what each page renders."""

from __future__ import annotations

import os

from exchange.bench.console_bench import BLOCK_COMMANDS, LOAD_GOAL_S, run
from exchange.consortium.init import free_base_port
from tests.console_browser import require_browser

FULL = os.environ.get("JINLIAN_CHECK_ALL") == "1"


async def test_every_page_loads_with_its_data_within_a_second() -> None:
    executable = require_browser()
    commands, loads = (1_000_000, 20) if FULL else (2 * BLOCK_COMMANDS, 2)
    report = await run(commands, loads, base_port=free_base_port(5), executable=str(executable))
    assert report["commands"] == commands, report
    for name, page in report["pages"].items():
        assert page["p95_ms"] < 1000 * LOAD_GOAL_S, (name, report)
