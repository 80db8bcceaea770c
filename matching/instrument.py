"""Instrument rules: tick, lot and the daily price limits around the reference price."""

from __future__ import annotations

from dataclasses import dataclass

from matching.types import RejectReason

PRICE_MAX = 10**12  # in price units (fen): far above any listed price, far below int64
QUANTITY_MAX = 10**10  # shares in one order
PRICE_LIMIT_PCT_MAX = 99


@dataclass(frozen=True, slots=True, kw_only=True)
class Instrument:
    """A listed instrument. Prices are integers in the price unit (fen for A-shares).

    `price_limit_pct` is the daily limit in whole percent around `reference_price` (the previous
    close): 10 for the main boards, 20 for growth boards, None for no limit.
    """

    symbol: str
    tick_size: int
    lot: int
    reference_price: int
    price_limit_pct: int | None

    @property
    def lower_limit(self) -> int:
        """The lowest acceptable price: the limit rounded half up, then up to a tick."""
        if self.price_limit_pct is None:
            return self.tick_size
        raw = _round_half_up(self.reference_price * (100 - self.price_limit_pct), 100)
        lowest = -(-raw // self.tick_size) * self.tick_size
        return max(lowest, self.tick_size)

    @property
    def upper_limit(self) -> int:
        """The highest acceptable price: the limit rounded half up, then down to a tick."""
        if self.price_limit_pct is None:
            return PRICE_MAX - PRICE_MAX % self.tick_size
        raw = _round_half_up(self.reference_price * (100 + self.price_limit_pct), 100)
        return raw - raw % self.tick_size


def instrument_reason(instrument: Instrument) -> RejectReason | None:
    """Why an instrument definition is unusable, or None."""
    if not instrument.symbol or len(instrument.symbol) > 32:
        return RejectReason.INVALID_INSTRUMENT
    if not 0 < instrument.tick_size <= PRICE_MAX or not 0 < instrument.lot <= QUANTITY_MAX:
        return RejectReason.INVALID_INSTRUMENT
    if not 0 < instrument.reference_price <= PRICE_MAX:
        return RejectReason.INVALID_INSTRUMENT
    pct = instrument.price_limit_pct
    if pct is not None and not 0 < pct <= PRICE_LIMIT_PCT_MAX:
        return RejectReason.INVALID_INSTRUMENT
    if instrument.lower_limit > instrument.upper_limit:
        return RejectReason.INVALID_INSTRUMENT
    return None


def _round_half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)
