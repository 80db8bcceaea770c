"""The block store on real SQLite files: round trip, chain rules, reopen, atomicity (a failing
write and a killed writer leave nothing of the block), certificates, evidence, catch-up pages,
and corruption found on read."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.block import (
    Block,
    BlockHeader,
    QuorumCertificate,
    Receipt,
    certify,
    check_block,
    check_certificate,
    check_commands,
    receipts_root,
    sign_block,
    sign_vote,
)
from ledger.canonical import CanonicalError, canonical_bytes, sha256
from ledger.genesis import Genesis, Member, Role
from ledger.keys import PrivateKey
from ledger.machine import encode_commands
from ledger.merkle import leaf_hash, merkle_root, root_of_leaf_hashes
from ledger.store import (
    BLOCKS_PAGE_MAX,
    BODY_PLAIN,
    BODY_ZLIB,
    SCHEMA_VERSION,
    BlockStore,
    CountMismatchError,
    OutOfOrderError,
    ParentMismatchError,
    Row,
    SchemaError,
    StoreCorruptError,
    StoreError,
    UnknownBlockError,
    decode_body,
    encode_body,
)
from ledger.wire import parse_block


def seeded_key(seed: int) -> PrivateKey:
    return PrivateKey(key=Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32))


EXCHANGE_KEY = seeded_key(100)
VOTER_KEYS = {member: seeded_key(member) for member in (1, 2, 3, 4)}
GENESIS = Genesis(
    version=1,
    chain_id="jinlian-test",
    members=(
        Member(
            id=0,
            name="exchange",
            role=Role.EXCHANGE,
            public_key=EXCHANGE_KEY.public_key,
            address="127.0.0.1:7000",
            voting=False,
        ),
        *(
            Member(
                id=member,
                name=f"bank-{member}",
                role=Role.BANK,
                public_key=key.public_key,
                address=f"127.0.0.1:{7000 + member}",
                voting=True,
            )
            for member, key in VOTER_KEYS.items()
        ),
    ),
    brokers=(),
    instruments=(),
    holdings=(),
)


def commands_of(height: int, count: int = 3) -> list[dict[str, object]]:
    return [
        {"type": "place", "order_id": 100 * height + index, "price": 1000 + index, "side": 1}
        for index in range(count)
    ]


Events = list[list[bytes]]  # per command


def events_of(height: int, commands: int = 3) -> Events:
    """Command i produced i % 3 events: none, one, two."""
    return [
        [
            canonical_bytes({"event": "accepted", "height": height, "command": command,
                             "index": index, "tag": b"\x01"})
            for index in range(command % 3)
        ]
        for command in range(commands)
    ]  # fmt: skip


def make_block(
    parent: BlockHeader | None,
    *,
    commands: Sequence[dict[str, object]] | None = None,
    events: Events | None = None,
    **changes: object,
) -> tuple[Block, Events]:
    height = 1 if parent is None else parent.height + 1
    encoded = encode_commands(commands_of(height) if commands is None else commands)
    events = events_of(height, len(encoded)) if events is None else events
    time_ns = 1_700_000_000_000_000_000 + 10 * height
    times = [time_ns - 5 + index % 5 for index in range(len(encoded))]
    fields: dict[str, object] = {
        "height": height,
        "parent_hash": GENESIS.hash if parent is None else parent.hash,
        "time_ns": time_ns,
        "proposer": GENESIS.exchange.id,
        "command_count": len(encoded),
        "commands_root": merkle_root(encoded),
        "receipts_root": receipts_root(encoded, times, events),
        "state_hash": sha256(b"state %d" % height),
    }
    fields.update(changes)
    header = BlockHeader(**fields)  # type: ignore[arg-type]
    return sign_block(EXCHANGE_KEY, header, encoded, times), events


def make_chain(length: int) -> list[tuple[Block, Events]]:
    chain: list[tuple[Block, Events]] = []
    parent = None
    for _ in range(length):
        block, events = make_block(parent)
        chain.append((block, events))
        parent = block.header
    return chain


def certificate_of(header: BlockHeader, voters: Sequence[int] = (1, 2, 3)) -> QuorumCertificate:
    return certify(header, [sign_vote(VOTER_KEYS[member], member, header) for member in voters])


def open_store(path: Path) -> BlockStore:
    return BlockStore.open(path, genesis_hash=GENESIS.hash)


def rows_at(path: Path, height: int) -> dict[str, int]:
    """What another connection sees of `height`, in every table that holds block rows."""
    connection = sqlite3.connect(path)
    try:
        return {
            table: connection.execute(
                f"SELECT count(*) FROM {table} WHERE height = ?", (height,)
            ).fetchone()[0]
            for table in ("blocks", "certificates")
        }
    finally:
        connection.close()


NOTHING = {"blocks": 0, "certificates": 0}


# ---- round trip ----


def test_an_empty_store(tmp_path: Path) -> None:
    with open_store(tmp_path / "node.db") as store:
        assert store.tip() is None
        assert store.block(1) is None
        assert store.header(1) is None
        assert store.commands(1) is None
        assert store.events(1) is None
        assert store.receipts(1) is None
        assert store.certificate(1) is None
        assert store.certified_height() == 0
        assert store.blocks_from(1) == []
        assert store.evidence() == []
        assert store.genesis_hash == GENESIS.hash


def test_round_trip(tmp_path: Path) -> None:
    chain = make_chain(3)
    with open_store(tmp_path / "node.db") as store:
        for block, events in chain:
            store.append(block, events)
            assert store.tip() == (block.header.height, block.header.hash)
        assert store.add_certificate(certificate_of(chain[0][0].header)) is True
        parent = None
        for block, events in chain:
            height = block.header.height
            stored = store.block(height)
            assert stored == block
            assert stored is not None
            assert stored.header.hash == block.header.hash
            assert store.header(height) == block.header
            assert store.commands(height) == list(block.commands)
            assert store.events(height) == [event for each in events for event in each]
            receipts = store.receipts(height) or []
            assert [(r.index, r.time_ns, r.command, list(r.events)) for r in receipts] == [
                (index, time_ns, command, events[index])
                for index, (command, time_ns) in enumerate(
                    zip(block.commands, block.times_ns, strict=True)
                )
            ]
            # the stored receipts rebuild the signed root, so receipts can be proven from them
            leaves = [leaf_hash(receipt.leaf()) for receipt in receipts]
            assert root_of_leaf_hashes(leaves) == block.header.receipts_root
            error = check_block(
                stored,
                parent=parent,
                genesis_hash=GENESIS.hash,
                proposer=GENESIS.exchange.id,
                proposer_key=GENESIS.exchange.public_key,
            )
            assert error is None
            parent = stored.header
        certificate = store.certificate(1)
        assert certificate == certificate_of(chain[0][0].header)
        assert certificate is not None
        assert check_certificate(certificate, chain[0][0].header, GENESIS.voters(), 3) is None
        assert store.certificate(2) is None
        assert store.certified_height() == 1


def test_an_empty_block_and_commands_kept_as_their_bytes(tmp_path: Path) -> None:
    empty, no_events = make_block(None, commands=[], events=[])
    with open_store(tmp_path / "node.db") as store:
        store.append(empty, no_events)
        assert store.commands(1) == []
        assert store.events(1) == []
        assert store.receipts(1) == []
        assert store.block(1) == empty
        # the store keeps the bytes it is given, never re-encoded: even ones that are not
        # canonical JSON (the state machine makes an error event of them on every node)
        block, _ = make_block(empty.header, commands=[{"blob": b"\xff\x00"}])
        raw = (b'{"b":1, "a":"\xe4\xb8\xad"}', b"not json", block.commands[0])
        times = (block.header.time_ns,) * 3
        header = dataclasses.replace(
            block.header,
            command_count=3,
            commands_root=merkle_root(raw),
            receipts_root=receipts_root(raw, times, [[], [], []]),
        )
        odd = sign_block(EXCHANGE_KEY, header, raw, times)
        store.append(odd, [[], [], []])
        stored = store.block(2)
        assert stored == odd
        assert stored is not None and stored.commands == raw
        assert check_commands(stored) is None


# ---- chain rules ----


def test_out_of_order_heights_are_refused(tmp_path: Path) -> None:
    first, second, third = make_chain(3)
    with open_store(tmp_path / "node.db") as store:
        with pytest.raises(OutOfOrderError, match=r"block 2: height 2, expected 1") as raised:
            store.append(*second)
        assert (raised.value.height, raised.value.expected) == (2, 1)
        store.append(*first)
        with pytest.raises(OutOfOrderError, match=r"height 1, expected 2"):
            store.append(*first)
        with pytest.raises(OutOfOrderError, match=r"height 3, expected 2"):
            store.append(*third)
        assert store.tip() == (1, first[0].header.hash)
        assert store.block(3) is None
    assert rows_at(tmp_path / "node.db", 3) == NOTHING


def test_a_parent_hash_other_than_the_tip_is_refused(tmp_path: Path) -> None:
    other = sha256(b"another chain")
    stray, stray_events = make_block(None, parent_hash=other)
    with open_store(tmp_path / "node.db") as store:
        with pytest.raises(ParentMismatchError) as raised:
            store.append(stray, stray_events)
        assert str(raised.value) == (
            f"block 1: parent hash {other.hex()} is not the tip's {GENESIS.hash.hex()}"
        )
        first, events = make_block(None)
        store.append(first, events)
        fork, fork_events = make_block(first.header, parent_hash=other)
        with pytest.raises(ParentMismatchError, match=first.header.hash.hex()) as raised:
            store.append(fork, fork_events)
        assert raised.value.parent_hash == other
        assert raised.value.tip_hash == first.header.hash
        assert store.tip() == (1, first.header.hash)
    assert rows_at(tmp_path / "node.db", 2) == NOTHING


def test_counts_must_match_the_header(tmp_path: Path) -> None:
    block, events = make_block(None)
    with open_store(tmp_path / "node.db") as store:
        with pytest.raises(
            CountMismatchError, match=r"block 1: events of 2 commands, header command_count 3"
        ):
            store.append(block, events[:2])
        short = dataclasses.replace(block, commands=block.commands[:2])
        with pytest.raises(
            CountMismatchError, match=r"2 commands and 3 times, header command_count 3"
        ):
            store.append(short, events)
        untimed = dataclasses.replace(block, times_ns=block.times_ns[:2])
        with pytest.raises(CountMismatchError, match=r"3 commands and 2 times"):
            store.append(untimed, events)
        assert store.tip() is None


# ---- certificates ----


def test_certificates_only_for_stored_blocks(tmp_path: Path) -> None:
    (first, events), (second, _) = make_chain(2)
    with open_store(tmp_path / "node.db") as store:
        with pytest.raises(UnknownBlockError, match=r"height 1 .*: the store has no block"):
            store.add_certificate(certificate_of(first.header))
        store.append(first, events)
        with pytest.raises(UnknownBlockError, match="has no block at that height"):
            store.add_certificate(certificate_of(second.header))
        stranger, _ = make_block(None, state_hash=sha256(b"other state"))
        with pytest.raises(UnknownBlockError, match=f"has block {first.header.hash.hex()}"):
            store.add_certificate(certificate_of(stranger.header))
        assert store.add_certificate(certificate_of(first.header, (1, 2, 3))) is True
        assert store.add_certificate(certificate_of(first.header, (2, 3, 4))) is False
        assert store.certificate(1) == certificate_of(first.header, (1, 2, 3))


# ---- reopening ----


def test_reopen_keeps_everything_and_checks_the_genesis(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    chain = make_chain(3)
    with open_store(path) as store:
        for block, events in chain:
            store.append(block, events)
        store.add_certificate(certificate_of(chain[1][0].header))
        store.record_evidence("equivocation", 2, canonical_bytes({"a": 1}))
    with BlockStore.open(path) as store:  # an existing store knows its genesis
        assert store.genesis_hash == GENESIS.hash
        assert store.tip() == (3, chain[2][0].header.hash)
        assert [stored.block for stored in store.blocks_from(1)] == [b for b, _ in chain]
        assert store.certificate(2) == certificate_of(chain[1][0].header)
        assert [evidence.kind for evidence in store.evidence()] == ["equivocation"]
        block, events = make_block(chain[2][0].header)
        store.append(block, events)
    with open_store(path) as store:
        assert store.tip() == (4, block.header.hash)
    with pytest.raises(SchemaError, match=f"not of genesis {sha256(b'x').hex()}"):
        BlockStore.open(path, genesis_hash=sha256(b"x"))
    with pytest.raises(SchemaError, match="needs the genesis hash"):
        BlockStore.open(tmp_path / "new.db")
    assert not (tmp_path / "new.db").exists()
    with pytest.raises(SchemaError, match="is not 32 bytes"):
        BlockStore.open(tmp_path / "new.db", genesis_hash=b"short")


def test_pragmas_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    with open_store(path) as store:
        db = store._db
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("PRAGMA user_version = 99")
    connection.close()
    with pytest.raises(SchemaError) as raised:
        BlockStore.open(path)
    assert str(raised.value) == (
        f"{path}: block store of schema version 99, but this build reads schema version 2 only "
        "(no migration: rebuild the store by catching up from peers)"
    )


# The tables of a schema version 1 store, as that version created them (abridged to what
# identifies it): its version in `meta`, commands and events as rows.
_V1_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value ANY NOT NULL) STRICT, WITHOUT ROWID",
    "CREATE TABLE blocks (height INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, "
    "header BLOB NOT NULL, signature BLOB NOT NULL) STRICT",
    "CREATE TABLE commands (height INTEGER NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL, "
    "PRIMARY KEY (height, idx)) STRICT, WITHOUT ROWID",
    "CREATE TABLE events (height INTEGER NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL, "
    "PRIMARY KEY (height, idx)) STRICT, WITHOUT ROWID",
)


def test_an_old_format_store_is_refused_at_open_naming_both_versions(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    connection = sqlite3.connect(path)
    with connection:
        for statement in _V1_SCHEMA:
            connection.execute(statement)
        connection.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            [("genesis_hash", GENESIS.hash), ("schema_version", 1)],
        )
    connection.close()
    before = path.read_bytes()
    for genesis_hash in (GENESIS.hash, None):
        with pytest.raises(SchemaError) as raised:
            BlockStore.open(path, genesis_hash)
        message = str(raised.value)
        assert message == (
            f"{path}: block store of schema version 1, but this build reads schema version 2 "
            "only (no migration: rebuild the store by catching up from peers)"
        )
        assert "\n" not in message
    assert path.read_bytes() == before  # refused before anything is written: no migration


# ---- atomicity ----


class _FailingCommit:
    """A connection whose next COMMIT fails (a full disk, an I/O error) after the block's row
    was written in the transaction."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def __getattr__(self, name: str) -> object:
        return getattr(self._connection, name)

    def execute(self, statement: str, *arguments: object) -> object:
        if statement == "COMMIT":
            raise sqlite3.OperationalError("disk I/O error (simulated)")
        return self._connection.execute(statement, *arguments)  # type: ignore[arg-type]


def test_a_write_failing_mid_transaction_leaves_nothing_of_the_block(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    (first, first_events), (second, events) = make_chain(2)
    with open_store(path) as store:
        store.append(first, first_events)
        connection = store._db
        store._db = _FailingCommit(connection)  # type: ignore[assignment]
        with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
            store.append(second, events)
        store._db = connection
        assert store.tip() == (1, first.header.hash)
        assert store.block(2) is None
        assert store.commands(2) is None
        assert store.events(2) is None
        assert rows_at(path, 2) == NOTHING
        store.append(second, events)  # the store is usable afterwards
        assert store.receipts(2) == store.blocks_from(2)[0].receipts()
    with open_store(path) as store:
        assert store.tip() == (2, second.header.hash)


class _ToyIndexer:
    """One derived row per command: enough to see the watermark and the rows move together."""

    def schema(self) -> Sequence[str]:
        return (
            "CREATE TABLE IF NOT EXISTS toy (height INTEGER NOT NULL, command_idx INTEGER "
            "NOT NULL, time_ns INTEGER NOT NULL, events INTEGER NOT NULL) STRICT",
        )

    def rows(
        self, height: int, header: BlockHeader, receipts: Sequence[Receipt]
    ) -> dict[str, list[Row]]:
        return {"toy": [(height, r.index, r.time_ns, len(r.events)) for r in receipts]}


class _KilledAtStep:
    """A connection that kills its own process with SIGKILL (kill -9) just before its
    `step`-th statement, counting from 0: so each step of a write can be the last one."""

    def __init__(self, connection: sqlite3.Connection, step: int) -> None:
        self._connection = connection
        self._left = step

    def __getattr__(self, name: str) -> object:
        return getattr(self._connection, name)

    def _count(self) -> None:
        if self._left == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        self._left -= 1

    def execute(self, statement: str, *arguments: object) -> object:
        self._count()
        return self._connection.execute(statement, *arguments)  # type: ignore[arg-type]

    def executemany(self, statement: str, rows: object) -> object:
        self._count()
        return self._connection.executemany(statement, rows)  # type: ignore[arg-type]


def _write_second_block(path: str, step: int) -> None:
    """What a member does with block 2: store it, store its certificate, index it; killed
    before statement `step` (a step past the last: not killed, exits 0)."""
    _, (second, events) = make_chain(2)
    store = BlockStore.open(Path(path), indexer=_ToyIndexer())
    store._db = _KilledAtStep(store._db, step)  # type: ignore[assignment]
    store.append(second, events)
    store.add_certificate(certificate_of(second.header))
    store.index_blocks()
    os._exit(0)


def test_a_block_stored_as_a_blob_survives_a_kill_9_at_every_write_step(tmp_path: Path) -> None:
    """A subprocess storing, certifying and indexing block 2 is killed (SIGKILL) before each
    of its SQL statements in turn; after each kill the store opens consistent: block 2 whole
    or absent, its certificate only with it, the derived rows exactly those of the blocks up
    to the watermark; and the writer can go on from there."""
    (first, first_events), (second, events) = make_chain(2)
    context = multiprocessing.get_context("fork")
    outcomes: list[tuple[int, int, int]] = []
    for step in range(64):
        path = tmp_path / f"step-{step}.db"
        with BlockStore.open(path, GENESIS.hash, indexer=_ToyIndexer()) as store:
            store.append(first, first_events)
            store.index_blocks()
        child = context.Process(target=_write_second_block, args=(str(path), step))
        child.start()
        child.join(timeout=30)
        assert child.exitcode in (-signal.SIGKILL, 0), (step, child.exitcode)
        with BlockStore.open(path, GENESIS.hash, indexer=_ToyIndexer()) as store:
            tip = store.tip()
            assert tip is not None
            height = tip[0]
            assert height in (1, 2), step
            if height == 2:
                assert store.block(2) == second
                assert store.receipts(2) == store.blocks_from(2)[0].receipts()
            certified = store.certified_height()
            assert certified in (0, 2) and certified <= height, step
            if certified:
                assert store.certificate(2) == certificate_of(second.header)
            watermark = store.indexed_height()
            assert 1 <= watermark <= height, step
            rows = store.read("SELECT height, command_idx FROM toy ORDER BY height, command_idx")
            assert rows == [(h, i) for h in range(1, watermark + 1) for i in range(3)], step
            outcomes.append((height, certified, watermark))
            if height == 1:  # the writer goes on where the kill stopped it
                store.append(second, events)
            if not certified:
                store.add_certificate(certificate_of(second.header))
            assert store.index_blocks() == 2
            assert store.blocks_from(1)[1].block == second
        if child.exitcode == 0:
            break
    assert outcomes[0] == (1, 0, 1)  # killed at the first statement: nothing of block 2
    assert outcomes[-1] == (2, 2, 2)  # not killed: all of it
    # every statement of the three writes was a kill point: between any two, a consistent store
    assert set(outcomes) == {(1, 0, 1), (2, 0, 1), (2, 2, 1), (2, 2, 2)}, outcomes
    assert len(outcomes) > 6, outcomes


# ---- evidence ----


def test_evidence_in_recorded_order_kept_once(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    one, _ = make_block(None)
    two, _ = make_block(None, state_hash=sha256(b"the other header"))
    equivocation = canonical_bytes({"headers": [one.header.to_dict(), two.header.to_dict()]})
    divergence = canonical_bytes({"events_root": sha256(b"mine"), "height": 5})
    with open_store(path) as store:
        first = store.record_evidence("equivocation", 1, equivocation)
        second = store.record_evidence("diverged", 5, divergence)
        again = store.record_evidence("equivocation", 1, equivocation)
        assert again == first
        assert (first.seq, second.seq) == (1, 2)
        assert first.id == sha256(canonical_bytes(["equivocation", 1, equivocation]))
        assert [(e.kind, e.height, e.payload) for e in store.evidence()] == [
            ("equivocation", 1, equivocation),
            ("diverged", 5, divergence),
        ]
        assert store.evidence(after=1) == [second]
        assert store.evidence(limit=1) == [first]
        with pytest.raises(StoreError, match="kind ''"):
            store.record_evidence("", 1, equivocation)
        with pytest.raises(StoreError, match="height -1"):
            store.record_evidence("diverged", -1, divergence)
        with pytest.raises(StoreError, match="payload of 0 bytes"):
            store.record_evidence("diverged", 1, b"")
        with pytest.raises(CanonicalError, match="not in canonical form"):
            store.record_evidence("diverged", 1, b'{"b":1,"a":2}')
        with pytest.raises(ValueError, match="limit 0"):
            store.evidence(limit=0)
    with open_store(path) as store:
        assert store.evidence() == [first, second]


# ---- catch-up pages ----


def test_blocks_from_pages_through_the_chain(tmp_path: Path) -> None:
    chain = make_chain(10)
    with open_store(tmp_path / "node.db") as store:
        for block, events in chain:
            store.append(block, events)
        for block, _ in chain[:6]:
            store.add_certificate(certificate_of(block.header))
        fetched: list[Block] = []
        height = 1
        pages = []
        while page := store.blocks_from(height, 4):
            pages.append([stored.block.header.height for stored in page])
            for stored in page:
                final = stored.block.header.height <= 6
                assert (stored.certificate is not None) == final
                if stored.certificate is not None:
                    assert stored.certificate.header_hash == stored.block.header.hash
            fetched.extend(stored.block for stored in page)
            height = page[-1].block.header.height + 1
        assert pages == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
        assert fetched == [block for block, _ in chain]
        assert store.blocks_from(11, 4) == []
        assert [s.block.header.height for s in store.blocks_from(10)] == [10]
        with pytest.raises(ValueError, match="height 0 is below 1"):
            store.blocks_from(0, 4)
        with pytest.raises(ValueError, match=f"limit {BLOCKS_PAGE_MAX + 1} is not in"):
            store.blocks_from(1, BLOCKS_PAGE_MAX + 1)


# ---- corruption ----


def test_a_changed_stored_byte_is_reported_with_its_height(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    chain = make_chain(4)
    with open_store(path) as store:
        for block, events in chain:
            store.append(block, events)
    header = bytearray(canonical_bytes(chain[1][0].header.to_dict()))
    position = header.index(b'"state_hash":"') + len(b'"state_hash":"')
    header[position] = ord("0") if header[position] != ord("0") else ord("1")
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("UPDATE blocks SET header = ? WHERE height = 2", (bytes(header),))
        (body,) = connection.execute("SELECT body FROM blocks WHERE height = 3").fetchone()
        changed = bytes(body).replace(b'"order_id":300', b'"order_id":301')
        assert changed != body
        connection.execute("UPDATE blocks SET body = ? WHERE height = 3", (changed,))
        connection.execute("UPDATE blocks SET body = substr(body, 1, 20) WHERE height = 4")
    connection.close()
    with open_store(path) as store:
        assert store.block(1) == chain[0][0]
        with pytest.raises(StoreCorruptError, match=r"block 2: stored header .* hashes to") as e:
            store.block(2)
        assert e.value.height == 2
        with pytest.raises(StoreCorruptError, match="block 3: stored commands hash to"):
            store.block(3)
        with pytest.raises(StoreCorruptError, match="block 4: stored body"):
            store.receipts(4)
        with pytest.raises(StoreCorruptError, match="block 2"):
            store.blocks_from(1)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=20), max_size=6),
    st.data(),
    st.sampled_from([BODY_PLAIN, BODY_ZLIB]),
)
def test_a_body_decodes_to_what_was_encoded(
    commands: list[bytes], data: st.DataObject, compression: int
) -> None:
    times = data.draw(st.lists(st.integers(0, 2**63 - 1), min_size=len(commands),
                               max_size=len(commands)))  # fmt: skip
    events = data.draw(st.lists(st.lists(st.binary(max_size=9), max_size=3),
                                min_size=len(commands), max_size=len(commands)))  # fmt: skip
    body = encode_body(commands, times, events, compression)
    assert body[0] == compression
    assert decode_body(7, body) == (
        tuple(commands),
        tuple(times),
        tuple(tuple(each) for each in events),
    )
    for cut in (1, len(body) - 1):  # a body cut short, plain or compressed, is refused
        with pytest.raises(StoreCorruptError, match="block 7: stored body"):
            decode_body(7, body[:cut])


def test_two_stores_on_one_file_see_one_tip(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    (first, first_events), (second, events) = make_chain(2)
    with open_store(path) as writer, BlockStore.open(path) as other:
        writer.append(first, first_events)
        assert other.tip() == (1, first.header.hash)  # the tip is read, never cached
        with pytest.raises(OutOfOrderError, match="height 1, expected 2"):
            other.append(first, first_events)
        other.append(second, events)
        assert writer.block(2) == second


def test_synchronous_normal_is_chosen_at_open_and_only_then(tmp_path: Path) -> None:
    path = tmp_path / "simulation.db"
    with BlockStore.open(path, GENESIS.hash, synchronous="NORMAL") as store:
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with BlockStore.open(path) as store:
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again
    with pytest.raises(ValueError, match="synchronous 'OFF' is not one of FULL, NORMAL"):
        BlockStore.open(path, synchronous="OFF")


def test_synchronous_normal_is_a_choice_and_nothing_else_is(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    with BlockStore.open(path, genesis_hash=GENESIS.hash, synchronous="NORMAL") as store:
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(ValueError, match="synchronous 'OFF' is not one of FULL, NORMAL"):
        BlockStore.open(path, synchronous="OFF")


def test_commands_are_stored_as_the_bytes_received(tmp_path: Path) -> None:
    (block, events), *_ = make_chain(1)
    received = parse_block(orjson.loads(orjson.dumps(block.to_dict())))  # over the wire
    assert isinstance(received, Block) and received == block
    assert check_commands(received) is None
    with open_store(tmp_path / "node.db") as store:
        store.append(received, events)
        assert store.commands(1) == list(block.commands)
        stored = store.block(1)
        assert stored is not None and stored.commands == block.commands
