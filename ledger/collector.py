"""A node process's garbage-collection policy: no full collection while the node works.

CPython frees almost everything by reference counting; its cycle collector runs by generation,
and a collection of the oldest generation traverses every tracked container the process holds,
with every entry of every dict and list. A node's venue and its indexes are such containers
(hundreds of thousands of entries), so a full collection took 260-530 ms of wall time in
`bench ledger` (docs/performance.md), holding the event loop while votes and certificates wait:
one such pause is a finality p99 over 100 ms. The same runs found 0 to 6 objects of garbage in
those full collections: the nodes make almost no long-lived cycles.

So, every `FREEZE_INTERVAL_S`, the collector collects the young generations (what was allocated
since, a small and bounded amount of work) and then freezes what survived (`gc.freeze`): frozen
objects are never traversed again, so the automatic collections of the oldest generation see
only what is newer than the last second, and stay short. What a freeze would leak is a cycle
that becomes garbage after its objects were frozen; a full collection of everything (frozen
objects included) reclaims it, and runs only when the node has been idle (its height unchanged)
for `FULL_IDLE_S`, at most every `FULL_INTERVAL_S`. Its count, the objects it found and its
pause are in the node's `/health` (`gc`), so an operator sees a leak the policy would hide.

Process-wide: only a node's own process (`jinlian node`, `jinlian exchange`) runs it, never a
node built inside another program (a test, the simulator), whose objects are not the node's.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

FREEZE_INTERVAL_S: Final = 1.0
FULL_IDLE_S: Final = 5.0  # a full collection waits for the node's height to stand this long
FULL_INTERVAL_S: Final = 600.0  # and runs at most this often


@dataclass(slots=True)
class Collector:
    """The policy's state and figures. `clock` is monotonic seconds (a test passes its own)."""

    clock: Callable[[], float] = time.monotonic
    freezes: int = 0
    young_pause_max_ms: float = 0.0  # the longest young collection and freeze
    full_collections: int = 0
    full_found: int = 0  # objects of garbage the full collections found, in all
    full_pause_last_ms: float = 0.0
    last_full: float | None = None  # clock of the last full collection
    _height: int = -1
    _height_since: float = 0.0

    def start(self) -> None:
        """Once the node has replayed its store: collect everything, then freeze it (what the
        start-up built is long-lived: the venue, the genesis, the modules)."""
        self.full()

    def tick(self, height: int) -> None:
        """Collect the young generations and freeze the survivors; a full collection as well if
        the node's `height` has stood for FULL_IDLE_S and none ran for FULL_INTERVAL_S."""
        now = self.clock()
        if height != self._height:
            self._height, self._height_since = height, now
        started = time.perf_counter()
        gc.collect(1)
        gc.freeze()
        self.freezes += 1
        self.young_pause_max_ms = max(
            self.young_pause_max_ms, (time.perf_counter() - started) * 1e3
        )
        idle = now - self._height_since >= FULL_IDLE_S
        due = self.last_full is None or now - self.last_full >= FULL_INTERVAL_S
        if idle and due:
            self.full()

    def full(self) -> int:
        """Collect everything, frozen objects included, then freeze what is left; the objects of
        garbage found."""
        started = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        self.full_pause_last_ms = (time.perf_counter() - started) * 1e3
        self.full_collections += 1
        self.full_found += found
        self.last_full = self.clock()
        return found

    async def run(self, height: Callable[[], int]) -> None:
        """Tick every FREEZE_INTERVAL_S with the node's height. Runs until cancelled."""
        while True:
            await asyncio.sleep(FREEZE_INTERVAL_S)
            self.tick(height())

    def figures(self) -> dict[str, Any]:
        return {
            "frozen_objects": gc.get_freeze_count(),
            "freezes": self.freezes,
            "young_pause_max_ms": round(self.young_pause_max_ms, 2),
            "full_collections": self.full_collections,
            "full_found": self.full_found,
            "full_pause_last_ms": round(self.full_pause_last_ms, 2),
        }
