"""The node's block store: one SQLite file per node (stdlib `sqlite3`), generic.

It stores what the ledger replicates and nothing of what the commands mean: one row per block
(header canonical bytes, header hash, proposer signature, and the body: one blob holding the
block's commands, their times and the events each produced, so receipts with inclusion proofs
can be built later; see `encode_body`), quorum certificates (stored when they form), evidence
of misbehaviour, and a `meta` table with the genesis hash and the index watermark. The schema
version is SQLite's `user_version`: a store of another version is refused at open
(`SchemaError`, one line naming both versions); there is no silent migration.

Derived tables for analysts (orders, trades, balances) belong to the state machine's side: it
passes an `Indexer`, which declares its tables and maps each block to rows; the store creates
those tables with its schema. Their rows are NOT written with the block (a member votes once the
block is stored, and the indexer is off that path): `index_blocks` writes them later, for the
blocks above the "indexed up to height" watermark (`indexed_height`), rows and the new watermark
in one transaction, so the tables always describe exactly the blocks 1..watermark, whatever
crashed when.

Writes:

- `append(block, events)` writes the block's one row (header, signature, body) in one
  transaction (`BEGIN IMMEDIATE ... COMMIT`). It refuses, before writing anything, a height
  that is not the tip's plus one (`OutOfOrderError`), a parent hash that is not the tip's hash
  (or the genesis hash at height 1, `ParentMismatchError`) and events for another number of
  commands than the header's (`CountMismatchError`). Any failure inside the transaction (a
  constraint, a full disk) rolls back the row, so a crash between two writes leaves either the
  whole block or nothing of it.
- `add_certificate(qc)` stores the first certificate for a stored block; the store does not
  verify signatures (it does not know the members): the caller runs `check_certificate`.
- `record_evidence(kind, height, payload)` appends evidence; identical evidence is kept once.
- `index_blocks(blocks_max)` derives the indexer's rows of the next blocks above the watermark
  (read back from the blobs, as `blocks_from` reads them) and writes them with the new
  watermark in one transaction (`BEGIN IMMEDIATE`, the watermark re-read under the lock, so a
  second writer such as `jinlian index` beside a running node never indexes a block twice).

Reads return `None` for a height that is not stored. A page SQLite finds corrupt while reading a
block is also a `StoreCorruptError` naming the height. Stored bytes are checked when read (the
header hashes to its stored hash; the body decodes to exactly its length; a block's commands
are as many as the header counts and hash to its commands root), so a changed byte is reported
as `StoreCorruptError` naming the height instead of being passed on. Events are returned as
stored: their reader checks them against the header's receipts root (a receipt does;
`jinlian verify` re-executes).

Durability: WAL journal, foreign keys on, `synchronous` FULL by default or NORMAL (see
`SYNCHRONOUS`). One writer per file is expected (the node); readers may open the same file
concurrently.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import struct
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol, Self, TypeVar

from ledger.block import (
    HASH_BYTES,
    SIGNATURE_BYTES,
    Block,
    BlockHeader,
    MalformedBlockError,
    QuorumCertificate,
    Receipt,
)
from ledger.canonical import CanonicalError, canonical_bytes, parse_canonical, sha256
from ledger.merkle import merkle_root
from ledger.wire import parse_certificate, parse_header

SCHEMA_VERSION: Final = 2  # SQLite's user_version; version 1 kept commands and events as rows
BLOCKS_PAGE_MAX: Final = 256  # blocks per `blocks_from` call: a catch-up page
EVIDENCE_PAGE_MAX: Final = 1_000
EVIDENCE_KIND_CHARS_MAX: Final = 64
EVIDENCE_BYTES_MAX: Final = 16 * 1024 * 1024
BUSY_TIMEOUT_MS: Final = 5_000

# `synchronous`, chosen at open (docs/ledger.md, "Durability"). In WAL mode a COMMIT appends the
# transaction's pages and a commit frame to the WAL with write() before it returns, so with
# either setting a committed transaction survives the death of the process (kill -9: the
# bytes are in the OS page cache), and a transaction cut short has no commit frame and is
# ignored on recovery: the store is consistent after a crash between any two writes.
# FULL (the default) also fsyncs the WAL at every COMMIT, so a committed block survives a power
# cut or an OS crash. NORMAL fsyncs only at checkpoints: after a power cut the last commits
# may be gone (still consistent), which can lose an exchange's acknowledged block and let it
# sign another at that height. It saves two fsyncs per block (the block and its certificate).
SYNCHRONOUS: Final = ("FULL", "NORMAL")
_PRAGMAS: Final = (
    "PRAGMA foreign_keys = ON",
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
)

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS meta (
        key TEXT PRIMARY KEY,
        value ANY NOT NULL
    ) STRICT, WITHOUT ROWID""",
    f"""CREATE TABLE IF NOT EXISTS blocks (
        height INTEGER PRIMARY KEY CHECK (height >= 1),
        hash BLOB NOT NULL UNIQUE CHECK (length(hash) = {HASH_BYTES}),
        header BLOB NOT NULL CHECK (length(header) > 0),
        signature BLOB NOT NULL CHECK (length(signature) = {SIGNATURE_BYTES}),
        body BLOB NOT NULL CHECK (length(body) > 0),
        UNIQUE (height, hash)
    ) STRICT""",
    f"""CREATE TABLE IF NOT EXISTS certificates (
        height INTEGER PRIMARY KEY,
        header_hash BLOB NOT NULL CHECK (length(header_hash) = {HASH_BYTES}),
        data BLOB NOT NULL CHECK (length(data) > 0),
        FOREIGN KEY (height, header_hash) REFERENCES blocks (height, hash)
    ) STRICT""",
    f"""CREATE TABLE IF NOT EXISTS evidence (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id BLOB NOT NULL UNIQUE CHECK (length(id) = {HASH_BYTES}),
        height INTEGER NOT NULL CHECK (height >= 0),
        kind TEXT NOT NULL CHECK (length(kind) BETWEEN 1 AND {EVIDENCE_KIND_CHARS_MAX}),
        data BLOB NOT NULL CHECK (length(data) > 0)
    ) STRICT""",
    "CREATE INDEX IF NOT EXISTS evidence_by_height ON evidence (height)",
)

_CORE_TABLES: Final = frozenset(
    {"meta", "blocks", "commands", "events", "certificates", "evidence", "sqlite_sequence"}
)  # commands and events: the tables of schema version 1, still never an indexer's
_TABLE_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,62}")
Row = tuple[int | str | bytes | None, ...]


class Indexer(Protocol):
    """Derived tables that a state machine's side keeps beside the blocks (orders, trades...).

    `schema()` gives the statements that create its tables and indexes (`CREATE TABLE IF NOT
    EXISTS ...`), run with the store's schema. `rows(...)` maps one block to the rows of each of
    its tables, by table name (every table, even with no row); each row is a tuple of the
    table's columns in declared order. The store writes them after the block, in
    `index_blocks`, with the watermark that covers them, from the block's receipts (each
    command's index, time, raw bytes and events, so every row can name the command that
    produced it): an exception from `rows`, or a row
    that SQLite refuses (a constraint), writes nothing of that batch and leaves the watermark
    where it was (the blocks stay stored). `rows` must be a pure function of its arguments, and
    every table must have a `height` column holding the block's height: `index_blocks` first
    deletes the rows at the heights it writes (so a store indexed by an older build is rebuilt
    cleanly), and `ledger.audit` compares the stored rows at each height up to the watermark
    with `rows` of the verified block."""

    def schema(self) -> Sequence[str]: ...

    def rows(
        self, height: int, header: BlockHeader, receipts: Sequence[Receipt]
    ) -> Mapping[str, Sequence[Row]]: ...


_META_GENESIS: Final = "genesis_hash"
_META_VERSION: Final = "schema_version"  # where schema version 1 kept its version
# The body of a block: a flag byte (BODY_PLAIN, or BODY_ZLIB for a zlib stream of the rest),
# then little-endian u32 n; n i64 times; n u32 command lengths; n u32 event counts; one u32
# length per event; the command bytes; the event bytes, all in order.
BODY_PLAIN: Final = 0
BODY_ZLIB: Final = 1
# zlib cut the bytes per command by 84% but lowered the store's rate by a third (the rule:
# compress only without lowering the sustained rate): docs/performance.md, 2026-12-04
BODY_COMPRESSION: Final = BODY_PLAIN
ZLIB_LEVEL: Final = 1
_META_INDEXED: Final = "indexed_height"  # the derived tables hold exactly blocks 1..this
INDEX_BLOCKS_MAX: Final = BLOCKS_PAGE_MAX  # blocks per `index_blocks` call
# commands per `index_blocks` call (at most; its `commands_max`): once a batch holds this many,
# it ends (after at least one block), so the rows held in memory and the time the transaction
# holds the lock are bounded
INDEX_COMMANDS_MAX: Final = 20_000
Parsed = TypeVar("Parsed")


class StoreError(Exception):
    """The store refuses an operation or cannot be used. The message names the values."""


class SchemaError(StoreError):
    """The file is not a block store of this schema version, or of another genesis."""


class OutOfOrderError(StoreError):
    """A block whose height is not the tip's plus one."""

    def __init__(self, height: int, expected: int) -> None:
        super().__init__(f"block {height}: height {height}, expected {expected}")
        self.height = height
        self.expected = expected


class ParentMismatchError(StoreError):
    """A block whose parent hash is not the stored tip's hash (the genesis hash at height 1)."""

    def __init__(self, height: int, parent_hash: bytes, tip_hash: bytes) -> None:
        super().__init__(
            f"block {height}: parent hash {parent_hash.hex()} is not the tip's {tip_hash.hex()}"
        )
        self.height = height
        self.parent_hash = parent_hash
        self.tip_hash = tip_hash


class CountMismatchError(StoreError):
    """The commands or events given do not match the header's counts."""


class UnknownBlockError(StoreError):
    """A certificate for a block that is not stored (no such height, or another hash)."""


class StoreCorruptError(StoreError):
    """Stored bytes that do not parse or do not hash to what is stored beside them."""

    def __init__(self, height: int, message: str) -> None:
        super().__init__(f"block {height}: stored {message}")
        self.height = height


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    """One piece of recorded evidence. `id` is SHA-256 of the canonical [kind, height, payload]
    (payload as hex); `seq` is the order in which this store recorded it (1, 2, ...)."""

    seq: int
    id: bytes
    height: int
    kind: str
    payload: bytes  # canonical bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredBlock:
    """A block as served for catch-up: with its certificate once it is final. `events`, read
    from the store, are each command's events (None for a block received from a peer, whose
    events the receiver derives by re-executing)."""

    block: Block
    certificate: QuorumCertificate | None
    events: tuple[Sequence[bytes], ...] | None = None

    def receipts(self) -> list[Receipt]:
        """The block's receipts (a block read from the store only)."""
        assert self.events is not None, "a block from a peer has no stored events"
        block = self.block
        return [
            Receipt(index, time_ns, command, events)
            for index, (command, time_ns, events) in enumerate(
                zip(block.commands, block.times_ns, self.events, strict=True)
            )
        ]


class BlockStore:
    """A node's block store. Build it with `BlockStore.open(path, genesis_hash=...)`; use it as
    a context manager or call `close()`. Not thread-safe: one object per thread."""

    def __init__(
        self,
        connection: sqlite3.Connection,
        path: Path,
        genesis_hash: bytes,
        indexer: Indexer | None = None,
        compression: int = BODY_PLAIN,
    ) -> None:
        self._db = connection
        self.path = path
        self.genesis_hash = genesis_hash
        self.indexer = indexer
        self.compression = compression  # of the bodies `append` writes; reads take either

    @classmethod
    def open(
        cls,
        path: Path,
        genesis_hash: bytes | None = None,
        *,
        indexer: Indexer | None = None,
        synchronous: str = "FULL",
        compression: int = BODY_COMPRESSION,
    ) -> BlockStore:
        """Open the store at `path`, creating the file and its schema if absent. A new store needs
        `genesis_hash` (the parent of block 1) and records it; an existing one must have the schema
        version `SCHEMA_VERSION` and, if `genesis_hash` is given, that genesis hash. `indexer`'s
        tables are created with the schema (and the watermark at 0 if the store has none);
        `index_blocks` fills them, from the watermark on. `synchronous` is FULL (a commit survives a
        power cut) or NORMAL (a process crash only). `compression` (`BODY_PLAIN` or `BODY_ZLIB`)
        is how `append` writes block bodies; a store reads either. Raises `SchemaError`
        otherwise, `sqlite3.Error` if SQLite cannot open the file or refuses the indexer's
        schema."""
        if genesis_hash is not None and len(genesis_hash) != HASH_BYTES:
            raise SchemaError(f"genesis hash {genesis_hash.hex()} is not {HASH_BYTES} bytes")
        if genesis_hash is None and not path.exists():
            raise SchemaError(f"{path}: a new block store needs the genesis hash")
        if compression not in (BODY_PLAIN, BODY_ZLIB):
            raise ValueError(f"compression {compression!r} is not {BODY_PLAIN} or {BODY_ZLIB}")
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous {synchronous!r} is not one of {', '.join(SYNCHRONOUS)}")
        connection = sqlite3.connect(path, isolation_level=None)  # transactions are explicit
        try:
            pragmas = (*_PRAGMAS, f"PRAGMA synchronous = {synchronous}")
            schema = () if indexer is None else indexer.schema()
            stored = _prepare(connection, path, genesis_hash, pragmas, schema)
        except BaseException:
            connection.close()
            raise
        return cls(connection, path, stored, indexer, compression)

    def close(self) -> None:
        """Close the connection; committed blocks are on disk. Idempotent."""
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ---- writes ----

    def append(self, block: Block, events: Sequence[Sequence[bytes]]) -> None:
        """Store `block` and `events` (per command, the canonical bytes of the events the state
        machine derived from it, in order) as one row, in one transaction. The caller has
        checked the block (`check_block`, `check_execution`); the store checks only the chain:
        the height is the tip's plus one and the parent hash is the tip's hash (the genesis hash
        at height 1), and there are as many commands and event lists as the header counts.

        The indexer's rows are not written here (`index_blocks` writes them later): storing a
        block costs the same with or without an indexer.

        Raises `OutOfOrderError`, `ParentMismatchError`, `CountMismatchError`, all before
        writing anything; `sqlite3.Error` if the write fails, after which nothing of the block
        is stored. O(command and event bytes)."""
        header = block.header
        if len(block.commands) != header.command_count or len(block.times_ns) != len(
            block.commands
        ):
            raise CountMismatchError(
                f"block {header.height}: {len(block.commands)} commands and "
                f"{len(block.times_ns)} times, header command_count {header.command_count}"
            )
        if len(events) != header.command_count:
            raise CountMismatchError(
                f"block {header.height}: events of {len(events)} commands, "
                f"header command_count {header.command_count}"
            )
        header_bytes = canonical_bytes(header.to_dict())
        body = encode_body(block.commands, block.times_ns, events, self.compression)
        with self._transaction():
            tip = self._tip()
            expected = 1 if tip is None else tip[0] + 1
            if header.height != expected:
                raise OutOfOrderError(header.height, expected)
            tip_hash = self.genesis_hash if tip is None else tip[1]
            if header.parent_hash != tip_hash:
                raise ParentMismatchError(header.height, header.parent_hash, tip_hash)
            self._db.execute(
                "INSERT INTO blocks (height, hash, header, signature, body) VALUES (?, ?, ?, ?, ?)",
                (header.height, header.hash, header_bytes, block.signature, body),
            )

    def index_blocks(
        self, blocks_max: int = INDEX_BLOCKS_MAX, commands_max: int = INDEX_COMMANDS_MAX
    ) -> int:
        """Derive the indexer's rows of at most `blocks_max` (1..`INDEX_BLOCKS_MAX`) stored blocks
        above the watermark (fewer once they hold `commands_max` commands; at least one) and write
        them with the new watermark in one transaction; return the watermark (the tip's height once
        caught up; unchanged with nothing to do). Each block's blob is read and checked once, as
        `blocks_from` reads it, and the indexer gets its receipts.

        Raises `StoreError` without an indexer, for rows of a refused table name or of uneven
        width (naming the height and table), `StoreCorruptError` for a block that does not read
        back, whatever `Indexer.rows` raises, `sqlite3.Error` if the write fails; in every case
        nothing of the batch is written and the watermark stays. O(commands + events of the
        batch)."""
        if self.indexer is None:
            raise StoreError(f"{self.path}: opened without an indexer: nothing to index")
        if not 1 <= blocks_max <= INDEX_BLOCKS_MAX:
            raise ValueError(f"blocks_max {blocks_max} is not in 1..{INDEX_BLOCKS_MAX}")
        if not 1 <= commands_max <= INDEX_COMMANDS_MAX:
            raise ValueError(f"commands_max {commands_max} is not in 1..{INDEX_COMMANDS_MAX}")
        first = self.indexed_height() + 1
        page = self._page(first, blocks_max, commands_max)
        if not page:
            return first - 1
        writes: dict[str, list[Row]] = {}
        last = first - 1
        for stored in page:
            header = stored.block.header
            if header.height != last + 1:  # blocks are never removed: a gap is corruption
                raise StoreCorruptError(last + 1, "block missing below the tip while indexing")
            last = header.height
            tables = self.indexer.rows(header.height, header, stored.receipts())
            for table, rows in tables.items():
                writes.setdefault(_checked_table(header.height, table), []).extend(rows)
        statements = [(table, _insert(last, table, rows), rows) for table, rows in writes.items()]
        with self._transaction():
            if self._indexed() != first - 1:  # another writer indexed meanwhile: redo
                return self._indexed()
            for table, statement, rows in statements:
                # `table` is a plain identifier (`_checked_table`), so it may be formatted in.
                self._db.execute(f"DELETE FROM {table} WHERE height BETWEEN ? AND ?", (first, last))
                if rows:
                    self._db.executemany(statement, rows)
            self._db.execute("UPDATE meta SET value = ? WHERE key = ?", (last, _META_INDEXED))
        return last

    def indexed_height(self) -> int:
        """The index watermark: the derived tables hold exactly the rows of blocks
        1..indexed_height (0: none). Without an indexer's tables ever created, 0."""
        return self._indexed()

    def _indexed(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (_META_INDEXED,)).fetchone()
        return 0 if row is None else int(row[0])

    def add_certificate(self, certificate: QuorumCertificate) -> bool:
        """Store the certificate of a stored block. The caller has verified it
        (`check_certificate`). Returns False, and keeps the stored one, if the block already
        has a certificate (another quorum's is as good). Raises `UnknownBlockError` if no block
        with this height and header hash is stored. O(votes)."""
        data = canonical_bytes(certificate.to_dict())
        with self._transaction():
            row = self._db.execute(
                "SELECT hash FROM blocks WHERE height = ?", (certificate.height,)
            ).fetchone()
            if row is None or bytes(row[0]) != certificate.header_hash:
                stored = "no block" if row is None else f"block {bytes(row[0]).hex()}"
                raise UnknownBlockError(
                    f"certificate for height {certificate.height} header "
                    f"{certificate.header_hash.hex()}: the store has {stored} at that height"
                )
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO certificates (height, header_hash, data) VALUES (?, ?, ?)",
                (certificate.height, certificate.header_hash, data),
            )
            return cursor.rowcount == 1

    def record_evidence(self, kind: str, height: int, payload: bytes) -> Evidence:
        """Record evidence of misbehaviour at `height` (which need not be stored): `kind` is a
        short label such as "equivocation", `payload` the canonical bytes of what proves it
        (two signed headers, a block and what re-execution gave). Identical evidence is kept
        once; the stored record is returned either way. Raises `StoreError` for an empty or
        overlong kind or payload, `CanonicalError` for a payload that is not canonical."""
        if not 1 <= len(kind) <= EVIDENCE_KIND_CHARS_MAX or not kind.isprintable():
            raise StoreError(
                f"evidence kind {kind!r} is not 1 to {EVIDENCE_KIND_CHARS_MAX} printable chars"
            )
        if height < 0:
            raise StoreError(f"evidence height {height} is negative")
        if not 0 < len(payload) <= EVIDENCE_BYTES_MAX:
            raise StoreError(
                f"evidence payload of {len(payload)} bytes is not 1 to {EVIDENCE_BYTES_MAX}"
            )
        parse_canonical(payload)
        evidence_id = sha256(canonical_bytes([kind, height, payload]))
        with self._transaction():
            self._db.execute(
                "INSERT OR IGNORE INTO evidence (id, height, kind, data) VALUES (?, ?, ?, ?)",
                (evidence_id, height, kind, payload),
            )
            row = self._db.execute(
                "SELECT seq, id, height, kind, data FROM evidence WHERE id = ?", (evidence_id,)
            ).fetchone()
        return _evidence(row)

    # ---- reads ----

    def tip(self) -> tuple[int, bytes] | None:
        """(height, header hash) of the last stored block, or None if there is none."""
        return self._tip()

    def block(self, height: int) -> Block | None:
        """The stored block at `height`, or None. Raises `StoreCorruptError`."""
        stored = self._stored(height)
        return None if stored is None else stored.block

    def header(self, height: int) -> BlockHeader | None:
        """The stored header at `height`, or None. Raises `StoreCorruptError`."""
        with _reading(height):
            row = self._db.execute(
                "SELECT height, hash, header FROM blocks WHERE height = ?", (height,)
            ).fetchone()
        return None if row is None else _header(row[0], bytes(row[1]), bytes(row[2]))

    def commands(self, height: int) -> list[bytes] | None:
        """The raw bytes of the block's commands, in order (the commands tree's leaves), or
        None if no block is stored at `height`. Raises `StoreCorruptError`."""
        stored = self._stored(height)
        return None if stored is None else list(stored.block.commands)

    def receipts(self, height: int) -> list[Receipt] | None:
        """The block's receipts (the receipts tree's leaves are their `leaf()`), or None if no
        block is stored at `height`. Raises `StoreCorruptError`. O(block)."""
        stored = self._stored(height)
        return None if stored is None else stored.receipts()

    def events(self, height: int) -> list[bytes] | None:
        """The canonical bytes of the block's events, all commands' in order, or None if no
        block is stored at `height`. Raises `StoreCorruptError`."""
        stored = self._stored(height)
        if stored is None:
            return None
        assert stored.events is not None
        return [event for events in stored.events for event in events]

    def certificate(self, height: int) -> QuorumCertificate | None:
        """The stored certificate of the block at `height`, or None (no block, or not final
        here yet). Raises `StoreCorruptError`."""
        with _reading(height):
            row = self._db.execute(
                "SELECT height, header_hash, data FROM certificates WHERE height = ?", (height,)
            ).fetchone()
        return None if row is None else _certificate(row[0], bytes(row[1]), bytes(row[2]))

    def has_certificate(self, height: int) -> bool:
        """Whether the block at `height` has a stored certificate. O(log blocks)."""
        row = self._db.execute("SELECT 1 FROM certificates WHERE height = ?", (height,)).fetchone()
        return row is not None

    def certified_height(self) -> int:
        """The highest height with a stored certificate, 0 if none."""
        row = self._db.execute("SELECT max(height) FROM certificates").fetchone()
        return 0 if row[0] is None else int(row[0])

    def uncertified_heights(self, limit: int = BLOCKS_PAGE_MAX) -> list[int]:
        """The lowest `limit` stored heights without a certificate, in increasing order."""
        rows = self._db.execute(
            "SELECT b.height FROM blocks AS b LEFT JOIN certificates AS c "
            "ON c.height = b.height WHERE c.height IS NULL ORDER BY b.height LIMIT ?",
            (limit,),
        ).fetchall()
        return [int(row[0]) for row in rows]

    def has_header_hash(self, header_hash: bytes) -> bool:
        """Whether a stored block has this header hash."""
        row = self._db.execute("SELECT 1 FROM blocks WHERE hash = ?", (header_hash,)).fetchone()
        return row is not None

    def blocks_from(self, height: int, limit: int = BLOCKS_PAGE_MAX) -> list[StoredBlock]:
        """Up to `limit` consecutive stored blocks from `height` on, with their certificates
        (and their stored events), for a peer that catches up; an empty list past the tip.
        Raises ValueError for a height below 1 or a limit outside 1..`BLOCKS_PAGE_MAX`,
        `StoreCorruptError`. O(size of the page), one query."""
        if height < 1:
            raise ValueError(f"height {height} is below 1")
        if not 1 <= limit <= BLOCKS_PAGE_MAX:
            raise ValueError(f"limit {limit} is not in 1..{BLOCKS_PAGE_MAX}")
        return self._page(height, limit)

    def evidence(self, after: int = 0, limit: int = EVIDENCE_PAGE_MAX) -> list[Evidence]:
        """Recorded evidence with `seq` greater than `after`, in recorded order, at most
        `limit` (1..`EVIDENCE_PAGE_MAX`); page on with the last `seq`."""
        if not 1 <= limit <= EVIDENCE_PAGE_MAX:
            raise ValueError(f"limit {limit} is not in 1..{EVIDENCE_PAGE_MAX}")
        rows = self._db.execute(
            "SELECT seq, id, height, kind, data FROM evidence WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        ).fetchall()
        return [_evidence(row) for row in rows]

    def read(self, statement: str, parameters: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """The rows of one SQL query, for the indexer's tables: the state machine's side reads
        what it derived without the store knowing what it means. Runs with `query_only`, so a
        statement that would write fails (`sqlite3.Error`), as does a malformed one."""
        self._db.execute("PRAGMA query_only = ON")
        try:
            return [tuple(row) for row in self._db.execute(statement, tuple(parameters))]
        finally:
            self._db.execute("PRAGMA query_only = OFF")

    # ---- internals ----

    def _stored(self, height: int) -> StoredBlock | None:
        page = self._page(height, 1) if height >= 1 else []
        return page[0] if page else None

    def _page(self, height: int, limit: int, commands_max: int | None = None) -> list[StoredBlock]:
        """Up to `limit` blocks from `height` on, each read and checked; with `commands_max`,
        none after the first whose commands bring the page to that many (a block that would not
        be used is not decoded)."""
        last = height + limit - 1
        with _reading(height):
            rows = self._db.execute(
                "SELECT b.height, b.hash, b.header, b.signature, b.body, c.header_hash, c.data "
                "FROM blocks AS b LEFT JOIN certificates AS c ON c.height = b.height "
                "WHERE b.height BETWEEN ? AND ? ORDER BY b.height",
                (height, last),
            ).fetchall()
        page: list[StoredBlock] = []
        commands = 0
        for row in rows:
            if commands_max is not None and commands >= commands_max:
                break
            block, events = _block(row)
            certificate = None if row[5] is None else _certificate(row[0], row[5], row[6])
            page.append(StoredBlock(block=block, certificate=certificate, events=events))
            commands += block.header.command_count
        return page

    def _tip(self) -> tuple[int, bytes] | None:
        row = self._db.execute(
            "SELECT height, hash FROM blocks ORDER BY height DESC LIMIT 1"
        ).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def _has(self, height: int) -> bool:
        row = self._db.execute("SELECT 1 FROM blocks WHERE height = ?", (height,)).fetchone()
        return row is not None

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db, "BEGIN IMMEDIATE")

    def _snapshot(self) -> _Transaction:
        return _Transaction(self._db, "BEGIN DEFERRED")


@contextlib.contextmanager
def _reading(height: int) -> Iterator[None]:
    """Report a page SQLite finds corrupt while reading the block at `height` (or a page from
    it) as `StoreCorruptError` naming that height. A busy or locked file
    (`sqlite3.OperationalError`) is not corruption and passes through."""
    try:
        yield
    except sqlite3.OperationalError:
        raise
    except sqlite3.DatabaseError as error:
        raise StoreCorruptError(height, f"rows unreadable: {error}") from None


class _Transaction:
    """BEGIN on entry; COMMIT on a normal exit, ROLLBACK on an exception (which propagates)."""

    def __init__(self, connection: sqlite3.Connection, begin: str) -> None:
        self._db = connection
        self._begin = begin

    def __enter__(self) -> None:
        self._db.execute(self._begin)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            try:
                self._db.execute("COMMIT")
            except BaseException:  # a failed COMMIT (disk full, I/O error) leaves it open
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        elif self._db.in_transaction:
            self._db.execute("ROLLBACK")


def _prepare(
    connection: sqlite3.Connection,
    path: Path,
    genesis_hash: bytes | None,
    pragmas: Sequence[str],
    derived_schema: Sequence[str],
) -> bytes:
    """Set the pragmas, create the schema (and an indexer's tables) if absent, check or record
    the meta values, and return the stored genesis hash."""
    _check_version(connection, path)  # before anything is written, WAL mode included
    mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise SchemaError(f"{path}: journal mode {mode!r}, not wal")
    for pragma in pragmas:
        connection.execute(pragma)
    with _Transaction(connection, "BEGIN IMMEDIATE"):
        _check_version(connection, path)  # again under the lock: another opener created it
        for statement in (*_SCHEMA, *derived_schema):
            connection.execute(statement)
        meta = dict(connection.execute("SELECT key, value FROM meta").fetchall())
        if derived_schema and _META_INDEXED not in meta:  # new, or indexed by an older build
            connection.execute("INSERT INTO meta (key, value) VALUES (?, 0)", (_META_INDEXED,))
        if _META_GENESIS not in meta:
            if genesis_hash is None:
                raise SchemaError(f"{path}: a new block store needs the genesis hash")
            connection.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)", (_META_GENESIS, genesis_hash)
            )
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return genesis_hash
    stored = meta.get(_META_GENESIS)
    if not isinstance(stored, bytes) or len(stored) != HASH_BYTES:
        raise SchemaError(f"{path}: stored genesis hash {stored!r} is not {HASH_BYTES} bytes")
    if genesis_hash is not None and genesis_hash != stored:
        raise SchemaError(
            f"{path}: store of genesis {stored.hex()}, not of genesis {genesis_hash.hex()}"
        )
    return stored


def _check_version(connection: sqlite3.Connection, path: Path) -> None:
    """Refuse, in one line naming both versions, a store of another schema version. A file
    without tables is new; schema version 1 kept its version in `meta`, not `user_version`."""
    version = int(connection.execute("PRAGMA user_version").fetchone()[0])
    if version == SCHEMA_VERSION:
        return
    tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if version == 0 and tables == 0:
        return  # a new file
    found: object = version
    if version == 0:
        has_meta = connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        row = (
            connection.execute("SELECT value FROM meta WHERE key = ?", (_META_VERSION,)).fetchone()
            if has_meta
            else None
        )
        found = "unknown" if row is None else row[0]
    raise SchemaError(
        f"{path}: block store of schema version {found}, but this build reads schema version "
        f"{SCHEMA_VERSION} only (no migration: rebuild the store by catching up from peers)"
    )


def encode_body(
    commands: Sequence[bytes],
    times_ns: Sequence[int],
    events: Sequence[Sequence[bytes]],
    compression: int = BODY_COMPRESSION,
) -> bytes:
    """A block's blob: its commands, their times and each command's events (the format is
    at `BODY_PLAIN`), plain or zlib-compressed (`compression`). O(bytes)."""
    count = len(commands)
    flat = [event for produced in events for event in produced]
    head = struct.pack(
        f"<I{count}q{count}I{count}I{len(flat)}I",
        count,
        *times_ns,
        *map(len, commands),
        *map(len, events),
        *map(len, flat),
    )
    data = b"".join((head, *commands, *flat))
    if compression == BODY_ZLIB:
        return bytes((BODY_ZLIB,)) + zlib.compress(data, ZLIB_LEVEL)
    return bytes((BODY_PLAIN,)) + data


def decode_body(
    height: int, body: bytes
) -> tuple[tuple[bytes, ...], tuple[int, ...], tuple[tuple[bytes, ...], ...]]:
    """(commands, times, events per command) of a blob written by `encode_body`, either
    encoding. Raises `StoreCorruptError` naming the height if it does not decode to exactly
    its length. O(bytes)."""
    try:
        if body[:1] == bytes((BODY_ZLIB,)):
            data = zlib.decompress(body[1:])
        elif body[:1] == bytes((BODY_PLAIN,)):
            data = body[1:]
        else:
            raise StoreCorruptError(height, f"body encoding {body[:1].hex()!r} unknown")
        (count,) = struct.unpack_from("<I", data, 0)
        offset = 4
        times = struct.unpack_from(f"<{count}q", data, offset)
        offset += 8 * count
        lengths = struct.unpack_from(f"<{2 * count}I", data, offset)
        offset += 8 * count
        command_lengths, event_counts = lengths[:count], lengths[count:]
        event_total = sum(event_counts)
        event_lengths = struct.unpack_from(f"<{event_total}I", data, offset)
        offset += 4 * event_total
    except (zlib.error, struct.error, MemoryError) as error:
        raise StoreCorruptError(height, f"body does not decode: {error}") from None
    if offset + sum(command_lengths) + sum(event_lengths) != len(data):
        raise StoreCorruptError(
            height,
            f"body of {len(data)} bytes, its lengths say "
            f"{offset + sum(command_lengths) + sum(event_lengths)}",
        )
    ends = list(accumulate(command_lengths, initial=offset))
    commands = tuple(data[ends[i] : ends[i + 1]] for i in range(count))
    ends = list(accumulate(event_lengths, initial=ends[-1]))
    flat = [data[ends[i] : ends[i + 1]] for i in range(event_total)]
    bounds = list(accumulate(event_counts, initial=0))
    events = tuple(tuple(flat[bounds[i] : bounds[i + 1]]) for i in range(count))
    return commands, times, events


def _block(row: Sequence[object]) -> tuple[Block, tuple[tuple[bytes, ...], ...]]:
    """A stored block row (height, hash, header, signature, body, ...) read and checked."""
    height = _int(row[0])
    header = _header(height, _bytes(row[1]), _bytes(row[2]))
    commands, times, events = decode_body(height, _bytes(row[4]))
    if len(commands) != header.command_count:
        raise StoreCorruptError(
            height, f"{len(commands)} commands, header command_count {header.command_count}"
        )
    root = merkle_root(commands)
    if root != header.commands_root:
        raise StoreCorruptError(
            height,
            f"commands hash to {root.hex()}, not the header's commands_root "
            f"{header.commands_root.hex()}",
        )
    block = Block(header=header, commands=commands, times_ns=times, signature=_bytes(row[3]))
    return block, events


def _checked_table(height: int, table: str) -> str:
    if not _TABLE_NAME.fullmatch(table) or table in _CORE_TABLES:
        raise StoreError(f"block {height}: indexer table name {table!r} refused")
    return table


def _insert(height: int, table: str, rows: Sequence[Row]) -> str:
    """The INSERT statement for `rows` of `table`, all of one width."""
    width = len(rows[0]) if rows else 1
    if width == 0 or len(set(map(len, rows))) > 1:
        raise StoreError(f"block {height}: indexer rows of {table!r} differ in width")
    return f"INSERT INTO {table} VALUES ({', '.join('?' * width)})"


def _header(height: int, stored_hash: bytes, data: bytes) -> BlockHeader:
    header = _parse(height, "header", data, parse_header)
    if header.height != height or header.hash != stored_hash:
        raise StoreCorruptError(
            height,
            f"header of height {header.height} hashes to {header.hash.hex()}, "
            f"not {stored_hash.hex()}",
        )
    return header


def _certificate(height: int, header_hash: bytes, data: bytes) -> QuorumCertificate:
    certificate = _parse(height, "certificate", data, parse_certificate)
    if certificate.height != height or certificate.header_hash != header_hash:
        raise StoreCorruptError(
            height,
            f"certificate for height {certificate.height} header "
            f"{certificate.header_hash.hex()}, stored for {header_hash.hex()}",
        )
    return certificate


def _parse(
    height: int,
    what: str,
    data: bytes,
    parser: Callable[[object], Parsed | MalformedBlockError],
) -> Parsed:
    try:
        value = parse_canonical(data)
    except CanonicalError as error:
        raise StoreCorruptError(height, f"{what}: {error}") from None
    parsed = parser(value)
    if isinstance(parsed, MalformedBlockError):
        raise StoreCorruptError(height, f"{what}: {parsed}")
    return parsed


def _evidence(row: Sequence[object]) -> Evidence:
    return Evidence(
        seq=_int(row[0]),
        id=_bytes(row[1]),
        height=_int(row[2]),
        kind=str(row[3]),
        payload=_bytes(row[4]),
    )


def _int(value: object) -> int:
    assert type(value) is int, value
    return value


def _bytes(value: object) -> bytes:
    assert isinstance(value, bytes), value
    return value
