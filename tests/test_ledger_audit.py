"""The venue's derived tables, the indexer's atomicity, `jinlian verify`, receipts and
`jinlian verify-receipt`, on real chains built in process (tests/chain.py)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from exchange.consortium.audit import receipt_bytes, trade_receipt, verify_node, verify_receipt_file
from exchange.consortium.indexer import VenueIndexer
from exchange.consortium.init import init_consortium
from ledger.block import BlockHeader, Receipt
from ledger.receipt import ReceiptError
from ledger.store import BlockStore, Row, StoreError
from matching.types import Side
from tests.chain import SYMBOLS, Chain
from tests.store_tamper import corrupt_block


def cli(*arguments: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exchange.cli", *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def three_blocks(tmp_path: Path) -> Chain:
    """Block 1 opens the day and trades 200 at 1000 (trade 1); block 2 trades on a cash_net
    instrument (trade 2) and cancels the rest of order 1; block 3 is not certified."""
    chain = Chain.create(tmp_path)
    chain.add_block(
        [
            *chain.opening(),
            chain.place(1, "10001", Side.SELL, 1000, 300),
            chain.place(2, "20001", Side.BUY, 1001, 200),
        ]
    )
    chain.add_block(
        [
            chain.place(3, "10002", Side.SELL, 1200, 300, SYMBOLS[1]),
            chain.place(4, "20002", Side.BUY, 1200, 100, SYMBOLS[1]),
            chain.cancel(1, "10001"),
        ]
    )
    chain.add_block([chain.place(5, "20001", Side.BUY, 1000, 100)], certified=False)
    return chain


def event_at(chain: Chain, height: int, index: int) -> dict[str, Any]:
    events = chain.store.events(height)
    assert events is not None
    value: dict[str, Any] = orjson.loads(events[index])
    return value


# ---- derived tables ----


def test_a_planted_trade_appears_with_its_price_quantity_accounts_and_leaf(
    tmp_path: Path,
) -> None:
    chain = three_blocks(tmp_path)
    rows = chain.store.read("SELECT * FROM trades ORDER BY trade_id")
    assert [row[:3] for row in rows] == [(1, 1, rows[0][2]), (2, 2, rows[1][2])]
    (trade_id, height, index, symbol, price, quantity, buy, sell, buyer, seller, aggressor,
     command, time_ns) = rows[0]  # fmt: skip
    assert (symbol, price, quantity, buy, sell, buyer, seller, aggressor) == (
        SYMBOLS[0], 1000, 200, 2, 1, "20001", "10001", "buy"
    )  # fmt: skip
    block = chain.blocks[0]
    assert orjson.loads(block.commands[command])["order_id"] == 2  # the aggressor's place
    assert time_ns == block.times_ns[command]
    event = event_at(chain, height, index)
    assert event["type"] == "trade" and event["trade_id"] == trade_id == 1
    for row in rows:  # every row's leaf index points at its trade event
        event = event_at(chain, row[1], row[2])
        assert (event["trade_id"], event["price"], event["quantity"]) == (row[0], row[4], row[5])
    chain.close()


def test_order_rows_follow_the_events_with_broker_and_account(tmp_path: Path) -> None:
    chain = three_blocks(tmp_path)
    rows = chain.store.read(
        "SELECT height, event, order_id, broker, account, side, price, quantity, reason "
        "FROM orders ORDER BY height, event_idx"
    )
    assert rows[:2] == [
        (1, "accepted", 1, "broker1", "10001", "sell", 1000, 300, None),
        (1, "accepted", 2, "broker2", "20001", "buy", 1001, 200, None),
    ]
    # The cancel of an order placed in an earlier block: the cancel command names the broker
    # (the account is on the order's accepted row).
    assert (2, "cancelled", 1, "broker1", None, None, None, 100, "requested") in rows
    every = chain.store.read("SELECT count(*) FROM orders")[0][0]
    kinds = [orjson.loads(e)["type"] for h in (1, 2, 3) for e in chain.store.events(h) or []]
    assert every == sum(kind in ("accepted", "cancelled") for kind in kinds)
    chain.close()


def test_settlement_and_balance_rows_match_the_venue(tmp_path: Path) -> None:
    chain = three_blocks(tmp_path)
    settled = chain.store.read(
        "SELECT event, trade_id, mode, buyer_cash, seller_cash FROM settlements ORDER BY trade_id"
    )
    assert settled[0] == ("trade_settled", 1, None, 200_060, 199_840)
    assert settled[1][:3] == ("trade_cleared", 2, "cash_net")
    # Holdings change exactly as the venue's registries do, for the traders' accounts.
    venue = chain.machine.venue
    deltas = dict(
        ((account, asset), total)
        for account, asset, total in chain.store.read(
            "SELECT account, asset, sum(holding_delta) FROM balance_changes GROUP BY account, asset"
        )
    )
    assert deltas[("10001", SYMBOLS[0])] == -200 and deltas[("20001", SYMBOLS[0])] == 200
    assert deltas[("20001", "CNY")] == -200_060 and deltas[("10001", "CNY")] == 199_840
    assert deltas[("20002", SYMBOLS[1])] == 100
    settlement = venue.settlement
    assert settlement.available(SYMBOLS[0], "20001") == 100_000 + 200
    chain.close()


class FailingIndexer(VenueIndexer):
    """Every trade twice: the second row breaks the trades primary key inside append."""

    __slots__ = ()

    def rows(
        self, height: int, header: BlockHeader, receipts: Sequence[Receipt]
    ) -> Mapping[str, Sequence[Row]]:
        rows = dict(super().rows(height, header, receipts))
        rows["trades"] = [*rows["trades"], *rows["trades"]]
        return rows


def test_a_failing_indexer_row_rolls_the_whole_batch_back(tmp_path: Path) -> None:
    """The block is stored (the vote path does not index); the batch's rows and the watermark
    are one transaction, so a refused row leaves no row of it and the watermark below."""
    chain = Chain.create(tmp_path)
    chain.add_block(chain.opening())
    chain.store.close()
    chain.store = BlockStore.open(chain.node / "ledger.sqlite", indexer=FailingIndexer())
    with pytest.raises(sqlite3.IntegrityError):
        chain.add_block(
            [chain.place(1, "10001", Side.SELL, 1000, 100), chain.place(2, "20001", Side.BUY,
             1000, 100)]
        )  # fmt: skip
    assert chain.store.tip() is not None and chain.store.tip()[0] == 2  # stored all the same
    assert chain.store.indexed_height() == 1
    for table in ("orders", "trades", "settlements", "balance_changes"):
        assert chain.store.read(f"SELECT count(*) FROM {table} WHERE height = 2") == [(0,)]
    chain.store.close()
    chain.store = BlockStore.open(chain.node / "ledger.sqlite", indexer=VenueIndexer())
    assert chain.store.index_blocks() == 2  # a fixed indexer resumes at the watermark
    assert chain.store.read("SELECT count(*) FROM trades WHERE height = 2") == [(1,)]
    chain.close()


def test_indexer_table_names_are_checked(tmp_path: Path) -> None:
    class Bad(VenueIndexer):
        __slots__ = ()

        def rows(self, *arguments: Any) -> Mapping[str, Sequence[Row]]:
            return {"blocks; DROP TABLE blocks": [(1,)]}

    chain = Chain.create(tmp_path)
    chain.store.close()
    chain.store = BlockStore.open(chain.node / "ledger.sqlite", indexer=Bad())
    with pytest.raises(StoreError, match="indexer table name"):
        chain.add_block(chain.opening())
    assert chain.store.indexed_height() == 0
    assert chain.store.read("SELECT count(*) FROM blocks") == [(1,)]  # the table is intact
    chain.close()


def test_store_read_refuses_writes(tmp_path: Path) -> None:
    chain = three_blocks(tmp_path)
    with pytest.raises(sqlite3.Error):
        chain.store.read("DELETE FROM trades")
    assert chain.store.read("SELECT count(*) FROM trades") == [(2,)]
    chain.close()


# ---- jinlian verify ----


def test_verify_passes_on_a_good_store(tmp_path: Path) -> None:
    chain = three_blocks(tmp_path)
    chain.close()
    report = verify_node(chain.node)
    assert report.ok and report.blocks == 3 and report.certified_height == 2
    assert report.state_hash == chain.blocks[-1].header.state_hash
    result = cli("verify", chain.node)
    assert result.returncode == 0, result.stderr
    assert "3 blocks" in result.stdout and "certified height 2" in result.stdout


def flip_byte(path: Path, table: str, column: str, height: int, where: str = "") -> None:
    """Change one byte of one stored row, as a disk error or a tamperer would. Commands and
    events are inside the block's blob: `corrupt_block` changes one digit of them there."""
    if table in ("commands", "events"):
        corrupt_block(path, height, table[:-1])
        return
    with sqlite3.connect(path) as db:
        key = "idx" if table in ("commands", "events") else None
        condition = f"height = {height}" + (f" AND {key} = 0" if key else "") + where
        (data,) = db.execute(f"SELECT {column} FROM {table} WHERE {condition}").fetchone()
        changed = bytearray(data)
        position = changed.index(b"1") if b"1" in changed else len(changed) // 2
        changed[position] = ord("2") if changed[position] == ord("1") else changed[position] ^ 1
        db.execute(f"UPDATE {table} SET {column} = ? WHERE {condition}", (bytes(changed),))
    db.close()


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("commands", "data"),
        ("events", "data"),
        ("blocks", "header"),
        ("blocks", "signature"),
        ("certificates", "data"),
    ],
)
def test_verify_names_the_height_of_a_changed_byte(tmp_path: Path, table: str, column: str) -> None:
    chain = three_blocks(tmp_path)
    chain.close()
    flip_byte(chain.node / "ledger.sqlite", table, column, 2)
    result = cli("verify", chain.node)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("height 2: "), result.stdout
    assert "Traceback" not in result.stderr


def test_verify_reports_a_certificate_short_of_quorum(tmp_path: Path) -> None:
    chain = three_blocks(tmp_path)
    chain.close()
    with sqlite3.connect(chain.node / "ledger.sqlite") as db:
        (data,) = db.execute("SELECT data FROM certificates WHERE height = 1").fetchone()
        certificate = orjson.loads(data)
        certificate["votes"] = certificate["votes"][:2]
        db.execute(
            "UPDATE certificates SET data = ? WHERE height = 1",
            (orjson.dumps(certificate, option=orjson.OPT_SORT_KEYS),),
        )
    db.close()
    result = cli("verify", chain.node)
    assert result.returncode == 1
    assert result.stdout.startswith("height 1: certificate: 2 votes, fewer than the quorum of 3")


def test_verify_reports_a_store_of_another_genesis_and_a_missing_node(tmp_path: Path) -> None:
    chain = three_blocks(tmp_path)
    chain.close()
    other = tmp_path / "other"
    init_consortium(other, members=4, brokers=2)
    (other / "bank1" / "ledger.sqlite").write_bytes((chain.node / "ledger.sqlite").read_bytes())
    result = cli("verify", other / "bank1")
    assert result.returncode == 2 and "not of genesis" in result.stderr
    assert "Traceback" not in result.stderr
    result = cli("verify", tmp_path / "nowhere")
    assert result.returncode == 2 and "node.json" in result.stderr


def test_verify_reports_an_unreadable_store(tmp_path: Path) -> None:
    chain = three_blocks(tmp_path)
    chain.close()
    (chain.node / "ledger.sqlite-wal").unlink(missing_ok=True)
    (chain.node / "ledger.sqlite").write_bytes(b"not a database" * 100)
    result = cli("verify", chain.node)
    assert result.returncode in (1, 2) and "Traceback" not in result.stderr
    assert "ledger.sqlite" in result.stderr + result.stdout


# ---- receipts ----


def write_receipt(chain: Chain, trade_id: int, tmp_path: Path) -> Path:
    path = tmp_path / f"receipt-{trade_id}.json"
    result = cli("receipt", chain.node, "--trade", trade_id, "--out", path)
    assert result.returncode == 0, result.stderr
    return path


def test_receipt_round_trip(tmp_path: Path) -> None:
    chain = three_blocks(tmp_path)
    chain.close()
    genesis = chain.directory / "genesis.json"
    for trade_id in (1, 2):
        path = write_receipt(chain, trade_id, tmp_path)
        receipt = orjson.loads(path.read_bytes())
        assert receipt["trade_id"] == trade_id
        trades = [e for e in receipt["leaf"]["events"] if e["type"] == "trade"]
        assert [trade["trade_id"] for trade in trades] == [trade_id]
        # the trade with the command that caused it (the aggressor's place) and its time
        block = chain.blocks[receipt["header"]["height"] - 1]
        index = receipt["leaf_index"]
        assert receipt["leaf"]["index"] == index
        assert receipt["command"].encode() == block.commands[index]
        assert orjson.loads(receipt["command"])["type"] == "place"
        assert receipt["leaf"]["time_ns"] == block.times_ns[index]
        assert receipt["tree_size"] == receipt["header"]["command_count"]
        result = cli("verify-receipt", path, "--genesis", genesis)
        assert (result.returncode, result.stdout) == (0, "OK\n"), result.stderr


def _json_bytes(value: object) -> bytes:
    """Canonical bytes as docs/ledger.md states them, with the standard library only."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _rfc9162_root(leaf: bytes, index: int, size: int, proof: list[bytes]) -> bytes | None:
    """The root an inclusion proof leads to (RFC 9162, 2.1.3.2), written from the RFC's text
    and not from `ledger.merkle`; None when the proof does not fit the tree."""
    if index >= size:
        return None
    fn, sn, r = index, size - 1, hashlib.sha256(b"\x00" + leaf).digest()
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


def test_a_receipt_verifies_with_an_independent_verifier(tmp_path: Path) -> None:
    """What a broker's own code, or #13's browser, does from docs/ledger.md alone: standard
    JSON, SHA-256, RFC 9162's inclusion algorithm and Ed25519 over the genesis keys; nothing
    from `ledger`. The receipt proves the trade, the command that caused it and its time."""
    chain = three_blocks(tmp_path)
    chain.close()
    genesis = json.loads((chain.directory / "genesis.json").read_bytes())
    assert hashlib.sha256(_json_bytes(genesis)).hexdigest() == chain.genesis.hash.hex()
    voters = {m["id"]: Ed25519PublicKey.from_public_bytes(bytes.fromhex(m["public_key"]))
              for m in genesis["members"] if m["voting"]}  # fmt: skip
    for trade_id in (1, 2):
        receipt = json.loads(write_receipt(chain, trade_id, tmp_path).read_bytes())
        header_hash = hashlib.sha256(_json_bytes(receipt["header"])).digest()
        certificate = receipt["certificate"]
        assert bytes.fromhex(certificate["header_hash"]) == header_hash
        signers = set()
        for vote in certificate["votes"]:
            voters[vote["member"]].verify(  # raises InvalidSignature if it does not verify
                bytes.fromhex(vote["signature"]), b"jinlian/v1/vote\n" + header_hash
            )
            signers.add(vote["member"])
        assert len(signers) >= 2 * ((len(voters) - 1) // 3) + 1
        leaf = receipt["leaf"]
        assert hashlib.sha256(receipt["command"].encode()).hexdigest() == leaf["command_hash"]
        proof = [bytes.fromhex(node) for node in receipt["proof"]]
        root = _rfc9162_root(_json_bytes(leaf), leaf["index"], receipt["tree_size"], proof)
        assert root is not None and root.hex() == receipt["header"]["receipts_root"]
        assert receipt["tree_size"] == receipt["header"]["command_count"]
        trades = [e for e in leaf["events"] if e["type"] == "trade"]
        assert [t["trade_id"] for t in trades] == [trade_id]
        command = json.loads(receipt["command"])
        assert command["type"] == "place" and command["order_id"] in (
            trades[0]["buy_order_id"], trades[0]["sell_order_id"],
        )  # fmt: skip
        block = chain.blocks[receipt["header"]["height"] - 1]
        assert leaf["time_ns"] == block.times_ns[leaf["index"]]
        bad = dict(leaf, time_ns=leaf["time_ns"] + 1)  # another time: another root
        other = _rfc9162_root(_json_bytes(bad), leaf["index"], receipt["tree_size"], proof)
        assert other is not None and other.hex() != receipt["header"]["receipts_root"]


def test_an_order_receipt_proves_the_command_that_placed_it(tmp_path: Path) -> None:
    chain = three_blocks(tmp_path)
    chain.close()
    genesis = chain.directory / "genesis.json"
    path = tmp_path / "order-4.json"
    result = cli("receipt", chain.node, "--order", 4, "--out", path)
    assert result.returncode == 0, result.stderr
    receipt = orjson.loads(path.read_bytes())
    command = orjson.loads(receipt["command"])
    assert (receipt["order_id"], command["type"], command["order_id"]) == (4, "place", 4)
    assert receipt["leaf"]["time_ns"] == chain.blocks[1].times_ns[receipt["leaf_index"]]
    assert [e["type"] for e in receipt["leaf"]["events"]][:2] == ["accepted", "trade"]
    result = cli("verify-receipt", path, "--genesis", genesis)
    assert (result.returncode, result.stdout) == (0, "OK\n"), result.stderr

    def other_order(receipt: dict[str, Any]) -> None:
        receipt["order_id"] = 3

    failure = verify_receipt_file(tampered(path, other_order), genesis)
    assert failure is not None and "is not the placing of order 3" in failure
    result = cli("receipt", chain.node, "--order", 99)
    assert result.returncode == 1 and "order 99 is not in" in result.stderr
    result = cli("receipt", chain.node, "--order", 1, "--trade", 1)
    assert result.returncode == 2 and "not allowed with argument" in result.stderr


def test_receipt_refuses_an_unknown_trade_and_an_uncertified_block(tmp_path: Path) -> None:
    chain = three_blocks(tmp_path)
    chain.add_block([chain.place(6, "10001", Side.SELL, 1000, 100)], certified=False)
    assert event_at(chain, 4, 1)["type"] == "trade"  # events of the block, in order
    chain.close()
    with pytest.raises(ReceiptError, match="trade 99 is not in"):
        trade_receipt(chain.node, 99)
    result = cli("receipt", chain.node, "--trade", 3)
    assert result.returncode == 1 and "block 4 is not certified yet" in result.stderr
    assert "Traceback" not in result.stderr


def tampered(path: Path, change: Any) -> Path:
    receipt = orjson.loads(path.read_bytes())
    change(receipt)
    out = path.with_name("tampered.json")
    out.write_bytes(receipt_bytes(receipt))
    return out


def test_verify_receipt_fails_for_each_tampering(tmp_path: Path) -> None:
    chain = three_blocks(tmp_path)
    chain.close()
    genesis = chain.directory / "genesis.json"
    path = write_receipt(chain, 1, tmp_path)

    def price(receipt: dict[str, Any]) -> None:
        trade = next(e for e in receipt["leaf"]["events"] if e["type"] == "trade")
        trade["price"] += 1

    def time(receipt: dict[str, Any]) -> None:
        receipt["leaf"]["time_ns"] -= 1

    def leaf_index(receipt: dict[str, Any]) -> None:
        receipt["leaf_index"] -= 1

    def both_indexes(receipt: dict[str, Any]) -> None:
        receipt["leaf_index"] -= 1
        receipt["leaf"]["index"] -= 1

    def command(receipt: dict[str, Any]) -> None:
        receipt["command"] = receipt["command"].replace('"quantity":200', '"quantity":300')

    def short_of_quorum(receipt: dict[str, Any]) -> None:
        receipt["certificate"]["votes"] = receipt["certificate"]["votes"][:2]

    def trade_id(receipt: dict[str, Any]) -> None:
        receipt["trade_id"] = 2

    def header(receipt: dict[str, Any]) -> None:
        receipt["header"]["command_count"] += 1

    cases = {
        price: "inclusion proof of leaf",
        time: "inclusion proof of leaf",
        leaf_index: "is not leaf_index",
        both_indexes: "inclusion proof of leaf",
        command: "command hashes to",
        short_of_quorum: "2 votes, fewer than the quorum of 3",
        trade_id: "leaf has no trade 2",
        header: "certificate: ",
    }
    for change, message in cases.items():
        failure = verify_receipt_file(tampered(path, change), genesis)
        assert failure is not None and message in failure, (change.__name__, failure)
    result = cli("verify-receipt", tampered(path, price), "--genesis", genesis)
    assert result.returncode == 1 and result.stdout.startswith("FAILED: ")


def test_verify_receipt_refuses_unknown_fields_at_every_level(tmp_path: Path) -> None:
    chain = three_blocks(tmp_path)
    chain.close()
    genesis = chain.directory / "genesis.json"
    path = write_receipt(chain, 1, tmp_path)
    hashes = len(orjson.loads(path.read_bytes())["proof"])

    def top(receipt: dict[str, Any]) -> None:
        receipt["signed_by_regulator"] = True

    def header(receipt: dict[str, Any]) -> None:
        receipt["header"]["comment"] = "x"

    def certificate(receipt: dict[str, Any]) -> None:
        receipt["certificate"]["round"] = 0

    def vote(receipt: dict[str, Any]) -> None:
        receipt["certificate"]["votes"][0]["weight"] = 2

    def proof(receipt: dict[str, Any]) -> None:
        receipt["proof"] = {"path": receipt["proof"], "algorithm": "sha256"}

    def proof_hash(receipt: dict[str, Any]) -> None:
        receipt["proof"].append("00" * 32)

    def leaf(receipt: dict[str, Any]) -> None:
        receipt["leaf"]["broker"] = "broker1"

    cases = {
        top: "receipt has an unknown field 'signed_by_regulator'",
        header: "header.comment: unknown field",
        certificate: "certificate.round: unknown field",
        vote: "certificate.votes[0].weight: unknown field",
        proof: "proof is not a list",
        proof_hash: f"proof has {hashes + 1} hashes, more than the {hashes}",
        leaf: "leaf fields ['broker', 'command_hash', 'events', 'index', 'time_ns']",
    }
    for change, message in cases.items():
        failure = verify_receipt_file(tampered(path, change), genesis)
        assert failure is not None and message in failure, (change.__name__, failure)
    result = cli("verify-receipt", tampered(path, top), "--genesis", genesis)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == "FAILED: receipt has an unknown field 'signed_by_regulator'\n"


def test_verify_receipt_fails_under_a_different_genesis(tmp_path: Path) -> None:
    chain = three_blocks(tmp_path)
    chain.close()
    path = write_receipt(chain, 1, tmp_path)
    init_consortium(tmp_path / "other", members=4, brokers=2)
    result = cli("verify-receipt", path, "--genesis", tmp_path / "other" / "genesis.json")
    assert result.returncode == 1 and "not of this genesis" in result.stdout
    # A receipt that claims the other genesis still fails on the other genesis' voters.
    other = orjson.loads((tmp_path / "other" / "genesis.json").read_bytes())
    from ledger.canonical import digest_hex

    def claim(receipt: dict[str, Any]) -> None:
        receipt["genesis_hash"] = digest_hex(other)

    failure = verify_receipt_file(tampered(path, claim), tmp_path / "other" / "genesis.json")
    assert failure is not None and "certificate: " in failure


def test_verify_receipt_reports_bad_files(tmp_path: Path) -> None:
    chain = three_blocks(tmp_path)
    chain.close()
    genesis = chain.directory / "genesis.json"
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"{not json")
    result = cli("verify-receipt", garbage, "--genesis", genesis)
    assert result.returncode == 2 and "not JSON" in result.stderr
    garbage.write_bytes(b'{"trade_id": 1, "version": 1}')
    result = cli("verify-receipt", garbage, "--genesis", genesis)
    assert result.returncode == 1 and "no field 'genesis_hash'" in result.stdout


def test_an_indexer_that_raises_indexes_nothing(tmp_path: Path) -> None:
    class Raising(VenueIndexer):
        __slots__ = ()

        def rows(self, *arguments: Any) -> Mapping[str, Sequence[Row]]:
            raise ValueError("indexer bug")

    chain = Chain.create(tmp_path)
    chain.store.close()
    chain.store = BlockStore.open(chain.node / "ledger.sqlite", indexer=Raising())
    with pytest.raises(ValueError, match="indexer bug"):
        chain.add_block(chain.opening())
    assert chain.store.tip() is not None and chain.store.indexed_height() == 0
    chain.close()
    report = verify_node(chain.node)  # the venue's indexer: rebuilt, nothing stored to compare
    assert report.ok and report.blocks == 1 and report.indexed_height == 0
