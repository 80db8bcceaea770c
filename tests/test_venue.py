"""The Venue's rules as unit tests with exact events: pre-trade funding and reconciliation of
every order's lock, T+1, odd lots, broker authorization, the trading calendar, DvP in the three
settlement modes, netting, all-or-nothing cycles, idempotency, replay, snapshots and the JSON
vocabulary.

Cash amounts are written out by hand (fen; 3 bps commission each side and 10 bps stamp duty
on the seller, each rounded down per trade) rather than recomputed with the code under test.
A buy locks, per share, its limit price plus the commission on one share rounded up to the fen
(`Rules.buy_need`): at prices 900..1100 and 3 bps that is price + 1 fen per share. Every
command goes through `Desk.apply`, which calls `venue.check()` after it.

The last section keeps a regression test for each defect these tests found in the venue.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import settlement.corporate_action_types as cat
import settlement.supply_chain_types as scf
from exchange.venue import wire
from exchange.venue.types import (
    BeginDay,
    BrokerCommand,
    DayBegun,
    DayEnded,
    DayRefused,
    EndDay,
    Event,
    InstrumentListed,
    ListingRefused,
    ListInstrument,
    OrderRefused,
    OrderUnfunded,
    VenueCommand,
    VenueRejectReason,
)
from exchange.venue.venue import SETTLEMENT_COMMANDS, GroupedOrders, Venue
from matching.commands import AmendOrder, CancelOrder, PlaceOrder, SetPhase
from matching.engine import RestingOrder
from matching.events import (
    AmendRejected,
    AuctionUncrossed,
    CancelRejected,
    InstrumentAdded,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    OrderReduced,
    OrderRejected,
    PhaseChanged,
    SelfTradePrevented,
    TradeExecuted,
)
from matching.types import CancelReason, OrderKind, Phase, Side, StpMode, TimeInForce
from matching.types import RejectReason as MatchingReason
from settlement.commands import Command as SettlementCommand
from settlement.commands import (
    DefineAsset,
    Deposit,
    Freeze,
    Issue,
    OpenAccount,
    Redeem,
    SetFeeSchedule,
    SettleCycle,
    Transfer,
    Unfreeze,
    Withdraw,
)
from settlement.events import (
    AssetNetted,
    CommandRejected,
    CycleFailed,
    CycleSettled,
    Deposited,
    FeeScheduleSet,
    PositionSettled,
    TradeCleared,
    TradeSettled,
)
from settlement.types import AssetKind, RejectReason, SettlementMode

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderKind.LIMIT, OrderKind.MARKET
DAY, GTC, IOC, FOK = TimeInForce.DAY, TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK
GROSS, CASH_NET, NET_NET = SettlementMode.GROSS, SettlementMode.CASH_NET, SettlementMode.NET_NET
CONTINUOUS, CLOSED = Phase.CONTINUOUS, Phase.CLOSED
R = VenueRejectReason

OPERATOR, REGULATOR, BANK, ISSUER = "EXCHANGE", "CSRC", "PBOC", "ISSUER"
CASH = "CNY"
BROKERS = ("BRK1", "BRK2", "BRK3")
FEE, TAX = "FEE", "TAX"  # owned by the exchange
ACCOUNTS = {"A1": "BRK1", "A2": "BRK1", "B1": "BRK2", "B2": "BRK2", "C1": "BRK3", "M1": "BRK3"}
DAY1, DAY2, DAY3 = 20240102, 20240103, 20240104


@dataclass(frozen=True, slots=True, kw_only=True)
class Security:
    symbol: str
    mode: SettlementMode
    t_plus: int
    commission_bps: int = 0
    stamp_duty_bps: int = 0
    lot: int = 100
    tick_size: int = 1
    reference_price: int = 1000
    price_limit_pct: int | None = 10  # limits [900, 1100] around 1000


GRS = Security(symbol="GRS", mode=GROSS, t_plus=1, commission_bps=3, stamp_duty_bps=10)
BND = Security(symbol="BND", mode=GROSS, t_plus=0, lot=10)  # a bond: T+0, no fees
CSN = Security(symbol="CSN", mode=CASH_NET, t_plus=1, commission_bps=3, stamp_duty_bps=10)
NTT = Security(symbol="NTT", mode=NET_NET, t_plus=0, commission_bps=3, stamp_duty_bps=10)
SECURITIES = (GRS, BND, CSN, NTT)

# Opening balances. M1 starts empty: tests fund it to the fen. A2 holds an odd lot of GRS.
CASH_AT_START = {"A1": 10_000_000, "A2": 1_000_000, "B1": 10_000_000, "B2": 10_000_000}
CASH_AT_START |= {"C1": 10_000_000}
SHARES_AT_START = {"B1": 1_000, "B2": 1_000, "C1": 1_000}


@dataclass
class Desk:
    """A venue and the commands applied to it; `apply` checks every invariant after each."""

    venue: Venue
    log: list[VenueCommand] = field(default_factory=list)
    command_id: int = 0
    checking: bool = True  # off only for a test of many commands, which checks at its end

    def next_id(self) -> int:
        self.command_id += 1
        return self.command_id

    def apply(self, command: VenueCommand) -> list[Event]:
        events = self.venue.apply(command)
        if self.checking:
            self.venue.check()
        self.log.append(command)
        return events

    def place(
        self,
        broker: str,
        order_id: int,
        account: str,
        symbol: str,
        side: Side,
        price: int | None,
        quantity: int,
        *,
        tif: TimeInForce = DAY,
        post_only: bool = False,
        stp_group: str = "",
        stp_mode: StpMode = StpMode.CANCEL_NEWEST,
    ) -> list[Event]:
        order = PlaceOrder(
            order_id=order_id,
            symbol=symbol,
            account=account,
            side=side,
            kind=LIMIT if price is not None else MARKET,
            price=price,
            quantity=quantity,
            tif=tif,
            post_only=post_only,
            stp_group=stp_group,
            stp_mode=stp_mode,
        )
        return self.apply(BrokerCommand(broker=broker, command=order))

    def buy(
        self,
        order_id: int,
        account: str,
        symbol: str,
        price: int | None,
        quantity: int,
        **options: Any,
    ) -> list[Event]:
        return self.place(
            ACCOUNTS[account], order_id, account, symbol, BUY, price, quantity, **options
        )

    def sell(
        self,
        order_id: int,
        account: str,
        symbol: str,
        price: int | None,
        quantity: int,
        **options: Any,
    ) -> list[Event]:
        return self.place(
            ACCOUNTS[account], order_id, account, symbol, SELL, price, quantity, **options
        )

    def cancel(self, broker: str, order_id: int, symbol: str) -> list[Event]:
        command = CancelOrder(order_id=order_id, symbol=symbol)
        return self.apply(BrokerCommand(broker=broker, command=command))

    def amend(
        self,
        broker: str,
        order_id: int,
        symbol: str,
        *,
        price: int | None = None,
        quantity: int | None = None,
    ) -> list[Event]:
        command = AmendOrder(order_id=order_id, symbol=symbol, price=price, quantity=quantity)
        return self.apply(BrokerCommand(broker=broker, command=command))

    def deposit(self, account: str, amount: int) -> list[Event]:
        return self.apply(
            Deposit(
                command_id=self.next_id(), actor=BANK, asset=CASH, account=account, amount=amount
            )
        )

    def issue(self, symbol: str, account: str, amount: int) -> list[Event]:
        return self.apply(
            Issue(
                command_id=self.next_id(),
                actor=ISSUER,
                asset=symbol,
                account=account,
                amount=amount,
            )
        )

    def settle_cycle(self, command_id: int | None = None) -> list[Event]:
        command_id = self.next_id() if command_id is None else command_id
        return self.apply(SettleCycle(command_id=command_id, actor=OPERATOR))

    def set_phase(self, symbol: str, phase: Phase) -> list[Event]:
        return self.apply(SetPhase(symbol=symbol, phase=phase))

    def open_all(self, phase: Phase = CONTINUOUS) -> None:
        for symbol in self.venue.matching.symbols():
            self.set_phase(symbol, phase)

    def next_day(self, ended: int, begun: int) -> None:
        self.apply(EndDay(day=ended))
        self.apply(BeginDay(day=begun))
        self.open_all()

    def held(self, asset: str, account: str) -> tuple[int, int]:
        """(available, locked) of `account` in `asset`."""
        settlement = self.venue.settlement
        return settlement.available(asset, account), settlement.locked(asset, account)

    def lock_of(self, asset: str, order_id: int) -> int:
        """What order `order_id` holds in `asset`: its share of its account's hold (GROSS) or
        its lock (net modes); 0 once it is done. (`apply` checks the holds add up.)"""
        order = self.venue.matching.resting_order(order_id)
        if order is not None:
            rules = self.venue.rules(order.symbol)
            assert asset == (rules.currency if order.side is BUY else order.symbol), asset
        return self.venue.order_funds(order_id)

    def registries(self) -> list[dict[str, Any]]:
        """Every balance, lock, escrow and position (the settlement state without outcomes)."""
        settlement = self.venue.settlement
        return [settlement.registry(asset).snapshot() for asset in settlement.assets()]


def setup_commands(securities: tuple[Security, ...] = SECURITIES) -> list[VenueCommand]:
    """Cash, securities with fees, accounts of three brokers, fee and tax accounts, listings."""
    commands: list[VenueCommand] = [
        DefineAsset(command_id=0, actor=OPERATOR, asset=CASH, kind=AssetKind.CASH, issuer=BANK)
    ]
    for security in securities:
        commands.append(
            DefineAsset(
                command_id=0,
                actor=OPERATOR,
                asset=security.symbol,
                kind=AssetKind.SECURITY,
                issuer=ISSUER,
                mode=security.mode,
            )
        )
    for account, broker in [*ACCOUNTS.items(), (FEE, OPERATOR), (TAX, OPERATOR)]:
        commands.append(OpenAccount(command_id=0, actor=OPERATOR, account=account, broker=broker))
    for security in securities:
        if security.commission_bps or security.stamp_duty_bps:
            commands.append(
                SetFeeSchedule(
                    command_id=0,
                    actor=OPERATOR,
                    asset=security.symbol,
                    commission_bps=security.commission_bps,
                    stamp_duty_bps=security.stamp_duty_bps,
                    fee_account=FEE,
                    tax_account=TAX,
                )
            )
        commands.append(
            ListInstrument(
                symbol=security.symbol,
                tick_size=security.tick_size,
                lot=security.lot,
                reference_price=security.reference_price,
                price_limit_pct=security.price_limit_pct,
                t_plus=security.t_plus,
            )
        )
    for account, amount in CASH_AT_START.items():
        commands.append(
            Deposit(command_id=0, actor=BANK, asset=CASH, account=account, amount=amount)
        )
    for security in securities:
        for account, amount in SHARES_AT_START.items():
            commands.append(
                Issue(
                    command_id=0,
                    actor=ISSUER,
                    asset=security.symbol,
                    account=account,
                    amount=amount,
                )
            )
    if GRS in securities:
        commands.append(Issue(command_id=0, actor=ISSUER, asset="GRS", account="A2", amount=150))
    return commands


def build_desk(*, begin: bool = True, securities: tuple[Security, ...] = SECURITIES) -> Desk:
    """A funded venue; with `begin`, day DAY1 is open and every book is continuous."""
    desk = Desk(Venue(operator=OPERATOR, regulator=REGULATOR))
    for template in setup_commands(securities):
        command: Any = template
        if hasattr(template, "command_id"):  # number the settlement commands from 1
            command = replace(command, command_id=desk.next_id())
        events = desk.apply(command)
        assert not any(isinstance(e, CommandRejected | ListingRefused) for e in events), events
    if begin:
        assert desk.apply(BeginDay(day=DAY1)) == [DayBegun(day=DAY1)]
        for security in securities:
            desk.set_phase(security.symbol, CONTINUOUS)
    return desk


@pytest.fixture
def desk() -> Desk:
    return build_desk()


def reason_of(events: list[Event], index: int = 0) -> object:
    """The `reason` of one event: refusals and cancels of every kind carry one."""
    event: Any = events[index]
    return event.reason


def accepted(
    order_id: int,
    account: str,
    symbol: str,
    side: Side,
    price: int | None,
    quantity: int,
    tif: TimeInForce = DAY,
) -> OrderAccepted:
    kind = LIMIT if price is not None else MARKET
    return OrderAccepted(
        order_id=order_id,
        symbol=symbol,
        account=account,
        side=side,
        kind=kind,
        price=price,
        quantity=quantity,
        tif=tif,
    )


def trade(
    trade_id: int,
    symbol: str,
    price: int,
    quantity: int,
    buy: tuple[int, str],
    sell: tuple[int, str],
    aggressor: Side | None,
) -> TradeExecuted:
    return TradeExecuted(
        trade_id=trade_id,
        symbol=symbol,
        price=price,
        quantity=quantity,
        buy_order_id=buy[0],
        sell_order_id=sell[0],
        buy_account=buy[1],
        sell_account=sell[1],
        aggressor=aggressor,
    )


# -- setup -------------------------------------------------------------------------------------


def test_setup_lists_every_security_with_its_rules(desk: Desk) -> None:
    venue = desk.venue
    assert venue.day == DAY1 and venue.day_open
    for security in SECURITIES:
        rules = venue.rules(security.symbol)
        assert (rules.currency, rules.t_plus, rules.lot) == (CASH, security.t_plus, security.lot)
        assert rules.upper_limit == 1100
        assert venue.settlement.registry(security.symbol).mode is security.mode
    assert venue.settlement.supply(CASH) == 40_000_000 + 1_000_000
    assert venue.settlement.supply("GRS") == 3_150
    assert desk.held(CASH, "M1") == (0, 0)


def test_listing_is_refused_for_unknown_asset_cash_bad_rules_and_duplicates() -> None:
    desk = build_desk(securities=(GRS,))
    define = DefineAsset(
        command_id=desk.next_id(),
        actor=OPERATOR,
        asset="NEW",
        kind=AssetKind.SECURITY,
        issuer=ISSUER,
    )
    desk.apply(define)
    cases = [
        ("NOPE", 1, R.UNKNOWN_ASSET),
        (CASH, 1, R.UNKNOWN_ASSET),
        ("NEW", 2, R.INVALID_RULES),
        ("GRS", 1, R.DUPLICATE_INSTRUMENT),
    ]
    for symbol, t_plus, reason in cases:
        listing = ListInstrument(
            symbol=symbol,
            tick_size=1,
            lot=100,
            reference_price=1000,
            price_limit_pct=10,
            t_plus=t_plus,
        )
        assert desk.apply(listing) == [ListingRefused(symbol=symbol, reason=reason)]
    listing = ListInstrument(
        symbol="NEW", tick_size=1, lot=100, reference_price=1000, price_limit_pct=10, t_plus=0
    )
    assert desk.apply(listing) == [
        InstrumentAdded(
            symbol="NEW",
            tick_size=1,
            lot=100,
            reference_price=1000,
            price_limit_pct=10,
            lower_limit=900,
            upper_limit=1100,
        ),
        InstrumentListed(symbol="NEW", currency=CASH, t_plus=0),
    ]


# -- pre-trade funding -------------------------------------------------------------------------


def test_buy_locks_notional_plus_commission_rounded_up_per_share(desk: Desk) -> None:
    # 200 x 1000 = 200_000 fen; commission on one share 0.3 fen -> 1: 200 x 1001.
    assert desk.buy(1, "A1", "GRS", 1000, 200) == [accepted(1, "A1", "GRS", BUY, 1000, 200)]
    assert desk.lock_of(CASH, 1) == 200_200
    assert desk.held(CASH, "A1") == (10_000_000 - 200_200, 200_200)
    # No fees: exactly the notional.
    assert desk.buy(2, "A1", "BND", 990, 30) == [accepted(2, "A1", "BND", BUY, 990, 30)]
    assert desk.lock_of(CASH, 2) == 29_700
    assert desk.held(CASH, "A1") == (10_000_000 - 200_200 - 29_700, 229_900)


def test_buy_lock_covers_the_commission_of_any_fill(desk: Desk) -> None:
    # 100 x 1001 = 100_100 fen, exact commission 30 (30.03 rounded down); the lock holds
    # 100 x (1001 + 1): the rounding costs at most a fen per share, and comes back.
    desk.buy(1, "A1", "GRS", 1001, 100)
    assert desk.lock_of(CASH, 1) == 100_200
    desk.sell(2, "B1", "GRS", 1001, 100)
    assert desk.held(CASH, "A1") == (10_000_000 - 100_130, 0)


def test_sell_locks_exactly_the_shares(desk: Desk) -> None:
    assert desk.sell(1, "B1", "GRS", 1050, 300) == [accepted(1, "B1", "GRS", SELL, 1050, 300)]
    assert desk.lock_of("GRS", 1) == 300
    assert desk.held("GRS", "B1") == (700, 300)
    assert desk.held(CASH, "B1") == (10_000_000, 0)  # a sale locks no cash for its fees


def test_market_buy_is_funded_at_the_upper_limit_and_releases_the_rest() -> None:
    desk = build_desk()
    desk.sell(1, "B1", "GRS", 1000, 100)
    desk.sell(2, "B2", "GRS", 1050, 100)
    # At the upper limit 1100: 200 x (1100 + 1) = 220_200.
    desk.deposit("M1", 220_199)
    assert desk.buy(3, "M1", "GRS", None, 200, tif=IOC) == [
        OrderUnfunded(
            order_id=3,
            symbol="GRS",
            account="M1",
            asset=CASH,
            required=220_200,
            available=220_199,
            reason=R.INSUFFICIENT_CASH,
        )
    ]
    desk.deposit("M1", 1)
    # Fills 100 @ 1000 (100_000 + 30) and 100 @ 1050 (105_000 + 31); the rest comes back.
    assert desk.buy(4, "M1", "GRS", None, 200, tif=IOC) == [
        accepted(4, "M1", "GRS", BUY, None, 200, IOC),
        trade(1, "GRS", 1000, 100, (4, "M1"), (1, "B1"), BUY),
        TradeSettled(
            trade_id=1,
            asset="GRS",
            currency=CASH,
            price=1000,
            quantity=100,
            buyer="M1",
            seller="B1",
            buyer_paid=100_030,
            seller_received=99_870,
            commission=30,
            stamp_duty=100,
        ),
        trade(2, "GRS", 1050, 100, (4, "M1"), (2, "B2"), BUY),
        TradeSettled(
            trade_id=2,
            asset="GRS",
            currency=CASH,
            price=1050,
            quantity=100,
            buyer="M1",
            seller="B2",
            buyer_paid=105_031,
            seller_received=104_864,
            commission=31,
            stamp_duty=105,
        ),
    ]
    assert desk.lock_of(CASH, 4) == 0
    assert desk.held(CASH, "M1") == (220_200 - 100_030 - 105_031, 0)
    assert desk.held("GRS", "M1") == (200, 0)


def test_market_buy_remainder_is_cancelled_and_released(desk: Desk) -> None:
    desk.sell(1, "B1", "GRS", 1000, 100)
    assert desk.buy(2, "A1", "GRS", None, 300, tif=IOC)[-1] == OrderCancelled(
        order_id=2, symbol="GRS", quantity=200, reason=CancelReason.UNFILLED_REMAINDER
    )
    assert desk.lock_of(CASH, 2) == 0
    assert desk.held(CASH, "A1") == (10_000_000 - 100_030, 0)


def test_market_sell_locks_its_shares_and_releases_the_unfilled_rest(desk: Desk) -> None:
    desk.buy(1, "A1", "GRS", 1000, 100)
    events = desk.sell(2, "B1", "GRS", None, 300, tif=IOC)
    assert events[-1] == OrderCancelled(
        order_id=2, symbol="GRS", quantity=200, reason=CancelReason.UNFILLED_REMAINDER
    )
    assert desk.lock_of("GRS", 2) == 0
    assert desk.held("GRS", "B1") == (900, 0)


def test_price_improvement_releases_the_difference_at_once(desk: Desk) -> None:
    desk.sell(1, "B1", "GRS", 990, 100)
    # A1 locks 200 x 1001. Fill 100 @ 990: 99_000 + 29 (29.7 rounded down).
    assert desk.buy(2, "A1", "GRS", 1000, 200) == [
        accepted(2, "A1", "GRS", BUY, 1000, 200),
        trade(1, "GRS", 990, 100, (2, "A1"), (1, "B1"), BUY),
        TradeSettled(
            trade_id=1,
            asset="GRS",
            currency=CASH,
            price=990,
            quantity=100,
            buyer="A1",
            seller="B1",
            buyer_paid=99_029,
            seller_received=98_872,
            commission=29,
            stamp_duty=99,
        ),
    ]
    # The 100 still open need 100 x 1001; what the better price saved is free again.
    assert desk.lock_of(CASH, 2) == 100_100
    assert desk.held(CASH, "A1") == (10_000_000 - 99_029 - 100_100, 100_100)


def test_partial_fill_keeps_exactly_the_requirement_of_the_remainder(desk: Desk) -> None:
    desk.buy(1, "A1", "GRS", 1000, 300)
    desk.sell(2, "B1", "GRS", 1000, 100)
    assert desk.lock_of(CASH, 1) == 200_200
    desk.sell(3, "A2", "GRS", 1000, 150)  # an odd lot sold whole leaves 50 open
    assert desk.lock_of(CASH, 1) == 50_050
    desk.sell(4, "C1", "GRS", 950, 100)  # fills the 50 at 1000, the maker's price
    assert desk.lock_of(CASH, 1) == 0
    assert desk.venue.matching.order(1) is None
    assert desk.lock_of("GRS", 4) == 50  # the seller's remainder keeps its shares


def test_cancel_releases_everything(desk: Desk) -> None:
    desk.buy(1, "A1", "GRS", 1000, 300)
    desk.sell(2, "B1", "GRS", 1000, 100)
    assert desk.cancel("BRK1", 1, "GRS") == [
        OrderCancelled(order_id=1, symbol="GRS", quantity=200, reason=CancelReason.REQUESTED)
    ]
    assert desk.lock_of(CASH, 1) == 0
    assert desk.held(CASH, "A1") == (10_000_000 - 100_030, 0)
    desk.sell(3, "B1", "GRS", 1050, 200)
    desk.cancel("BRK2", 3, "GRS")
    assert desk.held("GRS", "B1") == (900, 0)


def test_end_day_expires_day_orders_releasing_their_locks_and_keeps_gtc(desk: Desk) -> None:
    desk.buy(1, "A1", "GRS", 1000, 100)
    desk.buy(2, "A1", "GRS", 990, 100, tif=GTC)
    desk.sell(3, "B1", "GRS", 1050, 200)
    desk.sell(4, "B1", "CSN", 1050, 100, tif=GTC)
    events = desk.apply(EndDay(day=DAY1))
    assert events == [
        PhaseChanged(symbol="BND", phase=CLOSED, previous=CONTINUOUS),
        PhaseChanged(symbol="CSN", phase=CLOSED, previous=CONTINUOUS),
        PhaseChanged(symbol="GRS", phase=CLOSED, previous=CONTINUOUS),
        OrderExpired(order_id=1, symbol="GRS", quantity=100),
        OrderExpired(order_id=3, symbol="GRS", quantity=200),
        PhaseChanged(symbol="NTT", phase=CLOSED, previous=CONTINUOUS),
        DayEnded(day=DAY1),
    ]
    assert desk.lock_of(CASH, 1) == 0 and desk.lock_of("GRS", 3) == 0
    assert desk.lock_of(CASH, 2) == 99_100  # 100 x (990 + 1)
    assert desk.lock_of("CSN", 4) == 100
    assert desk.held(CASH, "A1") == (10_000_000 - 99_100, 99_100)
    assert desk.held("GRS", "B1") == (1_000, 0)


def test_end_day_uncrosses_an_auction_and_settles_its_trades(desk: Desk) -> None:
    desk.set_phase("GRS", Phase.CLOSING_AUCTION)
    desk.buy(1, "A1", "GRS", 1020, 100)
    desk.sell(2, "B1", "GRS", 1000, 100)
    events = desk.apply(EndDay(day=DAY1))
    assert events[2:5] == [  # after BND and CSN close
        AuctionUncrossed(symbol="GRS", price=1000, volume=100, imbalance=0),
        trade(1, "GRS", 1000, 100, (1, "A1"), (2, "B1"), None),
        TradeSettled(
            trade_id=1,
            asset="GRS",
            currency=CASH,
            price=1000,
            quantity=100,
            buyer="A1",
            seller="B1",
            buyer_paid=100_030,
            seller_received=99_870,
            commission=30,
            stamp_duty=100,
        ),
    ]
    assert desk.held(CASH, "A1") == (10_000_000 - 100_030, 0)  # 2_000 of improvement back


def test_ioc_remainder_is_released(desk: Desk) -> None:
    desk.sell(1, "B1", "GRS", 1000, 100)
    assert desk.buy(2, "A1", "GRS", 1000, 300, tif=IOC)[-1] == OrderCancelled(
        order_id=2, symbol="GRS", quantity=200, reason=CancelReason.UNFILLED_REMAINDER
    )
    assert desk.lock_of(CASH, 2) == 0
    assert desk.held(CASH, "A1") == (10_000_000 - 100_030, 0)


def test_fok_kill_releases_everything(desk: Desk) -> None:
    desk.sell(1, "B1", "GRS", 1000, 100)
    assert desk.buy(2, "A1", "GRS", 1000, 300, tif=FOK) == [
        accepted(2, "A1", "GRS", BUY, 1000, 300, FOK),
        OrderCancelled(order_id=2, symbol="GRS", quantity=300, reason=CancelReason.FILL_OR_KILL),
    ]
    assert desk.held(CASH, "A1") == (10_000_000, 0)
    assert reason_of(desk.sell(3, "C1", "GRS", 1000, 300, tif=FOK), -1) is CancelReason.FILL_OR_KILL
    assert desk.held("GRS", "C1") == (1_000, 0)


def test_stp_cancel_newest_releases_the_taker(desk: Desk) -> None:
    desk.buy(1, "B1", "GRS", 1000, 100, stp_group="b1")
    assert desk.sell(2, "B1", "GRS", 1000, 100, stp_group="b1") == [
        accepted(2, "B1", "GRS", SELL, 1000, 100),
        SelfTradePrevented(
            symbol="GRS",
            taker_order_id=2,
            maker_order_id=1,
            mode=StpMode.CANCEL_NEWEST,
            quantity=100,
        ),
        OrderCancelled(order_id=2, symbol="GRS", quantity=100, reason=CancelReason.SELF_TRADE),
    ]
    assert desk.held("GRS", "B1") == (1_000, 0)
    assert desk.lock_of(CASH, 1) == 100_100


def test_stp_cancel_oldest_releases_the_maker(desk: Desk) -> None:
    desk.buy(1, "B1", "GRS", 1000, 100, stp_group="b1")
    desk.sell(2, "B1", "GRS", 1000, 100, stp_group="b1", stp_mode=StpMode.CANCEL_OLDEST)
    assert desk.lock_of(CASH, 1) == 0
    assert desk.held(CASH, "B1") == (10_000_000, 0)
    assert desk.lock_of("GRS", 2) == 100  # the taker rests with its shares


def test_stp_cancel_both_releases_both(desk: Desk) -> None:
    desk.buy(1, "B1", "GRS", 1000, 100, stp_group="b1")
    desk.sell(2, "B1", "GRS", 1000, 100, stp_group="b1", stp_mode=StpMode.CANCEL_BOTH)
    assert desk.held(CASH, "B1") == (10_000_000, 0)
    assert desk.held("GRS", "B1") == (1_000, 0)


def test_stp_decrement_reconciles_the_reduced_maker(desk: Desk) -> None:
    desk.buy(1, "B1", "GRS", 1000, 300, stp_group="b1")
    mode = StpMode.DECREMENT_AND_CANCEL
    assert desk.sell(2, "B1", "GRS", 1000, 100, stp_group="b1", stp_mode=mode) == [
        accepted(2, "B1", "GRS", SELL, 1000, 100),
        SelfTradePrevented(
            symbol="GRS", taker_order_id=2, maker_order_id=1, mode=mode, quantity=100
        ),
        OrderReduced(
            order_id=1, symbol="GRS", quantity=100, remaining=200, reason=CancelReason.SELF_TRADE
        ),
        OrderCancelled(order_id=2, symbol="GRS", quantity=100, reason=CancelReason.SELF_TRADE),
    ]
    assert desk.lock_of(CASH, 1) == 200_200
    assert desk.held("GRS", "B1") == (1_000, 0)


def test_stp_gives_back_the_share_of_a_maker_amended_to_a_new_price(desk: Desk) -> None:
    """The event of a self-trade prevention names the resting order by id alone; its share of
    the account's hold is worked out at the price it rests at now, after an amend."""
    desk.buy(1, "B1", "GRS", 1000, 100, stp_group="b1")
    desk.buy(2, "B1", "GRS", 990, 200)  # the same account's hold covers both
    assert desk.held(CASH, "B1") == (10_000_000 - 100_100 - 198_200, 100_100 + 198_200)
    desk.amend("BRK2", 1, "GRS", price=1010)  # a new price: 100 x (1010 + 1)
    desk.sell(3, "B1", "GRS", 1000, 100, stp_group="b1", stp_mode=StpMode.CANCEL_OLDEST)
    assert desk.venue.matching.order(1) is None
    assert desk.held(CASH, "B1") == (10_000_000 - 198_200, 198_200)  # order 2 alone
    assert desk.lock_of(CASH, 2) == 198_200


def test_stp_after_a_restore_finds_the_resting_order(desk: Desk) -> None:
    desk.buy(1, "B1", "GRS", 1000, 100, stp_group="b1")
    desk.venue = Venue.restore(json.loads(json.dumps(desk.venue.snapshot())))
    desk.sell(2, "B1", "GRS", 1000, 100, stp_group="b1", stp_mode=StpMode.CANCEL_OLDEST)
    assert desk.held(CASH, "B1") == (10_000_000, 0)


def test_grouped_orders_are_pruned_once_done_and_live_ones_kept(desk: Desk) -> None:
    grouped = desk.venue._grouped
    many = GroupedOrders.PRUNE_AT_LEAST + 10
    desk.deposit("A1", 10**9)
    desk.checking = False  # checked once at the end: each check reads the whole book
    for order_id in range(1, many + 1):
        desk.buy(order_id, "A1", "BND", 900, 10, stp_group="a1")
        if order_id > 5:
            desk.cancel("BRK1", order_id, "BND")
    assert len(grouped) < many  # the cancelled ones went at the pruning
    for order_id in range(1, 6):
        assert grouped.get(order_id) is desk.venue.matching.resting_order(order_id)
    desk.venue.check()


def test_check_finds_a_hold_that_is_not_what_the_book_needs(desk: Desk) -> None:
    desk.buy(1, "A1", "GRS", 1000, 100)
    desk.venue.settlement.order_holds(CASH, "GRS").hold("A1", 1)  # one fen too many
    with pytest.raises(AssertionError, match=r"GRS: holds of CNY .*'A1': \(100101, 100100\)"):
        desk.venue.check()


# -- amend -------------------------------------------------------------------------------------


def test_amend_up_locks_more_and_amend_down_releases(desk: Desk) -> None:
    desk.buy(1, "A1", "GRS", 1000, 100)
    assert desk.amend("BRK1", 1, "GRS", quantity=300) == [
        OrderAmended(order_id=1, symbol="GRS", price=1000, quantity=300, priority_kept=False)
    ]
    assert desk.lock_of(CASH, 1) == 300_300
    desk.amend("BRK1", 1, "GRS", price=1050)  # 300 x 1051
    assert desk.lock_of(CASH, 1) == 315_300
    assert desk.amend("BRK1", 1, "GRS", quantity=200) == [
        OrderAmended(order_id=1, symbol="GRS", price=1050, quantity=200, priority_kept=True)
    ]
    assert desk.lock_of(CASH, 1) == 210_200
    desk.amend("BRK1", 1, "GRS", price=950, quantity=400)  # 400 x 951
    assert desk.lock_of(CASH, 1) == 380_400
    assert desk.held(CASH, "A1") == (10_000_000 - 380_400, 380_400)


def test_amend_of_a_sell_locks_and_releases_shares(desk: Desk) -> None:
    desk.sell(1, "B1", "GRS", 1050, 100)
    desk.amend("BRK2", 1, "GRS", quantity=400)
    assert desk.held("GRS", "B1") == (600, 400)
    desk.amend("BRK2", 1, "GRS", quantity=200)
    assert desk.held("GRS", "B1") == (800, 200)
    assert desk.amend("BRK2", 1, "GRS", quantity=1_100) == [
        OrderUnfunded(
            order_id=1,
            symbol="GRS",
            account="B1",
            asset="GRS",
            required=900,
            available=800,
            reason=R.INSUFFICIENT_SECURITIES,
        )
    ]
    assert desk.held("GRS", "B1") == (800, 200)


def test_amend_up_unfunded_is_refused_and_leaves_the_order_unchanged(desk: Desk) -> None:
    desk.deposit("M1", 100_100 + 50_000)
    desk.buy(1, "M1", "GRS", 1000, 100)
    before = desk.venue.state_hash()
    # Another 100 need 100_100 more; 50_000 are free. `required` is what the amend needs
    # beyond the order's current lock (the whole requirement would be 200_200).
    assert desk.amend("BRK3", 1, "GRS", quantity=200) == [
        OrderUnfunded(
            order_id=1,
            symbol="GRS",
            account="M1",
            asset=CASH,
            required=100_100,
            available=50_000,
            reason=R.INSUFFICIENT_CASH,
        )
    ]
    assert desk.venue.state_hash() == before
    assert desk.venue.matching.order(1) == RestingOrder(
        order_id=1, side=BUY, price=1000, quantity=100, account="M1"
    )
    assert desk.lock_of(CASH, 1) == 100_100


def test_amend_that_crosses_settles_and_reconciles(desk: Desk) -> None:
    desk.sell(1, "B1", "GRS", 1000, 100)
    desk.buy(2, "A1", "GRS", 990, 300)
    assert desk.amend("BRK1", 2, "GRS", price=1010) == [
        OrderAmended(order_id=2, symbol="GRS", price=1010, quantity=300, priority_kept=False),
        trade(1, "GRS", 1000, 100, (2, "A1"), (1, "B1"), BUY),
        TradeSettled(
            trade_id=1,
            asset="GRS",
            currency=CASH,
            price=1000,
            quantity=100,
            buyer="A1",
            seller="B1",
            buyer_paid=100_030,
            seller_received=99_870,
            commission=30,
            stamp_duty=100,
        ),
    ]
    assert desk.lock_of(CASH, 2) == 202_200  # 200 x (1010 + 1)


def test_rejected_amend_changes_nothing(desk: Desk) -> None:
    desk.buy(1, "A1", "GRS", 1000, 100)
    before = desk.venue.state_hash()
    assert desk.amend("BRK1", 1, "GRS", price=1200) == [
        AmendRejected(order_id=1, symbol="GRS", reason=MatchingReason.PRICE_OUTSIDE_LIMITS)
    ]
    assert desk.amend("BRK1", 1, "GRS", quantity=100) == [
        AmendRejected(order_id=1, symbol="GRS", reason=MatchingReason.NO_CHANGE)
    ]
    assert desk.venue.state_hash() == before


# -- unfunded orders ---------------------------------------------------------------------------


def test_unfunded_buy_names_asset_required_and_available(desk: Desk) -> None:
    desk.deposit("M1", 100_099)
    before = desk.venue.state_hash()
    assert desk.buy(1, "M1", "GRS", 1000, 100) == [
        OrderUnfunded(
            order_id=1,
            symbol="GRS",
            account="M1",
            asset=CASH,
            required=100_100,
            available=100_099,
            reason=R.INSUFFICIENT_CASH,
        )
    ]
    assert desk.venue.state_hash() == before
    assert desk.venue.matching.order(1) is None
    # Cash locked by a resting order is not available to the next one.
    desk.deposit("M1", 1)
    desk.buy(2, "M1", "GRS", 1000, 100)
    assert desk.buy(3, "M1", "BND", 1000, 10) == [
        OrderUnfunded(
            order_id=3,
            symbol="BND",
            account="M1",
            asset=CASH,
            required=10_000,
            available=0,
            reason=R.INSUFFICIENT_CASH,
        )
    ]


def test_unfunded_sell_names_the_shares(desk: Desk) -> None:
    assert desk.sell(1, "B1", "GRS", 1000, 1_100) == [
        OrderUnfunded(
            order_id=1,
            symbol="GRS",
            account="B1",
            asset="GRS",
            required=1_100,
            available=1_000,
            reason=R.INSUFFICIENT_SECURITIES,
        )
    ]
    desk.sell(2, "B1", "GRS", 1050, 600)
    assert desk.sell(3, "B1", "GRS", 1050, 500) == [
        OrderUnfunded(
            order_id=3,
            symbol="GRS",
            account="B1",
            asset="GRS",
            required=500,
            available=400,
            reason=R.INSUFFICIENT_SECURITIES,
        )
    ]
    assert reason_of(desk.sell(4, "A1", "GRS", 1000, 100)) is R.INSUFFICIENT_SECURITIES


def test_matching_rejections_come_before_funding(desk: Desk) -> None:
    # M1 has no cash, but the price is checked first: matching's reason, nothing locked.
    assert desk.buy(1, "M1", "GRS", 1200, 100) == [
        OrderRejected(order_id=1, symbol="GRS", reason=MatchingReason.PRICE_OUTSIDE_LIMITS)
    ]
    assert desk.buy(2, "M1", "GRS", 1000, 150) == [
        OrderRejected(order_id=2, symbol="GRS", reason=MatchingReason.QUANTITY_NOT_A_LOT)
    ]
    desk.buy(3, "A1", "GRS", 1000, 100)
    assert desk.buy(3, "A1", "GRS", 1000, 100) == [
        OrderRejected(order_id=3, symbol="GRS", reason=MatchingReason.DUPLICATE_ORDER_ID)
    ]
    assert desk.lock_of(CASH, 3) == 100_100


# -- T+1 and odd lots --------------------------------------------------------------------------


def _buy_from(desk: Desk, symbol: str, buyer: str, seller: str, quantity: int, ids: int) -> None:
    desk.sell(ids, seller, symbol, 1000, quantity)
    events = desk.buy(ids + 1, buyer, symbol, 1000, quantity)
    assert isinstance(events[1], TradeExecuted), events


@pytest.mark.parametrize("symbol", ["GRS", "CSN"])
def test_t_plus_1_refuses_todays_shares_until_the_next_day(desk: Desk, symbol: str) -> None:
    _buy_from(desk, symbol, "A1", "B1", 100, 1)
    assert desk.held(symbol, "A1") == (100, 0)  # GROSS and CASH_NET deliver shares at once
    assert desk.venue.sellable(symbol, "A1") == 0
    bought, pending = desk.venue.shares_today()
    assert bought[symbol] == {"A1": 100} and not pending[symbol]
    assert desk.sell(3, "A1", symbol, 1000, 100) == [
        OrderUnfunded(
            order_id=3,
            symbol=symbol,
            account="A1",
            asset=symbol,
            required=100,
            available=0,
            reason=R.BOUGHT_TODAY,
        )
    ]
    desk.next_day(DAY1, DAY2)
    assert desk.venue.sellable(symbol, "A1") == 100
    assert not any(desk.venue.shares_today()[0].values())
    assert desk.sell(4, "A1", symbol, 1000, 100) == [accepted(4, "A1", symbol, SELL, 1000, 100)]


def test_t_plus_1_counts_only_shares_held_before_today(desk: Desk) -> None:
    _buy_from(desk, "GRS", "B1", "B2", 200, 1)
    assert desk.held("GRS", "B1") == (1_200, 0)
    assert desk.venue.sellable("GRS", "B1") == 1_000
    assert desk.sell(3, "B1", "GRS", 1000, 1_100) == [
        OrderUnfunded(
            order_id=3,
            symbol="GRS",
            account="B1",
            asset="GRS",
            required=1_100,
            available=1_000,
            reason=R.BOUGHT_TODAY,
        )
    ]
    assert reason_of(desk.sell(4, "B1", "GRS", 1000, 1_300)) is R.INSUFFICIENT_SECURITIES
    assert desk.sell(5, "B1", "GRS", 1050, 1_000)[0] == accepted(5, "B1", "GRS", SELL, 1050, 1_000)


def test_t_plus_1_survives_snapshot_and_restore(desk: Desk) -> None:
    _buy_from(desk, "GRS", "A1", "B1", 100, 1)
    restored = Venue.restore(json.loads(json.dumps(desk.venue.snapshot())))
    assert restored.sellable("GRS", "A1") == 0


def test_t_plus_0_allows_selling_todays_shares(desk: Desk) -> None:
    desk.sell(1, "B1", "BND", 1000, 50)
    desk.buy(2, "A1", "BND", 1000, 50)
    assert desk.venue.sellable("BND", "A1") == 50
    assert desk.sell(3, "A1", "BND", 990, 50) == [accepted(3, "A1", "BND", SELL, 990, 50)]


def test_net_net_shares_arrive_at_the_cycle(desk: Desk) -> None:
    _buy_from(desk, "NTT", "A1", "B1", 100, 1)
    assert reason_of(desk.sell(3, "A1", "NTT", 1000, 100)) is R.INSUFFICIENT_SECURITIES
    desk.settle_cycle()
    assert desk.sell(4, "A1", "NTT", 1000, 100) == [accepted(4, "A1", "NTT", SELL, 1000, 100)]


def test_odd_lot_may_only_be_sold_whole(desk: Desk) -> None:
    # A2 holds 150 GRS, lot 100: the odd 50 go all at once or not at all.
    before = desk.venue.state_hash()
    for order_id, quantity in [(1, 30), (2, 120), (3, 70)]:
        assert desk.sell(order_id, "A2", "GRS", 1000, quantity) == [
            OrderRefused(
                command="place",
                broker="BRK1",
                order_id=order_id,
                symbol="GRS",
                reason=R.ODD_LOT_NOT_WHOLE,
            )
        ]
    assert desk.venue.state_hash() == before
    assert reason_of(desk.sell(4, "A2", "GRS", 1000, 250)) is R.INSUFFICIENT_SECURITIES
    assert desk.sell(5, "A2", "GRS", 1000, 50) == [accepted(5, "A2", "GRS", SELL, 1000, 50)]
    assert desk.venue.sellable("GRS", "A2") == 100
    assert desk.sell(6, "A2", "GRS", 1000, 100)[0] == accepted(6, "A2", "GRS", SELL, 1000, 100)


def test_odd_lot_whole_of_the_holding_and_round_lots_are_accepted(desk: Desk) -> None:
    assert desk.sell(1, "A2", "GRS", 1000, 100)[0] == accepted(1, "A2", "GRS", SELL, 1000, 100)
    assert reason_of(desk.cancel("BRK1", 1, "GRS")) is CancelReason.REQUESTED
    assert desk.sell(2, "A2", "GRS", 1000, 150)[0] == accepted(2, "A2", "GRS", SELL, 1000, 150)
    # A fill that leaves an odd remainder is fine: the buyer bought round lots.
    desk.buy(3, "A1", "GRS", 1000, 100)
    assert desk.lock_of("GRS", 2) == 50


def test_odd_lot_rule_uses_the_instrument_lot(desk: Desk) -> None:
    desk.issue("BND", "A2", 25)  # lot 10: the odd 5 must go whole
    assert reason_of(desk.sell(1, "A2", "BND", 1000, 3)) is R.ODD_LOT_NOT_WHOLE
    assert desk.sell(2, "A2", "BND", 1000, 20)[0] == accepted(2, "A2", "BND", SELL, 1000, 20)
    assert desk.sell(3, "A2", "BND", 1000, 5)[0] == accepted(3, "A2", "BND", SELL, 1000, 5)


# -- broker authorization and frozen accounts --------------------------------------------------


def test_place_is_refused_for_another_brokers_unknown_or_frozen_account(desk: Desk) -> None:
    def refused(order_id: int, broker: str, reason: R) -> list[Event]:
        return [
            OrderRefused(
                command="place", broker=broker, order_id=order_id, symbol="GRS", reason=reason
            )
        ]

    before = desk.venue.state_hash()
    assert desk.place("BRK2", 1, "A1", "GRS", BUY, 1000, 100) == refused(
        1, "BRK2", R.NOT_YOUR_ACCOUNT
    )
    assert desk.place("BRK1", 2, "ZZ", "GRS", BUY, 1000, 100) == refused(
        2, "BRK1", R.UNKNOWN_ACCOUNT
    )
    assert desk.place(OPERATOR, 3, "B1", "GRS", SELL, 1000, 100) == refused(
        3, OPERATOR, R.NOT_YOUR_ACCOUNT
    )
    assert desk.venue.state_hash() == before
    desk.apply(Freeze(command_id=desk.next_id(), actor=REGULATOR, account="A1"))
    assert desk.place("BRK1", 4, "A1", "GRS", BUY, 1000, 100) == refused(
        4, "BRK1", R.ACCOUNT_FROZEN
    )
    desk.apply(Unfreeze(command_id=desk.next_id(), actor=REGULATOR, account="A1"))
    assert isinstance(desk.place("BRK1", 5, "A1", "GRS", BUY, 1000, 100)[0], OrderAccepted)
    # A broker acts for every account it owns.
    assert isinstance(desk.place("BRK1", 6, "A2", "GRS", SELL, 1000, 150)[0], OrderAccepted)


def test_cancel_and_amend_of_another_brokers_order_are_refused(desk: Desk) -> None:
    desk.buy(1, "A1", "GRS", 1000, 100)
    before = desk.venue.state_hash()
    assert desk.cancel("BRK2", 1, "GRS") == [
        OrderRefused(
            command="cancel", broker="BRK2", order_id=1, symbol="GRS", reason=R.NOT_YOUR_ORDER
        )
    ]
    assert desk.amend("BRK3", 1, "GRS", quantity=200) == [
        OrderRefused(
            command="amend", broker="BRK3", order_id=1, symbol="GRS", reason=R.NOT_YOUR_ORDER
        )
    ]
    assert desk.venue.state_hash() == before
    assert desk.venue.matching.order(1) == RestingOrder(
        order_id=1, side=BUY, price=1000, quantity=100, account="A1"
    )
    assert desk.lock_of(CASH, 1) == 100_100
    assert reason_of(desk.cancel("BRK1", 1, "GRS")) is CancelReason.REQUESTED


def test_cancel_and_amend_of_unknown_orders_are_matching_rejections(desk: Desk) -> None:
    desk.buy(1, "A1", "GRS", 1000, 100)
    assert desk.cancel("BRK1", 9, "GRS") == [
        CancelRejected(order_id=9, symbol="GRS", reason=MatchingReason.UNKNOWN_ORDER)
    ]
    assert desk.cancel("BRK2", 1, "CSN") == [  # right id, wrong book: no ownership leak
        CancelRejected(order_id=1, symbol="CSN", reason=MatchingReason.UNKNOWN_ORDER)
    ]
    assert desk.amend("BRK1", 9, "GRS", quantity=200) == [
        AmendRejected(order_id=9, symbol="GRS", reason=MatchingReason.UNKNOWN_ORDER)
    ]


def test_frozen_account_may_cancel_and_its_lock_comes_back(desk: Desk) -> None:
    desk.buy(1, "A1", "GRS", 1000, 100)
    desk.apply(Freeze(command_id=desk.next_id(), actor=REGULATOR, account="A1"))
    assert reason_of(desk.cancel("BRK1", 1, "GRS")) is CancelReason.REQUESTED
    assert desk.held(CASH, "A1") == (10_000_000, 0)


def test_amend_down_of_a_frozen_account_releases(desk: Desk) -> None:
    desk.buy(1, "A1", "GRS", 1000, 200)
    desk.apply(Freeze(command_id=desk.next_id(), actor=REGULATOR, account="A1"))
    desk.amend("BRK1", 1, "GRS", quantity=100)
    assert desk.lock_of(CASH, 1) == 100_100


# -- the trading calendar ----------------------------------------------------------------------


def test_orders_are_refused_before_begin_day_and_after_end_day() -> None:
    desk = build_desk(begin=False)
    desk.open_all()  # phases are the sequencer's; the calendar still says no
    day_not_open = OrderRefused(
        command="place", broker="BRK1", order_id=1, symbol="GRS", reason=R.DAY_NOT_OPEN
    )
    assert desk.buy(1, "A1", "GRS", 1000, 100) == [day_not_open]
    assert desk.apply(BeginDay(day=DAY1)) == [DayBegun(day=DAY1)]
    desk.buy(1, "A1", "GRS", 1000, 100, tif=GTC)
    assert desk.apply(EndDay(day=DAY1))[-1] == DayEnded(day=DAY1)
    desk.open_all()
    assert reason_of(desk.buy(2, "A1", "GRS", 1000, 100)) is R.DAY_NOT_OPEN
    assert desk.amend("BRK1", 1, "GRS", quantity=200) == [
        OrderRefused(
            command="amend", broker="BRK1", order_id=1, symbol="GRS", reason=R.DAY_NOT_OPEN
        )
    ]
    # Cancels stay open overnight: a gtc order may be withdrawn between days.
    assert reason_of(desk.cancel("BRK1", 1, "GRS")) is CancelReason.REQUESTED
    assert desk.held(CASH, "A1") == (10_000_000, 0)


def test_days_must_increase_and_alternate(desk: Desk) -> None:
    assert desk.apply(BeginDay(day=DAY2)) == [DayRefused(day=DAY2, reason=R.DAY_ALREADY_OPEN)]
    assert desk.apply(EndDay(day=DAY2)) == [DayRefused(day=DAY2, reason=R.DAY_NOT_OPEN)]
    desk.apply(EndDay(day=DAY1))
    assert desk.apply(EndDay(day=DAY1)) == [DayRefused(day=DAY1, reason=R.DAY_NOT_OPEN)]
    assert desk.apply(BeginDay(day=DAY1)) == [DayRefused(day=DAY1, reason=R.DAY_NOT_AFTER)]
    assert desk.apply(BeginDay(day=DAY1 - 1)) == [DayRefused(day=DAY1 - 1, reason=R.DAY_NOT_AFTER)]
    assert desk.apply(BeginDay(day=DAY3)) == [DayBegun(day=DAY3)]  # days may be skipped
    assert desk.venue.day == DAY3


def test_end_day_with_nothing_open_only_ends_the_day() -> None:
    desk = build_desk()
    for security in SECURITIES:
        desk.set_phase(security.symbol, CLOSED)
    assert desk.apply(EndDay(day=DAY1)) == [DayEnded(day=DAY1)]


# -- DvP in the three modes --------------------------------------------------------------------


def test_gross_trade_moves_both_legs_at_once_with_fees(desk: Desk) -> None:
    desk.sell(1, "B1", "GRS", 1000, 300)
    events = desk.buy(2, "A1", "GRS", 1000, 300)
    # 300_000 notional; commission 90 each side; stamp duty 300 on the seller.
    assert events[-1] == TradeSettled(
        trade_id=1,
        asset="GRS",
        currency=CASH,
        price=1000,
        quantity=300,
        buyer="A1",
        seller="B1",
        buyer_paid=300_090,
        seller_received=299_610,
        commission=90,
        stamp_duty=300,
    )
    assert desk.held("GRS", "A1") == (300, 0)
    assert desk.held("GRS", "B1") == (700, 0)
    assert desk.held(CASH, "A1") == (10_000_000 - 300_090, 0)
    assert desk.held(CASH, "B1") == (10_000_000 + 299_610, 0)
    assert desk.held(CASH, FEE) == (180, 0)
    assert desk.held(CASH, TAX) == (300, 0)
    assert desk.venue.settlement.position(CASH, "A1") == 0
    assert desk.settle_cycle() == [
        CycleSettled(cycle_id=1, trade_count=0, gross_value=0, net_value=0)
    ]


def test_cash_net_moves_shares_at_once_and_cash_at_the_cycle(desk: Desk) -> None:
    desk.sell(1, "B1", "CSN", 1000, 100)
    events = desk.buy(2, "A1", "CSN", 1000, 100)
    assert events[-1] == TradeCleared(
        trade_id=1,
        asset="CSN",
        currency=CASH,
        mode=CASH_NET,
        price=1000,
        quantity=100,
        buyer="A1",
        seller="B1",
        buyer_owes=100_030,
        seller_owed=99_870,
        commission=30,
        stamp_duty=100,
    )
    assert desk.held("CSN", "A1") == (100, 0)
    assert desk.held("CSN", "B1") == (900, 0)
    # The buyer's cash left the order's lock for the cycle escrow; the seller has nothing yet.
    assert desk.lock_of(CASH, 2) == 0
    assert desk.held(CASH, "A1") == (10_000_000 - 100_030, 100_030)
    assert desk.held(CASH, "B1") == (10_000_000, 0)
    assert desk.held(CASH, FEE) == (0, 0)
    assert desk.settle_cycle() == [
        PositionSettled(cycle_id=1, asset=CASH, account="A1", amount=-100_030),
        PositionSettled(cycle_id=1, asset=CASH, account="B1", amount=99_870),
        PositionSettled(cycle_id=1, asset=CASH, account=FEE, amount=60),
        PositionSettled(cycle_id=1, asset=CASH, account=TAX, amount=100),
        AssetNetted(cycle_id=1, asset=CASH, gross=100_030, net=100_030),
        CycleSettled(cycle_id=1, trade_count=1, gross_value=100_030, net_value=100_030),
    ]
    assert desk.held(CASH, "A1") == (10_000_000 - 100_030, 0)
    assert desk.held(CASH, "B1") == (10_000_000 + 99_870, 0)
    assert desk.held(CASH, FEE) == (60, 0)
    assert desk.held(CASH, TAX) == (100, 0)
    assert desk.venue.settlement.cycle_id == 2


def _obligations(events: list[Event]) -> dict[tuple[str, str], int]:
    """The gross obligations of the cleared trades, summed per (asset, account)."""
    owed: dict[tuple[str, str], int] = {}

    def add(asset: str, account: str, amount: int) -> None:
        owed[asset, account] = owed.get((asset, account), 0) + amount

    for event in events:
        if not isinstance(event, TradeCleared):
            continue
        if event.mode is NET_NET:
            add(event.asset, event.buyer, event.quantity)
            add(event.asset, event.seller, -event.quantity)
        add(event.currency, event.buyer, -event.buyer_owes)
        add(event.currency, event.seller, event.seller_owed)
        add(event.currency, FEE, 2 * event.commission)
        add(event.currency, TAX, event.stamp_duty)
    return {key: amount for key, amount in owed.items() if amount}


def test_net_net_moves_both_legs_at_the_cycle_as_the_sum_of_the_obligations(desk: Desk) -> None:
    accounts = [*ACCOUNTS, FEE, TAX]
    totals = {(a, x): sum(desk.held(a, x)) for a in (CASH, "NTT") for x in accounts}
    events: list[Event] = []
    events += desk.sell(1, "B1", "NTT", 1000, 300)
    events += desk.buy(2, "A1", "NTT", 1000, 300)
    events += desk.sell(3, "C1", "NTT", 1010, 200)
    events += desk.buy(4, "B1", "NTT", 1010, 200)
    events += desk.sell(5, "B2", "NTT", 990, 100)
    events += desk.buy(6, "C1", "NTT", 995, 100)  # trades at 990
    events += desk.sell(7, "C1", "NTT", 1000, 100)
    events += desk.buy(8, "B2", "NTT", 1000, 100)  # B2 and C1 swap back
    cleared = [e for e in events if isinstance(e, TradeCleared)]
    assert [e.trade_id for e in cleared] == [1, 2, 3, 4]
    owed = _obligations(events)
    assert owed["NTT", "B1"] == -100 and owed["NTT", "A1"] == 300
    assert owed["NTT", "C1"] == -200 and ("NTT", "B2") not in owed
    settlement = desk.venue.settlement
    # Nothing has moved: every holding (available + locked) is as before.
    assert {(a, x): sum(desk.held(a, x)) for a, x in totals} == totals
    for (asset, account), amount in owed.items():
        assert settlement.position(asset, account) == amount
    for asset in (CASH, "NTT"):
        assert sum(settlement.position(asset, x) for x in accounts) == 0
    result = desk.settle_cycle()
    settled = {(e.asset, e.account): e.amount for e in result if isinstance(e, PositionSettled)}
    assert settled == owed
    netted = {e.asset: (e.gross, e.net) for e in result if isinstance(e, AssetNetted)}
    cash_gross = sum(e.buyer_owes for e in cleared)
    cash_net = -sum(v for (a, _), v in owed.items() if a == CASH and v < 0)
    assert netted == {"NTT": (700, 300), CASH: (cash_gross, cash_net)}
    assert result[-1] == CycleSettled(
        cycle_id=1, trade_count=4, gross_value=cash_gross, net_value=cash_net
    )
    for (asset, account), total in totals.items():
        expected = total + owed.get((asset, account), 0)
        assert desk.held(asset, account) == (expected, 0), (asset, account)


def test_net_net_seller_shares_wait_in_escrow(desk: Desk) -> None:
    desk.sell(1, "B1", "NTT", 1000, 300)
    desk.buy(2, "A1", "NTT", 1000, 100)
    assert desk.lock_of("NTT", 1) == 200  # the open remainder
    assert desk.venue.settlement.escrowed("NTT", "B1") == 100
    assert desk.held("NTT", "B1") == (700, 300)
    assert desk.held("NTT", "A1") == (0, 0)


def test_a_cycle_that_cannot_settle_settles_nothing(desk: Desk) -> None:
    """Pre-funding makes a short cycle impossible through orders (every leg is escrowed from
    its order's lock, and SettleTrade is not a venue command), so the short obligation here is
    recorded through settlement's hot path with no lock, as a trade reported from outside
    the pre-funded flow would be. One pre-funded venue trade shares the cycle with it."""
    desk.sell(1, "B1", "NTT", 1000, 100)
    desk.buy(2, "A1", "NTT", 1000, 100)
    settlement = desk.venue.settlement
    reason = settlement.settle_trade(100, "NTT", 1000, 500, "C1", "A2")  # A2 has no NTT
    assert reason is None
    desk.venue.check()
    before = desk.registries()
    cycle_id = settlement.cycle_id
    assert desk.settle_cycle() == [
        CycleFailed(cycle_id=cycle_id, asset="NTT", account="A2", shortfall=500)
    ]
    assert desk.registries() == before
    assert settlement.cycle_id == cycle_id
    assert desk.held("NTT", "A1") == (0, 0)  # the funded trade waits too: all or nothing
    desk.issue("NTT", "A2", 500)
    result = desk.settle_cycle()
    assert result[-1] == CycleSettled(
        cycle_id=cycle_id, trade_count=2, gross_value=100_030 + 500_150, net_value=100_030 + 500_150
    )
    assert desk.held("NTT", "A1") == (100, 0)
    assert desk.held("NTT", "C1") == (1_500, 0)
    assert desk.held("NTT", "A2") == (0, 0)


# -- idempotency, replay, snapshots ------------------------------------------------------------


def test_settlement_commands_are_idempotent_through_the_venue(desk: Desk) -> None:
    deposit = Deposit(command_id=desk.next_id(), actor=BANK, asset=CASH, account="M1", amount=5_000)
    first = desk.apply(deposit)
    assert first == [Deposited(asset=CASH, account="M1", amount=5_000)]
    before = desk.venue.state_hash()
    assert desk.apply(deposit) == first
    assert desk.venue.state_hash() == before
    assert desk.held(CASH, "M1") == (5_000, 0)
    other = Deposit(
        command_id=deposit.command_id, actor=BANK, asset=CASH, account="M1", amount=6_000
    )
    assert desk.apply(other) == [
        CommandRejected(
            command_id=deposit.command_id, command="deposit", reason=RejectReason.COMMAND_ID_REUSED
        )
    ]
    assert desk.held(CASH, "M1") == (5_000, 0)
    transfer = Transfer(
        command_id=desk.next_id(),
        actor="BRK2",
        asset="GRS",
        source="B1",
        destination="A1",
        amount=100,
    )
    assert desk.apply(transfer) == desk.apply(transfer)
    assert desk.held("GRS", "A1") == (100, 0)


def test_settle_cycle_with_a_seen_id_reports_the_original_outcome(desk: Desk) -> None:
    desk.sell(1, "B1", "CSN", 1000, 100)
    desk.buy(2, "A1", "CSN", 1000, 100)
    cycle_command_id = desk.next_id()
    first = desk.settle_cycle(cycle_command_id)
    assert first[-1] == CycleSettled(
        cycle_id=1, trade_count=1, gross_value=100_030, net_value=100_030
    )
    desk.sell(3, "B1", "CSN", 1000, 100)
    desk.buy(4, "A1", "CSN", 1000, 100)
    before = desk.venue.state_hash()
    assert desk.settle_cycle(cycle_command_id) == first
    assert desk.venue.state_hash() == before
    assert desk.venue.settlement.position(CASH, "A1") == -100_030  # still pending
    assert isinstance(desk.settle_cycle()[-1], CycleSettled)
    assert desk.venue.settlement.cycle_id == 3


def test_settlement_commands_are_authorized_by_role(desk: Desk) -> None:
    cases: list[tuple[Any, str]] = [
        (
            Deposit(command_id=desk.next_id(), actor="BRK1", asset=CASH, account="A1", amount=1),
            "deposit",
        ),
        (
            Issue(command_id=desk.next_id(), actor=BANK, asset="GRS", account="A1", amount=1),
            "issue",
        ),
        (
            Transfer(
                command_id=desk.next_id(),
                actor="BRK1",
                asset="GRS",
                source="B1",
                destination="A1",
                amount=1,
            ),
            "transfer",
        ),
        (Freeze(command_id=desk.next_id(), actor=OPERATOR, account="A1"), "freeze"),
        (SettleCycle(command_id=desk.next_id(), actor=REGULATOR), "settle_cycle"),
    ]
    for command, name in cases:
        assert desk.apply(command) == [
            CommandRejected(
                command_id=command.command_id, command=name, reason=RejectReason.NOT_AUTHORIZED
            )
        ]


def session_script(desk: Desk) -> None:
    """A day and a half touching every kind of command: the replay and snapshot corpus."""
    desk.sell(1, "B1", "GRS", 1000, 300)
    desk.buy(2, "A1", "GRS", 1010, 200)
    desk.buy(3, "A1", "GRS", 990, 300, tif=GTC)
    desk.amend("BRK1", 3, "GRS", quantity=400)
    desk.sell(4, "A2", "GRS", 995, 150)
    desk.sell(5, "C1", "CSN", 1000, 200)
    desk.buy(6, "B2", "CSN", 1000, 100)
    desk.buy(7, "A1", "CSN", None, 100, tif=IOC)
    desk.sell(8, "B1", "NTT", 1000, 300)
    desk.buy(9, "C1", "NTT", 1000, 200)
    desk.sell(10, "B2", "BND", 1000, 50, stp_group="b")
    desk.buy(11, "B2", "BND", 1000, 50, stp_group="b", stp_mode=StpMode.CANCEL_OLDEST)
    desk.cancel("BRK2", 1, "GRS")
    desk.deposit("M1", 300_000)
    desk.apply(
        Withdraw(command_id=desk.next_id(), actor=BANK, asset=CASH, account="B2", amount=1_000)
    )
    desk.apply(
        Redeem(command_id=desk.next_id(), actor=ISSUER, asset="GRS", account="C1", amount=100)
    )
    desk.apply(
        Transfer(
            command_id=desk.next_id(),
            actor="BRK3",
            asset="BND",
            source="C1",
            destination="M1",
            amount=100,
        )
    )
    desk.apply(Freeze(command_id=desk.next_id(), actor=REGULATOR, account="B2"))
    desk.set_phase("GRS", Phase.HALTED)
    desk.buy(12, "M1", "GRS", 1000, 100)
    desk.set_phase("GRS", CONTINUOUS)
    cycle_command_id = desk.next_id()
    desk.settle_cycle(cycle_command_id)
    desk.buy(18, "M1", "GRS", 990, 300)  # 300 x 991 of M1's 300_000
    fee_rise = SetFeeSchedule(  # 2%: 300 x (990 + 20) is more than M1 has: cancelled
        command_id=desk.next_id(),
        actor=OPERATOR,
        asset="GRS",
        commission_bps=200,
        stamp_duty_bps=10,
        fee_account=FEE,
        tax_account=TAX,
    )
    desk.apply(fee_rise)
    desk.apply(fee_rise)  # replayed: the original outcome, nothing changes
    desk.settle_cycle(cycle_command_id)
    desk.set_phase("CSN", Phase.CLOSING_AUCTION)
    desk.buy(13, "M1", "CSN", 1005, 100)
    desk.sell(14, "B1", "CSN", 1000, 200)
    desk.apply(EndDay(day=DAY1))
    desk.apply(BeginDay(day=DAY2))
    desk.apply(Unfreeze(command_id=desk.next_id(), actor=REGULATOR, account="B2"))
    desk.set_phase("GRS", Phase.CALL_AUCTION)
    desk.sell(15, "A1", "GRS", 985, 200)
    desk.buy(16, "C1", "GRS", 1000, 100)
    desk.set_phase("GRS", CONTINUOUS)
    desk.sell(17, "B1", "GRS", None, 100, tif=IOC)
    desk.settle_cycle()


def _replay(commands: list[VenueCommand]) -> tuple[list[list[Event]], Venue]:
    venue = Venue(operator=OPERATOR, regulator=REGULATOR)
    return [venue.apply(command) for command in commands], venue


def test_session_script_trades_in_every_mode() -> None:
    desk = build_desk()
    session_script(desk)
    events, _ = _replay(desk.log)
    flat = [e for batch in events for e in batch]
    kinds = {type(e) for e in flat}
    assert {TradeSettled, TradeCleared, CycleSettled, OrderExpired, AuctionUncrossed} <= kinds
    unfunded = [e for e in flat if isinstance(e, OrderCancelled) and e.order_id == 18]
    assert [e.reason for e in unfunded] == [CancelReason.UNFUNDED] * 2  # with the replay
    assert {e.mode for e in flat if isinstance(e, TradeCleared)} == {CASH_NET, NET_NET}


def test_replay_gives_the_same_events_and_state_hash() -> None:
    desk = build_desk()
    session_script(desk)
    first, venue_a = _replay(desk.log)
    second, venue_b = _replay(desk.log)
    assert first == second
    assert venue_a.state_hash() == venue_b.state_hash() == desk.venue.state_hash()


def test_replay_from_json_lines_gives_the_same_events_and_state_hash() -> None:
    desk = build_desk()
    session_script(desk)
    lines = [orjson.dumps(wire.venue_command_to_dict(c)) for c in desk.log]
    parsed = [wire.parse_venue_line(line) for line in lines]
    assert parsed == desk.log
    direct, venue = _replay(desk.log)
    replayed, venue_json = _replay(parsed)  # type: ignore[arg-type]
    assert replayed == direct
    assert venue_json.state_hash() == venue.state_hash()
    rows = [[orjson.loads(orjson.dumps(wire.event_to_dict(e))) for e in batch] for batch in direct]
    assert rows == [[wire.event_to_dict(e) for e in batch] for batch in replayed]


def test_state_hash_depends_on_the_state() -> None:
    desk = build_desk()
    first = desk.venue.state_hash()
    desk.buy(1, "A1", "GRS", 1000, 100)
    assert desk.venue.state_hash() != first
    desk.cancel("BRK1", 1, "GRS")
    assert desk.venue.state_hash() == first  # locks and books are back as they were


def test_snapshot_restore_at_every_point_gives_the_same_hash_and_future() -> None:
    desk = build_desk()
    session_script(desk)
    commands = desk.log
    expected, final = _replay(commands)
    venue = Venue(operator=OPERATOR, regulator=REGULATOR)
    for cut in range(len(commands) + 1):
        text = json.dumps(venue.snapshot())
        restored = Venue.restore(json.loads(text))
        assert restored.state_hash() == venue.state_hash(), cut
        if cut % 7 == 0 or cut > len(commands) - 12:
            future = [restored.apply(command) for command in commands[cut:]]
            restored.check()
            assert future == expected[cut:], cut
            assert restored.state_hash() == final.state_hash(), cut
        if cut < len(commands):
            venue.apply(commands[cut])


def test_a_restored_venue_checks_accounts_against_its_own_settlement(desk: Desk) -> None:
    """The venue reads settlement's account tables on the hot path: after a restore it must
    read the restored engine's, as accounts open and freeze."""
    restored = Desk(Venue.restore(json.loads(json.dumps(desk.venue.snapshot()))))
    restored.command_id = 1_000
    restored.apply(
        OpenAccount(command_id=restored.next_id(), actor="BRK1", account="N1", broker="BRK1")
    )
    assert restored.place("BRK1", 1, "N1", "GRS", SELL, 1000, 100) == [
        OrderUnfunded(
            order_id=1,
            symbol="GRS",
            account="N1",
            asset="GRS",
            required=100,
            available=0,
            reason=R.INSUFFICIENT_SECURITIES,
        )
    ]  # known to the restored venue: refused for funding, not as an unknown account
    restored.apply(Freeze(command_id=restored.next_id(), actor=REGULATOR, account="A1"))
    assert restored.place("BRK1", 2, "A1", "GRS", BUY, 1000, 100) == [
        OrderRefused(
            command="place", broker="BRK1", order_id=2, symbol="GRS", reason=R.ACCOUNT_FROZEN
        )
    ]
    assert isinstance(desk.place("BRK1", 2, "A1", "GRS", BUY, 1000, 100)[0], OrderAccepted)


def test_restore_refuses_an_unknown_snapshot_version(desk: Desk) -> None:
    snapshot = desk.venue.snapshot()
    snapshot["version"] = 99
    with pytest.raises(ValueError, match="99"):
        Venue.restore(snapshot)


# -- the JSON vocabulary -----------------------------------------------------------------------


def every_venue_command() -> list[VenueCommand]:
    """One or more of every venue command kind, with every optional field exercised."""
    place = PlaceOrder(
        order_id=7,
        symbol="GRS",
        account="A1",
        side=SELL,
        kind=LIMIT,
        price=990,
        quantity=150,
        tif=GTC,
        post_only=True,
        stp_group="g",
        stp_mode=StpMode.DECREMENT_AND_CANCEL,
    )
    market = PlaceOrder(
        order_id=8,
        symbol="GRS",
        account="A1",
        side=BUY,
        kind=MARKET,
        price=None,
        quantity=100,
        tif=FOK,
    )
    return [
        BrokerCommand(broker="BRK1", command=place),
        BrokerCommand(broker="BRK1", command=market),
        BrokerCommand(broker="BRK2", command=CancelOrder(order_id=7, symbol="GRS")),
        BrokerCommand(broker="BRK2", command=AmendOrder(order_id=7, symbol="GRS", price=995)),
        BrokerCommand(broker="BRK2", command=AmendOrder(order_id=7, symbol="GRS", quantity=50)),
        BrokerCommand(
            broker="BRK2", command=AmendOrder(order_id=7, symbol="GRS", price=1, quantity=2)
        ),
        SetPhase(symbol="GRS", phase=Phase.CLOSING_AUCTION),
        ListInstrument(
            symbol="GRS", tick_size=5, lot=100, reference_price=1000, price_limit_pct=None, t_plus=0
        ),
        ListInstrument(symbol="GRS", tick_size=1, lot=10, reference_price=1000, price_limit_pct=20),
        BeginDay(day=DAY1),
        EndDay(day=DAY1),
        DefineAsset(
            command_id=1,
            actor=OPERATOR,
            asset="X",
            kind=AssetKind.SECURITY,
            issuer=ISSUER,
            currency=CASH,
            mode=NET_NET,
        ),
        SetFeeSchedule(
            command_id=2,
            actor=OPERATOR,
            asset="X",
            commission_bps=3,
            stamp_duty_bps=10,
            fee_account=FEE,
            tax_account=TAX,
        ),
        OpenAccount(command_id=3, actor="BRK1", account="A9", broker="BRK1"),
        Issue(command_id=4, actor=ISSUER, asset="X", account="A9", amount=10),
        Redeem(command_id=5, actor=ISSUER, asset="X", account="A9", amount=10),
        Deposit(command_id=6, actor=BANK, asset=CASH, account="A9", amount=10),
        Withdraw(command_id=7, actor=BANK, asset=CASH, account="A9", amount=10),
        Transfer(command_id=8, actor="BRK1", asset=CASH, source="A9", destination="A1", amount=10),
        Freeze(command_id=9, actor=REGULATOR, account="A9"),
        Unfreeze(command_id=10, actor=REGULATOR, account="A9"),
        SettleCycle(command_id=11, actor=OPERATOR),
        *every_supply_chain_command(),
        cat.DefineBond(
            command_id=12,
            actor="DEP",
            bond="GB",
            issuer="A9",
            face_value=10_000,
            coupon_bps=350,
            start=20260101,
            coupon_days=(20260701,),
            maturity=20270101,
        ),
        cat.DeclareDividend(
            command_id=13,
            actor="DEP",
            security="GRS",
            payer="A9",
            amount_per_share=25,
            record_day=20260106,
            pay_day=20260108,
        ),
    ]


def every_supply_chain_command() -> list[VenueCommand]:
    """One of each supply-chain command (settlement.supply_chain_types)."""
    sig = "ab" * 64
    key = "cd" * 32
    common = {"actor": "BRK1", "participant": "A1", "signature": sig}
    return [
        scf.RegisterParticipant(
            command_id=1,
            actor="BRK1",
            participant="A1",
            role=scf.ParticipantRole.CORE_ENTERPRISE,
            public_key=key,
        ),
        scf.SetCreditLimit(command_id=2, actor="BRK1", participant="A1", limit=10**9),
        scf.ReleasePledge(command_id=3, actor="BRK1", piece=4),
        scf.IssueCommitment(
            command_id=4,
            holder="A2",
            amount=100,
            currency=CASH,
            maturity=20260110,
            invoice=key,
            recourse=False,
            **common,
        ),
        scf.ConfirmCommitment(command_id=5, piece=1, **common),
        scf.SplitCommitment(command_id=6, piece=1, amounts=(60, 40), **common),
        scf.TransferCommitment(command_id=7, piece=2, to="A3", **common),
        scf.FinanceCommitment(
            command_id=8, piece=2, factor="A4", price=95, factor_signature="ef" * 64, **common
        ),
        scf.PledgeCommitment(command_id=9, piece=3, pledgee="BRK2", **common),
        scf.ClaimRecourse(command_id=10, piece=3, **common),
        scf.RegisterInvoice(
            command_id=11, buyer="A5", key_hash=key, content_hash="01" * 32, amount=5, **common
        ),
        scf.ConfirmInvoice(command_id=12, key_hash=key, **common),
    ]


def _kind(command: VenueCommand) -> type:
    return type(command.command) if isinstance(command, BrokerCommand) else type(command)


def test_every_venue_command_kind_round_trips_through_json() -> None:
    commands = every_venue_command()
    kinds = set(typing.get_args(VenueCommand))  # the settlement union comes flattened
    scf_kinds = set(typing.get_args(scf.Command)) | set(typing.get_args(cat.Command))
    assert kinds - set(typing.get_args(SettlementCommand)) - scf_kinds == {
        BrokerCommand,
        ListInstrument,
        BeginDay,
        EndDay,
        SetPhase,
    }
    assert scf_kinds <= kinds
    venue_kinds = {ListInstrument, BeginDay, EndDay, SetPhase, *SETTLEMENT_COMMANDS, *scf_kinds}
    venue_kinds |= {PlaceOrder, CancelOrder, AmendOrder}
    assert {_kind(c) for c in commands} == venue_kinds
    for command in commands:
        line = orjson.dumps(wire.venue_command_to_dict(command))
        assert wire.parse_venue_line(line) == command, line


def test_venue_vocabulary_refuses_what_the_venue_does_not_take() -> None:
    for name in ("settle_trade", "lock", "unlock", "add_instrument"):
        parsed = wire.parse_venue_line(orjson.dumps({"type": name}))
        assert isinstance(parsed, wire.WireError) and parsed.field == "type", name
    no_broker = {"type": "cancel", "order_id": 1, "symbol": "GRS"}
    parsed = wire.parse_venue_line(orjson.dumps(no_broker))
    assert isinstance(parsed, wire.WireError) and parsed.field == "broker"


names = st.text(alphabet="ABCXYZ019_", min_size=1, max_size=8)
ints = st.integers(-(2**63), 2**63 - 1)
naturals = st.integers(0, 10**12)


def _order_commands() -> st.SearchStrategy[Any]:
    limit = st.builds(
        PlaceOrder,
        order_id=ints,
        symbol=names,
        account=names,
        side=st.sampled_from(Side),
        kind=st.just(LIMIT),
        price=ints,
        quantity=ints,
        tif=st.sampled_from(TimeInForce),
        post_only=st.booleans(),
        stp_group=st.text(max_size=6),
        stp_mode=st.sampled_from(StpMode),
    )
    market = st.builds(
        PlaceOrder,
        order_id=ints,
        symbol=names,
        account=names,
        side=st.sampled_from(Side),
        kind=st.just(MARKET),
        price=st.none(),
        quantity=ints,
        tif=st.sampled_from(TimeInForce),
    )
    amend = st.builds(
        AmendOrder, order_id=ints, symbol=names, price=ints | st.none(), quantity=ints
    ).filter(lambda a: a.price is not None or a.quantity)
    # the reasons a cancel command may carry (the others are the venue's own, never sent)
    reasons = st.sampled_from(wire.COMMAND_CANCEL_REASONS)
    cancel = st.builds(CancelOrder, order_id=ints, symbol=names, reason=reasons)
    # A new order may carry the broker's client order id; an amend or a cancel does not.
    places = st.builds(
        BrokerCommand, broker=names, command=limit | market, client_order_id=st.just("") | names
    )
    changes = st.builds(
        BrokerCommand, broker=names, command=amend | cancel, client_order_id=st.just("")
    )
    return places | changes


def _settlement_command(cls: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for name in (f.name for f in dataclasses.fields(cls)):
        hint = hints[name]
        if hint is int:
            fields[name] = ints
        elif hint is str:
            fields[name] = names
        else:
            fields[name] = st.sampled_from(hint)
    return st.builds(cls, **fields)


venue_commands = st.one_of(
    _order_commands(),
    st.builds(SetPhase, symbol=names, phase=st.sampled_from(Phase)),
    st.builds(
        ListInstrument,
        symbol=names,
        tick_size=ints,
        lot=ints,
        reference_price=ints,
        price_limit_pct=ints | st.none(),
        t_plus=ints,
    ),
    st.builds(BeginDay, day=ints),
    st.builds(EndDay, day=ints),
    *[_settlement_command(cls) for cls in SETTLEMENT_COMMANDS],
)


@given(venue_commands)
def test_any_venue_command_round_trips_through_json(command: VenueCommand) -> None:
    line = orjson.dumps(wire.venue_command_to_dict(command))
    assert wire.parse_venue_line(line) == command


def test_every_event_of_a_session_is_plain_json() -> None:
    desk = build_desk()
    session_script(desk)
    events, _ = _replay(desk.log)
    for batch in events:
        for event in batch:
            row = wire.event_to_dict(event)
            assert orjson.loads(orjson.dumps(row)) == row
            assert isinstance(row["type"], str)


# -- regressions: defects these tests found (fixed in 0828b81 and a5f355d) ---------------------


def test_amend_up_of_a_frozen_account_is_refused(desk: Desk) -> None:
    """Was an assertion in `Venue._lock_cash` (settlement answered ACCOUNT_FROZEN)."""
    desk.buy(1, "A1", "GRS", 1000, 100)
    desk.sell(2, "B1", "GRS", 1050, 100)
    for account in ("A1", "B1"):
        desk.apply(Freeze(command_id=desk.next_id(), actor=REGULATOR, account=account))
    before = desk.venue.state_hash()
    for order_id, broker in ((1, "BRK1"), (2, "BRK2")):
        assert desk.amend(broker, order_id, "GRS", quantity=200) == [
            OrderRefused(
                command="amend",
                broker=broker,
                order_id=order_id,
                symbol="GRS",
                reason=R.ACCOUNT_FROZEN,
            )
        ]
    assert desk.venue.state_hash() == before


def test_amend_of_a_sell_keeps_the_odd_lot_rule(desk: Desk) -> None:
    """Was checked on place only: A2 (150, lot 100) sold 150 whole, amended the sale to 130
    and kept an odd 20 to sell apart."""
    desk.sell(1, "A2", "GRS", 1050, 150)
    assert desk.amend("BRK1", 1, "GRS", quantity=130) == [
        OrderRefused(
            command="amend", broker="BRK1", order_id=1, symbol="GRS", reason=R.ODD_LOT_NOT_WHOLE
        )
    ]
    assert desk.amend("BRK1", 1, "GRS", quantity=100)[0] == OrderAmended(
        order_id=1, symbol="GRS", price=1050, quantity=100, priority_kept=True
    )
    assert desk.amend("BRK1", 1, "GRS", quantity=150)[0] == OrderAmended(
        order_id=1, symbol="GRS", price=1050, quantity=150, priority_kept=False
    )
    assert desk.held("GRS", "A2") == (0, 150)


def _set_commission(desk: Desk, commission_bps: int) -> list[Event]:
    return desk.apply(
        SetFeeSchedule(
            command_id=desk.next_id(),
            actor=OPERATOR,
            asset="GRS",
            commission_bps=commission_bps,
            stamp_duty_bps=10,
            fee_account=FEE,
            tax_account=TAX,
        )
    )


def test_fee_schedule_change_tops_up_or_cancels_resting_buys(desk: Desk) -> None:
    """Resting buys kept the lock of the old commission: `check()` failed, a fill crashed."""
    desk.buy(1, "A1", "GRS", 1000, 100)  # 100 x 1001
    desk.deposit("M1", 100_100)
    desk.buy(2, "M1", "GRS", 1000, 100)  # all M1 has
    desk.sell(3, "B1", "GRS", 1050, 100)
    # 20 bps: 2 fen on one share at 1000, so 100 x 1002. M1 cannot pay: its buy goes.
    assert _set_commission(desk, 20) == [
        FeeScheduleSet(
            asset="GRS", commission_bps=20, stamp_duty_bps=10, fee_account=FEE, tax_account=TAX
        ),
        OrderCancelled(order_id=2, symbol="GRS", quantity=100, reason=CancelReason.UNFUNDED),
    ]
    assert desk.lock_of(CASH, 1) == 100_200
    assert desk.held(CASH, "M1") == (100_100, 0)
    assert desk.lock_of("GRS", 3) == 100  # a sale locks no cash
    _set_commission(desk, 0)
    assert desk.lock_of(CASH, 1) == 100_000
    _set_commission(desk, 20)
    assert desk.sell(4, "C1", "GRS", 1000, 100)[-1] == TradeSettled(
        trade_id=1,
        asset="GRS",
        currency=CASH,
        price=1000,
        quantity=100,
        buyer="A1",
        seller="C1",
        buyer_paid=100_200,
        seller_received=99_700,
        commission=200,
        stamp_duty=100,
    )


def test_buy_above_the_amount_maximum_is_unfunded() -> None:
    """Was an assertion in `Venue._lock_cash` (settlement answered AMOUNT_TOO_LARGE): a
    market buy of 10^7 on an instrument without limits is funded at PRICE_MAX = 10^12."""
    unlimited = Security(symbol="FREE", mode=GROSS, t_plus=0, price_limit_pct=None)
    desk = build_desk(securities=(unlimited,))
    before = desk.venue.state_hash()
    assert desk.buy(1, "A1", "FREE", None, 10**7, tif=IOC) == [
        OrderUnfunded(
            order_id=1,
            symbol="FREE",
            account="A1",
            asset=CASH,
            required=10**19,
            available=10_000_000,
            reason=R.INSUFFICIENT_CASH,
        )
    ]
    assert desk.venue.state_hash() == before


NT1 = Security(symbol="NT1", mode=NET_NET, t_plus=1)  # net-net under T+1


def test_t_plus_1_holds_for_net_net_shares_delivered_by_a_mid_day_cycle() -> None:
    """Under NET_NET today's purchases were not recorded, so after a cycle during the day the
    shares bought were sellable the same day."""
    desk = build_desk(securities=(NT1,))
    _buy_from(desk, "NT1", "A1", "B1", 100, 1)
    desk.settle_cycle()
    assert desk.held("NT1", "A1") == (100, 0)
    assert desk.sell(3, "A1", "NT1", 1000, 100) == [
        OrderUnfunded(
            order_id=3,
            symbol="NT1",
            account="A1",
            asset="NT1",
            required=100,
            available=0,
            reason=R.BOUGHT_TODAY,
        )
    ]
    desk.next_day(DAY1, DAY2)
    assert desk.venue.sellable("NT1", "A1") == 100


def test_fee_increase_cancels_a_frozen_accounts_resting_buy(desk: Desk) -> None:
    """Was an assertion: the top-up went through `_lock_cash`, which did not expect
    settlement's ACCOUNT_FROZEN, so the operator's SetFeeSchedule stopped every node."""
    desk.buy(1, "A1", "GRS", 1000, 100)
    desk.apply(Freeze(command_id=desk.next_id(), actor=REGULATOR, account="A1"))
    assert _set_commission(desk, 20)[1:] == [
        OrderCancelled(order_id=1, symbol="GRS", quantity=100, reason=CancelReason.UNFUNDED)
    ]
    assert desk.held(CASH, "A1") == (10_000_000, 0)


def test_settle_cycle_replay_changes_nothing_under_net_net_t_plus_1() -> None:
    """Was a defect: the venue folded the PositionSettled events of settlement's remembered
    answer into today's purchases again, so a replayed cycle id changed the state hash."""
    desk = build_desk(securities=(NT1,))
    _buy_from(desk, "NT1", "A1", "B1", 100, 1)
    cycle_command_id = desk.next_id()
    first = desk.settle_cycle(cycle_command_id)
    _buy_from(desk, "NT1", "A1", "B1", 300, 3)
    before = desk.venue.state_hash()
    assert desk.settle_cycle(cycle_command_id) == first
    assert desk.venue.state_hash() == before


def test_settle_cycle_replay_does_not_let_todays_net_net_shares_be_sold() -> None:
    """The consequence of the replay defect: the purchases pending since the first cycle
    were counted by the replay and forgotten, so the cycle that delivered them counted
    nothing, and A1 could sell 200 of its 400 shares bought today."""
    desk = build_desk(securities=(NT1,))
    _buy_from(desk, "NT1", "A1", "B1", 100, 1)
    assert desk.venue.shares_today() == ({"NT1": {}}, {"NT1": {"A1": 100}})  # not delivered
    cycle_command_id = desk.next_id()
    desk.settle_cycle(cycle_command_id)
    assert desk.venue.shares_today() == ({"NT1": {"A1": 100}}, {"NT1": {}})  # delivered
    _buy_from(desk, "NT1", "A1", "B1", 300, 3)
    desk.settle_cycle(cycle_command_id)
    desk.settle_cycle()
    assert desk.held("NT1", "A1") == (400, 0)
    assert desk.venue.sellable("NT1", "A1") == 0


def test_t_plus_1_net_net_counts_every_share_bought_today() -> None:
    """Was a defect: only what the cycle's net position delivered counted as bought today.
    B1 holds 1_000 from before, sells 100 and buys 100 today: net nothing moves, and all
    1_000 were sellable. Under GROSS the same day leaves 900 sellable, and now so does
    NET_NET."""
    for security in (NT1, replace(NT1, symbol="GT1", mode=GROSS)):
        desk = build_desk(securities=(security,))
        symbol = security.symbol
        _buy_from(desk, symbol, "A1", "B1", 100, 1)  # B1 sells 100
        _buy_from(desk, symbol, "B1", "B2", 100, 3)  # B1 buys 100
        desk.settle_cycle()
        assert desk.held(symbol, "B1") == (1_000, 0)
        assert desk.venue.sellable(symbol, "B1") == 900, security.mode


def test_fee_schedule_replay_reports_the_original_outcome(desk: Desk) -> None:
    """Was a defect: the venue's cancellations were not part of the remembered outcome, so
    the same SetFeeSchedule again reported [FeeScheduleSet] alone."""
    desk.deposit("M1", 100_100)
    desk.buy(1, "M1", "GRS", 1000, 100)
    command = SetFeeSchedule(
        command_id=desk.next_id(),
        actor=OPERATOR,
        asset="GRS",
        commission_bps=20,
        stamp_duty_bps=10,
        fee_account=FEE,
        tax_account=TAX,
    )
    first = desk.apply(command)
    assert first[-1] == OrderCancelled(
        order_id=1, symbol="GRS", quantity=100, reason=CancelReason.UNFUNDED
    )
    before = desk.venue.state_hash()
    assert desk.apply(command) == first
    assert desk.venue.state_hash() == before
