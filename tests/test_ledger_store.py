"""The block store on real SQLite files: round trip, chain rules, reopen, atomicity (a failing
write and a killed writer leave nothing of the block), certificates, evidence, catch-up pages,
and corruption found on read."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.block import (
    Block,
    BlockHeader,
    QuorumCertificate,
    certify,
    check_block,
    check_certificate,
    check_commands,
    sign_block,
    sign_vote,
    values_root,
)
from ledger.canonical import CanonicalError, canonical_bytes, sha256
from ledger.genesis import Genesis, Member, Role
from ledger.keys import PrivateKey
from ledger.merkle import leaf_hash, root_of_leaf_hashes
from ledger.store import (
    BLOCKS_PAGE_MAX,
    BlockStore,
    CountMismatchError,
    OutOfOrderError,
    ParentMismatchError,
    SchemaError,
    StoreCorruptError,
    StoreError,
    UnknownBlockError,
)


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


def events_of(height: int, count: int = 4) -> list[bytes]:
    return [
        canonical_bytes({"event": "accepted", "height": height, "index": index, "tag": b"\x01"})
        for index in range(count)
    ]


def make_block(
    parent: BlockHeader | None,
    *,
    commands: Sequence[dict[str, object]] | None = None,
    events: Sequence[bytes] | None = None,
    **changes: object,
) -> tuple[Block, list[bytes]]:
    height = 1 if parent is None else parent.height + 1
    commands = commands_of(height) if commands is None else commands
    events = events_of(height) if events is None else events
    fields: dict[str, object] = {
        "height": height,
        "parent_hash": GENESIS.hash if parent is None else parent.hash,
        "time_ns": 1_700_000_000_000_000_000 + height,
        "commands_root": values_root(commands),
        "command_count": len(commands),
        "events_root": root_of_leaf_hashes([leaf_hash(event) for event in events]),
        "event_count": len(events),
        "state_hash": sha256(b"state %d" % height),
        "proposer": GENESIS.exchange.id,
    }
    fields.update(changes)
    header = BlockHeader(**fields)  # type: ignore[arg-type]
    return sign_block(EXCHANGE_KEY, header, commands), list(events)


def make_chain(length: int) -> list[tuple[Block, list[bytes]]]:
    chain: list[tuple[Block, list[bytes]]] = []
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
            for table in ("blocks", "commands", "events", "certificates")
        }
    finally:
        connection.close()


NOTHING = {"blocks": 0, "commands": 0, "events": 0, "certificates": 0}


# ---- round trip ----


def test_an_empty_store(tmp_path: Path) -> None:
    with open_store(tmp_path / "node.db") as store:
        assert store.tip() is None
        assert store.block(1) is None
        assert store.header(1) is None
        assert store.commands(1) is None
        assert store.events(1) is None
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
            assert store.commands(height) == [canonical_bytes(c) for c in block.commands]
            assert store.events(height) == events
            # the stored leaves rebuild the signed roots, so receipts can be proven from them
            leaves = [leaf_hash(event) for event in store.events(height) or []]
            assert root_of_leaf_hashes(leaves) == block.header.events_root
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


def test_an_empty_block_and_bytes_in_commands(tmp_path: Path) -> None:
    empty, no_events = make_block(None, commands=[], events=[])
    with open_store(tmp_path / "node.db") as store:
        store.append(empty, no_events)
        assert store.commands(1) == []
        assert store.events(1) == []
        assert store.block(1) == empty
        # bytes are stored as hex: the stored command differs in type but not in its bytes
        block, events = make_block(empty.header, commands=[{"blob": b"\xff\x00"}])
        store.append(block, events)
        stored = store.block(2)
        assert stored is not None
        assert stored.commands == ({"blob": "ff00"},)
        assert stored.header.commands_root == values_root(stored.commands)


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
        with pytest.raises(CountMismatchError, match=r"block 1: 3 events, header event_count 4"):
            store.append(block, events[:3])
        short = Block(header=block.header, commands=block.commands[:2], signature=block.signature)
        with pytest.raises(CountMismatchError, match=r"2 commands, header command_count 3"):
            store.append(short, events)
        bad = Block(
            header=block.header,
            commands=({"price": 1.5}, *block.commands[1:]),
            signature=block.signature,
        )
        with pytest.raises(CanonicalError, match="float"):
            store.append(bad, events)
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
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("UPDATE meta SET value = 99 WHERE key = 'schema_version'")
    connection.close()
    with pytest.raises(SchemaError, match="schema version 99, expected 1"):
        BlockStore.open(path)


# ---- atomicity ----


def test_a_write_failing_mid_transaction_leaves_nothing_of_the_block(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    (first, first_events), (second, events) = make_chain(2)
    with open_store(path) as store:
        store.append(first, first_events)
        # the last event row violates a CHECK constraint after the block, command and other
        # event rows of the same transaction were written
        with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint"):
            store.append(second, [*events[:-1], b""])
        assert store.tip() == (1, first.header.hash)
        assert store.block(2) is None
        assert store.commands(2) is None
        assert store.events(2) is None
        assert rows_at(path, 2) == NOTHING
        store.append(second, events)  # the store is usable afterwards
        assert store.events(2) == events
    with open_store(path) as store:
        assert store.tip() == (2, second.header.hash)


class _DiesBeforeEvents:
    """A connection that kills its process in the middle of `append`'s transaction, after the
    block and command rows were written and before the event rows."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def __getattr__(self, name: str) -> object:
        return getattr(self._connection, name)

    def executemany(self, statement: str, rows: object) -> object:
        if "INTO events" in statement:
            os._exit(7)
        return self._connection.executemany(statement, rows)  # type: ignore[arg-type]


def _append_and_die(path: str) -> None:
    (_, _), (second, events) = make_chain(2)
    store = BlockStore.open(Path(path))
    store._db = _DiesBeforeEvents(store._db)  # type: ignore[assignment]
    store.append(second, events)


def test_a_writer_killed_mid_transaction_leaves_nothing_of_the_block(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    (first, first_events), (second, events) = make_chain(2)
    with open_store(path) as store:
        store.append(first, first_events)
    child = multiprocessing.get_context("fork").Process(target=_append_and_die, args=(str(path),))
    child.start()
    child.join(timeout=30)
    assert child.exitcode == 7
    assert rows_at(path, 2) == NOTHING
    with open_store(path) as store:
        assert store.tip() == (1, first.header.hash)
        assert store.block(2) is None
        store.append(second, events)
        assert store.block(2) == second


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
    chain = make_chain(3)
    with open_store(path) as store:
        for block, events in chain:
            store.append(block, events)
    header = bytearray(canonical_bytes(chain[1][0].header.to_dict()))
    position = header.index(b'"state_hash":"') + len(b'"state_hash":"')
    header[position] = ord("0") if header[position] != ord("0") else ord("1")
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("UPDATE blocks SET header = ? WHERE height = 2", (bytes(header),))
        connection.execute(
            "UPDATE commands SET data = ? WHERE height = 3 AND idx = 0", (b'{"b":1, "a":2}',)
        )
    connection.close()
    with open_store(path) as store:
        assert store.block(1) == chain[0][0]
        with pytest.raises(StoreCorruptError, match=r"block 2: stored header .* hashes to") as e:
            store.block(2)
        assert e.value.height == 2
        with pytest.raises(StoreCorruptError, match="block 3: stored command 0"):
            store.block(3)
        with pytest.raises(StoreCorruptError, match="block 2"):
            store.blocks_from(1)


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


def test_commands_are_encoded_once_and_stored_as_encoded(tmp_path: Path) -> None:
    (block, events), *_ = make_chain(1)
    encoded = [canonical_bytes(command) for command in block.commands]
    assert list(block.command_bytes()) == encoded  # the proposer's own bytes
    reordered = dataclasses.replace(block, commands=tuple(reversed(block.commands)))
    assert list(reordered.command_bytes()) == encoded[::-1]  # never the stale cache
    received = Block(header=block.header, commands=block.commands, signature=block.signature)
    assert check_commands(received) is None
    assert received.command_bytes() is received.command_bytes()
    with open_store(tmp_path / "node.db") as store:
        store.append(received, events)
        assert store.commands(1) == encoded
        stored = store.block(1)
        assert stored is not None and list(stored.command_bytes()) == encoded
