"""Bonds, coupons, redemption and cash dividends through the venue
(settlement/corporate_actions.py): exact amounts for each rule, refusals naming the value in
their order, idempotency; every step checked (`Venue.check`) with the incremental commitment
against the one from scratch and a restored snapshot (tests/bond_flow.py)."""

from __future__ import annotations

import datetime

import orjson
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from exchange.analysis.checks import conservation
from exchange.consortium.indexer import _BALANCES
from exchange.venue import wire
from settlement.corporate_actions import day_number, is_date
from settlement.fees import accrued_interest, buy_requirement
from tests.bond_flow import (
    BOND,
    BOND_TERMS,
    CASH,
    CASH_START,
    COMPANY,
    COUPON,
    DEPOSITORY,
    ISSUER,
    MATURITY,
    OPERATOR,
    REGULATOR,
    SHARE,
    BondFlow,
    of_type,
)

# 3.5% on 100 yuan of face: 10_000 x 350 per day of accrual, over 365 x 10_000
PER_DAY = 10_000 * 350


def flow_on(day: int) -> BondFlow:
    flow = BondFlow()
    flow.setup()
    flow.day(day)
    return flow


def test_accrued_interest_is_act_365f_on_the_whole_trade_rounded_down() -> None:
    flow = flow_on(20260316)  # 74 days after the start (31 + 28 + 15)
    assert flow.venue.settlement.registry(BOND).accrual == 74 * PER_DAY
    flow.order("A1", "sell", BOND, 9_950, 30)
    events = flow.order("A2", "buy", BOND, 9_950, 30)
    (settled,) = of_type(events, "trade_settled")
    # 30 units x 100 yuan x 3.5% x 74 / 365 = 21.2876... yuan: 2,128 fen (per unit rounded
    # down it would be 30 x 70 = 2,100)
    assert accrued_interest(30, 74 * PER_DAY) == 2_128
    assert settled["buyer_paid"] == settled["seller_received"] == 30 * 9_950 + 2_128
    assert flow.cash("A2") == CASH_START - 300_628
    assert flow.cash("A1") == CASH_START + 300_628
    assert flow.units(BOND, "A2") == 30


def test_no_accrual_on_a_coupon_day_and_from_it_after() -> None:
    flow = flow_on(COUPON)
    assert flow.venue.settlement.registry(BOND).accrual == 0
    flow.day(20260702)
    assert flow.venue.settlement.registry(BOND).accrual == PER_DAY


def test_a_buy_funds_clean_price_the_accrual_bound_and_fees() -> None:
    flow = flow_on(20260316)
    flow.member(OPERATOR, {"type": "set_fee_schedule", "asset": BOND, "commission_bps": 3,
                           "stamp_duty_bps": 0, "fee_account": COMPANY,
                           "tax_account": ""})  # fmt: skip
    # the longest period (20260701 -> 20270101, 184 days) accrues 176.43... fen a unit: 177
    assert flow.venue.settlement.registry(BOND).accrual_max == 184 * PER_DAY
    need = 30 * (9_900 + 3 + 177)
    assert buy_requirement(9_900, 30, 3, 184 * PER_DAY) == need
    flow.member("PBOC", {"type": "withdraw", "asset": CASH, "account": "A2",
                         "amount": CASH_START - need + 1})  # fmt: skip
    (unfunded,) = of_type(flow.order("A2", "buy", BOND, 9_900, 30), "order_unfunded")
    assert (unfunded["required"], unfunded["available"]) == (need, need - 1)
    flow.member("PBOC", {"type": "deposit", "asset": CASH, "account": "A2", "amount": 1})
    assert of_type(flow.order("A2", "buy", BOND, 9_900, 30), "accepted")
    assert flow.venue.settlement.held(CASH, BOND, "A2") == need
    # a fill at the limit pays clean + accrued + commission; the rest of the hold goes back
    events = flow.order("B1", "sell", BOND, 9_900, 30)
    (settled,) = of_type(events, "trade_settled")
    commission = 30 * 9_900 * 3 // 10_000
    assert settled["buyer_paid"] == 30 * 9_900 + 2_128 + commission
    assert flow.cash("A2") == need - settled["buyer_paid"]
    assert flow.venue.settlement.held(CASH, BOND, "A2") == 0


def test_coupon_each_holder_of_record_floor_and_the_issuer_pays_the_sum() -> None:
    flow = flow_on(20260630)
    flow.order("A1", "sell", BOND, 9_950, 30)
    flow.order("A2", "buy", BOND, 9_950, 30)
    flow.order("A1", "sell", BOND, 10_100, 20)  # rests: its 20 units stay A1's, held
    issuer_before = flow.cash(ISSUER)
    events = flow.day(COUPON)
    # 181 days: 173.56... fen a unit, rounded down per holding
    paid = of_type(events, "coupon_paid")
    common = {"bond": BOND, "day": COUPON, "issuer": ISSUER, "currency": CASH}
    assert paid == [
        {**common, "holder": "A1", "quantity": 70, "amount": 12_149},
        {**common, "holder": "A2", "quantity": 30, "amount": 5_206},
        {**common, "holder": "B1", "quantity": 100, "amount": 17_356},
    ]
    assert issuer_before - flow.cash(ISSUER) == 12_149 + 5_206 + 17_356
    # units bought on the coupon day earn nothing of it; the seller had it
    flow.order("A2", "buy", BOND, 10_100, 20)
    assert of_type(flow.day(20260702), "coupon_paid") == []
    (payment,) = flow.venue.corporate_actions.payments().values()
    assert payment.rows == [("A1", 70, 12_149), ("A2", 30, 5_206), ("B1", 100, 17_356)]


def test_a_short_issuer_fails_the_coupon_for_every_holder_and_nothing_moves() -> None:
    flow = flow_on(20260630)
    flow.member("PBOC", {"type": "withdraw", "asset": CASH, "account": ISSUER,
                         "amount": CASH_START - 34_710})  # fmt: skip  # one fen short
    events = flow.day(COUPON)
    failed = of_type(events, "payment_failed")
    assert [(f["holder"], f["amount"], f["due"], f["available"]) for f in failed] == [
        ("A1", 17_356, 34_712, 34_710),
        ("B1", 17_356, 34_712, 34_710),
    ]
    assert {f["kind"] for f in failed} == {"coupon"}
    assert flow.cash(ISSUER) == 34_710 and flow.cash("A1") == CASH_START
    # the bond lives on: the next payment is tried at maturity
    assert flow.venue.corporate_actions.bond(BOND).status.name == "LIVE"


def test_redemption_returns_every_unit_against_face_and_last_coupon() -> None:
    flow = flow_on(20261231)
    flow.order("A1", "sell", BOND, 10_010, 40)  # rests over the maturity: cancelled
    flow.order("A2", "buy", BOND, 9_990, 10)
    issuer_before = flow.cash(ISSUER)
    events = flow.day(MATURITY)
    cancelled = of_type(events, "cancelled")
    assert [(c["order_id"], c["reason"]) for c in cancelled] == [(2, "matured"), (1, "matured")]
    redeemed = of_type(events, "bond_redeemed")
    # 184 days since the coupon: 176.43... a unit, 100 units: 17,643
    common = {"bond": BOND, "issuer": ISSUER, "currency": CASH}
    assert redeemed == [
        {**common, "holder": "A1", "quantity": 100, "principal": 1_000_000, "coupon": 17_643},
        {**common, "holder": "B1", "quantity": 100, "principal": 1_000_000, "coupon": 17_643},
    ]
    assert issuer_before - flow.cash(ISSUER) == 2 * 1_017_643
    settlement = flow.venue.settlement
    assert settlement.supply(BOND) == 0 and flow.units(BOND, "A1") == 0
    assert settlement.held(CASH, BOND, "A2") == 0 and flow.cash("A2") == CASH_START
    assert settlement.registry(BOND).accrual_max == 0


def test_a_failed_redemption_is_all_or_nothing_and_the_bond_defaults() -> None:
    flow = flow_on(20261231)  # the coupon of 20260701 is paid as the day begins
    flow.member("PBOC", {"type": "withdraw", "asset": CASH, "account": ISSUER,
                         "amount": flow.cash(ISSUER) - 1_000_000})  # fmt: skip
    events = flow.day(MATURITY)
    failed = of_type(events, "payment_failed")
    assert [(f["kind"], f["holder"], f["quantity"], f["amount"]) for f in failed] == [
        ("redemption", "A1", 100, 1_017_643),
        ("redemption", "B1", 100, 1_017_643),
    ]
    assert flow.units(BOND, "A1") == 100 and flow.cash(ISSUER) == 1_000_000
    assert flow.venue.corporate_actions.bond(BOND).status.name == "DEFAULTED"
    assert of_type(flow.day(20270102), "payment_failed") == []  # once


def test_dividend_record_day_boundary_and_paid_once() -> None:
    flow = flow_on(20260105)
    declared = flow.member(DEPOSITORY, {"type": "declare_dividend", "security": SHARE,
                                        "payer": COMPANY, "amount_per_share": 25,
                                        "record_day": 20260106,
                                        "pay_day": 20260108})  # fmt: skip
    assert of_type(declared, "dividend_declared")[0]["dividend"] == 1
    flow.day(20260106)  # the record day: bought today, held at its close
    flow.order("A1", "sell", SHARE, 1_000, 40)
    flow.order("A2", "buy", SHARE, 1_000, 40)
    events = flow.day(20260107)  # holders are fixed as the next day begins
    assert of_type(events, "dividend_recorded") == [
        {"dividend": 1, "security": SHARE, "record_day": 20260106, "holders": 3, "shares": 200}
    ]
    flow.order("B1", "sell", SHARE, 1_000, 50)  # bought after the record day: nothing
    flow.order("B2", "buy", SHARE, 1_000, 50)
    company_before = flow.cash(COMPANY)
    paid = of_type(flow.day(20260108), "dividend_paid")
    assert [(p["holder"], p["shares"], p["amount"]) for p in paid] == [
        ("A1", 60, 1_500),
        ("A2", 40, 1_000),
        ("B1", 100, 2_500),
    ]
    assert company_before - flow.cash(COMPANY) == 5_000
    assert of_type(flow.day(20260109), "dividend_paid") == []


def test_a_short_dividend_payer_fails_every_holder() -> None:
    flow = flow_on(20260105)
    flow.member(DEPOSITORY, {"type": "declare_dividend", "security": SHARE, "payer": COMPANY,
                             "amount_per_share": 10**7, "record_day": 20260105,
                             "pay_day": 20260106})  # fmt: skip
    events = flow.day(20260106)
    failed = of_type(events, "payment_failed")
    assert [(f["kind"], f["reference"], f["holder"], f["due"]) for f in failed] == [
        ("dividend", "1", "A1", 200 * 10**7),
        ("dividend", "1", "B1", 200 * 10**7),
    ]
    assert flow.cash(COMPANY) == CASH_START
    assert flow.venue.corporate_actions.dividend(1).status.name == "FAILED"


def reason(events: list[dict[str, object]]) -> tuple[object, object]:
    (rejected,) = of_type(events, "action_rejected")
    return rejected["reason"], rejected["value"]


def test_define_bond_refusals_in_order_naming_the_value() -> None:
    flow = BondFlow()
    flow.setup()
    for asset in ("GB27", "GB28"):
        flow.member(OPERATOR, {"type": "define_asset", "asset": asset, "kind": "security",
                               "issuer": DEPOSITORY})  # fmt: skip
    terms = {**BOND_TERMS, "bond": "GB27"}
    cases = [
        ("BANK", {**terms, "bond": "NOPE"}, ("unknown_asset", "NOPE")),
        ("BANK", {**terms, "bond": CASH}, ("wrong_asset_kind", CASH)),
        ("BANK", terms, ("not_authorized", "BANK")),
        (DEPOSITORY, {**terms, "bond": BOND}, ("already_a_bond", BOND)),
        (DEPOSITORY, {**terms, "bond": SHARE}, ("already_issued", "SH01 issued 200")),
        (DEPOSITORY, {**terms, "issuer": "NOBODY"}, ("unknown_account", "NOBODY")),
        (DEPOSITORY, {**terms, "face_value": 100}, ("invalid_face_value", "100")),
        (DEPOSITORY, {**terms, "coupon_bps": 10_001}, ("invalid_rate", "10001")),
        (DEPOSITORY, {**terms, "coupon_days": [20260230]}, ("invalid_day", "20260230")),
        (DEPOSITORY, {**terms, "coupon_days": [20270101]},
         ("invalid_schedule", "20260101 < 20270101 < 20270101")),
    ]  # fmt: skip
    for actor, command, expected in cases:
        assert reason(flow.member(actor, command)) == expected, command
    flow.member(DEPOSITORY, {"type": "declare_dividend", "security": "GB27", "payer": COMPANY,
                             "amount_per_share": 1, "record_day": 20260101,
                             "pay_day": 20260102})  # fmt: skip
    assert reason(flow.member(DEPOSITORY, terms)) == ("has_dividends", "GB27")
    flow.day(20270102)
    terms = {**terms, "bond": "GB29"}
    flow.member(OPERATOR, {"type": "define_asset", "asset": "GB29", "kind": "security",
                           "issuer": DEPOSITORY})  # fmt: skip
    assert reason(flow.member(DEPOSITORY, terms)) == ("day_passed", "20270101")
    flow.send({"type": "list_instrument", "symbol": "GB28", "tick_size": 1, "lot": 1,
               "reference_price": 10_000, "price_limit_pct": None, "t_plus": 0})  # fmt: skip
    listed = {**terms, "bond": "GB28", "maturity": 20280101}
    assert reason(flow.member(DEPOSITORY, listed)) == ("already_listed", "GB28")


def test_declare_dividend_refusals_in_order_naming_the_value() -> None:
    flow = flow_on(20260105)
    dividend = {"type": "declare_dividend", "security": SHARE, "payer": COMPANY,
                "amount_per_share": 25, "record_day": 20260106, "pay_day": 20260108}  # fmt: skip
    cases = [
        ("BANK", {**dividend, "security": "NOPE"}, ("unknown_asset", "NOPE")),
        ("BANK", dividend, ("not_authorized", "BANK")),
        (DEPOSITORY, {**dividend, "security": BOND}, ("already_a_bond", BOND)),
        (DEPOSITORY, {**dividend, "payer": "NOBODY"}, ("unknown_account", "NOBODY")),
        (DEPOSITORY, {**dividend, "amount_per_share": 0}, ("invalid_amount", "0")),
        (DEPOSITORY, {**dividend, "record_day": 20261301}, ("invalid_day", "20261301")),
        (DEPOSITORY, {**dividend, "pay_day": 20260106},
         ("invalid_schedule", "20260106 <= 20260106")),
        (DEPOSITORY, {**dividend, "record_day": 20260104}, ("day_passed", "20260104")),
    ]  # fmt: skip
    for actor, command, expected in cases:
        assert reason(flow.member(actor, command)) == expected, command


def test_commands_are_idempotent_by_actor_and_id() -> None:
    flow = flow_on(20260105)
    dividend = {"type": "declare_dividend", "actor": DEPOSITORY, "command_id": 100,
                "security": SHARE, "payer": COMPANY, "amount_per_share": 25,
                "record_day": 20260106, "pay_day": 20260108}  # fmt: skip
    first = flow.send(dividend)
    assert flow.send(dividend) == first
    assert reason(flow.send({**dividend, "amount_per_share": 26})) == ("command_id_reused", "100")
    assert reason(flow.send({**dividend, "command_id": 99})) == ("command_id_too_old", "99")
    assert len(flow.venue.corporate_actions.snapshot()) > 0
    events = flow.day(20260108)
    assert len(of_type(events, "dividend_paid")) == 2  # declared once, paid once


def test_a_venue_without_corporate_actions_keeps_its_snapshot_keys() -> None:
    flow = BondFlow()
    flow.member(OPERATOR, {"type": "define_asset", "asset": CASH, "kind": "cash",
                           "issuer": "PBOC"})  # fmt: skip
    flow.day(20260105, continuous=False)
    assert "corporate_actions" not in flow.venue.snapshot()


@given(st.dates(datetime.date(1900, 1, 1), datetime.date(9999, 12, 31)))
def test_day_number_counts_calendar_days(date: datetime.date) -> None:
    day = date.year * 10_000 + date.month * 100 + date.day
    assert is_date(day)
    assert day_number(day) == (date - datetime.date(1970, 1, 1)).days


@given(st.integers(19000101, 99991231))
def test_is_date_is_the_calendar(day: int) -> None:
    try:
        datetime.date(day // 10_000, day // 100 % 100, day % 100)
        valid = True
    except ValueError:
        valid = False
    assert is_date(day) == valid


def test_a_net_settled_buyer_is_the_holder_of_record_before_the_cycle_delivers() -> None:
    flow = flow_on(20260105)
    flow.member(OPERATOR, {"type": "define_asset", "asset": "SH02", "kind": "security",
                           "issuer": DEPOSITORY, "mode": "net_net"})  # fmt: skip
    flow.member(DEPOSITORY, {"type": "issue", "asset": "SH02", "account": "A1", "amount": 100})
    flow.send({"type": "list_instrument", "symbol": "SH02", "tick_size": 1, "lot": 1,
               "reference_price": 1_000, "price_limit_pct": None, "t_plus": 1})  # fmt: skip
    flow.send({"type": "set_phase", "symbol": "SH02", "phase": "continuous"})
    flow.member(DEPOSITORY, {"type": "declare_dividend", "security": "SH02", "payer": COMPANY,
                             "amount_per_share": 7, "record_day": 20260105,
                             "pay_day": 20260107})  # fmt: skip
    flow.order("A1", "sell", "SH02", 1_000, 40)
    flow.order("A2", "buy", "SH02", 1_000, 40)
    assert flow.venue.settlement.position("SH02", "A2") == 40  # not delivered: no cycle yet
    recorded = of_type(flow.day(20260106), "dividend_recorded")
    assert recorded[0]["holders"] == 2 and recorded[0]["shares"] == 100
    assert flow.venue.corporate_actions.dividend(1).record == [("A1", 60), ("A2", 40)]
    flow.member(OPERATOR, {"type": "settle_cycle"})
    paid = of_type(flow.day(20260107), "dividend_paid")
    assert [(p["holder"], p["amount"]) for p in paid] == [("A1", 420), ("A2", 280)]


def test_a_frozen_payer_fails_and_a_frozen_holder_is_paid() -> None:
    flow = flow_on(20260630)
    flow.member(REGULATOR, {"type": "freeze", "account": ISSUER})
    failed = of_type(flow.day(COUPON), "payment_failed")
    assert [(f["holder"], f["kind"]) for f in failed] == [("A1", "coupon"), ("B1", "coupon")]
    flow.member(REGULATOR, {"type": "unfreeze", "account": ISSUER})
    flow.member(REGULATOR, {"type": "freeze", "account": "B1"})
    redeemed = of_type(flow.day(MATURITY), "bond_redeemed")
    assert [(r["holder"], r["quantity"]) for r in redeemed] == [("A1", 100), ("B1", 100)]
    assert flow.units(BOND, "B1") == 0 and flow.venue.settlement.is_frozen("B1")


def test_the_indexer_rows_of_coupons_dividends_and_redemptions_add_up_to_the_state() -> None:
    """The derived `balance_changes` rows (exchange/consortium/indexer.py) of a whole bond's
    life and a dividend sum to every account's holdings, and `conservation` holds."""
    flow = BondFlow()
    seen: list[dict[str, object]] = []
    send = flow.send

    def recording(command: dict[str, object]) -> list[dict[str, object]]:
        events = send(command)
        seen.extend(events)
        return events

    flow.send = recording  # type: ignore[method-assign]
    flow.setup()
    flow.member(DEPOSITORY, {"type": "issue", "asset": BOND, "account": ISSUER, "amount": 5})
    flow.day(20260316)
    flow.order("A1", "sell", BOND, 9_950, 30)
    flow.order("A2", "buy", BOND, 9_950, 30)
    flow.member(DEPOSITORY, {"type": "declare_dividend", "security": SHARE, "payer": COMPANY,
                             "amount_per_share": 25, "record_day": 20260316,
                             "pay_day": 20260320})  # fmt: skip
    for day in (20260317, 20260320, COUPON, MATURITY):
        flow.day(day)
    kinds = {e["type"] for e in seen}
    assert {"coupon_paid", "dividend_paid", "bond_redeemed"} <= kinds
    rows = [
        (account, asset, holding, event["type"])
        for event in seen
        if event["type"] in _BALANCES
        for account, asset, holding, _, _ in _BALANCES[str(event["type"])](event)
    ]
    changes = pd.DataFrame(rows, columns=["account", "asset", "holding_delta", "event"])
    table = changes.groupby(["account", "asset"])["holding_delta"].sum().to_dict()
    for account in (ISSUER, COMPANY, "A1", "A2", "B1", "B2"):
        for asset in (CASH, BOND, SHARE):
            assert table.get((account, asset), 0) == flow.units(asset, account), (account, asset)
    assert conservation(changes)["conserved"].all()


def test_malformed_commands_are_refused_at_the_edge_naming_the_field() -> None:
    base = {**BOND_TERMS, "actor": DEPOSITORY, "command_id": 1}
    for field, value in (("coupon_days", 20260701), ("coupon_days", list(range(65))),
                         ("coupon_bps", "350"), ("maturity", None)):  # fmt: skip
        parsed = wire.parse_venue_line(orjson.dumps({**base, field: value}))
        assert isinstance(parsed, wire.WireError) and parsed.field == field, (field, parsed)


def test_issuance_stays_where_every_payment_fits_within_the_supply_maximum() -> None:
    """A bond's units, and a share's while a dividend waits for its record, are bounded so
    that what a payment owes in all (and so every amount an event carries) stays within
    10^18 fen: issuance past it is refused, as any issue past a registry's supply is."""
    flow = flow_on(20260105)
    # a unit is paid at most 100 yuan and one period's coupon (184 days at 3.5%: 177 fen)
    bound = 10**18 // (10_000 + 177)
    assert flow.venue.settlement.registry(BOND).supply_max == bound
    issue = {"type": "issue", "asset": BOND, "account": "A2", "amount": bound - 200 + 1}
    (refused,) = flow.member(DEPOSITORY, issue)
    assert (refused["type"], refused["reason"]) == ("command_rejected", "amount_too_large")
    assert of_type(flow.member(DEPOSITORY, {**issue, "amount": bound - 200}), "issued")
    dividend = {"type": "declare_dividend", "security": SHARE, "payer": COMPANY,
                "amount_per_share": 10**9, "record_day": 20260106, "pay_day": 20260108}  # fmt: skip
    flow.member(DEPOSITORY, {"type": "issue", "asset": SHARE, "account": "A2", "amount": 10**9})
    assert reason(flow.member(DEPOSITORY, dividend)) == (
        "invalid_amount",
        f"{10**9} x {10**9 + 200} > {10**18}",
    )
    declared = flow.member(DEPOSITORY, {**dividend, "amount_per_share": 10**8})
    assert of_type(declared, "dividend_declared")
    (refused,) = flow.member(DEPOSITORY, {"type": "issue", "asset": SHARE, "account": "A2",
                                          "amount": 10**10})  # fmt: skip
    assert refused["reason"] == "amount_too_large"  # 10^8 a share on more than 10^10 shares
    flow.day(20260107)  # recorded: the bound is lifted
    assert flow.venue.settlement.registry(SHARE).supply_max == 10**18
