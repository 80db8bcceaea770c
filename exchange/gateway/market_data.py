"""Public market data from the venue's books, published once per stored block.

Per instrument, the L2 book (up to `BOOK_LEVELS` aggregated price levels a side) has a sequence
number. A subscriber gets a `book_snapshot` (levels, `seq`), then `book` updates carrying
`prev_seq` and `seq` and the levels that changed (`[price, quantity]`, quantity 0 = the level
is gone). A client that sees `prev_seq` differ from the last `seq` it applied has missed an
update and asks for a new snapshot. Every snapshot and update carries `checksum`: CRC-32 of
the top 10 levels after it, so a client can also check that its rebuilt book is right:

    crc32("b1_price:b1_qty:a1_price:a1_qty:b2_price:..." as ASCII), bids and asks interleaved
    best first, a side that has run out of levels simply skipped.

`bbo` (best bid and offer with sizes) goes out when it changes; `trades` lists a block's
trades of the instrument; `phase` gives the trading phase and, during a call auction, the
indicative uncross price and volume, whenever either changes. `bbo` and `trades` messages
carry `seq`, per instrument and channel, from 1 and contiguous, so a client sees a gap: a
`bbo` is the whole best bid and offer, so the next one repairs it; the last
`TRADES_HELD_MAX` trades of an instrument are held, and `trades_since` gives the messages a
client missed. Pure apart from reading the venue it is given.
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from exchange.venue.venue import Venue
from matching.events import TradeExecuted

BOOK_LEVELS: Final = 50
TRADES_HELD_MAX: Final = 10_000  # per instrument: the newest `trades` messages holding these
CHECKSUM_LEVELS: Final = 10
CHANNELS: Final = ("book", "bbo", "trades", "phase")

Levels = list[tuple[int, int]]


def checksum(bids: Levels, asks: Levels) -> int:
    """CRC-32 of the top `CHECKSUM_LEVELS` levels, bids and asks interleaved, best first."""
    parts: list[str] = []
    for index in range(CHECKSUM_LEVELS):
        for side in (bids, asks):
            if index < len(side):
                price, quantity = side[index]
                parts += (str(price), str(quantity))
    return zlib.crc32(":".join(parts).encode())


def book_levels(venue: Venue, symbol: str, levels: int = BOOK_LEVELS) -> tuple[Levels, Levels]:
    bids, asks = venue.matching.depth(symbol, levels)
    return [(p, q) for p, q, _ in bids], [(p, q) for p, q, _ in asks]


def _changes(before: Levels, after: Levels) -> list[list[int]]:
    old, new = dict(before), dict(after)
    changed = [[price, quantity] for price, quantity in after if old.get(price) != quantity]
    changed += [[price, 0] for price in old if price not in new]
    return changed


@dataclass(slots=True)
class _Published:
    seq: int = 0
    bids: Levels = field(default_factory=list)
    asks: Levels = field(default_factory=list)
    bbo: tuple[int | None, int, int | None, int] = (None, 0, None, 0)
    phase: tuple[str, int | None, int] = ("", None, 0)
    bbo_seq: int = 0  # of the last `bbo` message
    trades_seq: int = 0  # of the last `trades` message
    trades: deque[dict[str, Any]] = field(default_factory=deque)  # the newest messages
    trades_held: int = 0  # trades in `trades`: at most TRADES_HELD_MAX, but for the newest


class MarketData:
    """What has been published per instrument, and the messages a block adds."""

    def __init__(self, venue: Venue, *, trades_held_max: int = TRADES_HELD_MAX) -> None:
        assert trades_held_max > 0, f"bad {trades_held_max=}"
        self.venue = venue
        self.trades_held_max = trades_held_max
        self.published: dict[str, _Published] = {}
        for symbol in venue.matching.symbols():
            self._publish(symbol)

    def _publish(self, symbol: str) -> list[dict[str, Any]]:
        """Bring `symbol`'s published state up to the venue's book; the messages that says."""
        state = self.published.get(symbol)
        first = state is None
        if state is None:
            state = self.published[symbol] = _Published()
        messages: list[dict[str, Any]] = []
        bids, asks = book_levels(self.venue, symbol)
        if bids != state.bids or asks != state.asks or first:
            changes_bids, changes_asks = _changes(state.bids, bids), _changes(state.asks, asks)
            previous, state.seq = state.seq, state.seq + 1
            state.bids, state.asks = bids, asks
            messages.append({"type": "book", "symbol": symbol, "prev_seq": previous,
                             "seq": state.seq, "bids": changes_bids, "asks": changes_asks,
                             "checksum": checksum(bids, asks)})  # fmt: skip
        bbo = (
            bids[0][0] if bids else None,
            bids[0][1] if bids else 0,
            asks[0][0] if asks else None,
            asks[0][1] if asks else 0,
        )
        if bbo != state.bbo or first:
            state.bbo = bbo
            state.bbo_seq += 1
            messages.append(_bbo_message(symbol, bbo, state.bbo_seq))
        book = self.venue.matching.book(symbol)
        phase = book.phase.name.lower()
        price, volume = (None, 0)
        if book.phase.is_auction:
            price, volume, _ = book.indicative()
        if (phase, price, volume) != state.phase or first:
            state.phase = (phase, price, volume)
            messages.append({"type": "phase", "symbol": symbol, "phase": phase,
                             "indicative_price": price, "indicative_volume": volume})  # fmt: skip
        return messages

    def block(self, symbols: Iterable[str], trades: list[TradeExecuted]) -> list[dict[str, Any]]:
        """The messages for one stored block that touched `symbols` and made `trades`."""
        messages: list[dict[str, Any]] = []
        by_symbol: dict[str, list[dict[str, Any]]] = {}
        for trade in trades:
            by_symbol.setdefault(trade.symbol, []).append({
                "trade_id": trade.trade_id, "price": trade.price, "quantity": trade.quantity,
                "aggressor": None if trade.aggressor is None else trade.aggressor.name.lower(),
            })  # fmt: skip
        known = set(self.venue.matching.symbols())
        for symbol in sorted(set(symbols) & known):
            messages += self._publish(symbol)
            if symbol in by_symbol:
                messages.append(self._trades(symbol, by_symbol[symbol]))
        return messages

    def _trades(self, symbol: str, trades: list[dict[str, Any]]) -> dict[str, Any]:
        """The next `trades` message of `symbol`, held for `trades_since`."""
        state = self.published[symbol]
        state.trades_seq += 1
        message = {"type": "trades", "symbol": symbol, "seq": state.trades_seq, "trades": trades}
        held = state.trades
        held.append(message)
        state.trades_held += len(trades)
        while state.trades_held > self.trades_held_max and len(held) > 1:
            state.trades_held -= len(held.popleft()["trades"])
        return message

    def seq(self, symbol: str, channel: str) -> int:
        """The `seq` of the last `bbo` or `trades` message of `symbol` (0: none yet)."""
        state = self.published[symbol]
        return state.bbo_seq if channel == "bbo" else state.trades_seq

    def trades_since(self, symbol: str, seq: int) -> list[dict[str, Any]] | None:
        """The held `trades` messages of `symbol` from `seq` on ([] if `seq` is past the last),
        or None if some of them are no longer held."""
        state = self.published[symbol]
        held = state.trades
        first = held[0]["seq"] if held else state.trades_seq + 1
        if seq < first:
            return None
        return list(held)[seq - first :]

    def snapshot(self, symbol: str) -> dict[str, Any]:
        """The published book of `symbol` (KeyError if not listed)."""
        state = self.published.get(symbol)
        if state is None:
            self._publish(symbol)
            state = self.published[symbol]
        return {"type": "book_snapshot", "symbol": symbol, "seq": state.seq,
                "bids": [list(level) for level in state.bids],
                "asks": [list(level) for level in state.asks],
                "checksum": checksum(state.bids, state.asks)}  # fmt: skip

    def current(self, symbol: str, channel: str) -> dict[str, Any] | None:
        """The latest message of a non-book channel, as a new subscriber's first message."""
        state = self.published.get(symbol)
        if state is None:
            return None
        if channel == "bbo":
            return _bbo_message(symbol, state.bbo, state.bbo_seq)
        if channel == "phase":
            phase, price, volume = state.phase
            return {"type": "phase", "symbol": symbol, "phase": phase,
                    "indicative_price": price, "indicative_volume": volume}  # fmt: skip
        return None


def _bbo_message(
    symbol: str, bbo: tuple[int | None, int, int | None, int], seq: int
) -> dict[str, Any]:
    bid, bid_size, ask, ask_size = bbo
    return {"type": "bbo", "symbol": symbol, "seq": seq, "bid": bid, "bid_size": bid_size,
            "ask": ask, "ask_size": ask_size}  # fmt: skip
