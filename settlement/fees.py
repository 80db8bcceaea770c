"""Per-instrument fee schedules and the venue's money rules, one function each.

- `fee` is the one fee rounding: each fee component of each trade is rounded DOWN to the fen
  (floor of notional * bps / 10_000).
- `trade_cash` is the cash of a trade's DvP: what the buyer pays, what the seller receives, the
  commission charged to each side and the stamp duty charged to the seller, built on `fee`.
  Every settlement path (the `SettleTrade` command, `SettlementEngine.settle_trade` and the
  venue's taker fills) takes a trade's cash from here.
- `buy_requirement` is what a buy order holds (or locks) while it is live: per share, the
  limit price plus the commission on one share rounded UP to the fen. It is linear in the
  quantity, so each fill takes exactly its share and the rest stays exact for the open
  quantity, and it covers every fill: a fill's commission rounds down and its price is at most
  the limit, so a fill of q shares pays at most q * (limit + ceil(limit * bps / 10_000)).
  Every funding path of the venue (place, amend, cancel, a fee change, fills as taker and as
  maker, net-mode locks) calls it.

- `accrued_interest` is the one rule of a bond's interest: ACT/365F, rounded DOWN to the fen,
  of `quantity` units whose accrual (face value x coupon rate in bps x days, per unit) is
  given. `trade_cash` adds it to a bond trade's cash (the buyer pays it, the seller receives
  it); `buy_requirement` funds its bound; coupons and redemptions
  (`settlement.corporate_actions`) pay it. A share's accrual is 0. `unit_interest_up` is its
  per-unit bound, rounded up: what `buy_requirement` holds per unit and `Bond.supply_max`
  allows a redemption per unit.

Hot paths call these by their imported names rather than writing a formula again (not through
a local bound to one: the compiled build would box its arguments); tests patch each function
and see every path that uses it follow (tests/test_one_rule.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from settlement.types import BPS_DENOMINATOR, BPS_MAX

DAYS_PER_YEAR: Final = 365  # ACT/365F: actual days over a fixed 365-day year
ACCRUAL_DENOMINATOR: Final = BPS_DENOMINATOR * DAYS_PER_YEAR  # an accrual is face x bps x days


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


def accrued_interest(quantity: int, accrual: int) -> int:
    """Interest in fen on `quantity` units of a bond, each accruing `accrual` (face value in
    fen x coupon rate in bps x days), ACT/365F: rounded down to the fen, once for the whole
    quantity. A trade's accrued interest, a holder's coupon and its last coupon at maturity
    are each this. O(1)."""
    return quantity * accrual // ACCRUAL_DENOMINATOR


def trade_cash(
    schedule: FeeSchedule, price: int, quantity: int, accrual: int = 0
) -> tuple[int, int, int, int]:
    """The cash of the DvP of a trade of `quantity` at `price` (fen per share; a bond's clean
    price per unit): (buyer pays, seller receives, commission charged to each side, stamp
    duty charged to the seller), with buyer pays = seller receives + 2 * commission + stamp
    duty. A bond's `accrual` (its registry's, per unit, for the day) adds its
    `accrued_interest` to both: the buyer pays it to the seller. Fees are on the clean
    notional. A tuple, not a record: the venue calls it once per trade. O(1)."""
    notional = price * quantity
    commission = fee(notional, schedule.commission_bps)
    stamp_duty = fee(notional, schedule.stamp_duty_bps)
    if accrual:
        notional += accrued_interest(quantity, accrual)
    return notional + commission, notional - commission - stamp_duty, commission, stamp_duty


def trade_amounts(
    schedule: FeeSchedule, price: int, quantity: int, accrual: int = 0
) -> TradeAmounts:
    """`trade_cash` as a record, with the (clean) notional. O(1)."""
    pays, receives, commission, stamp_duty = trade_cash(schedule, price, quantity, accrual)
    return TradeAmounts(
        notional=price * quantity,
        commission=commission,
        stamp_duty=stamp_duty,
        buyer_pays=pays,
        seller_receives=receives,
    )


def unit_interest_up(accrual: int) -> int:
    """The interest of one unit accruing `accrual` (face value x bps x days), rounded UP to the
    fen: the per-unit bound a resting buy holds (`buy_requirement`) and a redemption may pay
    (`Bond.supply_max`), at a bond's `accrual_max`. O(1)."""
    # (a + d - 1) // d, not -(-a // d): see `buy_requirement`.
    return (accrual + ACCRUAL_DENOMINATOR - 1) // ACCRUAL_DENOMINATOR


def buy_requirement(price: int, quantity: int, commission_bps: int, accrual: int = 0) -> int:
    """Cash a buy of `quantity` at limit `price` must hold while it is live: per share, the
    price plus the commission on one share rounded up to the fen (see the module docstring for
    why it covers every fill). At most one fen per share more than the exact commission.
    A bond's `accrual` is the most any of its days accrues per unit (its registry's
    `accrual_max`): its interest on one unit, rounded up, is held too, so the requirement
    stays linear and covers the `accrued_interest` of every fill. O(1).
    """
    # Rounded up as (a + d - 1) // d, not -(-a // d): the same for a >= 0, and the compiled
    # build multiplies two small non-negative ints inline but a negative one in its slow path.
    per_share = price + (price * commission_bps + BPS_DENOMINATOR - 1) // BPS_DENOMINATOR
    if accrual:
        per_share += unit_interest_up(accrual)
    return quantity * per_share
