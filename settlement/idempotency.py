"""The idempotency window of a family of commands (the supply chain's, the corporate actions').

Each sender's command ids must increase. The window remembers the last `maximum` outcomes, so a
repeated command gets its original events back and a forgotten one is refused as too old,
never applied twice. Its state is two kinds of entities for the state commitment: a sender's
last id (`last_tag`, sender) and a remembered outcome (`outcome_tag`, sender, command id), the
latter as JSON-ready rows of the command and its events.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterator, Mapping
from enum import IntEnum
from typing import Any

Key = tuple[Any, ...]


class OutcomeWindow:
    """Senders' last ids and the last `maximum` outcomes, oldest first. O(1) per command."""

    def __init__(
        self,
        *,
        maximum: int,
        last_tag: str,
        outcome_tag: str,
        commands: Mapping[str, type],
        events: Mapping[str, type],
    ) -> None:
        assert maximum > 0, f"bad {maximum=}"
        self.maximum = maximum
        self.last_tag = last_tag
        self.outcome_tag = outcome_tag
        self._commands = commands
        self._events = events
        self._last_ids: dict[str, int] = {}
        # (sender, command id) -> (sequence, command, events), oldest first
        self._outcomes: dict[tuple[str, int], tuple[int, Any, tuple[Any, ...]]] = {}
        self._seq = 0

    def remembered(self, sender: str, command_id: int) -> tuple[Any, tuple[Any, ...]] | None:
        """The command and events remembered for (sender, command id), if any."""
        outcome = self._outcomes.get((sender, command_id))
        return None if outcome is None else (outcome[1], outcome[2])

    def too_old(self, sender: str, command_id: int) -> bool:
        """Whether `command_id` is not above the sender's last."""
        return command_id <= self._last_ids.get(sender, 0)

    def remember(self, sender: str, command: Any, events: list[Any]) -> list[Key]:
        """Remember a command's outcome, forgetting the oldest past `maximum`; return the
        entity keys changed."""
        key = (sender, command.command_id)
        self._seq += 1
        self._outcomes[key] = (self._seq, command, tuple(events))
        self._last_ids[sender] = command.command_id
        changed: list[Key] = [(self.last_tag, sender), (self.outcome_tag, *key)]
        if len(self._outcomes) > self.maximum:
            oldest = next(iter(self._outcomes))
            del self._outcomes[oldest]
            changed.append((self.outcome_tag, *oldest))
        return changed

    def is_empty(self) -> bool:
        return not self._outcomes and not self._last_ids

    def entity(self, key: Key) -> list[Any] | None:
        """The row of a last id or an outcome entity, None if it does not exist."""
        if key[0] == self.last_tag:
            last = self._last_ids.get(key[1])
            return None if last is None else [self.last_tag, key[1], last]
        assert key[0] == self.outcome_tag, key
        outcome = self._outcomes.get((key[1], key[2]))
        if outcome is None:
            return None
        seq, command, events = outcome
        return [
            self.outcome_tag,
            key[1],
            key[2],
            seq,
            command_row(command),
            [*map(event_row, events)],
        ]

    def keys(self) -> Iterator[Key]:
        """The senders' last-id keys, then the outcomes' keys oldest first."""
        yield from ((self.last_tag, sender) for sender in self._last_ids)
        yield from ((self.outcome_tag, *key) for key in self._outcomes)

    def restore_row(self, row: list[Any]) -> None:
        """Take back one row of `entity`."""
        if row[0] == self.last_tag:
            self._last_ids[row[1]] = row[2]
            return
        assert row[0] == self.outcome_tag, row
        _, sender, command_id, seq, command, events = row
        self._outcomes[sender, command_id] = (
            seq,
            _command_from_row(self._commands, command),
            tuple(_event_from_row(self._events, event) for event in events),
        )
        self._seq = max(self._seq, seq)

    def check(self, sender_of: Callable[[Any], str]) -> None:
        """Assert: bounded; each outcome is its sender's command, at or below its last id."""
        assert len(self._outcomes) <= self.maximum, len(self._outcomes)
        for (sender, command_id), (_, command, _) in self._outcomes.items():
            assert sender_of(command) == sender and command.command_id == command_id
            assert command_id <= self._last_ids[sender]


# -- rows of commands and events ------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, IntEnum):
        return int(value)
    return list(value) if isinstance(value, tuple) else value


def command_row(command: Any) -> dict[str, Any]:
    """A dataclass command as a JSON-ready dict, its type's name under "type"."""
    row: dict[str, Any] = {"type": type(command).__name__}
    for field in dataclasses.fields(command):
        row[field.name] = _plain(getattr(command, field.name))
    return row


def event_row(event: Any) -> list[Any]:
    """A record event as a JSON-ready list, its type's name first."""
    return [type(event).__name__, *[_plain(value) for value in event]]


def _typed(hint: Any, value: Any) -> Any:
    if isinstance(hint, type) and issubclass(hint, IntEnum):
        return hint(value)
    if typing.get_origin(hint) is tuple:
        return tuple(value)
    return value


def _command_from_row(types: Mapping[str, type], row: dict[str, Any]) -> Any:
    cls = types[row["type"]]
    hints = typing.get_type_hints(cls)
    return cls(
        **{name: _typed(hints[name], value) for name, value in row.items() if name != "type"}
    )


def _event_from_row(types: Mapping[str, type], row: list[Any]) -> Any:
    cls = types[row[0]]
    hints = typing.get_type_hints(cls)
    fields: tuple[str, ...] = cls._fields  # type: ignore[attr-defined]
    return cls(*[_typed(hints[name], value) for name, value in zip(fields, row[1:], strict=True)])
