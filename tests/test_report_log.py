"""A broker's report log (exchange/gateway/broker_reports.py) is bounded by count and by bytes: run
well past each bound, it holds at most that much, drops the oldest reports in chunks, keeps
its indexes contiguous, and a replay from before what it holds starts at the first it holds.
Every broker's log together is bounded too (`REPORT_LOGS_BYTES_MAX`): the busiest pays first."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.gateway.broker_reports import REPORT_OVERHEAD_BYTES, ReportLog, Reports


def report(number: int, padding: int = 0) -> dict[str, object]:
    return {"type": "new", "order_id": number, "note": "x" * padding}


def counted(log: ReportLog) -> int:
    return sum(len(orjson.dumps(r)) + REPORT_OVERHEAD_BYTES for r in log.reports)


def test_past_the_count_bound_the_oldest_are_dropped_and_indexes_stay_contiguous() -> None:
    log = ReportLog(held_max=1_000)
    for number in range(1, 5_001):
        assert log.append(report(number))["index"] == number
        assert len(log.reports) <= 1_000
    assert log.next_index == 5_001
    assert [r["index"] for r in log.reports] == list(range(log.first, 5_001))
    assert len(log.reports) >= 1_000 - 1_000 // 8  # dropped in chunks, never all
    assert next(r["index"] for r in log.since(1)) == log.first  # a replay from before: its first
    assert [r["index"] for r in log.since(4_990)] == list(range(4_990, 5_001))


def test_past_the_byte_bound_the_log_holds_at_most_its_budget() -> None:
    budget = 200_000
    log = ReportLog(bytes_max=budget)
    for number in range(1, 20_001):
        log.append(report(number, padding=number % 300))
        assert log.held_bytes <= budget
    assert log.held_bytes == counted(log) == sum(log.sizes)
    assert log.first > 1 and log.next_index == 20_001
    assert [r["index"] for r in log.reports] == list(range(log.first, 20_001))


def test_one_report_larger_than_the_budget_is_still_held_alone() -> None:
    log = ReportLog(bytes_max=1_000)
    log.append(report(1))
    log.append(report(2, padding=5_000))
    assert [r["index"] for r in log.reports] == [2] and log.first == 2


@settings(max_examples=60, deadline=None)
@given(
    paddings=st.lists(st.integers(0, 2_000), min_size=1, max_size=400),
    held_max=st.integers(1, 50),
    bytes_max=st.integers(1_000, 40_000),
)
def test_any_run_keeps_the_bounds_and_the_newest_report(
    paddings: list[int], held_max: int, bytes_max: int
) -> None:
    log = ReportLog(held_max=held_max, bytes_max=bytes_max)
    for number, padding in enumerate(paddings, start=1):
        log.append(report(number, padding))
        assert len(log.reports) <= held_max
        assert log.held_bytes <= bytes_max or len(log.reports) == 1
        assert log.reports[-1]["order_id"] == number  # the newest is always held
        assert log.held_bytes == sum(log.sizes) == counted(log)
        assert log.first + len(log.reports) == number + 1


def test_every_log_together_stays_within_the_budget_and_the_busiest_broker_pays() -> None:
    """Past the all-brokers budget the largest log drops its oldest reports; a broker that
    sent little keeps all of its own, and every log keeps contiguous indexes."""
    budget = 2_000_000  # the quiet brokers' 600 reports fit in it; broker1's 29,400 do not
    reports = Reports({}, logs_bytes_max=budget)
    for number in range(1, 30_001):
        busy = number % 50 != 0  # broker1 gets 49 of every 50 reports, broker2..4 the rest
        broker = "broker1" if busy else f"broker{2 + number // 50 % 3}"
        reports.append(broker, report(number, padding=number % 200))
        assert reports.logs_bytes <= budget
        assert reports.logs_bytes == sum(log.held_bytes for log in reports.logs.values())
    quiet = [reports.log(f"broker{n}") for n in (2, 3, 4)]
    assert all(log.first == 1 for log in quiet)  # nothing of theirs was dropped
    busiest = reports.log("broker1")
    assert busiest.first > 1
    for log in reports.logs.values():
        assert [r["index"] for r in log.reports] == list(range(log.first, log.next_index))
    assert next(r["index"] for r in busiest.since(1)) == busiest.first


@settings(max_examples=40, deadline=None)
@given(
    sends=st.lists(st.tuples(st.integers(1, 6), st.integers(0, 1_500)), min_size=1, max_size=300),
    budget=st.integers(2_000, 60_000),
)
def test_any_run_keeps_the_all_brokers_budget_and_each_newest_report(
    sends: list[tuple[int, int]], budget: int
) -> None:
    reports = Reports({}, logs_bytes_max=budget)
    newest: dict[str, int] = {}
    for number, (broker_number, padding) in enumerate(sends, start=1):
        broker = f"broker{broker_number}"
        reports.append(broker, report(number, padding))
        newest[broker] = number
        held = sum(log.held_bytes for log in reports.logs.values())
        assert reports.logs_bytes == held
        # within the budget, unless every log is down to its newest report alone
        assert held <= budget or all(len(log.reports) == 1 for log in reports.logs.values())
        for name, log in reports.logs.items():
            assert log.reports[-1]["order_id"] == newest[name]
            assert log.held_bytes == counted(log)
