"""Stateful property test of the Venue: random mixes of registry commands (deposits,
withdrawals, transfers, issues, redemptions, freezes), orders of every kind from random brokers
(wrong ones included), crossing orders, cancels, amends, phase changes with auctions, day
changes, fee schedule changes and settlement cycles, on the funded venue of
tests/test_venue.py plus a NET_NET instrument under T+1.

After every step: `venue.check()`; per asset, supply = the sum of available + locked over every
account (public queries) and no balance negative; every holding equals a model folded from the
events alone (deposits, transfers, settled trades, settled positions), so an event that lies
about what moved, or a lock that leaks, shows; every net position equals the sum of the cleared
trades' obligations; each trade settles exactly once, right after it matches; a cycle never
fails (everything is pre-funded). An accepted sale sells only shares held before today under
T+1 (today's purchases are folded from the trades) and an odd lot only whole. A refused broker
or calendar command changes nothing (same state hash); a wrong broker never gets an order
accepted, cancelled or amended; a settlement command replayed under its id returns its first
events and changes nothing. Now and then the venue is snapshotted through JSON and restored:
from then on the copy gets every command too and must give the same events and state hash.

The random mix avoids no command: every defect it or tests/test_venue.py found has been fixed
(see the regression section there).
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from exchange.venue.types import (
    BeginDay,
    BrokerCommand,
    DayBegun,
    DayEnded,
    DayRefused,
    EndDay,
    Event,
    OrderRefused,
    OrderUnfunded,
    VenueCommand,
)
from exchange.venue.venue import Venue
from matching.commands import AmendOrder, CancelOrder, PlaceOrder, SetPhase
from matching.events import (
    AmendRejected,
    CancelRejected,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderRejected,
    TradeExecuted,
)
from matching.types import OrderKind, Phase, Side, StpMode, TimeInForce
from settlement.commands import (
    Deposit,
    Freeze,
    Issue,
    Redeem,
    SetFeeSchedule,
    SettleCycle,
    Transfer,
    Unfreeze,
    Withdraw,
)
from settlement.events import (
    CycleFailed,
    CycleSettled,
    Deposited,
    Issued,
    PositionSettled,
    Redeemed,
    TradeCleared,
    TradeSettled,
    Transferred,
    Withdrawn,
)
from settlement.types import SettlementMode
from tests.test_venue import (
    ACCOUNTS,
    BANK,
    BROKERS,
    CASH,
    FEE,
    ISSUER,
    OPERATOR,
    REGULATOR,
    SECURITIES,
    TAX,
    Security,
    build_desk,
)

REGISTRY_KINDS = ["deposit", "withdraw", "transfer", "issue", "redeem", "freeze", "unfreeze"]
NET_T1 = Security(
    symbol="NT1", mode=SettlementMode.NET_NET, t_plus=1, commission_bps=3, stamp_duty_bps=10
)
MACHINE_SECURITIES = (*SECURITIES, NET_T1)
SYMBOLS = [security.symbol for security in MACHINE_SECURITIES]
ASSETS = [CASH, *SYMBOLS]
EVERY_ACCOUNT = [*ACCOUNTS, FEE, TAX]
LOTS = {security.symbol: security.lot for security in MACHINE_SECURITIES}
T_PLUS = {security.symbol: security.t_plus for security in MACHINE_SECURITIES}
REFUSALS = (
    OrderRefused,
    OrderUnfunded,
    OrderRejected,
    CancelRejected,
    AmendRejected,
    DayRefused,
)


def _template() -> str:
    """The funded venue of tests/test_venue.py, day open and books continuous, as JSON."""
    desk = build_desk(securities=MACHINE_SECURITIES)
    return json.dumps({"venue": desk.venue.snapshot(), "command_id": desk.command_id})


TEMPLATE = _template()

# sampled_from with repeats: mostly sensible values, now and then a wrong or odd one.
accounts = st.sampled_from([*ACCOUNTS] * 3 + [FEE, "ZZ"])
traders = st.sampled_from(["A1", "B1", "B2", "C1"])  # they hold cash, and all but A1 shares
honesty = st.sampled_from([True] * 6 + [False])  # False: a random broker sends the command
symbols = st.sampled_from(SYMBOLS * 4 + ["NOPE"])
securities = st.sampled_from(SYMBOLS)
assets = st.sampled_from(ASSETS)
sizes = st.integers(-1, 1_500)  # shares, or thousands of fen for cash
prices = st.integers(890, 1_110)  # limits are [900, 1100]
lots = st.integers(1, 5)
odd = st.sampled_from([0] * 15 + [1, 5, 50])
picks = st.integers(0, 1_000)
phases = st.sampled_from([Phase.CONTINUOUS] * 3 + [*Phase])
stp_groups = st.sampled_from(["", "", "", "g1", "g2"])


class VenueMachine(RuleBasedStateMachine):
    """The venue under random commands, a model of holdings folded from its events, and now
    and then a restored copy that must follow it exactly."""

    venue: Venue
    shadow: Venue | None

    @initialize()
    def start(self) -> None:
        template = json.loads(TEMPLATE)
        self.venue = Venue.restore(template["venue"])
        self.shadow = None
        self.command_id: int = template["command_id"]
        self.first_id = self.command_id  # above every id the template used, of any actor
        self.actor_ids: dict[str, int] = {}
        self.order_id = 0
        self.orders: list[tuple[int, str]] = []  # (order id, symbol) of accepted orders
        self.last_settlement: Any = None
        self.last_events: list[Event] = []
        self.trades = self.venue.matching.last_trade_id
        settlement = self.venue.settlement
        self.holdings: defaultdict[tuple[str, str], int] = defaultdict(int)
        for asset in ASSETS:
            for account in EVERY_ACCOUNT:
                held = settlement.available(asset, account) + settlement.locked(asset, account)
                self.holdings[asset, account] = held
        self.supply = {asset: settlement.supply(asset) for asset in ASSETS}
        self.owed: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.bought_today: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.pending_today: defaultdict[tuple[str, str], int] = defaultdict(int)  # NET_NET

    # -- applying and folding --------------------------------------------------------------

    def apply(self, command: VenueCommand) -> list[Event]:
        # Settlement commands remember their outcome (idempotency), so only these may be
        # refused without any change at all.
        order_or_day = isinstance(command, BrokerCommand | BeginDay | EndDay)
        before = self.venue.state_hash() if order_or_day else None
        events = self.venue.apply(command)
        if self.shadow is not None:
            assert self.shadow.apply(command) == events, command
        if before is not None and len(events) == 1 and isinstance(events[0], REFUSALS):
            assert self.venue.state_hash() == before, (command, events)
        self.fold(events)
        return events

    def apply_settlement(self, command: Any) -> list[Event]:
        """Apply a settlement command under the next id of its actor: each member numbers its
        own commands, so ids collide across actors, as members' do."""
        number = self.actor_ids[command.actor] = (
            self.actor_ids.get(command.actor, self.first_id) + 1
        )
        command = dataclasses.replace(command, command_id=number)
        events = self.apply(command)
        self.last_settlement, self.last_events = command, events
        return events

    def move(self, asset: str, account: str, amount: int) -> None:
        self.holdings[asset, account] += amount

    def fold(self, events: list[Event]) -> None:
        for index, event in enumerate(events):
            if isinstance(event, Deposited | Issued):
                self.move(event.asset, event.account, event.amount)
                self.supply[event.asset] += event.amount
            elif isinstance(event, Withdrawn | Redeemed):
                self.move(event.asset, event.account, -event.amount)
                self.supply[event.asset] -= event.amount
            elif isinstance(event, Transferred):
                self.move(event.asset, event.source, -event.amount)
                self.move(event.asset, event.destination, event.amount)
            elif isinstance(event, TradeExecuted):
                self.trades += 1
                assert event.trade_id == self.trades, event
                settled = events[index + 1]  # DvP right after the match
                assert isinstance(settled, TradeSettled | TradeCleared), settled
                assert (settled.trade_id, settled.asset, settled.price, settled.quantity) == (
                    event.trade_id,
                    event.symbol,
                    event.price,
                    event.quantity,
                )
                assert (settled.buyer, settled.seller) == (event.buy_account, event.sell_account)
            elif isinstance(event, TradeSettled):
                self.fold_settled(event)
            elif isinstance(event, TradeCleared):
                self.fold_cleared(event)
            elif isinstance(event, PositionSettled):
                key = event.asset, event.account
                assert self.owed.pop(key) == event.amount, event
                self.move(event.asset, event.account, event.amount)
            elif isinstance(event, DayBegun):
                self.bought_today.clear()
                self.pending_today.clear()
            elif isinstance(event, CycleSettled):
                # NET_NET shares bought today arrive now, and count as bought today.
                for key, quantity in self.pending_today.items():
                    self.bought_today[key] += quantity
                self.pending_today.clear()
                assert not any(self.owed.values()), dict(self.owed)
                self.owed.clear()
            else:
                assert not isinstance(event, CycleFailed), f"a pre-funded cycle failed: {event}"

    def fold_settled(self, event: TradeSettled) -> None:
        self.bought_today[event.buyer, event.asset] += event.quantity
        self.move(event.asset, event.buyer, event.quantity)
        self.move(event.asset, event.seller, -event.quantity)
        self.move(event.currency, event.buyer, -event.buyer_paid)
        self.move(event.currency, event.seller, event.seller_received)
        self.move(event.currency, FEE, 2 * event.commission)
        self.move(event.currency, TAX, event.stamp_duty)
        assert event.buyer_paid == event.seller_received + 2 * event.commission + event.stamp_duty

    def fold_cleared(self, event: TradeCleared) -> None:
        if event.mode is SettlementMode.CASH_NET:
            self.bought_today[event.buyer, event.asset] += event.quantity
            self.move(event.asset, event.buyer, event.quantity)
            self.move(event.asset, event.seller, -event.quantity)
        else:
            assert event.mode is SettlementMode.NET_NET, event
            self.pending_today[event.buyer, event.asset] += event.quantity
            self.owed[event.asset, event.buyer] += event.quantity
            self.owed[event.asset, event.seller] -= event.quantity
        self.owed[event.currency, event.buyer] -= event.buyer_owes
        self.owed[event.currency, event.seller] += event.seller_owed
        self.owed[event.currency, FEE] += 2 * event.commission
        self.owed[event.currency, TAX] += event.stamp_duty
        for key in [key for key, amount in self.owed.items() if amount == 0]:
            del self.owed[key]

    def next_id(self) -> int:
        self.command_id += 1
        return self.command_id

    def broker_for(self, account: str, honest: bool, pick: int) -> str:
        owner = ACCOUNTS.get(account, OPERATOR if account in (FEE, TAX) else "BRK1")
        if honest:
            return owner
        return [*BROKERS, OPERATOR][pick % (len(BROKERS) + 1)]

    def picked_order(self, pick: int) -> tuple[int, str]:
        """Mostly a live order; now and then a done one or an id never used."""
        if pick % 10 == 0 or not self.orders:
            return 10_000 + pick, SYMBOLS[pick % len(SYMBOLS)]
        live = [o for o in self.orders if self.venue.matching.order(o[0]) is not None]
        if pick % 10 == 1 or not live:
            return self.orders[pick % len(self.orders)]
        return live[pick % len(live)]

    # -- registry commands -----------------------------------------------------------------

    @rule(
        kind=st.sampled_from(REGISTRY_KINDS),
        asset=assets,
        account=accounts,
        other=accounts,
        size=sizes,
        honest=honesty,
        pick=picks,
    )
    def registry(
        self, kind: str, asset: str, account: str, other: str, size: int, honest: bool, pick: int
    ) -> None:
        """One registry command, from the right member unless `honest` is False."""
        command_id = self.next_id()
        amount = size * 1_000 if asset == CASH else size
        issuer = BANK if asset == CASH else ISSUER
        wrong = [BANK, ISSUER, OPERATOR, REGULATOR, *BROKERS][pick % (4 + len(BROKERS))]
        command: Any
        if kind in ("deposit", "withdraw"):
            cls = Deposit if kind == "deposit" else Withdraw
            command = cls(
                command_id=command_id,
                actor=BANK if honest else wrong,
                asset=CASH,
                account=account,
                amount=size * 1_000,
            )
        elif kind in ("issue", "redeem"):
            cls_ = Issue if kind == "issue" else Redeem
            command = cls_(
                command_id=command_id,
                actor=issuer if honest else wrong,
                asset=asset,
                account=account,
                amount=amount,
            )
        elif kind == "transfer":
            command = Transfer(
                command_id=command_id,
                actor=self.broker_for(account, honest, pick),
                asset=asset,
                source=account,
                destination=other,
                amount=amount,
            )
        else:
            cls__ = Freeze if kind == "freeze" else Unfreeze
            command = cls__(
                command_id=command_id, actor=REGULATOR if honest else wrong, account=account
            )
        self.apply_settlement(command)

    @rule(honest=honesty, replay=st.booleans())
    def settle_cycle_or_replay(self, honest: bool, replay: bool) -> None:
        """A settlement cycle, or the last settlement command again under its id: the same
        events as the first time, and nothing changes."""
        if not replay or self.last_settlement is None:
            actor = OPERATOR if honest else REGULATOR
            self.apply_settlement(SettleCycle(command_id=self.next_id(), actor=actor))
            return
        before = self.venue.state_hash()
        events = self.venue.apply(self.last_settlement)
        assert events == self.last_events, self.last_settlement
        assert self.venue.state_hash() == before
        if self.shadow is not None:
            assert self.shadow.apply(self.last_settlement) == events

    @rule(
        symbol=securities,
        commission_bps=st.sampled_from([0, 3, 5, 20, 30]),
        stamp_duty_bps=st.sampled_from([0, 10]),
        honest=honesty,
    )
    def set_fees(self, symbol: str, commission_bps: int, stamp_duty_bps: int, honest: bool) -> None:
        """A new fee schedule: resting buys are topped up, or cancelled if unfunded."""
        command = SetFeeSchedule(
            command_id=self.next_id(),
            actor=OPERATOR if honest else REGULATOR,
            asset=symbol,
            commission_bps=commission_bps,
            stamp_duty_bps=stamp_duty_bps,
            fee_account=FEE,
            tax_account=TAX,
        )
        self.apply_settlement(command)

    # -- orders ----------------------------------------------------------------------------

    @rule(
        account=accounts,
        honest=honesty,
        pick=picks,
        symbol=symbols,
        side=st.sampled_from(Side),
        market=st.sampled_from([False] * 4 + [True]),
        price=prices,
        lots=lots,
        odd=odd,
        tif=st.sampled_from(TimeInForce),
        post_only=st.sampled_from([False] * 9 + [True]),
        stp_group=stp_groups,
        stp_mode=st.sampled_from(StpMode),
        duplicate=st.sampled_from([False] * 19 + [True]),
    )
    def place(
        self,
        account: str,
        honest: bool,
        pick: int,
        symbol: str,
        side: Side,
        market: bool,
        price: int,
        lots: int,
        odd: int,
        tif: TimeInForce,
        post_only: bool,
        stp_group: str,
        stp_mode: StpMode,
        duplicate: bool,
    ) -> None:
        if duplicate and self.orders:
            order_id = self.picked_order(pick)[0]
        else:
            self.order_id += 1
            order_id = self.order_id
        order = PlaceOrder(
            order_id=order_id,
            symbol=symbol,
            account=account,
            side=side,
            kind=OrderKind.MARKET if market else OrderKind.LIMIT,
            price=None if market else price,
            quantity=lots * LOTS.get(symbol, 100) + odd,
            tif=tif,
            post_only=post_only,
            stp_group=stp_group,
            stp_mode=stp_mode,
        )
        broker = self.broker_for(account, honest, pick)
        held = self.venue.settlement.available(symbol, account) if symbol in LOTS else 0
        bought = self.bought_today[account, symbol]  # before this order's own trades
        events = self.apply(BrokerCommand(broker=broker, command=order))
        if isinstance(events[0], OrderAccepted):
            assert self.venue.settlement.broker_of(account) == broker, events
            self.orders.append((order_id, symbol))
            if side is Side.SELL:
                sellable = held - bought if T_PLUS[symbol] else held
                self.check_sale(symbol, account, order.quantity, sellable)

    def check_sale(self, symbol: str, account: str, quantity: int, sellable: int) -> None:
        """An accepted sale: within what the account held before today (T+1), and an odd
        lot only whole."""
        assert quantity <= sellable, (symbol, account, quantity, sellable)
        lot = LOTS[symbol]
        assert quantity % lot in (0, sellable % lot), (symbol, account, quantity, sellable)

    @rule(
        maker=traders,
        taker=traders,
        symbol=securities,
        side=st.sampled_from(Side),
        price=st.integers(990, 1_010),
        lots=lots,
        taker_lots=lots,
        market=st.sampled_from([False] * 3 + [True]),
        tif=st.sampled_from(TimeInForce),
        stp_group=stp_groups,
    )
    def cross(
        self,
        maker: str,
        taker: str,
        symbol: str,
        side: Side,
        price: int,
        lots: int,
        taker_lots: int,
        market: bool,
        tif: TimeInForce,
        stp_group: str,
    ) -> None:
        """A maker at `price`, then a taker on the other side at the best price or at market:
        trades, partial fills, price improvement and self-trade prevention."""
        self.place(
            maker,
            True,
            0,
            symbol,
            side,
            False,
            price,
            lots,
            0,
            TimeInForce.DAY,
            False,
            stp_group,
            StpMode.CANCEL_NEWEST,
            False,
        )
        matching = self.venue.matching
        best = matching.best_bid(symbol) if side is Side.BUY else matching.best_ask(symbol)
        self.place(
            taker,
            True,
            0,
            symbol,
            side.opposite,
            market,
            best or price,
            taker_lots,
            0,
            tif,
            False,
            stp_group,
            StpMode.DECREMENT_AND_CANCEL,
            False,
        )

    @rule(pick=picks, lots=lots, price=prices)
    def sell_what_was_bought(self, pick: int, lots: int, price: int) -> None:
        """A sale by an account that bought today: T+1 must hold back today's shares."""
        bought = sorted(key for key, quantity in self.bought_today.items() if quantity)
        if not bought:
            return
        account, symbol = bought[pick % len(bought)]
        self.place(
            account,
            True,
            0,
            symbol,
            Side.SELL,
            False,
            price,
            lots,
            0,
            TimeInForce.DAY,
            False,
            "",
            StpMode.CANCEL_NEWEST,
            False,
        )

    @rule(pick=picks, honest=honesty, wrong_book=st.sampled_from([False] * 9 + [True]))
    def cancel(self, pick: int, honest: bool, wrong_book: bool) -> None:
        order_id, symbol = self.picked_order(pick)
        if wrong_book:
            symbol = SYMBOLS[(SYMBOLS.index(symbol) + 1) % len(SYMBOLS)]
        broker, owner = self.order_brokers(order_id, honest, pick)
        command = CancelOrder(order_id=order_id, symbol=symbol)
        events = self.apply(BrokerCommand(broker=broker, command=command))
        if isinstance(events[0], OrderCancelled):
            assert broker == owner, events

    @rule(pick=picks, honest=honesty, price=st.none() | prices, lots=st.none() | lots, odd=odd)
    def amend(self, pick: int, honest: bool, price: int | None, lots: int | None, odd: int) -> None:
        order_id, symbol = self.picked_order(pick)
        quantity = None if lots is None else lots * LOTS[symbol] + odd
        if price is None and quantity is None:
            quantity = LOTS[symbol]
        broker, owner = self.order_brokers(order_id, honest, pick)
        command = AmendOrder(order_id=order_id, symbol=symbol, price=price, quantity=quantity)
        events = self.apply(BrokerCommand(broker=broker, command=command))
        if isinstance(events[0], OrderAmended):
            assert broker == owner, events

    def order_brokers(self, order_id: int, honest: bool, pick: int) -> tuple[str, str | None]:
        """(the broker that sends a command on the order, the broker owning it)."""
        resting = self.venue.matching.order(order_id)
        owner = None if resting is None else self.venue.settlement.broker_of(resting.account)
        if honest and owner is not None:
            return owner, owner
        return [*BROKERS, OPERATOR][pick % (len(BROKERS) + 1)], owner

    # -- phases and days -------------------------------------------------------------------

    @rule(symbol=securities, phase=phases)
    def set_phase(self, symbol: str, phase: Phase) -> None:
        self.apply(SetPhase(symbol=symbol, phase=phase))

    @rule(
        wrong=st.sampled_from([False] * 5 + [True]),
        step=st.sampled_from([1, 1, 3]),
        opening=st.sampled_from([Phase.CONTINUOUS, Phase.CONTINUOUS, Phase.CALL_AUCTION]),
        overnight=st.sampled_from([False] * 3 + [True]),
    )
    def day(self, wrong: bool, step: int, opening: Phase, overnight: bool) -> None:
        """End the open day and (unless `overnight`) begin the next one and open every book.
        With `wrong`, a calendar command that does not fit instead, which must be refused."""
        day, was_open = self.venue.day, self.venue.day_open
        if wrong:
            if step == 3:
                command: BeginDay | EndDay = EndDay(day=day + 1 if was_open else day)
            else:
                command = BeginDay(day=day + step if was_open else day)
            assert isinstance(self.apply(command)[0], DayRefused)
            return
        if was_open:
            events = self.apply(EndDay(day=day))
            assert events[-1] == DayEnded(day=day) and not self.venue.day_open
            if overnight:
                return
        assert self.apply(BeginDay(day=day + step)) == [DayBegun(day=day + step)]
        for symbol in SYMBOLS:
            self.apply(SetPhase(symbol=symbol, phase=opening))

    # -- snapshots -------------------------------------------------------------------------

    @rule(swap=st.booleans())
    def restore_a_copy(self, swap: bool) -> None:
        """From here on a restored copy runs beside the venue (with `swap`, the copy becomes
        the venue under test and the original follows it)."""
        restored = Venue.restore(json.loads(json.dumps(self.venue.snapshot())))
        assert restored.state_hash() == self.venue.state_hash()
        restored.check()
        if swap:
            self.venue, self.shadow = restored, self.venue
        else:
            self.shadow = restored

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def venue_checks(self) -> None:
        self.venue.check()

    @invariant()
    def conservation_and_the_model(self) -> None:
        settlement = self.venue.settlement
        assert settlement.accounts() == sorted(EVERY_ACCOUNT)
        for asset in ASSETS:
            total = 0
            for account in EVERY_ACCOUNT:
                available = settlement.available(asset, account)
                locked = settlement.locked(asset, account)
                assert available >= 0 and locked >= 0, (asset, account, available, locked)
                assert available + locked == self.holdings[asset, account], (asset, account)
                assert settlement.position(asset, account) == self.owed.get((asset, account), 0)
                total += available + locked
            assert total == settlement.supply(asset) == self.supply[asset], asset

    @invariant()
    def each_trade_settled_once(self) -> None:
        assert self.venue.matching.last_trade_id == self.trades
        assert self.venue.settlement.last_trade_id == self.trades
        assert self.venue.settlement.trade_count == self.trades

    @invariant()
    def copy_follows(self) -> None:
        if self.shadow is not None:
            assert self.shadow.state_hash() == self.venue.state_hash()


VenueMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_venue_machine = VenueMachine.TestCase
