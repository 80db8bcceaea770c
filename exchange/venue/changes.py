"""What the venue itself changed since its reader last drained it, beside what its matching
and settlement engines record of their own (`matching.changes`, `settlement.changes`).

The venue keeps no such record until a reader asks for one (`Venue.track_changes`, which the
state commitment calls): a venue nobody follows pays one test per change and grows nothing.
A reader drains the record once per block, so it holds at most what one block changed.
"""

from __future__ import annotations


class VenueChanges:
    """`rules`: symbols listed; `today`: (account, symbol) whose shares bought today or bought
    today but not yet delivered (NET_NET) changed, cleared ones included; `outcomes`: (actor,
    command id) of the outcomes the venue remembered (the oldest are forgotten as new ones
    come: a reader finds those in `Venue.outcomes`)."""

    __slots__ = ("outcomes", "rules", "today")

    def __init__(self) -> None:
        self.rules: set[str] = set()
        self.today: set[tuple[str, str]] = set()
        self.outcomes: set[tuple[str, int]] = set()

    def clear(self) -> None:
        self.rules.clear()
        self.today.clear()
        self.outcomes.clear()
