"""One rule, one place: the buy requirement, fee rounding and the cash of a trade's DvP are
each one function (settlement/fees.py), who receives what in a trade's DvP is one function
(`settlement.engine.deliver_versus_payment`), and every hot path that applies the rule calls
it.

Each test replaces the code of one function (`__code__`, so that every binding of it follows:
module names, names bound to locals in loops, closures) with a visibly different rule, runs the
venue through each path that applies the rule, and sees each result follow the replaced rule.
A path that kept its own copy of the formula would keep the old result, or leave holds that
no longer add up (`Desk.apply` calls `venue.check()` after every command). Each scenario also
runs under the real rule, and every observation must differ between the two.

The venue's state hash has one definition too: `Venue.state_hash` is the commitment that
block headers sign, which `VenueMachine` keeps incrementally.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from exchange import compiled
from exchange.venue.commitment import commitment_of_snapshot
from exchange.venue.machine import VenueMachine
from exchange.venue.venue import Venue
from exchange.venue.wire import venue_command_to_dict
from ledger.canonical import canonical_bytes
from matching.types import Phase
from settlement import fees
from settlement.commands import SetFeeSchedule, SettleTrade
from settlement.engine import SettlementEngine
from settlement.events import TradeCleared, TradeSettled
from settlement.fees import FeeSchedule
from tests.test_venue import CASH, FEE, OPERATOR, TAX, Desk, build_desk

# A compiled caller calls the compiled function directly, and no patch reaches it: these tests
# run on the pure build, the suite's default (tests/conftest.py), which is the reference.
pytestmark = pytest.mark.skipif(
    compiled.current().build == "compiled",
    reason="patches a function's code, which compiled callers do not follow (pure build only)",
)

Requirement = Callable[[int, int, int], int]
Observations = dict[str, Any]


def fake_requirement(price: int, quantity: int, commission_bps: int, accrual: int = 0) -> int:
    """Seven fen per share more than the real rule at the test's prices (3 bps), and it
    follows the commission rate (and a bond's accrual, one fen per 10^6)."""
    return quantity * (price + 5 + commission_bps + accrual // 1_000_000)


def fake_fee(notional: int, bps: int) -> int:
    """Half the real fee."""
    return notional * bps // 20_000


def fake_trade_cash(
    schedule: FeeSchedule, price: int, quantity: int, accrual: int = 0
) -> tuple[int, int, int, int]:
    """The real cash but one fen more stamp duty, taken from the seller (a bond's accrued
    interest as the real rule's)."""
    notional = price * quantity
    commission = notional * schedule.commission_bps // 10_000
    stamp_duty = notional * schedule.stamp_duty_bps // 10_000 + 1
    notional += quantity * accrual // 3_650_000
    return notional + commission, notional - commission - stamp_duty, commission, stamp_duty


def fake_deliver(
    security: Any,
    shares_to: dict[str, int],
    cash: Any,
    cash_to: dict[str, int],
    quantity: int,
    buyer: str,
    seller: str,
    amounts: tuple[int, int, int, int],
) -> None:
    """The real DvP but one fen of what the seller receives goes to the fee account."""
    _, receives, commission, stamp_duty = amounts
    shares_to[buyer] = shares_to.get(buyer, 0) + quantity
    cash_to[seller] = cash_to.get(seller, 0) + receives - 1
    fees = security.fees
    cash_to[fees.fee_account] = cash_to.get(fees.fee_account, 0) + 2 * commission + 1
    if stamp_duty:
        cash_to[fees.tax_account] = cash_to.get(fees.tax_account, 0) + stamp_duty


def patch(monkeypatch: pytest.MonkeyPatch, function: Any, fake: Any) -> None:
    """Give `function` the code of `fake`: every caller of the one function object follows."""
    assert function.__code__.co_argcount == fake.__code__.co_argcount, fake
    monkeypatch.setattr(function, "__code__", fake.__code__)


def both_rules(
    monkeypatch: pytest.MonkeyPatch,
    function: Any,
    fake: Any,
    scenario: Callable[[Any], Observations],
) -> None:
    """Run `scenario(rule)` under the real rule, then under `fake`; every observation must
    differ between the two (each scenario asserts that its results follow `rule`)."""
    observed_real = scenario(function)
    patch(monkeypatch, function, fake)
    observed_fake = scenario(fake)
    same = {name for name, value in observed_real.items() if observed_fake[name] == value}
    assert not same, f"these paths did not follow the patched rule: {sorted(same)}"


def hold(desk: Desk, symbol: str, account: str) -> int:
    """What `account` holds in cash for its resting orders on the GROSS `symbol` (read from
    the registry, not through the venue's rule)."""
    return desk.venue.settlement.held(CASH, symbol, account)


def lock(desk: Desk, order_id: int) -> int:
    """The cash lock of the net-mode order `order_id` (read from the registry)."""
    return desk.venue.settlement.locked_by(CASH, order_id)


def set_commission(desk: Desk, symbol: str, commission_bps: int) -> None:
    desk.apply(
        SetFeeSchedule(
            command_id=desk.next_id(),
            actor=OPERATOR,
            asset=symbol,
            commission_bps=commission_bps,
            stamp_duty_bps=10,
            fee_account=FEE,
            tax_account=TAX,
        )
    )


# -- the buy requirement -------------------------------------------------------------------


def requirement_scenario(need: Requirement) -> Observations:
    """Every path that funds a buy, each checked against `need`; returns what each path
    did, by name."""
    seen: Observations = {}
    desk = build_desk()
    # place (GROSS): the funding check, then the hold of what rests
    desk.deposit("M1", 100 * 1_001)  # the real requirement of 100 at 1000, to the fen
    (first,) = desk.buy(1, "M1", "GRS", 1_000, 100)
    seen["place: funding check"] = type(first).__name__
    desk.cancel("BRK3", 1, "GRS")  # if it rests (the real rule), it leaves the book
    desk.buy(2, "A1", "GRS", 1_000, 100)
    assert hold(desk, "GRS", "A1") == need(1_000, 100, 3)
    seen["place: hold"] = hold(desk, "GRS", "A1")
    # amend up in quantity, then down in price
    desk.amend("BRK1", 2, "GRS", quantity=200)
    assert hold(desk, "GRS", "A1") == need(1_000, 200, 3)
    seen["amend: quantity"] = hold(desk, "GRS", "A1")
    desk.amend("BRK1", 2, "GRS", price=990)
    assert hold(desk, "GRS", "A1") == need(990, 200, 3)
    seen["amend: price"] = hold(desk, "GRS", "A1")
    # a fee change funds each resting buy to its new requirement
    set_commission(desk, "GRS", 10)
    assert hold(desk, "GRS", "A1") == need(990, 200, 10)
    seen["fee change"] = hold(desk, "GRS", "A1")
    set_commission(desk, "GRS", 3)
    # fill as maker: a resting buy gives up its requirement for the shares it bought
    desk.sell(3, "B1", "GRS", 990, 100)
    assert hold(desk, "GRS", "A1") == need(990, 100, 3)
    seen["fill as maker"] = desk.held(CASH, "A1")
    # cancel gives back exactly what the order holds
    desk.cancel("BRK1", 2, "GRS")
    assert hold(desk, "GRS", "A1") == 0
    # fill as taker: what rests after trading is held
    desk.sell(4, "B1", "GRS", 1_000, 100)
    desk.buy(5, "A2", "GRS", 1_000, 300)
    assert hold(desk, "GRS", "A2") == need(1_000, 200, 3)
    seen["fill as taker"] = hold(desk, "GRS", "A2")
    # net modes: the lock at place, a fill as maker (CASH_NET) and as taker (NET_NET)
    desk.buy(6, "A1", "CSN", 1_000, 200)
    assert lock(desk, 6) == need(1_000, 200, 3)
    seen["net: place"] = lock(desk, 6)
    desk.sell(7, "B1", "CSN", 990, 100)
    assert lock(desk, 6) == need(1_000, 100, 3)
    seen["net: fill as maker"] = desk.held(CASH, "A1")
    desk.sell(8, "B2", "NTT", 1_000, 100)
    desk.buy(9, "A2", "NTT", 1_000, 300)
    assert lock(desk, 9) == need(1_000, 200, 3)
    seen["net: fill as taker"] = lock(desk, 9)
    return seen


def test_every_funding_path_follows_the_one_buy_requirement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    both_rules(monkeypatch, fees.buy_requirement, fake_requirement, requirement_scenario)


# -- fee rounding and the cash of a trade ----------------------------------------------------


def trade_scenario(
    cash_of: Callable[[FeeSchedule, int, int], tuple[int, ...]], diverted: int = 0
) -> Observations:
    """Every path that settles a trade, each checked against `cash_of` (the cash of a trade:
    buyer pays, seller receives, commission, stamp duty) and against a DvP that gives the fee
    account `diverted` fen of what the seller receives; returns each path's settlement (its
    event's cash and the cash that moved)."""
    seen: Observations = {}
    schedule = FeeSchedule(commission_bps=3, stamp_duty_bps=10)
    desk = build_desk()

    def settled(engine: SettlementEngine, run: Callable[[], list[Any]], path: str) -> None:
        """Run one path; its trade's event and the cash that moved must follow `cash_of`."""
        before = cash_worth(engine)
        (done,) = [e for e in run() if type(e) in (TradeSettled, TradeCleared)]
        cash = tuple(done)[-4:]  # paid/owed, received/owed, commission, stamp duty
        pays, receives, commission, stamp_duty = cash_of(schedule, done.price, done.quantity)
        assert cash == (pays, receives, commission, stamp_duty), path
        after = cash_worth(engine)
        moved = {a: after[a] - before.get(a, 0) for a in after if after[a] != before.get(a, 0)}
        expected = {
            done.buyer: -pays,
            done.seller: receives - diverted,
            FEE: 2 * commission + diverted,
            TAX: stamp_duty,
        }
        assert moved == {a: n for a, n in expected.items() if n}, path
        seen[path] = (cash, sorted(moved.items()))

    settlement = desk.venue.settlement
    desk.sell(1, "B1", "GRS", 1_003, 300)
    settled(settlement, lambda: desk.buy(2, "A1", "GRS", 1_003, 300), "gross: fill as taker")
    desk.buy(3, "A1", "GRS", 1_007, 700)
    settled(settlement, lambda: desk.sell(4, "B2", "GRS", 1_007, 700), "gross: fill as maker")
    desk.sell(5, "B1", "CSN", 1_003, 300)
    settled(settlement, lambda: desk.buy(6, "A1", "CSN", 1_003, 300), "net: fill as taker")
    desk.buy(7, "A1", "NTT", 1_007, 700)
    settled(settlement, lambda: desk.sell(8, "B2", "NTT", 1_007, 700), "net: fill as maker")
    desk.set_phase("GRS", Phase.CALL_AUCTION)
    desk.buy(9, "A2", "GRS", 1_011, 500)
    desk.sell(10, "C1", "GRS", 1_011, 500)
    settled(settlement, lambda: desk.set_phase("GRS", Phase.CONTINUOUS), "gross: auction uncross")
    trade = SettleTrade(  # the command, on the venue's settlement engine: legs from available
        command_id=desk.next_id(),
        actor=OPERATOR,
        trade_id=settlement.last_trade_id + 1,
        asset="GRS",
        price=1_013,
        quantity=300,
        buyer="B2",
        seller="C1",
    )
    settled(settlement, lambda: settlement.apply(trade), "gross: SettleTrade command")
    desk.venue.check()
    return seen


def cash_worth(engine: SettlementEngine) -> dict[str, int]:
    """Each account's cash: available plus locked plus its net position for the cycle."""
    return {
        account: engine.available(CASH, account)
        + engine.locked(CASH, account)
        + engine.position(CASH, account)
        for account in engine.accounts()
    }


def test_every_settlement_path_follows_the_one_fee_rounding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def scenario(rounding: Callable[[int, int], int]) -> Observations:
        def cash_of(schedule: FeeSchedule, price: int, quantity: int) -> tuple[int, ...]:
            notional = price * quantity
            commission = rounding(notional, schedule.commission_bps)
            stamp_duty = rounding(notional, schedule.stamp_duty_bps)
            return notional + commission, notional - commission - stamp_duty, commission, stamp_duty

        return trade_scenario(cash_of)

    both_rules(monkeypatch, fees.fee, fake_fee, scenario)


def test_every_settlement_path_follows_the_one_trade_cash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    both_rules(monkeypatch, fees.trade_cash, fake_trade_cash, trade_scenario)


def test_every_settlement_path_follows_the_one_dvp(monkeypatch: pytest.MonkeyPatch) -> None:
    """The taker fills (as buyer and as seller), the net modes, the auction and the
    `SettleTrade` command all deliver through `deliver_versus_payment`."""
    from settlement import engine

    def scenario(deliver: Any) -> Observations:
        return trade_scenario(fees.trade_cash, diverted=1 if deliver is fake_deliver else 0)

    both_rules(monkeypatch, engine.deliver_versus_payment, fake_deliver, scenario)


# -- one state hash --------------------------------------------------------------------------


def test_the_venue_state_hash_is_the_commitment_headers_sign() -> None:
    """`Venue.state_hash` (what `jinlian demo` and `jinlian venue --state-hash` print) is the
    commitment `VenueMachine.state_hash` keeps for block headers, not another hash."""
    desk = build_desk(begin=False)
    machine = VenueMachine(Venue.restore(desk.venue.snapshot()))
    assert desk.venue.state_hash() == machine.state_hash().hex()
    more = build_desk()
    more.buy(1, "A1", "GRS", 1_000, 100)
    more.sell(2, "B1", "GRS", 1_000, 300)
    for command in more.log[len(desk.log) :]:
        machine.apply(canonical_bytes(venue_command_to_dict(command)), 0)
    assert more.venue.state_hash() == machine.state_hash().hex()
    assert more.venue.state_hash() == commitment_of_snapshot(more.venue.snapshot()).hex()
    assert more.venue.state_hash() != desk.venue.state_hash()
