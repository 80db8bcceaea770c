"""Commands, events, reasons and limits of bonds and corporate actions (coupons, redemption,
cash dividends).

Wire-stable like the rest of settlement: enum values are explicit and append-only, names go
on the wire lower-case. Commands are frozen dataclasses (the wire parser reads their fields'
types), events NamedTuples, as in `settlement.supply_chain_types`.

Both commands are a depository's: the member that issues the security's registry
(`Registry.issuer`) states a bond's terms or declares a dividend on a share. Coupons,
redemptions and dividends are paid by `begin_day`, not by a command.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

FACE_VALUE = 10_000  # fen: a unit is 100 yuan of face, so a price per 100 face is per unit
COUPON_BPS_MAX = 10_000  # 100% a year: anything above is a typo
COUPON_DAYS_MAX = 64  # semiannual coupons for 32 years (an array on the wire holds 64)
BONDS_MAX = 10_000
DIVIDENDS_MAX = 100_000  # every dividend ever declared (paid and failed ones stay)
DIVIDEND_PER_SHARE_MAX = 10**9  # fen: ten million yuan a share is a typo
PAYMENTS_KEPT = 1_000  # the latest payments (with every holder's row) kept for `check`
ACTION_OUTCOMES_MAX = 10_000  # remembered command outcomes (idempotency window)
DAY_MIN = 19000101
DAY_MAX = 99991231


class ActionRejectReason(IntEnum):
    """Why a corporate-action command was refused. Append only; the order in which they are
    checked is in docs/fixed_income.md."""

    COMMAND_ID_REUSED = 1  # a remembered id sent with different contents
    COMMAND_ID_TOO_OLD = 2  # not above the actor's last id
    UNKNOWN_ASSET = 3
    WRONG_ASSET_KIND = 4  # a cash asset
    NOT_AUTHORIZED = 5  # the actor does not issue the security's registry
    ALREADY_A_BOND = 6  # terms stated twice, or a dividend on a bond
    ALREADY_ISSUED = 7  # terms after units were issued
    NOT_GROSS = 8  # a bond must settle gross (model 1)
    UNKNOWN_ACCOUNT = 9  # the issuer or payer
    INVALID_FACE_VALUE = 10  # not FACE_VALUE
    INVALID_RATE = 11  # a coupon rate outside 0..COUPON_BPS_MAX
    INVALID_DAY = 12  # not a calendar date yyyymmdd
    INVALID_SCHEDULE = 13  # days out of order, too many coupon days
    DAY_PASSED = 14  # a maturity or record day before the current day
    INVALID_AMOUNT = 15  # a dividend per share outside 1..DIVIDEND_PER_SHARE_MAX
    CAPACITY_EXHAUSTED = 16
    ALREADY_LISTED = 17  # terms after the venue listed the security
    HAS_DIVIDENDS = 18  # terms for a security with dividends declared: a share


class PaymentKind(IntEnum):
    COUPON = 1
    REDEMPTION = 2  # face value plus the last coupon, against the units
    DIVIDEND = 3


class BondStatus(IntEnum):
    LIVE = 1
    REDEEMED = 2
    DEFAULTED = 3  # its redemption failed: the issuer could not pay


class DividendStatus(IntEnum):
    DECLARED = 1
    RECORDED = 2  # its holders of record are fixed
    PAID = 3
    FAILED = 4


# -- commands --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DefineBond:
    """State the terms of the security `bond` (defined in settlement, nothing issued yet) as a
    bond: `issuer`, the account that pays its coupons and redeems it; `face_value` in fen per
    unit; `coupon_bps` a year, ACT/365F from `start`; `coupon_days` (yyyymmdd, after `start`,
    before `maturity`, increasing); `maturity`, when the face value and the last coupon are
    paid against the units."""

    command_id: int
    actor: str
    bond: str
    issuer: str
    face_value: int
    coupon_bps: int
    start: int
    coupon_days: tuple[int, ...]
    maturity: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DeclareDividend:
    """A cash dividend of `amount_per_share` fen on `security`, paid by the account `payer` on
    `pay_day` to the holders of record at the end of `record_day`."""

    command_id: int
    actor: str
    security: str
    payer: str
    amount_per_share: int
    record_day: int
    pay_day: int


Command = DefineBond | DeclareDividend


# -- events ----------------------------------------------------------------------------------


class BondDefined(NamedTuple):
    bond: str
    issuer: str
    currency: str
    face_value: int
    coupon_bps: int
    start: int
    coupon_days: tuple[int, ...]
    maturity: int


class DividendDeclared(NamedTuple):
    dividend: int
    security: str
    payer: str
    currency: str
    amount_per_share: int
    record_day: int
    pay_day: int


class DividendRecorded(NamedTuple):
    """The holders of record are fixed: `holders` accounts holding `shares` in all."""

    dividend: int
    security: str
    record_day: int
    holders: int
    shares: int


class CouponPaid(NamedTuple):
    """`holder` held `quantity` units at the coupon day's start and got `amount` fen of
    `currency` from `issuer`."""

    bond: str
    day: int  # the coupon day
    issuer: str
    holder: str
    quantity: int
    amount: int
    currency: str


class BondRedeemed(NamedTuple):
    """`holder`'s `quantity` units went back to `issuer` and were retired, against
    `principal` (face) and `coupon` (the last period's) fen of `currency` (both 0 for the
    issuer's own units)."""

    bond: str
    issuer: str
    holder: str
    quantity: int
    principal: int
    coupon: int
    currency: str


class DividendPaid(NamedTuple):
    """`holder` held `shares` of record and got `amount` fen of `currency` from `payer`."""

    dividend: int
    security: str
    payer: str
    holder: str
    shares: int
    amount: int
    currency: str


class PaymentFailed(NamedTuple):
    """The payer could not pay a coupon, a redemption or a dividend (`kind`, `reference`: the
    bond or the dividend's id) on `day`: `due` in all, `available` of its cash (or frozen).
    One per holder, with what it was owed; nothing moved."""

    kind: PaymentKind
    reference: str
    day: int
    payer: str
    holder: str
    quantity: int
    amount: int
    due: int
    available: int


class ActionRejected(NamedTuple):
    """A refused corporate-action command (`command`: its wire type) and the value at fault."""

    command: str
    actor: str
    command_id: int
    reason: ActionRejectReason
    value: str


Event = (
    BondDefined
    | DividendDeclared
    | DividendRecorded
    | CouponPaid
    | BondRedeemed
    | DividendPaid
    | PaymentFailed
    | ActionRejected
)
