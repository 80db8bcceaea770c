"""`jinlian soak` as a user runs it: a real consortium (exchange + 4 members as processes) under
every command kind with kill -9s, checked at the end. A short run always; a longer one, past
more of the bounded windows, only with JINLIAN_CHECK_ALL=1 (`make check-all`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from settlement.types import COMMAND_OUTCOMES_MAX

CHECK_ALL = os.environ.get("JINLIAN_CHECK_ALL") == "1"


def soak(directory: Path, *arguments: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exchange.cli", "soak", "--dir", str(directory), *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def figure(output: str, pattern: str) -> int:
    found = re.search(pattern, output)
    assert found is not None, (pattern, output)
    return int(found.group(1).replace(",", ""))


def test_a_short_soak_kills_the_exchange_and_a_member_and_passes_every_check(
    tmp_path: Path,
) -> None:
    result = soak(tmp_path / "soak", "--minutes", "0.12", "--seed", "3", timeout=120)
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    assert output.rstrip().endswith("OK: every check passed"), output
    assert re.search(r"kill -9: \d+ \(.*exchange 1", output), output
    assert figure(output, r"kill -9: (\d+)") >= 2
    for kind in ("place", "cancel", "amend", "open_orders", "deposit", "withdraw", "issue",
                 "redeem", "transfer", "settle_cycle", "set_fee_schedule", "set_phase",
                 "begin_day", "freeze", "unfreeze"):  # fmt: skip
        assert figure(output, rf"\n  {kind} +([\d,]+)") > 0, kind
    assert figure(output, r"acknowledged orders: ([\d,]+)") > 0
    assert "on every node" in output and "verify bank1: OK: " in output
    assert "conservation checked for 4 assets" in output


def test_soak_refuses_bad_arguments_in_one_line(tmp_path: Path) -> None:
    result = soak(tmp_path / "a", "--minutes", "0", timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "--minutes 0.0 is not in" in result.stderr
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "file").write_text("x")
    result = soak(taken, "--minutes", "1", timeout=60)
    assert result.returncode == 2 and "is not empty" in result.stderr


@pytest.mark.skipif(not CHECK_ALL, reason="a longer soak: JINLIAN_CHECK_ALL=1 (make check-all)")
def test_a_soak_past_the_settlement_outcome_window(tmp_path: Path) -> None:
    """Past 10,000 remembered settlement and venue outcomes with kill -9s, and the forgotten
    first id refused: finds the outcome sync KeyError that stopped the exchange's block cutter
    (issue #15, item 1) until it is fixed."""
    arguments = ("--minutes", "0.3", "--seed", "5", "--past-windows")
    result = soak(tmp_path / "soak", *arguments, timeout=1200)
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    assert figure(output, r"settlement outcomes ([\d,]+) commands") > COMMAND_OUTCOMES_MAX
    assert figure(output, r"venue outcomes ([\d,]+)") > COMMAND_OUTCOMES_MAX
    assert figure(output, r"\n  forgotten_id_refused +(\d+)") == 1
    assert output.rstrip().endswith("OK: every check passed"), output
