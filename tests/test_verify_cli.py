"""`jinlian verify`, `jinlian receipt`, `jinlian node` and `jinlian exchange` on a tampered or
corrupt store, as real processes: verify checks the derived tables against a rebuild from the
verified blocks, and a corrupt stored block stops each command with one line naming its height
(issue #15, item 10). The stores are tampered through tests/store_tamper.py only."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from exchange.consortium.init import init_consortium
from matching.types import Side
from tests.chain import Chain
from tests.consortium_net import free_base_port
from tests.store_tamper import (
    copy_trade_to_height,
    corrupt_block,
    corrupt_page,
    drop_trade,
    tamper_trade,
)

START_TIMEOUT_S = 30.0  # a node that starts in spite of a corrupt store serves until killed


def cli(*arguments: object, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exchange.cli", *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def two_trades(tmp_path: Path, *, replicas: tuple[str, ...] = ()) -> Chain:
    """Block 1 opens the day and makes trade 1, block 2 makes trade 2, block 3 trades nothing;
    every block certified. Free ports, so that a node started on it cannot collide."""
    chain = Chain.create(tmp_path, replicas=replicas, base_port=free_base_port(5))
    chain.add_block(
        [
            *chain.opening(),
            chain.place(1, "10001", Side.SELL, 1000, 300),
            chain.place(2, "20001", Side.BUY, 1001, 200),
        ]
    )
    chain.add_block([chain.place(3, "20001", Side.BUY, 1000, 100)])
    chain.add_block([chain.place(4, "20001", Side.BUY, 990, 100)])
    chain.close()
    return chain


def store_of(node: Path) -> Path:
    return node / "ledger.sqlite"


def assert_one_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """A failure reported as one line on stderr (no traceback) holding every needle."""
    assert result.returncode != 0, result.stdout + result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, result.stderr
    for needle in needles:
        assert needle in line, (needle, line)
    return line


# ---- verify checks the derived tables ----


def test_verify_fails_on_a_changed_trades_row_naming_table_row_and_height(tmp_path: Path) -> None:
    chain = two_trades(tmp_path)
    assert cli("verify", chain.node).returncode == 0
    height = tamper_trade(store_of(chain.node), 2, price_delta=7)
    assert height == 2
    result = cli("verify", chain.node)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("height 2: table trades: stored row (2, 2, "), result.stdout
    assert "1007" in result.stdout and "is not the rebuilt (2, 2, " in result.stdout
    assert "Traceback" not in result.stderr


def test_verify_fails_on_a_missing_or_made_up_derived_row(tmp_path: Path) -> None:
    chain = two_trades(tmp_path)
    drop_trade(store_of(chain.node), 1)
    result = cli("verify", chain.node)
    assert result.returncode == 1
    assert result.stdout.startswith("height 1: table trades: rebuilt row (1, 1, "), result.stdout
    assert result.stdout.rstrip().endswith("is not stored")

    chain = two_trades(tmp_path / "added")
    copy_trade_to_height(store_of(chain.node), 1, 3)
    result = cli("verify", chain.node)
    assert result.returncode == 1
    assert result.stdout.startswith("height 3: table trades: stored row (3, 3, "), result.stdout
    assert "is not in the rebuild" in result.stdout

    chain = two_trades(tmp_path / "beyond")
    copy_trade_to_height(store_of(chain.node), 1, 9)
    result = cli("verify", chain.node)
    assert result.returncode == 1
    assert result.stdout.startswith("height 9: table trades: stored row (3, 9, "), result.stdout
    assert "at no stored block" in result.stdout


def test_verify_counts_the_derived_rows_it_checked(tmp_path: Path) -> None:
    chain = two_trades(tmp_path)
    result = cli("verify", chain.node)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 blocks" in result.stdout and " derived rows, " in result.stdout
    assert " 0 derived rows" not in result.stdout


# ---- a corrupt stored block: verify, receipt, node and exchange start ----


@pytest.mark.parametrize("part", ["header", "command", "event"])
def test_verify_names_the_height_of_a_corrupt_block(tmp_path: Path, part: str) -> None:
    chain = two_trades(tmp_path)
    corrupt_block(store_of(chain.node), 2, part)
    result = cli("verify", chain.node)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("height 2: "), result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("part", ["header", "event"])
def test_receipt_from_a_corrupt_block_fails_naming_its_height(tmp_path: Path, part: str) -> None:
    chain = two_trades(tmp_path)
    corrupt_block(store_of(chain.node), 2, part)
    out = tmp_path / "receipt.json"
    result = cli("receipt", chain.node, "--trade", 2, "--out", out)
    assert_one_line(result, "jinlian receipt: ", "block 2")
    assert not out.exists()
    assert cli("receipt", chain.node, "--trade", 1).returncode == 0  # block 1 is sound


def test_receipt_refuses_a_trades_row_pointing_at_another_event(tmp_path: Path) -> None:
    chain = two_trades(tmp_path)
    made_up = copy_trade_to_height(store_of(chain.node), 2, 2, event_offset=-1)
    out = tmp_path / "receipt.json"
    result = cli("receipt", chain.node, "--trade", made_up, "--out", out)
    assert_one_line(result, "jinlian receipt: ", "block 2", f"trade {made_up}")
    assert not out.exists()


@pytest.mark.parametrize("part", ["header", "command"])
def test_a_member_does_not_start_on_a_corrupt_block(tmp_path: Path, part: str) -> None:
    chain = two_trades(tmp_path)
    corrupt_block(store_of(chain.node), 2, part)
    result = cli("node", chain.node, timeout=START_TIMEOUT_S)
    assert_one_line(result, "jinlian node: ", "ledger.sqlite", "block 2", "jinlian verify")


def test_the_exchange_does_not_start_on_a_corrupt_block(tmp_path: Path) -> None:
    chain = two_trades(tmp_path, replicas=("exchange",))
    corrupt_block(store_of(chain.directory / "exchange"), 3, "command")
    result = cli("exchange", chain.directory, timeout=START_TIMEOUT_S)
    assert_one_line(result, "jinlian exchange: ", "block 3")


def test_a_page_sqlite_finds_malformed_is_named_by_the_height_reading_it(tmp_path: Path) -> None:
    chain = two_trades(tmp_path)
    corrupt_page(store_of(chain.node), "blocks")  # a block is one row: header and blob
    result = cli("verify", chain.node)
    assert result.returncode == 1 and result.stdout.startswith("height 1: "), result.stdout
    assert "malformed" in result.stdout
    result = cli("node", chain.node, timeout=START_TIMEOUT_S)
    assert_one_line(result, "jinlian node: ", "block 1: ", "malformed")

    chain = two_trades(tmp_path / "events")
    corrupt_page(store_of(chain.node), "blocks")
    result = cli("receipt", chain.node, "--trade", 2)
    assert_one_line(result, "jinlian receipt: ", "block 2: ", "malformed")


def test_start_up_errors_are_one_line(tmp_path: Path) -> None:
    chain = two_trades(tmp_path)
    other = tmp_path / "other"
    init_consortium(other, members=4, brokers=2, base_port=free_base_port(5))
    store_of(other / "bank1").write_bytes(store_of(chain.node).read_bytes())
    result = cli("node", other / "bank1", timeout=START_TIMEOUT_S)
    assert_one_line(result, "jinlian node: ", "not of genesis")

    store_of(other / "depository1").write_bytes(b"not a database" * 100)
    result = cli("node", other / "depository1", timeout=START_TIMEOUT_S)
    assert_one_line(result, "jinlian node: ", "ledger.sqlite")

    store_of(other / "exchange").write_bytes(b"not a database" * 100)
    result = cli("exchange", other, timeout=START_TIMEOUT_S)
    assert_one_line(result, "jinlian exchange: ", "ledger.sqlite")

    result = cli("receipt", other / "depository1", "--trade", 1)
    assert_one_line(result, "jinlian receipt: ", "ledger.sqlite")
    result = cli("verify", other / "nowhere")
    assert_one_line(result, "jinlian verify: ", "node.json")


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    genesis = init_consortium(tmp_path, members=4, brokers=2, base_port=free_base_port(5))
    member = next(m for m in genesis.members if m.voting)
    for address, command in (
        (member.address, ("node", tmp_path / member.name)),
        (genesis.exchange.address, ("exchange", tmp_path)),
    ):
        host, port = address.rsplit(":", 1)
        with socket.socket() as taken:
            taken.bind((host, int(port)))
            taken.listen()
            result = cli(*command, timeout=START_TIMEOUT_S)
        assert_one_line(result, f"jinlian {command[0]}: ", "address already in use", port)
