"""What the ledger replicates: any deterministic state machine over canonical commands.

The ledger stores commands as canonical JSON values and commits to the events they produce and
to the state after them; it never looks inside either. A state machine only has to be
deterministic: the same commands from the same state give the same events and state hash on
every node. Invalid commands must come back as events (a rejection or an error), never as an
exception, since every node must agree on them too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ledger.block import BlockHeader, DivergedError, check_execution, values_root


class StateMachine(Protocol):
    def apply(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        """Apply one canonical command; its events as canonical JSON values."""
        ...

    def state_hash(self) -> bytes:
        """SHA-256 of the whole state after the commands applied so far."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Execution:
    """What executing a block's commands produced: what the header commits to."""

    events: tuple[dict[str, Any], ...]
    events_root: bytes
    state_hash: bytes

    @property
    def event_count(self) -> int:
        return len(self.events)


def execute(machine: StateMachine, commands: Sequence[dict[str, Any]]) -> Execution:
    """Apply `commands` in order; the events, their Merkle root and the state hash after.
    O(commands + events)."""
    events: list[dict[str, Any]] = []
    for command in commands:
        events.extend(machine.apply(command))
    return Execution(
        events=tuple(events), events_root=values_root(events), state_hash=machine.state_hash()
    )


def re_execute(
    machine: StateMachine, header: BlockHeader, commands: Sequence[dict[str, Any]]
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
