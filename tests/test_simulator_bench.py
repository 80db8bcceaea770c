"""`jinlian bench simulate` on the smoke scenario: both runs (with and without the ledger) reach
one final state, and the figures the issue asks for are printed."""

from __future__ import annotations

import json

import pytest

from exchange.cli import main


def test_bench_simulate_reports_with_and_without_the_ledger(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["bench", "simulate", "--scenario", "smoke", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["state_hashes_agree"] and figures["replayed_chain_agrees"]
    assert figures["no_ledger_state_hash_agrees"]
    assert figures["no_ledger_messages_per_s"] > 0
    assert len(figures["no_ledger_messages_per_s_rounds"]) == 2
    assert 0 < figures["agents_us_per_message"] < 1000
    assert figures["scenario_sha256"] and figures["goal_no_ledger_messages_per_s"] == 60_000


def test_bench_simulate_prints_both_rates(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "simulate", "--scenario", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "scenario file sha256" in out
    assert "without the ledger (--no-ledger)" in out and "µs per message" in out
