"""The venue's memory of the outcomes of settlement commands it extends.

Settlement answers a command (`actor`, `command_id`) it has seen with the original outcome and
changes nothing. The venue adds effects of its own to two settlement commands (a fee schedule
re-funds resting buys, a cycle updates T+1 holdings), so it remembers those outcomes too, by
the same key, and a replay gets the whole original answer. The memory is part of the venue's
state: it goes into snapshots as rows.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from enum import IntEnum
from typing import Any

from matching.events import Event as MatchingEvent
from settlement.codec import command_from_row, to_row
from settlement.commands import Command as SettlementCommand
from settlement.events import Event as SettlementEvent
from settlement.types import COMMAND_OUTCOMES_MAX

EVENT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (*typing.get_args(MatchingEvent), *typing.get_args(SettlementEvent))
}
Outcome = tuple[SettlementCommand, tuple[Any, ...]]


def _enum_of(hint: Any) -> type[IntEnum] | None:
    """The IntEnum a field holds, also when the field is optional."""
    if isinstance(hint, type) and issubclass(hint, IntEnum):
        return hint
    if isinstance(hint, types.UnionType):
        for arg in typing.get_args(hint):
            if isinstance(arg, type) and issubclass(arg, IntEnum):
                return arg
    return None


def event_row(event: Any) -> list[Any]:
    """[type name, field values...], enums as ints: JSON-ready."""
    return [type(event).__name__, *[int(v) if isinstance(v, IntEnum) else v for v in event]]


def event_from_row(row: list[Any]) -> Any:
    cls = EVENT_TYPES[row[0]]
    hints = typing.get_type_hints(cls)
    values = []
    for name, value in zip(cls._fields, row[1:], strict=True):
        enum = _enum_of(hints[name])
        values.append(enum(value) if enum is not None and value is not None else value)
    return cls(*values)


class Outcomes:
    """(actor, command id) -> (command, events), the most recent `outcomes_max` (the
    settlement engine's window, COMMAND_OUTCOMES_MAX unless a test makes it smaller)."""

    __slots__ = ("_max", "_rows")

    def __init__(self, outcomes_max: int = COMMAND_OUTCOMES_MAX) -> None:
        assert outcomes_max > 0, f"bad {outcomes_max=}"
        self._rows: dict[tuple[str, int], Outcome] = {}
        self._max = outcomes_max

    def get(self, command: SettlementCommand) -> tuple[Any, ...] | None:
        """The remembered events of exactly this command, or None."""
        outcome = self._rows.get((command.actor, command.command_id))
        return outcome[1] if outcome is not None and outcome[0] == command else None

    def remember(self, command: SettlementCommand, events: list[Any]) -> None:
        rows = self._rows
        rows[command.actor, command.command_id] = (command, tuple(events))
        if len(rows) > self._max:
            del rows[next(iter(rows))]

    def rows(self) -> Mapping[tuple[str, int], Outcome]:
        """(actor, command id) -> (command, events), oldest first, read-only."""
        return self._rows

    def snapshot(self) -> list[list[Any]]:
        return [
            [to_row(command), [event_row(event) for event in events]]
            for command, events in self._rows.values()
        ]

    @classmethod
    def restore(cls, rows: list[list[Any]], outcomes_max: int = COMMAND_OUTCOMES_MAX) -> Outcomes:
        outcomes = cls(outcomes_max)
        for command_row, event_rows in rows:
            command = command_from_row(command_row)
            events = tuple(event_from_row(row) for row in event_rows)
            outcomes._rows[command.actor, command.command_id] = (command, events)
        return outcomes
