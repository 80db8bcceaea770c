"""Audit a node's whole block store from the genesis: what `jinlian verify` runs.

For each height in order: the stored bytes parse and hash to what is stored beside them; the
block passes `check_block` (proposer, signature, parent link, time, commands root, command
times); re-executing its commands at their times on a machine built fresh from the genesis
reproduces the header's receipts root and state hash (`check_execution`); the events stored in
the block's blob are exactly the re-executed ones, command by command; and a stored certificate
carries a quorum of the genesis voters' signatures over the header hash. With an indexer on the
store, the indexer's rows are rebuilt from every verified block, and the derived tables it keeps
(the venue's orders, trades, settlements, balance changes) must hold, at every height up to the
store's index watermark (`indexed_height`), exactly those rows, and no row at a height above the
watermark: a changed, missing or added row fails the audit naming the table, the row and the
height. Blocks above the watermark are not indexed yet: their rows are rebuilt (so an indexer
that fails on them fails the audit) but there is nothing stored to compare; the report gives the
watermark. The audit stops at the first failure and names its height. Generic: the state machine
and the indexer come from the caller.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ledger.block import Block, BlockHeader, Receipt, check_block, check_certificate
from ledger.keys import PublicKey
from ledger.machine import StateMachine, re_execute
from ledger.store import BlockStore, Row, StoreCorruptError, StoredBlock

ROW_CHARS_SHOWN_MAX: Final = 240


@dataclass(frozen=True, slots=True, kw_only=True)
class Authority:
    """Who may sign, from the genesis."""

    genesis_hash: bytes
    proposer: int
    proposer_key: PublicKey
    voters: Mapping[int, PublicKey]
    quorum: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditReport:
    """A store that checked out, or the first failure (`failure`, at `failed_height`; 0 when
    it is not tied to a block). The counts cover the blocks checked before the failure."""

    blocks: int
    commands: int
    events: int
    certified_height: int
    derived_rows: int  # rows of the indexer's tables checked against the rebuild
    indexed_height: int = 0  # the store's index watermark: derived rows compared up to it
    state_hash: bytes | None  # after the last good block; None with no block
    failure: str | None = None
    failed_height: int | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


def audit_store(store: BlockStore, authority: Authority, machine: StateMachine) -> AuditReport:
    """Check every stored block of `store` from height 1, re-executing on `machine`, which must
    be in the genesis state. Never raises for what is stored: corrupt bytes and failed checks
    come back as the report's failure. Reads one block at a time, so the failure reported is
    the lowest bad height. O(blocks + commands + events)."""
    audit = _Audit(authority, machine)
    try:
        audit.indexed_height = 0 if store.indexer is None else store.indexed_height()
    except sqlite3.Error as error:
        return audit.report(0, f"store unreadable: {error}")
    height = 1
    while True:
        try:
            page = store.blocks_from(height, 1)
            stored = page[0] if page else None
            tip = store.tip() if stored is None else None
        except StoreCorruptError as error:
            return audit.report(error.height, str(error))
        except sqlite3.Error as error:
            return audit.report(height, f"store unreadable: {error}")
        if stored is None:
            if tip is not None and tip[0] >= height:
                return audit.report(height, f"block {height} is missing below the tip {tip[0]}")
            # re-read: a running node may have indexed on, and rows move with the watermark
            try:
                indexed = store.indexed_height() if store.indexer is not None else 0
            except sqlite3.Error as error:
                return audit.report(height, f"store unreadable: {error}")
            orphan = _orphan_rows(store, audit.tables, min(height - 1, indexed))
            return audit.report(None, None) if orphan is None else audit.report(*orphan)
        failure = audit.check(store, stored)
        if failure is not None:
            return audit.report(height, failure)
        height += 1


class _Audit:
    def __init__(self, authority: Authority, machine: StateMachine) -> None:
        self.authority = authority
        self.machine = machine
        self.parent: BlockHeader | None = None
        self.blocks = self.commands = self.events = self.certified_height = 0
        self.derived_rows = 0
        self.indexed_height = 0
        self.tables: set[str] = set()  # the indexer's tables seen so far
        self.state_hash: bytes | None = None

    def check(self, store: BlockStore, stored: StoredBlock) -> str | None:
        """The first failure of one block, or None; advances the audit when it passes."""
        block, certificate = stored.block, stored.certificate
        authority, header = self.authority, block.header
        error = check_block(
            block,
            parent=self.parent,
            genesis_hash=authority.genesis_hash,
            proposer=authority.proposer,
            proposer_key=authority.proposer_key,
        )
        if error is not None:
            return str(error)
        execution, divergence = re_execute(self.machine, block)
        if divergence is not None:
            return str(divergence)
        mismatch = _first_difference(stored.events or (), execution.events)
        if mismatch is not None:
            return f"stored {mismatch}"
        receipts = execution.receipts(block.commands, block.times_ns)
        derived = self.check_derived(store, block, receipts)
        if derived is not None:
            return derived
        if certificate is not None:
            error = check_certificate(certificate, header, authority.voters, authority.quorum)
            if error is not None:
                return f"certificate: {_unprefixed(header.height, str(error))}"
            self.certified_height = header.height
        self.parent = header
        self.blocks += 1
        self.commands += header.command_count
        self.events += execution.event_count
        self.state_hash = execution.state_hash
        return None

    def check_derived(self, store: BlockStore, block: Block, receipts: list[Receipt]) -> str | None:
        """The first difference between the indexer's stored rows at this height and its
        rebuild from the verified block, or None; above the watermark, only the rebuild.
        O(rows of the block)."""
        if store.indexer is None:
            return None
        header = block.header
        try:
            rebuilt = store.indexer.rows(header.height, header, receipts)
        except Exception as error:  # the indexer's own failure on a verified block
            return f"indexer: {type(error).__name__}: {error}"
        self.tables.update(rebuilt)
        if header.height > self.indexed_height:
            return None
        for table in sorted(rebuilt):
            try:
                stored = _rows_at(store, table, header.height)
            except sqlite3.Error as error:
                return f"table {table} unreadable: {error}"
            difference = _row_difference(stored, rebuilt[table])
            if difference is not None:
                return f"table {table}: {difference}"
            self.derived_rows += len(stored)
        return None

    def report(self, height: int | None, failure: str | None) -> AuditReport:
        return AuditReport(
            blocks=self.blocks,
            commands=self.commands,
            events=self.events,
            certified_height=self.certified_height,
            derived_rows=self.derived_rows,
            state_hash=self.state_hash,
            indexed_height=self.indexed_height,
            failure=_unprefixed(height, failure),
            failed_height=None if failure is None else (height or 0),
        )


def _unprefixed(height: int | None, message: str | None) -> str | None:
    """The message without its leading "block <height>: ", since the report names the height."""
    prefix = f"block {height}: "
    if message is not None and message.startswith(prefix):
        return message[len(prefix) :]
    return message


def _first_difference(
    stored: Sequence[Sequence[bytes]], executed: Sequence[Sequence[bytes]]
) -> str | None:
    """The first difference between the stored events and the re-executed ones, per command:
    the receipts root covers them, so this names where a changed blob differs."""
    if len(stored) != len(executed):
        return f"events of {len(stored)} commands, re-execution gave {len(executed)}"
    for command, (mine, theirs) in enumerate(zip(stored, executed, strict=True)):
        if len(mine) != len(theirs):
            return f"command {command}: {len(mine)} events, re-execution gave {len(theirs)}"
        for index, (event, again) in enumerate(zip(mine, theirs, strict=True)):
            if event != again:
                return (
                    f"command {command} event {index} {event[:80]!r} is not the re-executed "
                    f"{again[:80]!r}"
                )
    return None


def _rows_at(store: BlockStore, table: str, height: int) -> list[tuple[Any, ...]]:
    """The stored rows of one derived table at `height`: every derived table names its block
    in a `height` column (`ledger.store.Indexer`). `table` is one the indexer returned."""
    return store.read(f"SELECT * FROM {table} WHERE height = ?", (height,))


def _row_difference(stored: list[tuple[Any, ...]], rebuilt: Sequence[Row]) -> str | None:
    """How the stored rows differ from the rebuilt ones, as multisets, or None."""
    extra = Counter(stored)
    extra.subtract(Counter(tuple(row) for row in rebuilt))
    added = sorted((row for row, count in extra.items() if count > 0), key=repr)
    lost = sorted((row for row, count in extra.items() if count < 0), key=repr)
    if added and lost:
        return f"stored row {_shown(added[0])} is not the rebuilt {_shown(lost[0])}"
    if added:
        return f"stored row {_shown(added[0])} is not in the rebuild from the block"
    if lost:
        return f"rebuilt row {_shown(lost[0])} is not stored"
    return None


def _orphan_rows(store: BlockStore, tables: set[str], tip: int) -> tuple[int, str] | None:
    """(height, failure) for a derived row outside the heights 1..tip (the stored and indexed
    ones), or None."""
    for table in sorted(tables):
        try:
            rows = store.read(
                f"SELECT height, * FROM {table} WHERE height < 1 OR height > ? "
                "ORDER BY height LIMIT 1",
                (tip,),
            )
        except sqlite3.Error as error:
            return 0, f"table {table} unreadable: {error}"
        if rows:
            height, *row = rows[0]
            shown = _shown(tuple(row))
            return int(height), (
                f"table {table}: stored row {shown} is at no stored block or above the index "
                f"watermark {tip}"
            )
    return None


def _shown(row: tuple[Any, ...]) -> str:
    text = repr(row)
    return text if len(text) <= ROW_CHARS_SHOWN_MAX else text[: ROW_CHARS_SHOWN_MAX - 3] + "..."
