"""A hypothesis state machine: bonds and dividends on the venue against a naive model.

The model keeps every account's units and cash in plain dicts, counts days with `datetime`
and computes interest with `Fraction`; it predicts each trade's cash (clean price plus accrued
interest ACT/365F rounded down), each coupon, redemption and dividend (holders of record,
floor of rate x holding, all or nothing per payer) and the venue's events must be exactly
those, with every balance equal, after every step (`BondFlow` also checks `Venue.check`, the
commitment and a restore).
"""

from __future__ import annotations

import datetime
import math
from fractions import Fraction
from typing import Any

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests.bond_flow import (
    BOND,
    CASH,
    CASH_START,
    COMPANY,
    DEPOSITORY,
    INVESTORS,
    ISSUER,
    SHARE,
    BondFlow,
)

ACCOUNTS = (ISSUER, COMPANY, *INVESTORS)
START = 20260101
COUPONS = (20260401, 20260701, 20261001)
MATURITY = 20270101
FACE, BPS = 10_000, 425


def date_of(day: int) -> datetime.date:
    return datetime.date(day // 10_000, day // 100 % 100, day % 100)


def day_of(date: datetime.date) -> int:
    return date.year * 10_000 + date.month * 100 + date.day


def interest(units: int, start: int, end: int) -> int:
    """Naive ACT/365F: the exact fraction, rounded down once."""
    days = (date_of(end) - date_of(start)).days
    return math.floor(Fraction(units * FACE * BPS * days, 10_000 * 365))


class BondMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.flow = BondFlow(commitment_every=3)
        terms = {"type": "define_bond", "bond": BOND, "issuer": ISSUER, "face_value": FACE,
                 "coupon_bps": BPS, "start": START, "coupon_days": list(COUPONS),
                 "maturity": MATURITY}  # fmt: skip
        self.flow.setup(terms=terms)
        self.units = {asset: {a: 0 for a in ACCOUNTS} for asset in (BOND, SHARE)}
        for asset in (BOND, SHARE):
            self.units[asset].update(A1=100, B1=100)
        self.cash = dict.fromkeys(ACCOUNTS, CASH_START)
        self.coupons_paid = 0
        self.bond_live = True
        self.dividends: list[dict[str, Any]] = []
        self.day = START
        self.flow.day(START)

    # -- the model's predictions ------------------------------------------------------------

    def holders(self, asset: str, payer: str) -> list[tuple[str, int]]:
        return sorted((a, n) for a, n in self.units[asset].items() if n and a != payer)

    def pay(
        self, kind: str, rows: list[tuple[str, int, int]], payer: str, extra: dict[str, Any]
    ) -> tuple[bool, list[dict[str, Any]]]:
        total = sum(amount for _, _, amount in rows)
        if self.cash[payer] < total:
            return False, [
                {
                    "type": "payment_failed",
                    **extra,
                    "payer": payer,
                    "holder": holder,
                    "quantity": units,
                    "amount": amount,
                    "due": total,
                    "available": self.cash[payer],
                }
                for holder, units, amount in rows
            ]
        self.cash[payer] -= total
        for holder, _, amount in rows:
            self.cash[holder] += amount
        return True, []

    def bond_events(self, day: int) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        days = (START, *COUPONS)
        while self.bond_live and self.coupons_paid < len(COUPONS):
            coupon_day = COUPONS[self.coupons_paid]
            if coupon_day > day:
                break
            start = days[self.coupons_paid]
            rows = [(h, n, interest(n, start, coupon_day)) for h, n in self.holders(BOND, ISSUER)]
            rows = [row for row in rows if row[2]]
            extra = {"kind": "coupon", "reference": BOND, "day": coupon_day}
            paid, failed = self.pay("coupon", rows, ISSUER, extra)
            events += failed or [
                {
                    "type": "coupon_paid",
                    "bond": BOND,
                    "day": coupon_day,
                    "issuer": ISSUER,
                    "holder": h,
                    "quantity": n,
                    "amount": a,
                    "currency": CASH,
                }
                for h, n, a in rows
            ]
            self.coupons_paid += 1
        if self.bond_live and day >= MATURITY:
            rows = [
                (h, n, n * FACE + interest(n, COUPONS[-1], MATURITY))
                for h, n in self.holders(BOND, ISSUER)
            ]
            extra = {"kind": "redemption", "reference": BOND, "day": MATURITY}
            paid, failed = self.pay("redemption", rows, ISSUER, extra)
            events += failed or [
                {
                    "type": "bond_redeemed",
                    "bond": BOND,
                    "issuer": ISSUER,
                    "holder": h,
                    "quantity": n,
                    "principal": n * FACE,
                    "coupon": a - n * FACE,
                    "currency": CASH,
                }
                for h, n, a in rows
            ]
            if paid:
                self.units[BOND] = dict.fromkeys(ACCOUNTS, 0)
            self.bond_live = False
        return events

    def dividend_events(self, day: int) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for number, dividend in enumerate(self.dividends, start=1):
            if dividend["status"] == "declared" and dividend["record_day"] < day:
                dividend["record"] = self.holders(SHARE, COMPANY)
                dividend["status"] = "recorded"
                events.append({"type": "dividend_recorded", "dividend": number,
                               "security": SHARE, "record_day": dividend["record_day"],
                               "holders": len(dividend["record"]),
                               "shares": sum(n for _, n in dividend["record"])})  # fmt: skip
            if dividend["status"] == "recorded" and dividend["pay_day"] <= day:
                per_share = dividend["amount"]
                rows = [(h, n, n * per_share) for h, n in dividend["record"]]
                extra = {"kind": "dividend", "reference": str(number), "day": day}
                paid, failed = self.pay("dividend", rows, COMPANY, extra)
                events += failed or [
                    {
                        "type": "dividend_paid",
                        "dividend": number,
                        "security": SHARE,
                        "payer": COMPANY,
                        "holder": h,
                        "shares": n,
                        "amount": a,
                        "currency": CASH,
                    }
                    for h, n, a in rows
                ]
                dividend["status"] = "paid" if paid else "failed"
        return events

    # -- rules ------------------------------------------------------------------------------

    @rule(days=st.integers(1, 45))
    def next_day(self, days: int) -> None:
        day = day_of(date_of(self.day) + datetime.timedelta(days=days))
        events = self.flow.day(day, continuous=False)
        for symbol in (BOND, SHARE):
            self.flow.send({"type": "set_phase", "symbol": symbol, "phase": "continuous"})
        expected = [{"type": "day_begun", "day": day}]
        expected += self.bond_events(day) + self.dividend_events(day)
        assert events == expected
        for kind in {e["type"] + ":" + str(e.get("kind", "")) for e in events[1:]}:
            event(kind)  # what the run covered: --hypothesis-show-statistics
        self.day = day

    @rule(
        asset=st.sampled_from((BOND, SHARE)),
        seller=st.sampled_from(INVESTORS),
        buyer=st.sampled_from(INVESTORS),
        price=st.integers(9_500, 10_500),
        quantity=st.integers(1, 60),
    )
    def trade(self, asset: str, seller: str, buyer: str, price: int, quantity: int) -> None:
        sellable = self.units[asset][seller]
        if asset == SHARE:
            price //= 10
        if seller == buyer or quantity > sellable or (asset == BOND and not self.bond_live):
            return
        shares_today = self.flow.venue.shares_today()[0].get(asset, {}).get(seller, 0)
        if quantity > sellable - shares_today:  # T+1: bought today
            return
        self.flow.order(seller, "sell", asset, price, quantity, tif="day")
        events = self.flow.order(buyer, "buy", asset, price, quantity, tif="ioc")
        (settled,) = [e for e in events if e["type"] == "trade_settled"]
        accrued = 0
        if asset == BOND:
            start = max([START, *(d for d in COUPONS if d <= self.day)])
            accrued = interest(quantity, start, self.day) if self.day > start else 0
        assert settled["buyer_paid"] == settled["seller_received"] == price * quantity + accrued
        self.cash[buyer] -= price * quantity + accrued
        self.cash[seller] += price * quantity + accrued
        self.units[asset][seller] -= quantity
        self.units[asset][buyer] += quantity

    @rule(payer=st.sampled_from((ISSUER, COMPANY)), keep=st.integers(0, 60_000))
    def drain(self, payer: str, keep: int) -> None:
        """Leave the payer `keep` fen (or give it back its start), so payments fail or pass."""
        amount = self.cash[payer] - keep
        kind = "withdraw" if amount > 0 else "deposit"
        if amount:
            self.flow.member("PBOC", {"type": kind, "asset": CASH, "account": payer,
                                      "amount": abs(amount)})  # fmt: skip
            self.cash[payer] = keep
        if keep == 0:
            self.flow.member("PBOC", {"type": "deposit", "asset": CASH, "account": payer,
                                      "amount": CASH_START})  # fmt: skip
            self.cash[payer] += CASH_START

    @precondition(lambda self: len(self.dividends) < 6)
    @rule(amount=st.integers(1, 500), record=st.integers(0, 20), pay=st.integers(1, 20))
    def declare(self, amount: int, record: int, pay: int) -> None:
        record_day = day_of(date_of(self.day) + datetime.timedelta(days=record))
        pay_day = day_of(date_of(record_day) + datetime.timedelta(days=pay))
        events = self.flow.member(DEPOSITORY, {"type": "declare_dividend", "security": SHARE,
                                               "payer": COMPANY, "amount_per_share": amount,
                                               "record_day": record_day,
                                               "pay_day": pay_day})  # fmt: skip
        assert [e["type"] for e in events] == ["dividend_declared"], events
        self.dividends.append({"amount": amount, "record_day": record_day, "pay_day": pay_day,
                               "status": "declared", "record": []})  # fmt: skip

    @invariant()
    def balances_match(self) -> None:
        for account in ACCOUNTS:
            assert self.flow.cash(account) == self.cash[account], account
            for asset in (BOND, SHARE):
                assert self.flow.units(asset, account) == self.units[asset][account]


BondMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestBondMachine = BondMachine.TestCase
