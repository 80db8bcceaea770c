"""docs/fixed_income.md's example runs as documented through `jinlian venue`."""

from __future__ import annotations

from tests.documented_venue import assert_documented_events


def test_the_documented_bond_and_dividend_flow_gives_the_documented_events() -> None:
    assert_documented_events("fixed_income.md")
