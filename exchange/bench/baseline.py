"""The bare baseline matcher that the matching benchmark compares the engine against.

A minimal price-time matcher: a SortedDict of price -> deque per side and nothing else that
it could do without. No validation, no events, no self-trade prevention, no phases. The one
index it keeps (order id -> order) is the least that cancel and amend need to find an order.
It also serves as the flow generator's shadow book, to know which orders are still live.
"""

from __future__ import annotations

from collections import deque

from sortedcontainers import SortedDict

# Baseline messages, plain tuples:
#   ("place", order_id, is_buy, price_or_None, quantity, is_ioc)
#   ("cancel", order_id)
#   ("amend", order_id, price, quantity)
BaselineMessage = tuple[object, ...]


class BaselineBook:
    __slots__ = ("asks", "bids", "live")

    def __init__(self) -> None:
        self.bids: SortedDict[int, deque[list[int]]] = SortedDict()  # key: -price
        self.asks: SortedDict[int, deque[list[int]]] = SortedDict()  # key: price
        self.live: dict[int, list[int]] = {}  # id -> [id, is_buy, price, quantity]

    def run(self, messages: list[BaselineMessage]) -> None:
        place, cancel, amend = self.place, self.cancel, self.amend
        for message in messages:
            kind = message[0]
            if kind == "place":
                place(*message[1:])  # type: ignore[arg-type]
            elif kind == "cancel":
                cancel(message[1])  # type: ignore[arg-type]
            else:
                amend(*message[1:])  # type: ignore[arg-type]

    def place(
        self, order_id: int, is_buy: bool, price: int | None, quantity: int, is_ioc: bool
    ) -> None:
        limit = price if price is not None else (10**12 if is_buy else 0)
        order = [order_id, int(is_buy), limit, quantity]
        self._match(order)
        if order[3] and price is not None and not is_ioc:
            self._rest(order)

    def cancel(self, order_id: int) -> None:
        order = self.live.pop(order_id, None)
        if order is not None:
            self._unrest(order)

    def amend(self, order_id: int, price: int, quantity: int) -> None:
        order = self.live.get(order_id)
        if order is None:
            return
        if price == order[2] and quantity < order[3]:
            order[3] = quantity
            return
        del self.live[order_id]
        self._unrest(order)
        order[2], order[3] = price, quantity
        self._match(order)
        if order[3]:
            self._rest(order)

    def _match(self, order: list[int]) -> None:
        is_buy = order[1]
        book = self.asks if is_buy else self.bids
        limit = order[2]
        live = self.live
        while order[3] and book:
            key, queue = book.peekitem(0)
            if (key > limit) if is_buy else (-key < limit):
                return
            while order[3] and queue:
                maker = queue[0]
                quantity = min(order[3], maker[3])
                order[3] -= quantity
                maker[3] -= quantity
                if not maker[3]:
                    queue.popleft()
                    del live[maker[0]]
            if not queue:
                del book[key]

    def _rest(self, order: list[int]) -> None:
        book, key = (self.bids, -order[2]) if order[1] else (self.asks, order[2])
        queue = book.get(key)
        if queue is None:
            queue = book[key] = deque()
        queue.append(order)
        self.live[order[0]] = order

    def _unrest(self, order: list[int]) -> None:
        book, key = (self.bids, -order[2]) if order[1] else (self.asks, order[2])
        queue = book[key]
        queue.remove(order)
        if not queue:
            del book[key]

    def resting(self) -> list[tuple[int, int, int, int]]:
        """(order_id, is_buy, price, quantity) of resting orders, bids then asks, priority order."""
        rows: list[tuple[int, int, int, int]] = []
        for book in (self.bids, self.asks):
            for queue in book.values():
                rows.extend((o[0], o[1], o[2], o[3]) for o in queue)
        return rows
