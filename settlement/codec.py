"""Commands and events as JSON-ready rows and back, for snapshots (and the wire if wanted).

A row is {"type": ClassName, field: value, ...} with enums as their int values.
"""

from __future__ import annotations

import dataclasses
import typing
from enum import IntEnum
from typing import Any

from settlement import commands, events
from settlement.commands import Command
from settlement.events import Event

_COMMAND_TYPES: dict[str, type[Any]] = {cls.__name__: cls for cls in typing.get_args(Command)}
_EVENT_TYPES: dict[str, type[Any]] = {cls.__name__: cls for cls in typing.get_args(Event)}


def to_row(value: Command | Event) -> dict[str, Any]:
    """A JSON-ready dict of a command or event. O(fields)."""
    row: dict[str, Any] = {"type": type(value).__name__}
    if dataclasses.is_dataclass(value):  # commands
        pairs = [(field.name, getattr(value, field.name)) for field in dataclasses.fields(value)]
    else:  # events: NamedTuple records
        pairs = list(zip(value._fields, value, strict=True))
    for name, item in pairs:
        row[name] = int(item) if isinstance(item, IntEnum) else item
    return row


def command_from_row(row: dict[str, Any]) -> Command:
    """The command a `to_row` row describes. Raises KeyError on an unknown type name."""
    command: Command = _from_row(_COMMAND_TYPES[row["type"]], row)
    return command


def event_from_row(row: dict[str, Any]) -> Event:
    """The event a `to_row` row describes. Raises KeyError on an unknown type name."""
    event: Event = _from_row(_EVENT_TYPES[row["type"]], row)
    return event


def _from_row(cls: type[Any], row: dict[str, Any]) -> Any:
    enum_fields = _enum_fields(cls)
    values = {
        name: enum_fields[name](value) if name in enum_fields else value
        for name, value in row.items()
        if name != "type"
    }
    return cls(**values)


_ENUM_FIELDS: dict[type[Any], dict[str, type[IntEnum]]] = {}


def _enum_fields(cls: type[Any]) -> dict[str, type[IntEnum]]:
    fields = _ENUM_FIELDS.get(cls)
    if fields is None:
        hints = typing.get_type_hints(cls, vars(commands) | vars(events))
        fields = {
            name: hint
            for name, hint in hints.items()
            if isinstance(hint, type) and issubclass(hint, IntEnum)
        }
        _ENUM_FIELDS[cls] = fields
    return fields
