"""The Venue as the ledger's state machine: canonical JSON commands in, JSON events out."""

from __future__ import annotations

from typing import Any

from exchange import wire
from exchange.state_commitment import StateCommitment
from exchange.venue import Venue
from ledger.canonical import canonical_bytes


class VenueMachine:
    """Adapts `Venue` to `ledger.machine.StateMachine`. A command that does not parse becomes an
    `error` event naming the field, the same on every node, and changes nothing. The state hash
    is the incremental multiset commitment of `exchange.state_commitment`."""

    __slots__ = ("commitment", "venue")

    def __init__(self, venue: Venue) -> None:
        self.venue = venue
        self.commitment = StateCommitment(venue)

    def apply(self, command: dict[str, Any]) -> list[bytes]:
        parsed = wire.parse_command(command, wire.VENUE_PARSERS)
        if isinstance(parsed, wire.WireError):
            return [canonical_bytes(parsed.to_dict())]
        events = self.venue.apply(parsed)
        self.commitment.touch(parsed, events)
        return [canonical_bytes(wire.event_to_dict(event)) for event in events]

    def state_hash(self) -> bytes:
        return self.commitment.digest()
