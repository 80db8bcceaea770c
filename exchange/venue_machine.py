"""The Venue as the ledger's state machine: canonical JSON commands in, JSON events out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exchange import wire
from exchange.venue import Venue
from ledger.canonical import canonical_bytes


class VenueMachine:
    """Adapts `Venue` to `ledger.machine.StateMachine`. A command that does not parse becomes an
    `error` event naming the field, the same on every node, and changes nothing."""

    __slots__ = ("venue",)

    def __init__(self, venue: Venue) -> None:
        self.venue = venue

    def apply(self, command: Mapping[str, Any]) -> list[bytes]:
        parsed = wire.parse_command(command, wire.VENUE_PARSERS)
        if isinstance(parsed, wire.WireError):
            return [canonical_bytes(parsed.to_dict())]
        return [canonical_bytes(wire.event_to_dict(event)) for event in self.venue.apply(parsed)]

    def state_hash(self) -> bytes:
        return bytes.fromhex(self.venue.state_hash())
