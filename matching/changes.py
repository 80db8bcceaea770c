"""What the matching engine changed since its reader last drained it: the order ids and books
whose state is different, told by the engine as it changes them.

The engine keeps no such record until a reader asks for one (`MatchingEngine.track_changes`,
which the state commitment calls): an engine nobody follows pays one test per change and
grows nothing. A reader drains the record once per block, so it holds at most what one block
changed.
"""

from __future__ import annotations


class OrderChanges:
    """`orders`: ids of the orders that were added, changed or taken off a book (a done order
    is no longer in `MatchingEngine.order_index`); `queued`: those that joined the back of
    their price level's queue, in the order they joined (an order that joins twice is at its
    last place); `books`: symbols whose book was added or changed phase."""

    __slots__ = ("books", "orders", "queued")

    def __init__(self) -> None:
        self.orders: set[int] = set()
        self.queued: dict[int, None] = {}
        self.books: set[str] = set()

    def clear(self) -> None:
        self.orders.clear()
        self.queued.clear()
        self.books.clear()
