"""Bonds and corporate actions on the ledger: coupons, redemption at maturity, cash dividends.

A bond is a security registry (the depository issues its units into investors' accounts)
with terms (`DefineBond`): an issuer account that pays, a face value per unit, a coupon rate,
coupon days and a maturity. Each day it accrues interest ACT/365F (`settlement.fees`
`accrued_interest`, the one rule), which the venue adds to a trade's cash through the
registry's `accrual`. At `begin_day` of a coupon day its holders of record are paid from the
issuer's cash; at maturity every unit goes back to the issuer against its face value and the
last coupon, all or nothing. A cash dividend (`DeclareDividend`) fixes its holders of record
after its record day and pays them on its pay day.

Holders of record, on the day that fixes them (a coupon day, the maturity, the first day
after a record day), as that day begins: each account's units available, locked (a resting
sell's hold still belongs to the seller) and owed to it by the open cycle (a NET_NET buyer
whose delivery is pending is the holder; its seller is not), less what it owes; so trades
until the previous day's close count, and units bought on that day or later do not. The payer
itself is paid nothing for what it holds.

Pure: the same state and command give the same events. Every payment is all or nothing per
payer: if its available cash (in the security's currency) covers every holder's amount and it
is not frozen, each holder is paid once, else each holder's failure is reported and nothing
moves. Each holder's amount is `accrued_interest(units, accrual)` for coupons,
units x face + that for redemption, shares x amount per share for dividends; the payer pays
exactly their sum.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from settlement.corporate_action_types import (
    ACTION_OUTCOMES_MAX,
    BONDS_MAX,
    COUPON_BPS_MAX,
    COUPON_DAYS_MAX,
    DAY_MAX,
    DAY_MIN,
    DIVIDEND_PER_SHARE_MAX,
    DIVIDENDS_MAX,
    FACE_VALUE,
    PAYMENTS_KEPT,
    ActionRejected,
    ActionRejectReason,
    BondDefined,
    BondRedeemed,
    BondStatus,
    Command,
    CouponPaid,
    DeclareDividend,
    DefineBond,
    DividendDeclared,
    DividendPaid,
    DividendRecorded,
    DividendStatus,
    Event,
    PaymentFailed,
    PaymentKind,
)
from settlement.engine import SettlementEngine
from settlement.fees import accrued_interest, unit_interest_up
from settlement.idempotency import OutcomeWindow
from settlement.registry import Registry
from settlement.types import SUPPLY_MAX, AssetKind, SettlementMode

R = ActionRejectReason
Key = tuple[Any, ...]
Refusal = tuple[ActionRejectReason, object]
COMMAND_TYPES: dict[str, type] = {cls.__name__: cls for cls in typing.get_args(Command)}
EVENT_TYPES: dict[str, type] = {cls.__name__: cls for cls in typing.get_args(Event)}
Holding = tuple[str, int, int]  # holder, units, amount


def day_number(day: int) -> int:
    """Days since 1970-01-01 of the date yyyymmdd (asserted valid): the proleptic Gregorian
    calendar, counted in whole 400-year eras from 0000-03-01. O(1)."""
    assert is_date(day), day
    year, month, date = day // 10_000, day // 100 % 100, day % 100
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + date - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def is_date(day: int) -> bool:
    """Whether `day` is a calendar date yyyymmdd between DAY_MIN and DAY_MAX."""
    if not DAY_MIN <= day <= DAY_MAX:
        return False
    year, month, date = day // 10_000, day // 100 % 100, day % 100
    if not 1 <= month <= 12:
        return False
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return 1 <= date <= (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[month - 1]


def wire_name(cls: type) -> str:
    """`DefineBond` -> `define_bond`: the command's JSON type."""
    return "".join("_" + c.lower() if c.isupper() else c for c in cls.__name__).lstrip("_")


class Bond:
    """A bond's terms and where it stands: `paid` coupon days paid or failed so far."""

    __slots__ = (
        "bond",
        "coupon_bps",
        "coupon_days",
        "currency",
        "face_value",
        "issuer",
        "maturity",
        "paid",
        "start",
        "status",
    )

    def __init__(
        self,
        *,
        bond: str,
        issuer: str,
        currency: str,
        face_value: int,
        coupon_bps: int,
        start: int,
        coupon_days: tuple[int, ...],
        maturity: int,
        paid: int,
        status: BondStatus,
    ) -> None:
        self.bond = bond
        self.issuer = issuer
        self.currency = currency
        self.face_value = face_value
        self.coupon_bps = coupon_bps
        self.start = start
        self.coupon_days = coupon_days
        self.maturity = maturity
        self.paid = paid
        self.status = status

    def period_start(self, day: int) -> int:
        """The day interest accrues from on `day`: the last coupon day on or before it, else
        the start."""
        start = self.start
        for coupon_day in self.coupon_days:
            if coupon_day > day:
                break
            start = coupon_day
        return start

    def accrual(self, start: int, end: int) -> int:
        """What one unit accrues from `start` to `end` (face x bps x days, `accrued_interest`'s
        argument); 0 before the start."""
        if end <= start:
            return 0
        return self.face_value * self.coupon_bps * (day_number(end) - day_number(start))

    def supply_max(self) -> int:
        """The most units there may be: what a redemption pays for each (face and at most
        the longest period's coupon) times them stays within SUPPLY_MAX."""
        per_unit = self.face_value + unit_interest_up(self.accrual_max())
        return SUPPLY_MAX // per_unit

    def accrual_max(self) -> int:
        """The most one unit accrues in any period: the bound a resting buy holds."""
        days = (self.start, *self.coupon_days, self.maturity)
        return max(self.accrual(days[i], days[i + 1]) for i in range(len(days) - 1))

    def row(self) -> list[Any]:
        return [
            "fb",
            self.bond,
            self.issuer,
            self.currency,
            self.face_value,
            self.coupon_bps,
            self.start,
            list(self.coupon_days),
            self.maturity,
            self.paid,
            int(self.status),
        ]


class Dividend:
    __slots__ = (
        "amount_per_share",
        "currency",
        "dividend",
        "pay_day",
        "payer",
        "record",
        "record_day",
        "security",
        "status",
    )

    def __init__(
        self,
        *,
        dividend: int,
        security: str,
        payer: str,
        currency: str,
        amount_per_share: int,
        record_day: int,
        pay_day: int,
        status: DividendStatus,
        record: list[tuple[str, int]],
    ) -> None:
        self.dividend = dividend
        self.security = security
        self.payer = payer
        self.currency = currency
        self.amount_per_share = amount_per_share
        self.record_day = record_day
        self.pay_day = pay_day
        self.status = status
        self.record = record  # (holder, shares) of record, by holder

    def row(self) -> list[Any]:
        return [
            "fd",
            self.dividend,
            self.security,
            self.payer,
            self.currency,
            self.amount_per_share,
            self.record_day,
            self.pay_day,
            int(self.status),
            [[holder, shares] for holder, shares in self.record],
        ]


class Payment:
    """One coupon, redemption or dividend payment: who paid whom what, or failed. `rate`:
    the accrual per unit (coupon, redemption) or the amount per share (dividend)."""

    __slots__ = (
        "currency",
        "day",
        "debited",
        "kind",
        "paid",
        "payer",
        "payment",
        "rate",
        "reference",
        "rows",
    )

    def __init__(
        self,
        *,
        payment: int,
        kind: PaymentKind,
        reference: str,
        payer: str,
        currency: str,
        day: int,
        rate: int,
        paid: bool,
        debited: int,
        rows: list[Holding],
    ) -> None:
        self.payment = payment
        self.kind = kind
        self.reference = reference
        self.payer = payer
        self.currency = currency
        self.day = day
        self.rate = rate
        self.paid = paid
        self.debited = debited  # what the payer was debited: the rows' sum, or 0
        self.rows = rows

    def row(self) -> list[Any]:
        return [
            "fp",
            self.payment,
            int(self.kind),
            self.reference,
            self.payer,
            self.currency,
            self.day,
            self.rate,
            self.paid,
            self.debited,
            [list(row) for row in self.rows],
        ]


def amount_due(kind: PaymentKind, rate: int, units: int, face_value: int) -> int:
    """What a holder of `units` is owed: a coupon's `accrued_interest`, a redemption's face
    value plus it, a dividend's units x amount per share. O(1)."""
    if kind is PaymentKind.DIVIDEND:
        return units * rate
    coupon = accrued_interest(units, rate)
    return coupon + units * face_value if kind is PaymentKind.REDEMPTION else coupon


class CorporateActions:
    """Bonds' terms, dividends and the payments they made, over the settlement engine's
    registries. `apply` is the way in for commands; `begin_day` pays what is due."""

    def __init__(
        self,
        settlement: SettlementEngine,
        listed: Callable[[str], bool],
        *,
        outcomes_max: int = ACTION_OUTCOMES_MAX,
    ) -> None:
        """`listed(symbol)`: whether the venue lists the security (a bond's terms come before
        its listing, so that no resting order was funded without them)."""
        self.settlement = settlement
        self._listed = listed
        self._bonds: dict[str, Bond] = {}
        self._dividends: dict[int, Dividend] = {}
        self._payments: dict[int, Payment] = {}  # the latest PAYMENTS_KEPT, oldest first
        self._day = 0
        self._dividend_id_last = 0
        self._payment_id_last = 0
        self._window = OutcomeWindow(
            maximum=outcomes_max,
            last_tag="fy",
            outcome_tag="fw",
            commands=COMMAND_TYPES,
            events=EVENT_TYPES,
        )
        self._changes: set[Key] | None = None
        self._handlers: dict[type, Callable[[Any], list[Event] | Refusal]] = {
            DefineBond: self._define_bond,
            DeclareDividend: self._declare_dividend,
        }

    # -- the way in ------------------------------------------------------------------------

    def apply(self, command: Command) -> list[Event]:
        """Apply one command; return its events. A remembered (actor, command id) returns the
        original events (`command_id_reused` if the contents differ); an id not above the
        actor's last is `command_id_too_old`; then the command's own rules. O(1) but for a
        bond's coupon days (O(days))."""
        remembered = self._window.remembered(command.actor, command.command_id)
        if remembered is not None:
            if remembered[0] == command:
                return list(remembered[1])
            return [_rejected(command, R.COMMAND_ID_REUSED, command.command_id)]
        if self._window.too_old(command.actor, command.command_id):
            return [_rejected(command, R.COMMAND_ID_TOO_OLD, command.command_id)]
        outcome = self._handlers[type(command)](command)
        events: list[Event] = (
            [_rejected(command, *outcome)] if isinstance(outcome, tuple) else outcome
        )
        self._touch(("fz",), *self._window.remember(command.actor, command, events))
        return events

    def _touch(self, *keys: Key) -> None:
        if self._changes is not None:
            self._changes.update(keys)

    def _security(self, asset: str, actor: str) -> Registry | Refusal:
        """The security registry `actor` issues, or why not."""
        registry = self.settlement.registries().get(asset)
        if registry is None:
            return R.UNKNOWN_ASSET, asset
        if registry.kind is not AssetKind.SECURITY:
            return R.WRONG_ASSET_KIND, asset
        if registry.issuer != actor:
            return R.NOT_AUTHORIZED, actor
        return registry

    # -- bonds -----------------------------------------------------------------------------

    def _define_bond(self, command: DefineBond) -> list[Event] | Refusal:
        registry = self._security(command.bond, command.actor)
        if isinstance(registry, tuple):
            return registry
        refusal = self._terms_refusal(command, registry)
        if refusal is not None:
            return refusal
        bond = Bond(
            bond=command.bond,
            issuer=command.issuer,
            currency=registry.currency,
            face_value=command.face_value,
            coupon_bps=command.coupon_bps,
            start=command.start,
            coupon_days=command.coupon_days,
            maturity=command.maturity,
            paid=0,
            status=BondStatus.LIVE,
        )
        self._bonds[command.bond] = bond
        self._set_accrual(bond)
        self._touch(("fb", command.bond))
        return [
            BondDefined(
                bond=command.bond,
                issuer=command.issuer,
                currency=registry.currency,
                face_value=command.face_value,
                coupon_bps=command.coupon_bps,
                start=command.start,
                coupon_days=command.coupon_days,
                maturity=command.maturity,
            )
        ]

    def _terms_refusal(self, command: DefineBond, registry: Registry) -> Refusal | None:
        if command.bond in self._bonds:
            return R.ALREADY_A_BOND, command.bond
        if registry.issued:
            return R.ALREADY_ISSUED, f"{command.bond} issued {registry.issued}"
        if self._listed(command.bond):
            return R.ALREADY_LISTED, command.bond
        if any(d.security == command.bond for d in self._dividends.values()):
            return R.HAS_DIVIDENDS, command.bond
        if registry.mode is not SettlementMode.GROSS:
            return R.NOT_GROSS, registry.mode.name.lower()
        if self.settlement.broker_of(command.issuer) is None:
            return R.UNKNOWN_ACCOUNT, command.issuer
        if command.face_value != FACE_VALUE:
            return R.INVALID_FACE_VALUE, command.face_value
        if not 0 <= command.coupon_bps <= COUPON_BPS_MAX:
            return R.INVALID_RATE, command.coupon_bps
        for day in (command.start, *command.coupon_days, command.maturity):
            if not is_date(day):
                return R.INVALID_DAY, day
        days = (command.start, *command.coupon_days, command.maturity)
        if len(command.coupon_days) > COUPON_DAYS_MAX or any(
            days[i] >= days[i + 1] for i in range(len(days) - 1)
        ):
            return R.INVALID_SCHEDULE, " < ".join(str(day) for day in days[:8])
        if command.maturity <= self._day:
            return R.DAY_PASSED, command.maturity
        if len(self._bonds) >= BONDS_MAX:
            return R.CAPACITY_EXHAUSTED, BONDS_MAX
        return None

    def _set_accrual(self, bond: Bond) -> None:
        """The registry's accrual for the current day (`trade_cash` adds its interest) and
        its bound (`buy_requirement` holds it): derived, so not state of their own."""
        registry = self.settlement.registry(bond.bond)
        live = bond.status is BondStatus.LIVE
        registry.supply_max = bond.supply_max()
        registry.accrual_max = bond.accrual_max() if live else 0
        day = self._day
        registry.accrual = bond.accrual(bond.period_start(day), day) if live else 0

    # -- dividends -------------------------------------------------------------------------

    def _share_supply_max(self, security: str) -> int:
        """While a dividend on `security` waits for its record, issuance may not bring what it
        pays past SUPPLY_MAX. O(dividends)."""
        declared = DividendStatus.DECLARED
        return min(
            (
                SUPPLY_MAX // d.amount_per_share
                for d in self._dividends.values()
                if d.security == security and d.status is declared
            ),
            default=SUPPLY_MAX,
        )

    def _limit_supply(self, security: str) -> None:
        self.settlement.registry(security).supply_max = self._share_supply_max(security)

    def _declare_dividend(self, command: DeclareDividend) -> list[Event] | Refusal:
        registry = self._security(command.security, command.actor)
        if isinstance(registry, tuple):
            return registry
        if command.security in self._bonds:
            return R.ALREADY_A_BOND, command.security
        if self.settlement.broker_of(command.payer) is None:
            return R.UNKNOWN_ACCOUNT, command.payer
        per_share = command.amount_per_share
        if not 0 < per_share <= DIVIDEND_PER_SHARE_MAX:
            return R.INVALID_AMOUNT, per_share
        if per_share * registry.supply > SUPPLY_MAX:
            return R.INVALID_AMOUNT, f"{per_share} x {registry.supply} > {SUPPLY_MAX}"
        for day in (command.record_day, command.pay_day):
            if not is_date(day):
                return R.INVALID_DAY, day
        if command.pay_day <= command.record_day:
            return R.INVALID_SCHEDULE, f"{command.pay_day} <= {command.record_day}"
        if command.record_day < self._day:
            return R.DAY_PASSED, command.record_day
        if len(self._dividends) >= DIVIDENDS_MAX:
            return R.CAPACITY_EXHAUSTED, DIVIDENDS_MAX
        self._dividend_id_last += 1
        dividend = Dividend(
            dividend=self._dividend_id_last,
            security=command.security,
            payer=command.payer,
            currency=registry.currency,
            amount_per_share=command.amount_per_share,
            record_day=command.record_day,
            pay_day=command.pay_day,
            status=DividendStatus.DECLARED,
            record=[],
        )
        self._dividends[dividend.dividend] = dividend
        self._limit_supply(dividend.security)
        self._touch(("fd", dividend.dividend), ("fz",))
        return [
            DividendDeclared(
                dividend=dividend.dividend,
                security=command.security,
                payer=command.payer,
                currency=registry.currency,
                amount_per_share=command.amount_per_share,
                record_day=command.record_day,
                pay_day=command.pay_day,
            )
        ]

    # -- the day ---------------------------------------------------------------------------

    def maturing(self, day: int) -> list[str]:
        """The live bonds that mature on or before `day`, by name: the venue empties their
        books before `begin_day` redeems them. O(bonds)."""
        live = BondStatus.LIVE
        return sorted(n for n, b in self._bonds.items() if b.status is live and b.maturity <= day)

    def begin_day(self, day: int) -> list[Event]:
        """Day `day` begins (the venue checked it is after the last): each live bond pays
        the coupons of its coupon days up to `day` and, at maturity, is redeemed; then each
        dividend whose record day has passed fixes its holders of record, and each recorded
        dividend whose pay day has come is paid. Bonds by name, dividends by id. Every
        payment is all or nothing for its payer. O(bonds + dividends + holders paid)."""
        self._day = day
        if self.is_empty():
            return []  # no state yet: nothing enters the commitment
        self._touch(("fz",))
        events: list[Event] = []
        for name in sorted(self._bonds):
            bond = self._bonds[name]
            if bond.status is BondStatus.LIVE:
                events.extend(self._bond_day(bond, day))
                self._set_accrual(bond)
        for dividend in self._dividends.values():
            if dividend.status is DividendStatus.DECLARED and dividend.record_day < day:
                events.append(self._record(dividend))
            if dividend.status is DividendStatus.RECORDED and dividend.pay_day <= day:
                events.extend(self._pay_dividend(dividend, day))
        return events

    def _bond_day(self, bond: Bond, day: int) -> list[Event]:
        events: list[Event] = []
        days = bond.coupon_days
        while bond.paid < len(days) and days[bond.paid] <= day:
            coupon_day = days[bond.paid]
            start = bond.start if bond.paid == 0 else days[bond.paid - 1]
            events.extend(
                self._pay(PaymentKind.COUPON, bond, coupon_day, bond.accrual(start, coupon_day))
            )
            bond.paid += 1
            self._touch(("fb", bond.bond))
        if bond.maturity <= day:
            start = days[-1] if days else bond.start
            accrual = bond.accrual(start, bond.maturity)
            events.extend(self._pay(PaymentKind.REDEMPTION, bond, bond.maturity, accrual))
            self._touch(("fb", bond.bond))
        return events

    def _record(self, dividend: Dividend) -> DividendRecorded:
        registry = self.settlement.registry(dividend.security)
        dividend.record = holders_of_record(registry, dividend.payer)
        dividend.status = DividendStatus.RECORDED
        self._limit_supply(dividend.security)
        self._touch(("fd", dividend.dividend))
        return DividendRecorded(
            dividend=dividend.dividend,
            security=dividend.security,
            record_day=dividend.record_day,
            holders=len(dividend.record),
            shares=sum(shares for _, shares in dividend.record),
        )

    def _pay_dividend(self, dividend: Dividend, day: int) -> list[Event]:
        rows = [
            (holder, shares, amount_due(PaymentKind.DIVIDEND, dividend.amount_per_share, shares, 0))
            for holder, shares in dividend.record
        ]
        payment = self._transfer(
            PaymentKind.DIVIDEND,
            str(dividend.dividend),
            dividend.payer,
            dividend.currency,
            day,
            dividend.amount_per_share,
            rows,
        )
        dividend.status = DividendStatus.PAID if payment.paid else DividendStatus.FAILED
        self._touch(("fd", dividend.dividend))
        if not payment.paid:
            return self._failures(payment)
        return [
            DividendPaid(
                dividend.dividend,
                dividend.security,
                dividend.payer,
                holder,
                shares,
                amount,
                dividend.currency,
            )
            for holder, shares, amount in rows
        ]

    def _pay(self, kind: PaymentKind, bond: Bond, day: int, accrual: int) -> list[Event]:
        """A coupon or the redemption of `bond` on `day` to its holders of record."""
        registry = self.settlement.registry(bond.bond)
        face = bond.face_value
        rows = [
            (holder, units, amount_due(kind, accrual, units, face))
            for holder, units in holders_of_record(registry, bond.issuer)
        ]
        if kind is PaymentKind.COUPON:
            rows = [row for row in rows if row[2]]  # a holding too small to earn a fen
        payment = self._transfer(kind, bond.bond, bond.issuer, bond.currency, day, accrual, rows)
        if not payment.paid:
            if kind is PaymentKind.REDEMPTION:
                bond.status = BondStatus.DEFAULTED
            return self._failures(payment)
        issuer, currency = bond.issuer, bond.currency
        if kind is PaymentKind.COUPON:
            return [
                CouponPaid(bond.bond, day, issuer, holder, units, amount, currency)
                for holder, units, amount in rows
            ]
        own = registry.available.get(issuer, 0)
        self._retire(registry, bond)
        events: list[Event] = [
            BondRedeemed(
                bond.bond, issuer, holder, units, units * face, amount - units * face, currency
            )
            for holder, units, amount in rows
        ]
        if own:  # the issuer's own units are retired too, for nothing
            events.append(BondRedeemed(bond.bond, issuer, issuer, own, 0, 0, currency))
        return events

    def _retire(self, registry: Registry, bond: Bond) -> None:
        """Redeemed: every unit goes back to the issuer and is retired (its resting orders
        were cancelled first, so every unit is available)."""
        for account, units in list(registry.available.items()):
            if units:
                registry.debit(account, units)
        assert not any(registry.locked.values()), f"{bond.bond}: units locked at maturity"
        registry.redeemed = registry.issued
        if registry.changes is not None:
            registry.changes.assets.add(bond.bond)
        bond.status = BondStatus.REDEEMED

    def _transfer(
        self,
        kind: PaymentKind,
        reference: str,
        payer: str,
        currency: str,
        day: int,
        rate: int,
        rows: list[Holding],
    ) -> Payment:
        """Pay every row from `payer`'s cash, all or nothing, and keep the payment."""
        cash = self.settlement.registry(currency)
        total = sum(amount for _, _, amount in rows)
        paid = cash.available.get(payer, 0) >= total and not self.settlement.is_frozen(payer)
        if paid and total:
            cash.debit(payer, total)
            for holder, _, amount in rows:
                cash.credit(holder, amount)
        self._payment_id_last += 1
        payment = Payment(
            payment=self._payment_id_last,
            kind=kind,
            reference=reference,
            payer=payer,
            currency=currency,
            day=day,
            rate=rate,
            paid=paid,
            debited=total if paid else 0,
            rows=rows,
        )
        self._payments[payment.payment] = payment
        self._touch(("fp", payment.payment), ("fz",))
        if len(self._payments) > PAYMENTS_KEPT:
            oldest = next(iter(self._payments))
            del self._payments[oldest]
            self._touch(("fp", oldest))
        return payment

    def _failures(self, payment: Payment) -> list[Event]:
        """A payment that failed: one `PaymentFailed` per holder, with what was due in all
        and the payer's available cash (`_transfer` moved nothing)."""
        total = sum(amount for _, _, amount in payment.rows)
        available = self.settlement.available(payment.currency, payment.payer)
        return [
            PaymentFailed(
                payment.kind,
                payment.reference,
                payment.day,
                payment.payer,
                holder,
                units,
                amount,
                total,
                available,
            )
            for holder, units, amount in payment.rows
        ]

    # -- queries ---------------------------------------------------------------------------

    @property
    def day(self) -> int:
        return self._day

    def bond(self, name: str) -> Bond | None:
        return self._bonds.get(name)

    def bonds(self) -> Mapping[str, Bond]:
        return self._bonds

    def dividend(self, dividend_id: int) -> Dividend | None:
        return self._dividends.get(dividend_id)

    def payments(self) -> Mapping[int, Payment]:
        """The latest PAYMENTS_KEPT payments, oldest first, read-only."""
        return self._payments

    # -- state: entities, snapshot, restore, changes, check --------------------------------

    def is_empty(self) -> bool:
        """No bond, dividend or outcome yet: no entity (nor snapshot key)."""
        return not self._bonds and not self._dividends and self._window.is_empty()

    def track_changes(self) -> set[Key]:
        """From now on record the keys of the entities changed (see `entity`); once."""
        assert self._changes is None, "the corporate actions' changes have a reader already"
        self._changes = set()
        return self._changes

    def entity(self, key: Key) -> list[Any] | None:
        """The JSON-ready row of entity `key` (its tag first), or None if there is none."""
        tag = key[0]
        if tag == "fz":
            if self.is_empty():
                return None
            return ["fz", self._day, self._dividend_id_last, self._payment_id_last]
        if tag == "fb":
            bond = self._bonds.get(key[1])
            return None if bond is None else bond.row()
        if tag == "fd":
            dividend = self._dividends.get(key[1])
            return None if dividend is None else dividend.row()
        if tag == "fp":
            payment = self._payments.get(key[1])
            return None if payment is None else payment.row()
        return self._window.entity(key)

    def keys(self) -> Iterator[Key]:
        """Every entity's key. O(state)."""
        if self.is_empty():
            return
        yield ("fz",)
        yield from (("fb", name) for name in self._bonds)
        yield from (("fd", dividend_id) for dividend_id in self._dividends)
        yield from (("fp", payment_id) for payment_id in self._payments)
        yield from self._window.keys()

    def snapshot(self) -> list[list[Any]]:
        """Every entity's row, in a fixed order (outcomes and payments oldest first)."""
        rows = []
        for key in self.keys():
            row = self.entity(key)
            assert row is not None, key
            rows.append(row)
        return rows

    @classmethod
    def restore(
        cls,
        rows: list[list[Any]],
        settlement: SettlementEngine,
        listed: Callable[[str], bool],
        *,
        day: int,
        outcomes_max: int = ACTION_OUTCOMES_MAX,
    ) -> CorporateActions:
        """The corporate actions `rows` (`snapshot`) describe, over `settlement`, on the
        venue's `day`; the bonds' registries get their accruals back."""
        actions = cls(settlement, listed, outcomes_max=outcomes_max)
        actions._day = day
        for row in rows:
            actions._restore_row(row)
        assert actions._day == day, f"corporate actions on day {actions._day}, venue on {day}"
        for bond in actions._bonds.values():
            actions._set_accrual(bond)
        for security in {d.security for d in actions._dividends.values()}:
            actions._limit_supply(security)
        return actions

    def _restore_row(self, row: list[Any]) -> None:
        tag = row[0]
        if tag == "fz":
            _, self._day, self._dividend_id_last, self._payment_id_last = row
        elif tag == "fb":
            _, name, issuer, currency, face, bps, start, days, maturity, paid, status = row
            self._bonds[name] = Bond(
                bond=name,
                issuer=issuer,
                currency=currency,
                face_value=face,
                coupon_bps=bps,
                start=start,
                coupon_days=tuple(days),
                maturity=maturity,
                paid=paid,
                status=BondStatus(status),
            )
        elif tag == "fd":
            _, dividend_id, security, payer, currency, per_share, record_day, pay_day = row[:8]
            self._dividends[dividend_id] = Dividend(
                dividend=dividend_id,
                security=security,
                payer=payer,
                currency=currency,
                amount_per_share=per_share,
                record_day=record_day,
                pay_day=pay_day,
                status=DividendStatus(row[8]),
                record=[(holder, shares) for holder, shares in row[9]],
            )
        elif tag == "fp":
            _, payment_id, kind, reference, payer, currency, day, rate, paid, debited, rows = row
            self._payments[payment_id] = Payment(
                payment=payment_id,
                kind=PaymentKind(kind),
                reference=reference,
                payer=payer,
                currency=currency,
                day=day,
                rate=rate,
                paid=paid,
                debited=debited,
                rows=[(holder, units, amount) for holder, units, amount in rows],
            )
        else:
            self._window.restore_row(row)

    def check(self) -> None:
        """Assert the invariants: each kept payment's every holder appears once and is owed
        exactly its rule's amount (`amount_due`: floor(rate x holding) for a coupon), the
        payer paid exactly their sum or nothing and is never paid itself; a live bond's
        registry accrues what its terms give for the day, and it has paid exactly its coupon
        days up to the day; a redeemed bond has no units; a dividend is recorded only after
        its record day and paid (or failed) only on or after its pay day, once; bounded
        tables. Conservation per asset is settlement's (`SettlementEngine.check`). O(state)."""
        assert len(self._bonds) <= BONDS_MAX and len(self._dividends) <= DIVIDENDS_MAX
        assert len(self._payments) <= PAYMENTS_KEPT, len(self._payments)
        for name, bond in self._bonds.items():
            registry = self.settlement.registry(name)
            assert bond.paid == sum(1 for day in bond.coupon_days if day <= self._day) or (
                bond.status is not BondStatus.LIVE
            ), f"{name}: {bond.paid} coupons paid by {self._day}"
            if bond.status is BondStatus.LIVE:
                assert bond.maturity > self._day, f"{name} matured and still live"
                expected = bond.accrual(bond.period_start(self._day), self._day)
                assert registry.accrual == expected, (name, registry.accrual, expected)
                assert registry.accrual_max == bond.accrual_max(), name
            else:
                assert registry.accrual == 0 and registry.accrual_max == 0, name
            assert registry.supply_max == bond.supply_max(), name
            if bond.status is BondStatus.REDEEMED:
                assert registry.supply == 0, f"{name}: {registry.supply} units after redemption"
        for dividend_id, dividend in self._dividends.items():
            assert dividend.dividend == dividend_id <= self._dividend_id_last
            status = dividend.status
            assert (status is DividendStatus.DECLARED) == (dividend.record_day >= self._day), (
                dividend_id
            )
            if status in (DividendStatus.PAID, DividendStatus.FAILED):
                assert dividend.pay_day <= self._day, dividend_id
            supply_max = self.settlement.registry(dividend.security).supply_max
            assert supply_max == self._share_supply_max(dividend.security), dividend_id
            holders = [holder for holder, _ in dividend.record]
            assert len(set(holders)) == len(holders) and dividend.payer not in holders
        for payment_id, payment in self._payments.items():
            assert payment.payment == payment_id <= self._payment_id_last
            self._check_payment(payment)
        self._window.check(_actor)

    def _check_payment(self, payment: Payment) -> None:
        holders = [holder for holder, _, _ in payment.rows]
        assert len(set(holders)) == len(holders), f"payment {payment.payment} pays one twice"
        assert payment.payer not in holders, f"payment {payment.payment} pays its payer"
        face = FACE_VALUE
        if payment.kind is not PaymentKind.DIVIDEND:
            face = self._bonds[payment.reference].face_value
        total = sum(amount for _, _, amount in payment.rows)
        assert payment.debited == (total if payment.paid else 0), (payment.payment, total)
        for holder, units, amount in payment.rows:
            assert units > 0, (payment.payment, holder)
            due = amount_due(payment.kind, payment.rate, units, face)
            assert amount == due, f"payment {payment.payment}: {holder} {amount} != {due}"


def holders_of_record(registry: Registry, payer: str) -> list[tuple[str, int]]:
    """(holder, units) of every account but `payer` with units of `registry` now: available
    plus locked plus its open-cycle position (what the cycle will deliver to it, less what it
    owes), by holder. They sum to the supply less the payer's own. O(accounts)."""
    units: dict[str, int] = {}
    for table in (registry.available, registry.locked, registry.positions):
        for account, amount in table.items():
            units[account] = units.get(account, 0) + amount
    return sorted((a, n) for a, n in units.items() if n > 0 and a != payer)


def _rejected(command: Command, reason: ActionRejectReason, value: object) -> ActionRejected:
    return ActionRejected(
        command=wire_name(type(command)),
        actor=command.actor,
        command_id=command.command_id,
        reason=reason,
        value=str(value),
    )


KEY_LENGTHS = {"fz": 1, "fb": 2, "fd": 2, "fp": 2, "fy": 2, "fw": 3}


def entity_key(row: list[Any]) -> Key:
    """The key of an entity row (`CorporateActions.entity`): its tag and its key fields."""
    return tuple(row[: KEY_LENGTHS[row[0]]])


def _actor(command: Command) -> str:
    return command.actor
