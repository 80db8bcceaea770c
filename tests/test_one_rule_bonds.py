"""One rule, one place, for bonds: a trade's accrued interest, a coupon and a redemption's last
coupon are each `settlement.fees.accrued_interest`, and a bond buy's funding is the one
`buy_requirement` with the bond's accrual bound. As tests/test_one_rule.py does, each test
replaces the function's code with a visibly different rule, runs every path, and sees each
follow (every command is checked by `Venue.check` and the commitment, tests/bond_flow.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from exchange import compiled
from settlement import fees
from settlement.commands import SettleTrade
from tests.bond_flow import BOND, CASH, COUPON, MATURITY, OPERATOR, BondFlow, of_type
from tests.test_one_rule import both_rules, fake_requirement

pytestmark = pytest.mark.skipif(
    compiled.current().build == "compiled",
    reason="patches a function's code, which compiled callers do not follow (pure build only)",
)

Observations = dict[str, Any]
DENOMINATOR = 10_000 * 365


def fake_accrued(quantity: int, accrual: int) -> int:
    """The real interest less one fen on every nonzero amount."""
    exact = quantity * accrual // 3_650_000
    return exact - 1 if exact else 0


def accrued_scenario(interest: Callable[[int, int], int]) -> Observations:
    """Every path that pays a bond's interest, each checked against `interest`."""
    seen: Observations = {}
    flow = BondFlow(commitment_every=1)
    flow.setup()
    flow.day(20260316)
    accrual = flow.venue.settlement.registry(BOND).accrual

    def paid(events: list[dict[str, Any]], path: str, price: int, quantity: int) -> None:
        (settled,) = of_type(events, "trade_settled")
        assert settled["buyer_paid"] == price * quantity + interest(quantity, accrual), path
        seen[path] = settled["buyer_paid"]

    flow.order("A1", "sell", BOND, 9_950, 30)
    paid(flow.order("A2", "buy", BOND, 9_950, 30), "fill as taker (buy)", 9_950, 30)
    flow.order("A2", "buy", BOND, 9_960, 17)
    paid(flow.order("B1", "sell", BOND, 9_960, 17), "fill as maker (buy)", 9_960, 17)
    flow.send({"type": "set_phase", "symbol": BOND, "phase": "call_auction"})
    flow.order("B2", "buy", BOND, 9_970, 23)
    flow.order("B1", "sell", BOND, 9_970, 23)
    uncross = flow.send({"type": "set_phase", "symbol": BOND, "phase": "continuous"})
    paid(uncross, "auction uncross", 9_970, 23)
    settlement = flow.venue.settlement
    command = SettleTrade(command_id=10_000, actor=OPERATOR,
                          trade_id=settlement.last_trade_id + 1, asset=BOND, price=9_980,
                          quantity=11, buyer="B2", seller="B1")  # fmt: skip
    events = [{"type": "trade_settled", **e._asdict()} for e in settlement.apply(command)]
    paid(events, "SettleTrade command", 9_980, 11)
    flow.venue.check()
    coupons = of_type(flow.day(COUPON), "coupon_paid")
    period = flow.venue.corporate_actions.payments()[1].rate
    assert [c["amount"] for c in coupons] == [interest(c["quantity"], period) for c in coupons]
    seen["coupon"] = [c["amount"] for c in coupons]
    redeemed = of_type(flow.day(MATURITY), "bond_redeemed")
    last = flow.venue.corporate_actions.payments()[2].rate
    assert [r["coupon"] for r in redeemed] == [interest(r["quantity"], last) for r in redeemed]
    seen["redemption"] = [r["coupon"] for r in redeemed]
    return seen


def test_every_bond_path_follows_the_one_accrued_interest(monkeypatch: pytest.MonkeyPatch) -> None:
    both_rules(monkeypatch, fees.accrued_interest, fake_accrued, accrued_scenario)


def requirement_scenario(need: Callable[..., int]) -> Observations:
    """Every path that funds a bond buy, each checked against `need` with the bond's bound."""
    seen: Observations = {}
    flow = BondFlow()
    flow.setup()
    flow.day(20260316)
    bound = flow.venue.settlement.registry(BOND).accrual_max
    assert bound % DENOMINATOR  # a fraction of a fen a unit: rounded up
    settlement = flow.venue.settlement
    flow.order("A2", "buy", BOND, 9_900, 30)
    assert settlement.held(CASH, BOND, "A2") == need(9_900, 30, 0, bound)
    seen["place: hold"] = settlement.held(CASH, BOND, "A2")
    flow.send({"type": "amend", "broker": "BRK", "order_id": 1, "symbol": BOND, "quantity": 40})
    assert settlement.held(CASH, BOND, "A2") == need(9_900, 40, 0, bound)
    seen["amend"] = settlement.held(CASH, BOND, "A2")
    flow.order("B1", "sell", BOND, 9_900, 15)
    assert settlement.held(CASH, BOND, "A2") == need(9_900, 25, 0, bound)
    seen["fill as maker"] = settlement.held(CASH, BOND, "A2")
    flow.order("A1", "sell", BOND, 9_950, 10)  # above the bid: rests
    flow.order("B2", "buy", BOND, 9_950, 30)  # 10 trade, 20 rest
    assert settlement.held(CASH, BOND, "B2") == need(9_950, 20, 0, bound)
    seen["fill as taker"] = settlement.held(CASH, BOND, "B2")
    return seen


def test_every_bond_funding_path_follows_the_one_buy_requirement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    both_rules(monkeypatch, fees.buy_requirement, fake_requirement, requirement_scenario)
