"""Supervision as real processes on loopback (issue #15, item 2), with faults injected through
`JINLIAN_FAULT=<task>:<after_n>[@<node>]` (exchange/consortium/nodes.py):

- the original defect: the exchange's block cutter fails with an order in flight; the broker
  gets an `unavailable` error reply, and the process exits 1 with one log line naming the task
  and the error (before: no reply ever, and /health said ok);
- a member whose task fails exits 1 with the same one line;
- `jinlian up` restarts an exchange that exits non-zero (logging the restart), which serves
  again; and gives up after 5 restarts in a minute, stopping every process, exit status 1;
- a malformed JINLIAN_FAULT is refused, naming the value.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.consortium.nodes import load_config
from exchange.gateway.client import Client, RequestError
from ledger.feed import wait_until_up
from ledger.keys import load_private_key
from tests.consortium_net import make_consortium
from tests.gateway_net import order

PYTHON = [sys.executable, "-m", "exchange.cli"]
MEMBERS = ("bank1", "depository1", "regulator1", "broker-node1")


def environment(fault: str) -> dict[str, str]:
    return {**os.environ, "JINLIAN_FAULT": fault}


class Output:
    """A child's merged stdout and stderr, read by a thread, searchable while it runs."""

    def __init__(self, child: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(child,), daemon=True)
        self.thread.start()

    def _read(self, child: subprocess.Popen[str]) -> None:
        assert child.stdout is not None
        for line in child.stdout:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()

    def wait_for(self, text: str, timeout_s: float = 30.0, count: int = 1) -> None:
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while sum(text in line for line in self.lines) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {text!r} (x{count}) in:\n{self.text}")
                self.changed.wait(left)

    @property
    def text(self) -> str:
        return "".join(self.lines)


def spawn(command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    make_consortium(tmp_path / "c")
    return tmp_path / "c"


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    running: list[subprocess.Popen[str]] = []
    yield running
    for child in running:
        if child.poll() is None:
            child.kill()
        child.wait()


def broker_key(directory: Path) -> Path:
    return directory / "brokers" / "broker1" / "key.pem"


async def place_expecting_an_error(directory: Path, address: str) -> RequestError:
    broker = Client(address, "broker1", load_private_key(broker_key(directory)), reconnect=False)
    await broker.connect()
    try:
        with pytest.raises(RequestError) as raised:
            await broker.place(**order("in-flight", "10001", "buy", 990, 100))
        return raised.value
    finally:
        await broker.close()


def test_an_exchange_whose_cutter_fails_answers_the_order_in_flight_and_exits_1(
    directory: Path, children: list[subprocess.Popen[str]]
) -> None:
    for name in MEMBERS:
        children.append(spawn([*PYTHON, "node", str(directory / name)]))
    exchange = spawn([*PYTHON, "exchange", str(directory)], environment("cutter:0"))
    children.append(exchange)
    output = Output(exchange)
    address = load_config(directory / "exchange").address

    async def scenario() -> RequestError:
        await wait_until_up([address], timeout_s=30)
        return await place_expecting_an_error(directory, address)

    error = asyncio.run(scenario())
    assert error.code == "unavailable", error.reply
    assert "task cutter failed: InjectedFaultError" in str(error), error
    assert exchange.wait(20) == 1
    output.thread.join(5)
    failures = [line for line in output.lines if "task cutter failed" in line]
    assert len(failures) == 1, output.text
    assert "CRITICAL exchange: task cutter failed: InjectedFaultError: fault injected into " \
           "task cutter after 0 passes (at ledger/node.py:" in failures[0], failures  # fmt: skip
    assert failures[0].rstrip().endswith("; stopping"), failures
    assert "Traceback" not in output.text, output.text
    assert "exchange stopped at height 0" in output.text, output.text


def test_a_member_whose_task_fails_exits_1_with_one_line(
    directory: Path, children: list[subprocess.Popen[str]]
) -> None:
    member = spawn([*PYTHON, "node", str(directory / "bank1")], environment("ticker:2@bank1"))
    children.append(member)
    assert member.wait(20) == 1
    assert member.stdout is not None
    text = member.stdout.read()
    failures = [line for line in text.splitlines() if "failed" in line]
    assert len(failures) == 1, text
    assert "CRITICAL bank1: task ticker failed: InjectedFaultError" in failures[0], text
    assert "Traceback" not in text and "member bank1 stopped at height 0" in text, text


def test_a_malformed_fault_variable_is_refused_naming_it(directory: Path) -> None:
    result = subprocess.run(
        [*PYTHON, "node", str(directory / "bank1")],
        env=environment("cutter:soon"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "JINLIAN_FAULT='cutter:soon': expected <task>:<after_n>[@<node>]" in result.stderr


def test_up_restarts_an_exchange_that_failed_and_it_serves_again(
    directory: Path, children: list[subprocess.Popen[str]]
) -> None:
    up = spawn([*PYTHON, "up", str(directory)], environment("cutter:0@exchange"))
    children.append(up)
    output = Output(up)
    address = load_config(directory / "exchange").address
    output.wait_for("exchange listening on")

    async def scenario() -> RequestError:
        await wait_until_up([address], timeout_s=30)
        return await place_expecting_an_error(directory, address)

    error = asyncio.run(scenario())
    assert error.code == "unavailable", error.reply
    output.wait_for("jinlian up: exchange exited with status 1; restart 1 of 5 this minute in")
    output.wait_for("exchange listening on", count=2)
    up.send_signal(signal.SIGINT)
    assert up.wait(30) == 0, output.text
    output.thread.join(5)
    assert "consortium stopped" in output.text, output.text
    assert output.text.count("task cutter failed") == 1, output.text


def test_up_gives_up_after_5_restarts_in_a_minute_and_stops_every_process(
    directory: Path, children: list[subprocess.Popen[str]]
) -> None:
    up = spawn([*PYTHON, "up", str(directory)], environment("ticker:3@exchange"))
    children.append(up)
    output = Output(up)
    assert up.wait(60) == 1, output.text
    output.thread.join(5)
    text = output.text
    for restart in range(1, 6):
        assert f"exchange exited with status 1; restart {restart} of 5 this minute" in text, text
    assert text.count("exchange: task ticker failed") == 6, text
    assert ("jinlian up: exchange exited with status 1 after 5 restarts within a minute; "
            "stopped the consortium") in text, text  # fmt: skip
    for name in MEMBERS:
        assert f"member {name} stopped at height 0" in text, text
