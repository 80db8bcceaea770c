"""Audit a node's whole block store from the genesis: what `jinlian verify` runs.

For each height in order: the stored bytes parse and hash to what is stored beside them; the
block passes `check_block` (proposer, signature, parent link, time, commands root); re-executing
its commands on a machine built fresh from the genesis reproduces the header's event count,
events root and state hash (`check_execution`); the stored events are exactly the re-executed
ones; and a stored certificate carries a quorum of the genesis voters' signatures over the
header hash. The audit stops at the first failure and names its height. Generic: the state
machine comes from the caller.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass

from ledger.block import Block, BlockHeader, QuorumCertificate, check_block, check_certificate
from ledger.keys import PublicKey
from ledger.machine import StateMachine, re_execute
from ledger.store import BlockStore, StoreCorruptError


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
    height = 1
    while True:
        try:
            block = store.block(height)
            certificate = None if block is None else store.certificate(height)
            tip = store.tip() if block is None else None
        except StoreCorruptError as error:
            return audit.report(error.height, str(error))
        except sqlite3.Error as error:
            return audit.report(height, f"store unreadable: {error}")
        if block is None:
            if tip is not None and tip[0] >= height:
                return audit.report(height, f"block {height} is missing below the tip {tip[0]}")
            return audit.report(None, None)
        failure = audit.check(store, block, certificate)
        if failure is not None:
            return audit.report(height, failure)
        height += 1


class _Audit:
    def __init__(self, authority: Authority, machine: StateMachine) -> None:
        self.authority = authority
        self.machine = machine
        self.parent: BlockHeader | None = None
        self.blocks = self.commands = self.events = self.certified_height = 0
        self.state_hash: bytes | None = None

    def check(
        self, store: BlockStore, block: Block, certificate: QuorumCertificate | None
    ) -> str | None:
        """The first failure of one block, or None; advances the audit when it passes."""
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
        commands = [dict(command) for command in block.commands]
        execution, divergence = re_execute(self.machine, header, commands)
        if divergence is not None:
            return str(divergence)
        try:
            stored = store.events(header.height)
        except StoreCorruptError as corrupt:
            return str(corrupt)
        mismatch = _first_difference(stored or [], list(execution.events))
        if mismatch is not None:
            return f"stored {mismatch}"
        if certificate is not None:
            error = check_certificate(certificate, header, authority.voters, authority.quorum)
            if error is not None:
                return f"certificate: {_unprefixed(header.height, str(error))}"
            self.certified_height = header.height
        self.parent = header
        self.blocks += 1
        self.commands += header.command_count
        self.events += header.event_count
        self.state_hash = execution.state_hash
        return None

    def report(self, height: int | None, failure: str | None) -> AuditReport:
        return AuditReport(
            blocks=self.blocks,
            commands=self.commands,
            events=self.events,
            certified_height=self.certified_height,
            state_hash=self.state_hash,
            failure=_unprefixed(height, failure),
            failed_height=None if failure is None else (height or 0),
        )


def _unprefixed(height: int | None, message: str | None) -> str | None:
    """The message without its leading "block <height>: ", since the report names the height."""
    prefix = f"block {height}: "
    if message is not None and message.startswith(prefix):
        return message[len(prefix) :]
    return message


def _first_difference(stored: list[bytes], executed: list[bytes]) -> str | None:
    if len(stored) != len(executed):
        return f"{len(stored)} events, re-execution gave {len(executed)}"
    for index, (mine, theirs) in enumerate(zip(stored, executed, strict=True)):
        if mine != theirs:
            return f"event {index} {mine[:80]!r} is not the re-executed {theirs[:80]!r}"
    return None
