"""What `jinlian bench gateway` prints: the headline includes the ack-latency condition, and
it stands beside the same run's `bench ledger` rate and finality p99, with their ratio."""

from __future__ import annotations

from typing import Any

from exchange.bench.gateway_bench import ledger_options, render, summarize
from exchange.cli import build_parser

PING = {"offered_per_s": 1_000, "p50_ms": 0.8, "p99_ms": 2.0}
LEDGER = {"max_sustained_rate": 1_980, "finality_p50_ms": 30.0, "finality_p99_ms": 80.5,
          "peak_finalized_commands_per_s": 3_100, "inprocess_commands_per_s": 60_000,
          "steps": 4, "sweep": [(1_500, 250.0), (1_980, 90.0)]}  # fmt: skip


def step(offered: int, p99_ms: float, sustained: bool = True) -> dict[str, Any]:
    return {"offered_per_s": offered, "achieved_per_s": offered - 10, "sent": offered,
            "acked": offered, "errors": {}, "p50_ms": 1.0, "p99_ms": p99_ms,
            "p999_ms": p99_ms, "sustained": sustained}  # fmt: skip


def test_the_headline_needs_the_ack_p99_and_is_divided_by_the_ledger_rate() -> None:
    steps = [step(1_000, 12.0), step(2_000, 35.0), step(4_000, 900.0, sustained=False)]
    report = summarize(2, 4.0, steps, PING, LEDGER)
    assert report["max_sustained_orders_per_s"] == 990  # 2,000/s was sustained, with p99 35 ms
    assert report["ack_p99_ms_at_max"] == 12.0
    assert report["ratio_to_ledger"] == 0.5
    text = render(report)
    assert "max sustained with ack p99 < 20 ms: 990 orders/s, ack p99 12.0 ms" in text
    assert "highest rate with finality p99 < 100 ms 1,980 commands/s (finality p99 80.5 ms)" in text
    assert "its sweep, offered/s and finality p99: 1,500/s 250 ms, 1,980/s 90 ms" in text
    assert "gateway / ledger: 0.5x; goal: at least 0.6x with ack p99 < 20 ms" in text


def test_nothing_sustained() -> None:
    report = summarize(2, 4.0, [step(1_000, 45.0)], PING, {**LEDGER, "max_sustained_rate": 0,
                       "finality_p99_ms": None})  # fmt: skip
    assert report["max_sustained_orders_per_s"] == 0 and report["ratio_to_ledger"] is None
    text = render(report)
    assert "max sustained with ack p99 < 20 ms: 0 orders/s\n" in text
    assert "gateway / ledger: n/a (no ledger rate sustained); goal: at least 0.6x" in text


def test_the_same_run_ledger_bench_gets_every_option_bench_ledger_has() -> None:
    """`bench gateway` runs `bench ledger`'s `measure` with options it builds itself: each
    option `jinlian bench ledger` parses must be there (a missing `memory` crashed it)."""
    parser = build_parser()
    ledger = vars(parser.parse_args(["bench", "ledger"]))
    gateway = parser.parse_args(["bench", "gateway"])
    options = vars(ledger_options(gateway))
    assert set(ledger) - {"run", "target", "command"} <= set(options), set(ledger) - set(options)
