"""What the ledger replicates: any deterministic state machine over sequenced commands.

A command enters as its raw canonical bytes (exactly the bytes the exchange sequenced and the
block carries: the leaf of the commands tree, hashed as received and never re-encoded) with its
sequencing time in ns; the machine parses it once and returns the canonical bytes of each event
it produced (`ledger.canonical`), encoded once. Together they make the command's receipt, the
leaf of the receipts tree (`ledger.block.receipt_leaf`). The ledger never looks inside either.
A state machine only has to be deterministic: the same commands with the same times from the
same state give the same events and state hash on every node. Invalid commands (bytes that do
not parse, or parse to no command) must come back as events (a rejection or an error, whose
text must not depend on the parser's version), never as an exception, since every node must
agree on them too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ledger.block import (
    Block,
    BlockHeader,
    DivergedError,
    Receipt,
    check_execution,
    receipts_root,
    sign_block,
)
from ledger.canonical import canonical_bytes
from ledger.keys import PrivateKey
from ledger.merkle import leaf_hash, root_of_leaf_hashes


class StateMachine(Protocol):
    def apply(self, command: bytes, time_ns: int) -> list[bytes]:
        """Apply one command, given as its raw canonical bytes, sequenced at `time_ns`; the
        canonical bytes of each event it produced."""
        ...

    def state_hash(self) -> bytes:
        """A 32-byte commitment to the whole state after the commands applied so far. Called
        once per block, so it should cost O(what changed), not O(state)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Execution:
    """What executing a block's commands produced: what the header commits to."""

    events: tuple[Sequence[bytes], ...]  # per command, the canonical bytes of its events
    receipts_root: bytes
    state_hash: bytes

    @property
    def event_count(self) -> int:
        return sum(map(len, self.events))

    def receipts(self, commands: Sequence[bytes], times_ns: Sequence[int]) -> list[Receipt]:
        """The receipts of `commands` (the ones executed) with these events. O(commands)."""
        return [
            Receipt(index, time_ns, command, produced)
            for index, (command, time_ns, produced) in enumerate(
                zip(commands, times_ns, self.events, strict=True)
            )
        ]


def encode_commands(commands: Sequence[Mapping[str, Any]]) -> list[bytes]:
    """The canonical bytes of each command: what a block carries. Raises `CanonicalError`
    naming the path for a command without a canonical form. O(size)."""
    return [canonical_bytes(command) for command in commands]


def execute(machine: StateMachine, commands: Sequence[bytes], times_ns: Sequence[int]) -> Execution:
    """Apply `commands` in order at their times; the events of each, the receipts root and the
    state hash after. O(commands + events)."""
    apply = machine.apply
    events = [apply(command, time_ns) for command, time_ns in zip(commands, times_ns, strict=True)]
    return executed(commands, times_ns, events, machine.state_hash())


def executed(
    commands: Sequence[bytes],
    times_ns: Sequence[int],
    events: Sequence[Sequence[bytes]],
    state_hash: bytes,
) -> Execution:
    """The execution of commands already applied one by one: each command's events, in order,
    and the machine's state hash after the last (what `execute` builds once it has applied
    them). O(commands + event bytes)."""
    return Execution(
        events=tuple(events),
        receipts_root=receipts_root(commands, times_ns, events),
        state_hash=state_hash,
    )


def re_execute(machine: StateMachine, block: Block) -> tuple[Execution, DivergedError | None]:
    """What a member does with a checked block: execute its commands at their times, compare
    the receipts root and the state hash with the header."""
    execution = execute(machine, block.commands, block.times_ns)
    divergence = check_execution(
        block.header, receipts_root=execution.receipts_root, state_hash=execution.state_hash
    )
    return execution, divergence


def propose(
    machine: StateMachine,
    key: PrivateKey,
    *,
    proposer: int,
    height: int,
    parent_hash: bytes,
    time_ns: int,
    commands: Sequence[bytes],
    times_ns: Sequence[int] | None = None,
) -> tuple[Block, Execution]:
    """What the proposer does with a batch of sequenced commands (their canonical bytes, see
    `encode_commands`): execute them on its own machine at their times (`times_ns`; by default
    every command at the block's `time_ns`), build the header that commits to commands,
    receipts and state, and sign it. The caller keeps the times monotonic and at most
    `time_ns` (`check_times`). O(commands + events)."""
    times = [time_ns] * len(commands) if times_ns is None else times_ns
    execution = execute(machine, commands, times)
    block = seal(key, proposer=proposer, height=height, parent_hash=parent_hash,
                 time_ns=time_ns, commands=commands, times_ns=times,
                 execution=execution)  # fmt: skip
    return block, execution


def seal(
    key: PrivateKey,
    *,
    proposer: int,
    height: int,
    parent_hash: bytes,
    time_ns: int,
    commands: Sequence[bytes],
    times_ns: Sequence[int],
    execution: Execution,
) -> Block:
    """What `propose` does after executing: the signed block of `commands` at `times_ns`, whose
    `execution` the proposer computed as it applied them (see `executed`). O(commands)."""
    header = BlockHeader(
        height=height,
        parent_hash=parent_hash,
        time_ns=time_ns,
        proposer=proposer,
        command_count=len(commands),
        commands_root=root_of_leaf_hashes([leaf_hash(data) for data in commands]),
        receipts_root=execution.receipts_root,
        state_hash=execution.state_hash,
    )
    return sign_block(key, header, commands, times_ns)
