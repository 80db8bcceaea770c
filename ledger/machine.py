"""What the ledger replicates: any deterministic state machine over canonical commands.

The ledger stores commands as canonical JSON values and commits to the events they produce and
to the state after them; it never looks inside either. A state machine returns each event as
its canonical bytes (`ledger.canonical`), encoded once: they are the leaves of the events tree
and the rows the store keeps. A state machine only has to be
deterministic: the same commands from the same state give the same events and state hash on
every node. Invalid commands must come back as events (a rejection or an error), never as an
exception, since every node must agree on them too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ledger.block import Block, BlockHeader, DivergedError, check_execution, sign_block
from ledger.canonical import canonical_bytes
from ledger.keys import PrivateKey
from ledger.merkle import leaf_hash, root_of_leaf_hashes


class StateMachine(Protocol):
    def apply(self, command: Mapping[str, Any]) -> list[bytes]:
        """Apply one canonical command; the canonical bytes of each event it produced."""
        ...

    def state_hash(self) -> bytes:
        """A 32-byte commitment to the whole state after the commands applied so far. Called
        once per block, so it should cost O(what changed), not O(state)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Execution:
    """What executing a block's commands produced: what the header commits to."""

    events: tuple[bytes, ...]  # canonical bytes, the leaves of the events tree
    events_root: bytes
    state_hash: bytes

    @property
    def event_count(self) -> int:
        return len(self.events)


def execute(machine: StateMachine, commands: Sequence[Mapping[str, Any]]) -> Execution:
    """Apply `commands` in order; the events, their Merkle root and the state hash after.
    O(commands + events)."""
    events: list[bytes] = []
    apply = machine.apply
    for command in commands:
        events.extend(apply(command))
    return executed(events, machine.state_hash())


def re_execute(
    machine: StateMachine, header: BlockHeader, commands: Sequence[Mapping[str, Any]]
) -> tuple[Execution, DivergedError | None]:
    """What a member does with a proposed block: execute it, compare with the header."""
    execution = execute(machine, commands)
    divergence = check_execution(
        header,
        events_root=execution.events_root,
        event_count=execution.event_count,
        state_hash=execution.state_hash,
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
    commands: Sequence[Mapping[str, Any]],
    command_bytes: Sequence[bytes] | None = None,
) -> tuple[Block, Execution]:
    """What the proposer does with a batch of sequenced commands: execute them on its own
    machine, build the header that commits to commands, events and state, and sign it.
    `command_bytes`, when given, are the commands' canonical bytes (trusted), so that they
    are not encoded again. Raises `CanonicalError` for a command without a canonical form.
    O(commands + events)."""
    # encoded before executing: a command without a canonical form changes nothing
    encoded = (
        [canonical_bytes(command) for command in commands]
        if command_bytes is None
        else command_bytes
    )
    execution = execute(machine, commands)
    block = seal(key, proposer=proposer, height=height, parent_hash=parent_hash,
                 time_ns=time_ns, commands=commands, execution=execution,
                 command_bytes=encoded)  # fmt: skip
    return block, execution


def executed(events: Sequence[bytes], state_hash: bytes) -> Execution:
    """The execution of commands already applied one by one (by a driver that needed each
    command's events at once, such as the in-process simulator): their events in order and the
    machine's state hash after the last. O(events)."""
    return Execution(
        events=tuple(events),
        events_root=root_of_leaf_hashes([leaf_hash(event) for event in events]),
        state_hash=state_hash,
    )


def seal(
    key: PrivateKey,
    *,
    proposer: int,
    height: int,
    parent_hash: bytes,
    time_ns: int,
    commands: Sequence[Mapping[str, Any]],
    execution: Execution,
    command_bytes: Sequence[bytes] | None = None,
) -> Block:
    """What `propose` does after executing: the signed block of `commands`, whose `execution`
    the proposer computed as it applied them (see `executed`); `command_bytes` as for
    `propose`. O(commands)."""
    if command_bytes is None:
        encoded: Sequence[bytes] = [canonical_bytes(command) for command in commands]
    else:
        assert len(command_bytes) == len(commands), "one encoding per command"
        encoded = command_bytes
    header = BlockHeader(
        height=height,
        parent_hash=parent_hash,
        time_ns=time_ns,
        commands_root=root_of_leaf_hashes([leaf_hash(data) for data in encoded]),
        command_count=len(commands),
        events_root=execution.events_root,
        event_count=execution.event_count,
        state_hash=execution.state_hash,
        proposer=proposer,
    )
    return sign_block(key, header, commands, encoded)
