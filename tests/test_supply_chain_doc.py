"""docs/supply_chain.md's example runs as documented through `jinlian venue`; the finance
benchmark runs."""

from __future__ import annotations

import orjson
import pytest

from exchange.cli import main
from tests.documented_venue import assert_documented_events


def test_the_documented_supply_chain_flow_gives_the_documented_events() -> None:
    assert_documented_events("supply_chain.md")


def test_bench_finance_runs_a_small_flow_all_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    """`jinlian bench finance` (tiny): every phase's commands are accepted (asserted inside)."""
    code = main(["bench", "finance", "--pieces", "20", "--suppliers", "5", "--messages", "500",
                 "--depth", "200", "--rounds", "1", "--json"])  # fmt: skip
    assert code == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["pieces"] == 20 and report["split_per_s"] > 0 and report["trading_per_s"] > 0
    assert report["coupon_per_s"] > 0 and report["redemption_per_s"] > 0
