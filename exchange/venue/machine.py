"""The Venue as the ledger's state machine: a command's raw canonical bytes in, JSON events out."""

from __future__ import annotations

from typing import Any, Final

import orjson

from exchange.venue import wire
from exchange.venue.commitment import StateCommitment
from exchange.venue.types import Event
from exchange.venue.venue import Venue
from exchange.venue.wire_fast import events_bytes, parse_venue_command
from ledger.canonical import canonical_bytes

# The one error for bytes that are not JSON: fixed text, so that it does not depend on the JSON
# parser's version (its own messages may change between releases).
NOT_JSON: Final = canonical_bytes(
    wire.WireError(field=None, message="command is not JSON").to_dict()
)


class VenueMachine:
    """Adapts `Venue` to `ledger.machine.StateMachine`. Each command's bytes are parsed once
    (orjson, then `exchange.venue.wire_fast`); a command that does not parse becomes an `error`
    event naming the field, the same on every node, and changes nothing. The venue takes no
    time from the ledger (its time enters through commands such as `begin_day`), so a
    command's sequencing time does not change the state: it is in the command's receipt.

    `wire_fast` gives exactly the results of `wire.parse_command` and
    `canonical_bytes(wire.event_to_dict(event))`. The state hash is the incremental multiset
    commitment of `exchange.venue.commitment`: each `apply` records what changed, and
    `state_hash` (once per block) costs O(what changed)."""

    __slots__ = ("_venue_apply", "commitment", "venue")

    def __init__(self, venue: Venue) -> None:
        self.venue = venue
        self.commitment = StateCommitment(venue)
        self._venue_apply = venue.apply

    def apply(self, command: bytes, time_ns: int) -> list[bytes]:
        return self.apply_parsed(command, time_ns)[2]

    def apply_observed(self, command: bytes, time_ns: int) -> tuple[list[Event], list[bytes]]:
        """`apply`, also giving the venue's events as objects (none for a command that does not
        parse): for an in-process driver (the simulator) that reacts to each command's trades
        and cancels at once, without decoding the bytes again. Same effect on the state."""
        _, events, data = self.apply_parsed(command, time_ns)
        return events, data

    def apply_parsed(self, command: bytes, time_ns: int) -> tuple[Any, list[Event], list[bytes]]:
        """`apply`, also giving the parsed command (None if it did not parse) and the events
        as objects: what the exchange's gateway folds into execution reports."""
        try:
            value = orjson.loads(command)
        except orjson.JSONDecodeError:
            return None, [], [NOT_JSON]
        parsed = parse_venue_command(value)
        if type(parsed) is wire.WireError:
            return None, [], [canonical_bytes(parsed.to_dict())]
        events = self._venue_apply(parsed)
        return parsed, events, events_bytes(events)

    def state_hash(self) -> bytes:
        return self.commitment.digest()
