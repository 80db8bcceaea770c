"""The Venue: the one deterministic state machine every member node runs.

It composes the matching engine and the settlement engine so that every accepted order is
funded and every trade settles as delivery-versus-payment:

- A resting buy holds its cash (per share: the limit price plus the commission on one share
  rounded up; a market buy is funded at the upper price limit) and a resting sell holds its
  shares: its requirement (`Rules.need`).
- Under GROSS (the default) an account's resting orders on an instrument hold the sum of their
  requirements as one amount per asset (settlement's `OrderHolds`), not a lock per order. An
  incoming order's funding is checked before it matches; its own fills pay from available and
  what rests is held after (see `_place`). A fill takes exactly its share from the resting
  order's hold and returns the buyer's price improvement; a cancel gives its requirement back.
  Where orders leave the book or fill at prices that no event tells (an auction, the close),
  the instrument's holds are set to what its book needs (`_rehold`); a resting order that a
  self-trade prevention cancels gives back its share at the price `GroupedOrders` remembers.
- Under the net modes each order locks its requirement under its own id, because a net trade's
  legs go into the cycle escrow from the order's lock; after anything that changes an order
  (a cancel, an expiry, an amend, a self-trade reduction, an auction fill) its lock is
  reconciled to exactly what its open quantity still needs.

Invariant (checked by `check`): per GROSS instrument, asset and account, the hold equals the
sum of the requirements of the account's resting orders; every net-mode live order holds
exactly its requirement under its id; no other operator lock exists. Pure: no clock (days
arrive as commands), no IO.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from exchange.venue.changes import VenueChanges
from exchange.venue.outcomes import Outcome, Outcomes
from exchange.venue.supply_chain import verify_signature
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
from matching.book import Order, OrderBook
from matching.commands import AddInstrument, AmendOrder, CancelOrder, PlaceOrder, SetPhase
from matching.engine import MatchingEngine
from matching.events import (
    AmendRejected,
    CommandRejected,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    OrderReduced,
    OrderRejected,
    TradeExecuted,
)
from matching.events import Event as MatchingEvent
from matching.types import CancelReason, Phase, Side, TimeInForce
from settlement import commands as settlement_commands
from settlement.corporate_action_types import Command as CorporateActionCommand
from settlement.corporate_actions import CorporateActions
from settlement.engine import SettlementEngine, TakerFiller
from settlement.escrow import OrderEscrow, OrderHolds
from settlement.events import FeeScheduleSet
from settlement.fees import buy_requirement
from settlement.registry import Registry
from settlement.supply_chain import SupplyChain
from settlement.supply_chain_types import Command as SupplyChainCommand
from settlement.types import COMMAND_OUTCOMES_MAX, AssetKind, RejectReason, SettlementMode

SNAPSHOT_VERSION = 1
# Final: the compiled build keeps these in C statics; a plain module name of a value or a
# class is a dict lookup in the module's globals at every use (see matching/book.py).
BUY: Final = Side.BUY
SELL: Final = Side.SELL
DAY: Final = TimeInForce.DAY
GTC: Final = TimeInForce.GTC
_BROKER_COMMAND: Final = BrokerCommand
_PLACE: Final = PlaceOrder
_CANCEL: Final = CancelOrder
_AMEND: Final = AmendOrder
_TRADE: Final = TradeExecuted
R = VenueRejectReason
NET_NET = SettlementMode.NET_NET

# Settlement commands a member may sequence through the venue. Trades settle when they match,
# and order locks belong to the venue: SettleTrade, Lock and Unlock stay inside settlement.
SETTLEMENT_COMMANDS: tuple[type, ...] = tuple(
    cls
    for cls in typing.get_args(settlement_commands.Command)
    if cls
    not in (settlement_commands.SettleTrade, settlement_commands.Lock, settlement_commands.Unlock)
)
CHANGES_AN_ORDER: Final = frozenset((OrderCancelled, OrderExpired, OrderReduced, OrderAmended))
UNFUNDED_REASONS = (RejectReason.INSUFFICIENT_AVAILABLE, RejectReason.AMOUNT_TOO_LARGE)


@dataclass(frozen=True, slots=True, kw_only=True)
class Rules:
    """What the venue keeps about a listed instrument beyond its book. The registries are
    settlement's own, held here to read fees and locks on the hot path; the venue changes
    them only through the settlement engine."""

    symbol: str
    book: OrderBook  # matching's, the same object for the listing's life
    currency: str
    t_plus: int
    lot: int
    upper_limit: int  # a market buy is funded at this price
    security: Registry
    cash: Registry
    pays_now: bool  # GROSS: an order's own fills pay from available; what rests is held
    filler: TakerFiller | None  # GROSS: settlement's `taker_filler(symbol)`, for `_settle_taker`
    cash_holds: OrderHolds  # GROSS: settlement's `order_holds`: resting buys' cash per account
    share_holds: OrderHolds  # GROSS: resting sells' shares per account
    cash_escrow: OrderEscrow  # net modes: settlement's `order_escrow`: a buy's lock by order
    share_escrow: OrderEscrow  # net modes: a sell's lock by order
    bought_today: dict[str, int]  # T+1: account -> shares bought today (`Venue._bought_today`)

    def buy_need(self, price: int, quantity: int) -> int:
        """Cash a buy of `quantity` at limit `price` must hold: settlement's
        `buy_requirement` at the instrument's commission now (and a bond's accrual bound)."""
        security = self.security
        return buy_requirement(price, quantity, security.fees.commission_bps, security.accrual_max)

    def need(self, order: Order) -> int:
        """What a live order must hold: a buy, `buy_requirement` in the currency; a sell, its
        shares."""
        if order.side is BUY:
            security = self.security
            return buy_requirement(
                order.price, order.quantity, security.fees.commission_bps, security.accrual_max
            )
        return order.quantity

    def holds(self, side: Side) -> OrderHolds:
        """GROSS: where the resting orders of `side` hold their requirements."""
        return self.cash_holds if side is BUY else self.share_holds

    def escrow(self, side: Side) -> OrderEscrow:
        """Net modes: where the orders of `side` lock their requirements."""
        return self.cash_escrow if side is BUY else self.share_escrow


class Venue:
    """Matching plus settlement plus the trading calendar. `apply` is the only way in."""

    __slots__ = (
        "_account_brokers",
        "_bought_today",
        "_changes",
        "_day",
        "_day_open",
        "_frozen_accounts",
        "_grouped",
        "_handlers",
        "_orders",
        "_outcomes",
        "_pending_today",
        "_rules",
        "corporate_actions",
        "matching",
        "settlement",
        "supply_chain",
    )

    def __init__(
        self,
        *,
        operator: str,
        regulator: str,
        command_outcomes_max: int = COMMAND_OUTCOMES_MAX,
    ) -> None:
        """`command_outcomes_max`: the idempotency window of settlement and of the venue's
        own outcomes (the default everywhere but in tests that run past small windows)."""
        self.matching = MatchingEngine()
        self.settlement = SettlementEngine(
            operator=operator, regulator=regulator, command_outcomes_max=command_outcomes_max
        )
        self._rules: dict[str, Rules] = {}
        # symbol -> account -> shares bought today (T+1), one table per listed instrument,
        # and NET_NET shares bought today that the cycle has not delivered yet.
        self._bought_today: dict[str, dict[str, int]] = {}
        self._pending_today: dict[str, dict[str, int]] = {}
        # of the settlement commands the venue extends
        self._outcomes = Outcomes(command_outcomes_max)
        self._day = 0  # the last day begun, yyyymmdd
        self._day_open = False
        self._changes: VenueChanges | None = None  # see `track_changes`
        self._handlers: dict[type, Callable[[Any], list[Event]]] = {
            SetPhase: self._set_phase,
            ListInstrument: self._list,
            BeginDay: self._begin_day,
            EndDay: self._end_day,
        }
        self.supply_chain = SupplyChain(
            self.settlement, verify_signature, outcomes_max=command_outcomes_max
        )
        for cls in typing.get_args(SupplyChainCommand):
            self._handlers[cls] = self._supply_chain_apply
        self.corporate_actions = CorporateActions(
            self.settlement, self._is_listed, outcomes_max=command_outcomes_max
        )
        for cls in typing.get_args(CorporateActionCommand):
            self._handlers[cls] = self._corporate_action_apply
        self._route_settlement()

    def _corporate_action_apply(self, command: CorporateActionCommand) -> list[Event]:
        """Bonds' terms and dividends (`settlement.corporate_actions`): a depository's."""
        return self.corporate_actions.apply(command)  # type: ignore[return-value]

    def _is_listed(self, symbol: str) -> bool:
        return symbol in self._rules

    def _supply_chain_apply(self, command: SupplyChainCommand) -> list[Event]:
        """Supply-chain finance (`settlement.supply_chain`): participants' signed commands and
        their banks'."""
        return self.supply_chain.apply(command)  # type: ignore[return-value]

    def _route_settlement(self) -> None:
        """Route settlement commands to `self.settlement`, and read its account tables and
        matching's order index."""
        brokers, frozen = self.settlement.account_tables()
        # Typed as the dicts and set they are (read only here): the compiled build calls a
        # dict's `get` in C, a `Mapping`'s as a Python method (`PyObject_VectorcallMethod`).
        self._account_brokers = typing.cast(dict[str, str], brokers)
        self._frozen_accounts = typing.cast(set[str], frozen)
        self._orders = typing.cast(dict[int, Order], self.matching.order_index())
        self._grouped = GroupedOrders(self._orders)
        for cls in SETTLEMENT_COMMANDS:
            self._handlers[cls] = self.settlement.apply  # type: ignore[assignment]
        self._handlers[settlement_commands.SetFeeSchedule] = self._set_fees
        self._handlers[settlement_commands.SettleCycle] = self._settle_cycle

    def apply(self, command: VenueCommand) -> list[Event]:
        """Apply one sequenced command; return its events."""
        if type(command) is _BROKER_COMMAND:  # nearly every command: dispatched here, one call
            broker, order_command, _ = command  # a record: one unpacking
            if type(order_command) is _PLACE:
                return self._place(broker, order_command)
            if type(order_command) is _CANCEL:
                return self._cancel(broker, order_command)
            assert type(order_command) is _AMEND, f"not an order command: {command!r}"
            return self._amend(broker, order_command)
        handler = self._handlers.get(type(command))
        assert handler is not None, f"not a venue command: {command!r}"
        return handler(command)

    # -- broker order commands -------------------------------------------------------------

    def _account_reason(self, broker: str, account: str) -> VenueRejectReason | None:
        owner = self.settlement.broker_of(account)
        if owner is None:
            return R.UNKNOWN_ACCOUNT
        if owner != broker:
            return R.NOT_YOUR_ACCOUNT
        if self.settlement.is_frozen(account):
            return R.ACCOUNT_FROZEN
        return None

    def _place(self, broker: str, command: PlaceOrder) -> list[Event]:
        # Every order comes through here, so the common path is written out: one test each
        # for the account and the funding, the helpers only naming a refusal's reason. Each
        # call saved runs 134,000 times in the venue benchmark's 200,000 commands; a buy's
        # requirement is still settlement's one `buy_requirement`.
        #
        # Under GROSS (`Rules.pays_now`) the funding is checked before matching and held
        # after it, for what rests: the order's own fills pay from available
        # (`_settle_taker`). Nothing but this command moves the account's assets in
        # between, and each fill costs at most its share of the requirement (a trade's
        # commission rounds down, its price is at most the limit), so the state after the
        # command is exactly that of holding first and settling from the hold, and the rest
        # can always be held; an order that trades at once never holds anything. The net
        # modes lock first: their legs go into the cycle escrow from the locks.
        # One unpacking reads every field faster than a NamedTuple's attributes one by one.
        order_id, symbol, account, side, _, limit, quantity, tif, _, group, _ = command
        if (
            not self._day_open
            or self._account_brokers.get(account) != broker
            or account in self._frozen_accounts
        ):
            reason = R.DAY_NOT_OPEN if not self._day_open else self._account_reason(broker, account)
            assert reason is not None
            return [_refused("place", broker, order_id, symbol, reason)]
        rules = self._rules.get(symbol)  # a listing's rules hold its book: one lookup
        book = None if rules is None else rules.book
        rejection = self.matching.place_reason_in(book, command)  # (an unknown symbol's too)
        if rejection is not None:
            return [OrderRejected(order_id=order_id, symbol=symbol, reason=rejection)]
        assert book is not None and rules is not None
        price = limit
        if price is None:  # a market order; a market buy is funded at the upper limit
            price = rules.upper_limit
        pays_now = rules.pays_now
        if side is BUY:
            security = rules.security
            amount = buy_requirement(
                price, quantity, security.fees.commission_bps, security.accrual_max
            )
            if pays_now:  # the account is known and not frozen (above): only cash can lack
                if amount > rules.cash.available.get(account, 0):
                    return [self._cash_unfunded(rules, account, order_id, amount)]
            else:
                refused = self.settlement.lock(rules.currency, account, amount, order_id)
                if refused is not None:
                    return [self._cash_unfunded(rules, account, order_id, amount, refused)]
            events = self.matching.place_in(book, command)
            if len(events) == 1:  # accepted and resting untouched: nothing to settle
                if pays_now:
                    rules.cash_holds.hold(account, amount)
                    if group:
                        self._grouped.add(self._orders[order_id])
                return events  # type: ignore[return-value]
        else:
            # `_sellable` inlined; a refusal is named by `_fund_shares`.
            sellable = rules.security.available.get(account, 0)
            if rules.t_plus:
                sellable -= rules.bought_today.get(account, 0)
            lot = rules.lot
            if quantity % lot and quantity % lot != sellable % lot:
                return [_refused("place", broker, order_id, symbol, R.ODD_LOT_NOT_WHOLE)]
            if quantity > sellable or not pays_now:
                problem = self._fund_shares(rules, account, order_id, quantity, sellable)
                if problem is not None:
                    return [problem]
            events = self.matching.place_in(book, command)
            if len(events) == 1:
                if pays_now:  # `quantity` <= `sellable`, checked above
                    rules.share_holds.hold(account, quantity)
                    if group:
                        self._grouped.add(self._orders[order_id])
                return events  # type: ignore[return-value]
        if not pays_now:
            return self._settle(symbol, events, price, order_id, side)
        may_rest = limit is not None and (tif is DAY or tif is GTC)
        return self._settle_taker(rules, events, order_id, may_rest)

    def _sellable(self, rules: Rules, account: str) -> int:
        available = rules.security.available.get(account, 0)
        if rules.t_plus:
            return available - rules.bought_today.get(account, 0)
        return available

    def _fund_cash(self, rules: Rules, account: str, order_id: int, amount: int) -> Event | None:
        """Hold (GROSS) or lock (net modes) `amount` of cash more for the resting buy
        `order_id`, or the event refusing it."""
        if rules.pays_now:
            if amount > rules.cash.available.get(account, 0):
                return self._cash_unfunded(rules, account, order_id, amount)
            rules.cash_holds.hold(account, amount)
            return None
        reason = self.settlement.lock(rules.currency, account, amount, order_id)
        if reason is None:
            return None
        return self._cash_unfunded(rules, account, order_id, amount, reason)

    def _cash_unfunded(
        self,
        rules: Rules,
        account: str,
        order_id: int,
        amount: int,
        reason: RejectReason | None = None,
    ) -> Event:
        """The event refusing a buy that the account cannot fund: more than its available
        cash, or a cash lock settlement refused for `reason`."""
        # AMOUNT_TOO_LARGE: more than any balance can hold (a huge market buy at the limit).
        assert reason is None or reason in UNFUNDED_REASONS, f"cash lock {order_id}: {reason!r}"
        return OrderUnfunded(
            order_id=order_id,
            symbol=rules.symbol,
            account=account,
            asset=rules.currency,
            required=amount,
            available=self.settlement.available(rules.currency, account),
            reason=R.INSUFFICIENT_CASH,
        )

    def _fund_shares(
        self, rules: Rules, account: str, order_id: int, quantity: int, sellable: int
    ) -> Event | None:
        """Hold (GROSS) or lock (net modes) `quantity` shares more for the sell `order_id`, of
        which `sellable` (see `_sellable`) may be sold now, or the event refusing it."""
        if quantity > sellable:
            held = self.settlement.available(rules.symbol, account)
            return OrderUnfunded(
                order_id=order_id,
                symbol=rules.symbol,
                account=account,
                asset=rules.symbol,
                required=quantity,
                available=max(sellable, 0),
                reason=R.BOUGHT_TODAY if quantity <= held else R.INSUFFICIENT_SECURITIES,
            )
        if rules.pays_now:
            rules.share_holds.hold(account, quantity)
            return None
        reason = self.settlement.lock(rules.symbol, account, quantity, order_id)
        assert reason is None, f"share lock {order_id}: {reason!r}"
        return None

    def _cancel(self, broker: str, command: CancelOrder) -> list[Event]:
        order_id, symbol, reason = command  # one unpacking, not three attribute reads
        order = self._orders.get(order_id)
        if order is None or order.symbol != symbol:
            return self.matching.cancel(command)  # type: ignore[return-value]  # its rejection
        if self._account_brokers.get(order.account) != broker:
            return [_refused("cancel", broker, order_id, symbol, R.NOT_YOUR_ORDER)]
        rules = self._rules[symbol]  # the order is done: what it holds goes back
        if rules.pays_now:
            if order.side is BUY:
                bps = rules.security.fees.commission_bps
                accrual = rules.security.accrual_max
                need = buy_requirement(order.price, order.quantity, bps, accrual)
                events = self.matching.cancel_checked(order, reason)
                rules.cash_holds.give_back(order.account, need)
            else:
                need = order.quantity
                events = self.matching.cancel_checked(order, reason)
                rules.share_holds.give_back(order.account, need)
            return events  # type: ignore[return-value]
        events = self.matching.cancel_checked(order, reason)
        rules.escrow(order.side).release_all(order.order_id)
        return events  # type: ignore[return-value]

    def _amend(self, broker: str, command: AmendOrder) -> list[Event]:
        """Fund what the amended order needs beyond what it holds before matching amends it,
        and give back what it no longer needs after. A frozen account may amend down, which
        needs nothing more, but not up."""
        order_id = command.order_id
        order = self._orders.get(order_id)
        reason = R.DAY_NOT_OPEN if not self._day_open else None
        if reason is None and order is not None and order.symbol == command.symbol:
            if self._account_brokers.get(order.account) != broker:
                reason = R.NOT_YOUR_ORDER
            elif order.side is SELL and command.quantity not in (None, order.quantity):
                reason = self._odd_lot_reason(order, command.quantity)
        if reason is not None:
            return [_refused("amend", broker, order_id, command.symbol, reason)]
        rejection = self.matching.amend_reason(command)
        if rejection is not None:
            return [AmendRejected(order_id=order_id, symbol=command.symbol, reason=rejection)]
        assert order is not None
        rules = self._rules[command.symbol]
        side, account = order.side, order.account
        price = order.price if command.price is None else command.price
        quantity = order.quantity if command.quantity is None else command.quantity
        need = rules.buy_need(price, quantity) if side is BUY else quantity
        held = rules.need(order)  # what it holds now (`check`: exactly its requirement)
        if need > held:
            problem = self._fund_amend(broker, rules, order, need - held)
            if problem is not None:
                return [problem]
        events = self.matching.amend_checked(command)
        if len(events) == 1:  # amended, resting, nothing traded: it needs exactly `need`
            if rules.pays_now:
                if held > need:
                    rules.holds(side).give_back(account, held - need)
                if order.stp_group:  # a new price makes a new order object
                    self._grouped.add(self._orders[order_id])
            elif held > need:
                rules.escrow(side).release(order_id, held - need)
            return events  # type: ignore[return-value]
        if not rules.pays_now:
            return self._settle(command.symbol, events, price, order_id, side)
        # It trades as an incoming order: its hold goes back, its fills pay from available
        # and what rests is held again.
        rules.holds(side).give_back(account, max(need, held))
        return self._settle_taker(rules, events, order_id, True)

    def _odd_lot_reason(self, order: Order, quantity: int) -> VenueRejectReason | None:
        """An amended sell's new `quantity` must be whole lots unless it sells the holding's
        odd lot (what it may sell now plus the shares the order holds)."""
        rules = self._rules[order.symbol]
        odd = quantity % rules.lot
        if not odd:  # whole lots: no need to look the holding up
            return None
        holding = self._sellable(rules, order.account) + order.quantity
        return None if odd == holding % rules.lot else R.ODD_LOT_NOT_WHOLE

    def _fund_amend(self, broker: str, rules: Rules, order: Order, more: int) -> Event | None:
        """Fund `more` for an amended order, or the event refusing the amend."""
        if self.settlement.is_frozen(order.account):
            return _refused("amend", broker, order.order_id, rules.symbol, R.ACCOUNT_FROZEN)
        if order.side is BUY:
            return self._fund_cash(rules, order.account, order.order_id, more)
        sellable = self._sellable(rules, order.account)
        return self._fund_shares(rules, order.account, order.order_id, more, sellable)

    # -- settlement of what matching did ---------------------------------------------------

    def _settle(
        self,
        symbol: str,
        events: list[MatchingEvent],
        taker_price: int | None = None,
        taker_id: int = 0,
        taker_side: Side | None = None,
    ) -> list[Event]:
        """Settle each trade right after it, then reconcile every order the events touched.
        (A GROSS incoming order goes through `_settle_taker` instead.)

        Net modes: every order's leg comes from its lock. A fill takes exactly its shares from
        the sell lock and exactly its linear share of the buy lock (`buy_need` at the buy's
        limit: the taker's `taker_price`, or a resting buy's own price, which is the trade
        price), so continuous trades leave both orders' locks exact. Only an auction uncross,
        where a buy fills below a limit the events do not tell, is settled at the price paid
        and reconciled afterwards.

        GROSS (a phase change only, see `_set_phase`): every hold of the instrument has been
        given back, so both legs come from available; the caller holds what rests after.
        """
        rules = self._rules[symbol]
        security = rules.security
        settle = self.settlement.settle_trade_event
        gross = rules.pays_now
        # Under T+1, NET_NET shares arrive at the cycle: they count as bought today once there.
        today = (self._pending_today if security.mode is NET_NET else self._bought_today)[symbol]
        t_plus = rules.t_plus
        out: list[Event] = []
        touched: dict[int, Side | None] = {}  # order id -> side, when told
        for event in events:
            out.append(event)
            if type(event) is _TRADE:
                trade_id, _, price, quantity, buy_id, sell_id, buyer, seller, aggressor = event
                if gross:
                    settled = settle(trade_id, symbol, price, quantity, buyer, seller)
                else:
                    if aggressor is BUY:
                        assert taker_price is not None
                        debit: int | None = rules.buy_need(taker_price, quantity)
                    elif aggressor is SELL:
                        debit = rules.buy_need(price, quantity)  # the resting buy's own price
                    else:  # an auction fill
                        debit = None
                        touched[buy_id] = BUY
                    settled = settle(
                        trade_id, symbol, price, quantity, buyer, seller, buy_id, sell_id, debit
                    )
                assert type(settled) is not RejectReason, (
                    f"pre-funded trade {trade_id} failed to settle: {settled!r}"
                )
                out.append(settled)  # type: ignore[arg-type]  # (narrowed by the assert above)
                if t_plus:
                    today[buyer] = today.get(buyer, 0) + quantity
                    if self._changes is not None:
                        self._changes.today.add((buyer, symbol))
            elif not gross and type(event) in CHANGES_AN_ORDER:
                order_id = event.order_id  # type: ignore[union-attr]
                touched.setdefault(order_id, taker_side if order_id == taker_id else None)
        for order_id, side in touched.items():
            self._reconcile(order_id, symbol, side)
        return out

    def _settle_taker(
        self, rules: Rules, events: list[MatchingEvent], taker_id: int, may_rest: bool
    ) -> list[Event]:
        """`_settle` for a GROSS incoming order that pays or delivers from available (see
        `_place`), then hold what of it rests (`may_rest`: a day or GTC limit order). Each
        fill settles through settlement's `taker_filler`, the resting order's leg from its
        account's hold. This loop runs once per trade, the venue's hottest: written for it.
        A resting order that a self-trade prevention cancels or reduces gives its share back
        (`_give_back_prevented`)."""
        filler = rules.filler  # `filler.fill` called as such: a native method call when compiled
        assert filler is not None, f"{rules.symbol} is not GROSS"
        commission_bps = rules.security.fees.commission_bps  # fixed for the whole command
        accrual = rules.security.accrual_max  # a bond's bound; 0 for shares
        today = rules.bought_today
        t_plus = rules.t_plus
        tracked = self._changes
        # `out.append`, not a local binding of it: the compiled build appends to a list in C
        # but calls a bound method held in a local as a Python object.
        out: list[Event] = []
        prevented: list[OrderCancelled | OrderReduced] | None = None
        for event in events:
            out.append(event)
            if type(event) is _TRADE:
                trade_id, _, price, quantity, _, _, buyer, seller, aggressor = event
                if aggressor is BUY:
                    out.append(filler.fill(trade_id, price, quantity, buyer, seller, 0))
                else:  # the resting buy gives up its requirement at its own price
                    debit = buy_requirement(price, quantity, commission_bps, accrual)
                    out.append(filler.fill(trade_id, price, quantity, buyer, seller, debit))
                if t_plus:
                    today[buyer] = today.get(buyer, 0) + quantity
                    if tracked is not None:
                        tracked.today.add((buyer, rules.symbol))
            elif type(event) in CHANGES_AN_ORDER and event.order_id != taker_id:  # type: ignore[union-attr]
                if prevented is None:
                    prevented = []
                prevented.append(event)  # type: ignore[arg-type]  # (see `_give_back_prevented`)
        if prevented is not None:
            self._give_back_prevented(rules, prevented)
        if may_rest:
            order = self._orders.get(taker_id)
            if order is not None:  # rests after trading: hold what it still needs
                price = order.price
                if order.side is BUY:
                    need = buy_requirement(price, order.quantity, commission_bps, accrual)
                    rules.cash_holds.hold(order.account, need)
                else:
                    rules.share_holds.hold(order.account, order.quantity)
                if order.stp_group:
                    self._grouped.add(order)
        return out

    def _give_back_prevented(
        self, rules: Rules, events: list[OrderCancelled | OrderReduced]
    ) -> None:
        """Give back the share of the resting orders that a self-trade prevention cancelled or
        reduced, each event's `quantity` at the order's price. Such an order has an STP group,
        so `GroupedOrders` has it even once it has left the book."""
        bps = rules.security.fees.commission_bps
        for event in events:
            assert type(event) in (OrderCancelled, OrderReduced), event
            assert event.reason is CancelReason.SELF_TRADE, event
            order = self._grouped.get(event.order_id)
            if order.side is BUY:
                need = buy_requirement(order.price, event.quantity, bps, rules.security.accrual_max)
                rules.cash_holds.give_back(order.account, need)
            else:
                rules.share_holds.give_back(order.account, event.quantity)

    def _rehold(self, rules: Rules) -> None:
        """Set the instrument's holds to what its resting orders need, per account. O(book)."""
        cash_needs, share_needs = self._needs(rules)
        rules.cash_holds.set_to(cash_needs)
        rules.share_holds.set_to(share_needs)

    def _needs(self, rules: Rules) -> tuple[dict[str, int], dict[str, int]]:
        """(cash, shares): account -> the sum of the requirements of its resting buys, of its
        resting sells, on the instrument. O(book)."""
        cash: dict[str, int] = {}
        shares: dict[str, int] = {}
        for order in self.matching.book(rules.symbol).resting():
            needs = cash if order.side is BUY else shares
            needs[order.account] = needs.get(order.account, 0) + rules.need(order)
        return cash, shares

    def _reconcile(self, order_id: int, symbol: str, side: Side | None) -> None:
        """Net modes: bring the order's lock to exactly its requirement (nothing, once it is
        done). `side` None: not known from the events, so a done order's lock is looked for
        in both registries."""
        rules = self._rules[symbol]
        assert not rules.pays_now, f"{symbol} is GROSS: its orders hold, they do not lock"
        order = self.matching.resting_order(order_id)
        if order is None:
            if side is not SELL:
                rules.cash_escrow.release_all(order_id)
            if side is not BUY:
                rules.share_escrow.release_all(order_id)
            return
        escrow, need = rules.escrow(order.side), rules.need(order)
        held = escrow.held(order_id)
        assert held >= need, f"order {order_id} holds {held} of {escrow.asset}, needs {need}"
        if held > need:
            escrow.release(order_id, held - need)

    def _set_fees(self, command: settlement_commands.SetFeeSchedule) -> list[Event]:
        """A new fee schedule changes what resting buys need: top each up in priority order,
        or cancel it (reason `unfunded`) if its account cannot pay or is frozen; give back any
        surplus. A replayed command id gets the original outcome and changes nothing."""
        remembered = self._outcomes.get(command)
        if remembered is not None:
            return list(remembered)
        rules = self._rules.get(command.asset)
        old_bps = 0 if rules is None else rules.security.fees.commission_bps
        events: list[Event] = list(self.settlement.apply(command))
        if rules is not None and type(events[0]) is FeeScheduleSet:
            events += self._refund_resting_buys(rules, old_bps)
            self._remember(command, events)
        return events

    def _refund_resting_buys(self, rules: Rules, old_bps: int) -> list[Event]:
        """Fund every resting buy to its requirement under the new commission, having held
        its requirement under `old_bps`."""
        events: list[Event] = []
        symbol = rules.symbol
        gross = rules.pays_now
        buys = [o for o in self.matching.book(symbol).resting() if o.side is BUY]
        for order in buys:
            need = rules.need(order)
            held = buy_requirement(order.price, order.quantity, old_bps, rules.security.accrual_max)
            account = order.account
            if need > held and (
                self.settlement.is_frozen(account)
                or self._fund_cash(rules, account, order.order_id, need - held)
            ):
                events.extend(self.matching.cancel_checked(order, CancelReason.UNFUNDED))
                if gross:
                    rules.cash_holds.give_back(account, held)
            elif need < held and gross:
                rules.cash_holds.give_back(account, held - need)
            if not gross:
                self._reconcile(order.order_id, symbol, BUY)
        return events

    def _settle_cycle(self, command: settlement_commands.SettleCycle) -> list[Event]:
        """Settle the cycle. Under T+1, NET_NET shares bought today reach their buyers at the
        cycle, and from then on count as bought today. A replayed command id gets the original
        outcome and changes nothing."""
        remembered = self._outcomes.get(command)
        if remembered is not None:
            return list(remembered)
        cycle = self.settlement.cycle_id
        events: list[Event] = list(self.settlement.apply(command))
        if self.settlement.cycle_id != cycle:  # it settled (a failed cycle settles nothing)
            for symbol, pending in self._pending_today.items():
                bought = self._bought_today[symbol]
                for account, quantity in pending.items():
                    bought[account] = bought.get(account, 0) + quantity
                if self._changes is not None:
                    self._changes.today.update((account, symbol) for account in pending)
                pending.clear()
            self._remember(command, events)
        return events

    def _remember(self, command: settlement_commands.Command, events: list[Event]) -> None:
        self._outcomes.remember(command, events)
        if self._changes is not None:
            self._changes.outcomes.add((command.actor, command.command_id))

    # -- instruments, phases and the calendar ----------------------------------------------

    def _set_phase(self, command: SetPhase) -> list[Event]:
        rules = self._rules.get(command.symbol)
        if rules is None or not rules.pays_now:
            events = self.matching.set_phase(command)
            if rules is None or len(events) == 1:
                return events  # type: ignore[return-value]
            return self._settle(command.symbol, events, None)
        events = self.matching.set_phase(command)
        if len(events) == 1:  # the phase alone changed (or was refused): no order moved
            return events  # type: ignore[return-value]
        # GROSS: an auction fills buys below limits that no event tells, and the close
        # expires orders named by id alone. So every hold of the instrument goes back, the
        # trades settle from available, and what rests is held again: O(book), at a phase
        # change that moved orders.
        rules.cash_holds.set_to({})
        rules.share_holds.set_to({})
        out = self._settle(command.symbol, events, None)
        self._rehold(rules)
        return out

    def _list(self, command: ListInstrument) -> list[Event]:
        reason = self._listing_reason(command)
        if reason is not None:
            return [ListingRefused(symbol=command.symbol, reason=reason)]
        events: list[Event] = list(
            self.matching.add_instrument(
                AddInstrument(
                    symbol=command.symbol,
                    tick_size=command.tick_size,
                    lot=command.lot,
                    reference_price=command.reference_price,
                    price_limit_pct=command.price_limit_pct,
                )
            )
        )
        if type(events[0]) is CommandRejected:
            return events
        currency = self.settlement.registry(command.symbol).currency
        upper_limit = self.matching.book(command.symbol).upper_limit
        self._add_rules(command.symbol, currency, command.t_plus, command.lot, upper_limit)
        events.append(
            InstrumentListed(symbol=command.symbol, currency=currency, t_plus=command.t_plus)
        )
        return events

    def _add_rules(
        self, symbol: str, currency: str, t_plus: int, lot: int, upper_limit: int
    ) -> None:
        """Keep a listed instrument's rules and its tables of shares bought today."""
        settlement = self.settlement
        security = settlement.registry(symbol)
        gross = security.mode is SettlementMode.GROSS
        bought_today: dict[str, int] = {}
        self._bought_today[symbol] = bought_today
        self._rules[symbol] = Rules(
            symbol=symbol,
            book=self.matching.book(symbol),
            currency=currency,
            t_plus=t_plus,
            lot=lot,
            upper_limit=upper_limit,
            security=security,
            cash=settlement.registry(currency),
            pays_now=gross,
            filler=settlement.taker_filler(symbol) if gross else None,
            cash_holds=settlement.order_holds(currency, symbol),
            share_holds=settlement.order_holds(symbol, symbol),
            cash_escrow=settlement.order_escrow(currency),
            share_escrow=settlement.order_escrow(symbol),
            bought_today=bought_today,
        )
        self._pending_today[symbol] = {}
        if self._changes is not None:
            self._changes.rules.add(symbol)

    def _listing_reason(self, command: ListInstrument) -> VenueRejectReason | None:
        if command.symbol in self._rules:
            return R.DUPLICATE_INSTRUMENT
        if command.symbol not in self.settlement.assets():
            return R.UNKNOWN_ASSET
        if self.settlement.registry(command.symbol).kind is not AssetKind.SECURITY:
            return R.UNKNOWN_ASSET
        if command.t_plus not in (0, 1):
            return R.INVALID_RULES
        return None

    def _begin_day(self, command: BeginDay) -> list[Event]:
        if self._day_open:
            return [DayRefused(day=command.day, reason=R.DAY_ALREADY_OPEN)]
        if command.day <= self._day:
            return [DayRefused(day=command.day, reason=R.DAY_NOT_AFTER)]
        self._day = command.day
        self._day_open = True
        for tables in (self._bought_today, self._pending_today):
            for symbol, table in tables.items():
                if self._changes is not None:
                    self._changes.today.update((account, symbol) for account in table)
                table.clear()
        # payment commitments due by this day are paid (or fail) as it begins, then coupons,
        # redemptions and dividends (the books of maturing bonds emptied first)
        events: list[Event] = [DayBegun(day=command.day)]
        events += self.supply_chain.begin_day(command.day)
        for symbol in self.corporate_actions.maturing(command.day):
            events += self._empty_book(symbol)
        events += self.corporate_actions.begin_day(command.day)
        return events

    def _empty_book(self, symbol: str) -> list[Event]:
        """Cancel every resting order of a maturing bond (GROSS: every hold goes back), so
        that each of its units can go back to the issuer. O(book)."""
        rules = self._rules.get(symbol)
        if rules is None:
            return []
        assert rules.pays_now, f"bond {symbol} is not GROSS"
        events: list[Event] = []
        for order in list(self.matching.book(symbol).resting()):
            events += self.matching.cancel_checked(order, CancelReason.MATURED)
        rules.cash_holds.set_to({})
        rules.share_holds.set_to({})
        return events

    def _end_day(self, command: EndDay) -> list[Event]:
        if not self._day_open or command.day != self._day:
            return [DayRefused(day=command.day, reason=R.DAY_NOT_OPEN)]
        events: list[Event] = []
        for symbol in sorted(self._rules):
            if self.matching.book(symbol).phase is not Phase.CLOSED:
                events.extend(self._set_phase(SetPhase(symbol=symbol, phase=Phase.CLOSED)))
        self._day_open = False
        events.append(DayEnded(day=command.day))
        return events

    # -- changes ---------------------------------------------------------------------------

    def track_changes(self) -> VenueChanges:
        """From now on, record what the venue itself changes (see `exchange.venue.changes`;
        its matching and settlement engines keep their own records, `track_changes` on each),
        and return the record. Once per venue, as `MatchingEngine.track_changes`. O(1)."""
        assert self._changes is None, "the venue's changes have a reader already"
        self._changes = VenueChanges()
        return self._changes

    # -- queries and state -----------------------------------------------------------------

    @property
    def day(self) -> int:
        return self._day

    @property
    def day_open(self) -> bool:
        return self._day_open

    def rules(self, symbol: str) -> Rules:
        return self._rules[symbol]

    def listed(self) -> Mapping[str, Rules]:
        """symbol -> rules of every listed instrument, read-only."""
        return self._rules

    def outcomes(self) -> Mapping[tuple[str, int], Outcome]:
        """(actor, command id) -> (command, events) of the settlement commands whose
        outcomes the venue remembers, oldest first, read-only."""
        return self._outcomes.rows()

    def sellable(self, symbol: str, account: str) -> int:
        """Shares of `symbol` that `account` may sell now (T+1 applied)."""
        return max(self._sellable(self._rules[symbol], account), 0)

    def shares_today(
        self,
    ) -> tuple[Mapping[str, Mapping[str, int]], Mapping[str, Mapping[str, int]]]:
        """(bought, pending), each symbol -> account -> shares: bought today, which T+1 does
        not let the account sell until the next day, and NET_NET shares bought today that the
        cycle has not delivered yet. Read-only; an account with none is absent."""
        return self._bought_today, self._pending_today

    def snapshot(self) -> dict[str, Any]:
        """The whole state, JSON-ready. `supply_chain` is present only once supply-chain
        finance has state, so that a venue without it keeps its snapshot and state hash."""
        snapshot = self._snapshot()
        if not self.supply_chain.is_empty():
            snapshot["supply_chain"] = self.supply_chain.snapshot()
        if not self.corporate_actions.is_empty():
            snapshot["corporate_actions"] = self.corporate_actions.snapshot()
        return snapshot

    def _snapshot(self) -> dict[str, Any]:
        return {
            "version": SNAPSHOT_VERSION,
            "matching": self.matching.snapshot(),
            "settlement": self.settlement.snapshot(),
            "day": self._day,
            "day_open": self._day_open,
            "rules": [
                [r.symbol, r.currency, r.t_plus, r.lot, r.upper_limit]
                for _, r in sorted(self._rules.items())
            ],
            "bought_today": _today_rows(self._bought_today),
            "pending_today": _today_rows(self._pending_today),
            "outcomes": self._outcomes.snapshot(),
        }

    @classmethod
    def restore(cls, snapshot: dict[str, Any]) -> Venue:
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported venue snapshot version {snapshot.get('version')!r}")
        settlement = SettlementEngine.restore(snapshot["settlement"])
        venue = cls(
            operator=settlement.operator,
            regulator=settlement.regulator,
            command_outcomes_max=settlement.outcomes_max,
        )
        venue.matching = MatchingEngine.restore(snapshot["matching"])
        venue.settlement = settlement
        venue._route_settlement()
        venue._day = snapshot["day"]
        venue._day_open = snapshot["day_open"]
        for symbol, currency, t_plus, lot, upper_limit in snapshot["rules"]:
            venue._add_rules(symbol, currency, t_plus, lot, upper_limit)
            if venue._rules[symbol].pays_now:
                for order in venue.matching.book(symbol).resting():
                    if order.stp_group:
                        venue._grouped.add(order)
        for account, symbol, quantity in snapshot["bought_today"]:
            venue._bought_today[symbol][account] = quantity
        for account, symbol, quantity in snapshot["pending_today"]:
            venue._pending_today[symbol][account] = quantity
        venue._outcomes = Outcomes.restore(snapshot["outcomes"], settlement.outcomes_max)
        venue.supply_chain = SupplyChain.restore(
            snapshot.get("supply_chain", []),
            settlement,
            verify_signature,
            day=venue._day,
            outcomes_max=settlement.outcomes_max,
        )
        venue.corporate_actions = CorporateActions.restore(
            snapshot.get("corporate_actions", []),
            settlement,
            venue._is_listed,
            day=venue._day,
            outcomes_max=settlement.outcomes_max,
        )
        return venue

    def state_hash(self) -> str:
        """The venue's state hash, in hex: the commitment that block headers sign
        (`exchange.venue.commitment`), recomputed from `snapshot()`. O(state); a member
        keeps it up to date in O(what changed) with `VenueMachine.state_hash`, which gives
        the same bytes."""
        # commitment.py builds on this module (`StateCommitment` follows a live `Venue`), so
        # its from-scratch form is imported at the call.
        from exchange.venue.commitment import commitment_of_snapshot  # noqa: PLC0415

        return commitment_of_snapshot(self.snapshot()).hex()

    def order_funds(self, order_id: int) -> int:
        """What the resting order `order_id` holds (0 when it does not rest): under GROSS its
        share of its account's hold, which `check` asserts is exactly its requirement; under
        the net modes its lock."""
        order = self._orders.get(order_id)
        if order is None:
            return 0
        rules = self._rules[order.symbol]
        if rules.pays_now:
            return rules.need(order)
        return rules.escrow(order.side).held(order_id)

    def check(self) -> None:
        """Assert the invariants of matching, of settlement, and of funding between them."""
        self.matching.check()
        self.settlement.check()
        self.supply_chain.check()
        self.corporate_actions.check()
        operator = self.settlement.operator
        live: set[tuple[str, int]] = set()
        for symbol, rules in self._rules.items():
            assert rules.book is self.matching.book(symbol), f"{symbol}: Rules holds a stale book"
            assert rules.bought_today is self._bought_today[symbol], f"{symbol}: stale T+1 table"
            holds_of = (rules.cash_holds, rules.share_holds)
            resting = rules.book.resting()
            if not rules.pays_now:  # net modes: a lock per order, no holds
                for holds in holds_of:
                    assert not holds.holders(), f"{symbol} is not GROSS but holds {holds.asset}"
                for order in resting:
                    asset, need = rules.escrow(order.side).asset, rules.need(order)
                    order_id = order.order_id
                    held = self.settlement.locked_by(asset, order_id)
                    assert held == need, f"order {order_id} holds {held} {asset}, needs {need}"
                    live.add((asset, order_id))
                continue
            for holds, need_of in zip(holds_of, self._needs(rules), strict=True):
                held_by = holds.holders()
                wrong = {
                    account: (held_by.get(account, 0), need_of.get(account, 0))
                    for account in held_by.keys() | need_of.keys()
                    if held_by.get(account, 0) != need_of.get(account, 0)
                }
                assert not wrong, f"{symbol}: holds of {holds.asset} (held, needed): {wrong}"
            for order in resting:
                if order.stp_group:
                    assert self._grouped.get(order.order_id) is order, order.order_id
        for asset in self.settlement.assets():
            for owner, (_, _, holder) in self.settlement.registry(asset).locks.items():
                if holder == operator:
                    assert (asset, owner) in live, f"lock {owner} on {asset} has no live order"


class GroupedOrders:
    """The GROSS resting orders that have an STP group, by id: a self-trade prevention may
    cancel such an order, and its event tells neither the order's price nor its account.
    Derived from the book (not state: `restore` rebuilds it). An order that leaves the book
    stays until a pruning, when the table has doubled since the last one: amortised O(1)."""

    __slots__ = ("_live", "_orders", "_prune_at")

    PRUNE_AT_LEAST: typing.ClassVar[int] = 1024  # ClassVar: a class constant when compiled too

    def __init__(self, live: Mapping[int, Order]) -> None:
        self._live = live  # matching's order index
        self._orders: dict[int, Order] = {}
        self._prune_at = self.PRUNE_AT_LEAST

    def add(self, order: Order) -> None:
        """Remember `order`, resting now (again, after an amend made a new object of it)."""
        orders = self._orders
        orders[order.order_id] = order
        if len(orders) > self._prune_at:
            live = self._live
            for order_id in [i for i in orders if i not in live]:
                del orders[order_id]
            self._prune_at = max(self.PRUNE_AT_LEAST, 2 * len(orders))

    def get(self, order_id: int) -> Order:
        """The order, remembered when it last rested (asserted)."""
        order = self._orders.get(order_id)
        assert order is not None, f"order {order_id} rested with no STP group"
        return order

    def __len__(self) -> int:
        return len(self._orders)


def _refused(
    command: str, broker: str, order_id: int, symbol: str, reason: VenueRejectReason
) -> OrderRefused:
    return OrderRefused(
        command=command, broker=broker, order_id=order_id, symbol=symbol, reason=reason
    )


def _today_rows(tables: dict[str, dict[str, int]]) -> list[list[Any]]:
    """[account, symbol, shares] rows of a today table, sorted: its snapshot form."""
    return sorted([a, s, q] for s, table in tables.items() for a, q in table.items())
