"""Per-instrument fee schedules and the one rounding rule.

Rounding: each fee component of each trade is rounded DOWN to the fen (floor of
notional * bps / 10_000). Floor is subadditive and monotone, so the commission on a whole order
at its limit price is at least the sum of the commissions of any split of that order into fills
at that price or better: a buy lock of `buy_lock_amount(limit, quantity)` always covers every
fill, and a pre-funded trade can never fail for a fen of rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

from settlement.types import BPS_DENOMINATOR, BPS_MAX


@dataclass(frozen=True, slots=True, kw_only=True)
class FeeSchedule:
    """Commission in basis points charged to each side, stamp duty in basis points on the seller.

    Commission is credited to `fee_account`, stamp duty to `tax_account` (in the instrument's cash
    asset). An account may be "" only while its rate is zero.
    """

    commission_bps: int = 0
    stamp_duty_bps: int = 0
    fee_account: str = ""
    tax_account: str = ""


ZERO_FEES = FeeSchedule()


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeAmounts:
    """The cash of one trade. buyer_pays = seller_receives + 2 * commission + stamp_duty."""

    notional: int
    commission: int  # charged to each side
    stamp_duty: int  # charged to the seller
    buyer_pays: int
    seller_receives: int


def rates_valid(schedule: FeeSchedule) -> bool:
    """Whether both rates lie in 0..BPS_MAX. O(1)."""
    return 0 <= schedule.commission_bps <= BPS_MAX and 0 <= schedule.stamp_duty_bps <= BPS_MAX


def fee(notional: int, bps: int) -> int:
    """One fee component in fen: notional * bps / 10_000 rounded down. O(1)."""
    assert notional >= 0 and 0 <= bps <= BPS_MAX, f"bad fee input {notional=} {bps=}"
    return notional * bps // BPS_DENOMINATOR


def trade_amounts(schedule: FeeSchedule, price: int, quantity: int) -> TradeAmounts:
    """The cash amounts of a trade of `quantity` at `price` (fen per share). O(1)."""
    notional = price * quantity
    commission = fee(notional, schedule.commission_bps)
    stamp_duty = fee(notional, schedule.stamp_duty_bps)
    return TradeAmounts(
        notional=notional,
        commission=commission,
        stamp_duty=stamp_duty,
        buyer_pays=notional + commission,
        seller_receives=notional - commission - stamp_duty,
    )
