"""Bonds and dividends through the member API of a running exchange: the depository states a
bond's terms and declares a dividend with the client library's methods; other roles may not."""

from __future__ import annotations

import pytest

from exchange.consortium.init import CASH
from exchange.gateway.client import RequestError
from tests.gateway_net import SYMBOL, RunningVenue


async def test_the_depository_defines_a_bond_and_declares_a_dividend(venue: RunningVenue) -> None:
    operator = await venue.client("exchange", member=True)
    depository = await venue.client("depository1", member=True)
    bank = await venue.client("bank1", member=True)
    await operator.admin({"type": "begin_day", "day": 20261123})
    defined = await operator.admin({"type": "define_asset", "command_id": 9_000, "asset": "GB30",
                                    "kind": "security", "issuer": "depository1",
                                    "currency": CASH})  # fmt: skip
    assert [e["type"] for e in defined["events"]] == ["asset_defined"], defined
    opened = await operator.admin({"type": "open_account", "command_id": 9_001,
                                   "account": "TREASURY", "broker": "bank1"})  # fmt: skip
    assert [e["type"] for e in opened["events"]] == ["account_opened"], opened
    terms = {"issuer": "TREASURY", "coupon_bps": 275, "start": 20261101,
             "coupon_days": [20270501, 20271101], "maturity": 20301101}  # fmt: skip
    bond = await depository.define_bond(1, "GB30", **terms)  # type: ignore[arg-type]
    assert [e["type"] for e in bond["events"]] == ["bond_defined"], bond
    declared = await depository.declare_dividend(2, SYMBOL, payer="TREASURY",
                                                 amount_per_share=12, record_day=20261124,
                                                 pay_day=20261126)  # fmt: skip
    assert [(e["type"], e["dividend"]) for e in declared["events"]] == [("dividend_declared", 1)]
    # terms stated twice: refused by the venue, naming the bond
    again = await depository.define_bond(3, "GB30", **terms)  # type: ignore[arg-type]
    assert [(e["reason"], e["value"]) for e in again["events"]] == [("already_a_bond", "GB30")]
    # a bank may not state a bond's terms
    with pytest.raises(RequestError, match="may not send"):
        await bank.define_bond(1, "GB30", **terms)  # type: ignore[arg-type]
    assert venue.gateway is not None and venue.gateway.machine is not None
    actions = venue.gateway.machine.venue.corporate_actions
    found = actions.bond("GB30")
    assert found is not None and found.coupon_days == (20270501, 20271101)
