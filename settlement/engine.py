"""The settlement engine: tokenized registries, escrow locks, DvP (gross and net), cycles.

Pure: the same state and the same command give the same events on every machine. Two doors:

- `apply(command) -> list[Event]`: every command, validated in a fixed order, idempotent by
  (`actor`, `command_id`): each member numbers its own commands (see `_remember`).
- The hot path for the venue, which is the operator: `lock`, `release`, `release_all` and
  `settle_trade` return a `RejectReason` or None (or an int) and build no event. Each is O(1),
  a handful of dict operations; the venue emits its own events, except that
  `settle_trade_event` returns the trade's settlement event, so that the venue does not work
  out the fees a second time. `order_holds(asset, symbol)` (`OrderHolds`: what an account's
  resting orders on a GROSS instrument hold), `order_escrow(asset)` (`OrderEscrow`: a net-mode
  order's lock and its release) and `taker_filler` (an incoming order's fills on a GROSS
  security) are the writes alone, for what the venue has already funded: their checks are
  assertions, made before any write.

See docs/settlement.md for the model, the order of validation and the invariants.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any, Final

from settlement.changes import SettlementChanges
from settlement.codec import command_from_row, event_from_row, to_row
from settlement.commands import (
    Command,
    DefineAsset,
    Deposit,
    Freeze,
    Issue,
    Lock,
    OpenAccount,
    Redeem,
    SetFeeSchedule,
    SettleCycle,
    SettleTrade,
    Transfer,
    Unfreeze,
    Unlock,
    Withdraw,
)
from settlement.escrow import OrderEscrow, OrderHolds
from settlement.events import (
    AccountFrozen,
    AccountOpened,
    AccountUnfrozen,
    AssetDefined,
    AssetNetted,
    CommandRejected,
    CycleFailed,
    CycleSettled,
    Deposited,
    Event,
    FeeScheduleSet,
    Issued,
    Locked,
    Redeemed,
    TradeCleared,
    TradeSettled,
    Transferred,
    Unlocked,
    Withdrawn,
)
from settlement.fees import FeeSchedule, TradeAmounts, rates_valid, trade_amounts, trade_cash
from settlement.registry import Registry
from settlement.types import (
    ACCOUNTS_MAX,
    AMOUNT_MAX,
    ASSETS_MAX,
    COMMAND_OUTCOMES_MAX,
    LOCKS_MAX,
    NAME_LENGTH_MAX,
    AssetKind,
    RejectReason,
    SettlementMode,
)

SNAPSHOT_VERSION = 3  # 2: registries keep the operator's holds; 3: outcomes per actor
FORGOTTEN_ACTORS_MAX = 256  # actors with a floor of their own; the rest share one (`_remember`)

# Final: the compiled build keeps these in C statics; a plain module name of a value or a
# class is a dict lookup in the module's globals at every use (once per trade in `fill`).
_GROSS: Final = SettlementMode.GROSS
_CASH_NET: Final = SettlementMode.CASH_NET
_SECURITY: Final = AssetKind.SECURITY
_R = RejectReason
_new_tuple: Final = tuple.__new__
_SETTLED: Final = TradeSettled


class SettlementEngine:
    """Every registry, account, lock and open cycle of the venue, and the commands on them.

    `operator` (the exchange) defines assets, fee schedules and settles trades and cycles;
    `regulator` freezes and unfreezes accounts; each asset's issuer issues/redeems (securities)
    or deposits/withdraws (cash); each account's broker transfers and locks its holdings.
    """

    __slots__ = (
        "_brokers",
        "_changes",
        "_cycle_id",
        "_cycle_trade_count",
        "_forgotten",
        "_forgotten_other",
        "_frozen",
        "_operator",
        "_outcomes",
        "_outcomes_max",
        "_registries",
        "_regulator",
        "_trade_count",
        "_trade_id_last",
    )

    def __init__(
        self, *, operator: str, regulator: str, command_outcomes_max: int = COMMAND_OUTCOMES_MAX
    ) -> None:
        assert _name_valid(operator) and _name_valid(regulator), (
            f"bad roles {operator=} {regulator=}"
        )
        assert command_outcomes_max > 0, f"bad {command_outcomes_max=}"
        self._operator = operator
        self._regulator = regulator
        self._registries: dict[str, Registry] = {}
        self._brokers: dict[str, str] = {}  # account -> broker
        self._frozen: set[str] = set()
        self._trade_id_last = 0
        self._trade_count = 0
        self._cycle_id = 1  # the open cycle
        self._cycle_trade_count = 0
        # (actor, command id) -> (command, events), oldest first
        self._outcomes: dict[tuple[str, int], tuple[Command, tuple[Event, ...]]] = {}
        self._outcomes_max = command_outcomes_max
        self._forgotten: dict[str, int] = {}  # actor -> the highest of its ids forgotten
        self._forgotten_other: int | None = None  # the floor of every actor not in _forgotten
        self._changes: SettlementChanges | None = None  # see `track_changes`

    # ----------------------------------------------------------------- commands

    def apply(self, command: Command) -> list[Event]:
        """Apply one command; return its events. Idempotent by (`actor`, `command_id`), so
        members never share an id: an id the actor used before returns the original events and
        changes nothing (or COMMAND_ID_REUSED if the contents differ); an id at or below the
        highest of the actor's ids forgotten by the bounded window is COMMAND_ID_TOO_OLD.
        O(1) plus the command's own cost (a cycle is O(positions log positions))."""
        key = (command.actor, command.command_id)
        remembered = self._outcomes.get(key)
        if remembered is not None:
            if remembered[0] == command:
                return list(remembered[1])
            return [_rejected(command, _R.COMMAND_ID_REUSED)]
        forgotten = self._forgotten.get(command.actor, self._forgotten_other)
        if forgotten is not None and command.command_id <= forgotten:
            return [_rejected(command, _R.COMMAND_ID_TOO_OLD)]
        events = self._dispatch(command)
        self._remember(key, command, events)
        return events

    def _remember(self, key: tuple[str, int], command: Command, events: list[Event]) -> None:
        """Keep the outcomes of the last `command_outcomes_max` commands, of every actor. The
        oldest is forgotten first and raises its actor's floor, at or below which the actor's
        ids are refused: each member numbers its commands in increasing order, so a retry is
        recent, and a forgotten command can never be applied a second time.

        Floors are bounded too: beyond FORGOTTEN_ACTORS_MAX actors, the lowest floor (the
        first actor by name among equals) is merged into the floor that every actor without
        one of its own shares. That only ever refuses more: safe, and reached only with more
        actors than a genesis has members."""
        outcomes = self._outcomes
        outcomes[key] = (command, tuple(events))
        if self._changes is not None:
            self._changes.outcomes.add(key)
        if len(outcomes) <= self._outcomes_max:
            return
        actor, oldest = next(iter(outcomes))
        del outcomes[actor, oldest]
        floors = self._forgotten
        floor = floors.get(actor, self._forgotten_other)
        floors[actor] = oldest if floor is None else max(floor, oldest)
        if len(floors) > FORGOTTEN_ACTORS_MAX:
            lowest = min(floors, key=lambda name: (floors[name], name))
            other = self._forgotten_other
            merged = floors.pop(lowest)
            self._forgotten_other = merged if other is None else max(other, merged)

    def forgotten_ids(self) -> list[list[Any]]:
        """[[actor, highest forgotten id], ...] by actor, then [None, the shared floor] if
        there is one: JSON-ready, as in the snapshot."""
        rows: list[list[Any]] = [[actor, floor] for actor, floor in sorted(self._forgotten.items())]
        if self._forgotten_other is not None:
            rows.append([None, self._forgotten_other])
        return rows

    def _dispatch(self, command: Command) -> list[Event]:
        match command:
            case DefineAsset():
                return self._define_asset(command)
            case SetFeeSchedule():
                return self._set_fee_schedule(command)
            case OpenAccount():
                return self._open_account(command)
            case Issue() | Deposit():
                return self._mint(command)
            case Redeem() | Withdraw():
                return self._burn(command)
            case Transfer():
                return self._transfer(command)
            case Lock():
                return self._lock_command(command)
            case Unlock():
                return self._unlock_command(command)
            case Freeze() | Unfreeze():
                return self._freeze(command)
            case SettleTrade():
                return self._settle_trade_command(command)
            case SettleCycle():
                if command.actor != self._operator:
                    return [_rejected(command, _R.NOT_AUTHORIZED)]
                return self.settle_cycle()

    def _define_asset(self, command: DefineAsset) -> list[Event]:
        reason = self._define_asset_reason(command)
        if reason is not None:
            return [_rejected(command, reason)]
        registry = self._registries[command.asset] = Registry(
            asset=command.asset,
            kind=command.kind,
            issuer=command.issuer,
            currency=command.currency,
            mode=command.mode,
        )
        registry.changes = self._changes
        self._asset_changed(command.asset)
        return [
            AssetDefined(
                asset=command.asset,
                kind=command.kind,
                issuer=command.issuer,
                currency=command.currency,
                mode=command.mode,
            )
        ]

    def _define_asset_reason(self, command: DefineAsset) -> RejectReason | None:
        if command.actor != self._operator:
            return _R.NOT_AUTHORIZED
        if not _name_valid(command.asset) or not _name_valid(command.issuer):
            return _R.INVALID_ASSET
        is_cash = command.kind is AssetKind.CASH
        if is_cash and (command.currency != command.asset or command.mode is not _GROSS):
            return _R.INVALID_ASSET
        if command.asset in self._registries:
            return _R.DUPLICATE_ASSET
        currency = self._registries.get(command.currency)
        if not is_cash and (currency is None or currency.kind is not AssetKind.CASH):
            return _R.UNKNOWN_CURRENCY
        if len(self._registries) >= ASSETS_MAX:
            return _R.CAPACITY_EXHAUSTED
        return None

    def _set_fee_schedule(self, command: SetFeeSchedule) -> list[Event]:
        reason = self._fee_schedule_reason(command)
        if reason is not None:
            return [_rejected(command, reason)]
        self._registries[command.asset].fees = FeeSchedule(
            commission_bps=command.commission_bps,
            stamp_duty_bps=command.stamp_duty_bps,
            fee_account=command.fee_account,
            tax_account=command.tax_account,
        )
        self._asset_changed(command.asset)
        return [
            FeeScheduleSet(
                asset=command.asset,
                commission_bps=command.commission_bps,
                stamp_duty_bps=command.stamp_duty_bps,
                fee_account=command.fee_account,
                tax_account=command.tax_account,
            )
        ]

    def _fee_schedule_reason(self, command: SetFeeSchedule) -> RejectReason | None:
        if command.actor != self._operator:
            return _R.NOT_AUTHORIZED
        registry = self._registries.get(command.asset)
        if registry is None:
            return _R.UNKNOWN_ASSET
        if registry.kind is not _SECURITY:
            return _R.WRONG_ASSET_KIND
        schedule = FeeSchedule(
            commission_bps=command.commission_bps, stamp_duty_bps=command.stamp_duty_bps
        )
        if not rates_valid(schedule):
            return _R.INVALID_FEE_SCHEDULE
        for account, bps in (
            (command.fee_account, command.commission_bps),
            (command.tax_account, command.stamp_duty_bps),
        ):
            if (account or bps) and account not in self._brokers:
                return _R.UNKNOWN_ACCOUNT
        return None

    def _open_account(self, command: OpenAccount) -> list[Event]:
        reason: RejectReason | None = None
        if command.actor not in (self._operator, command.broker):
            reason = _R.NOT_AUTHORIZED
        elif not _name_valid(command.account) or not _name_valid(command.broker):
            reason = _R.INVALID_ACCOUNT
        elif command.account in self._brokers:
            reason = _R.DUPLICATE_ACCOUNT
        elif len(self._brokers) >= ACCOUNTS_MAX:
            reason = _R.CAPACITY_EXHAUSTED
        if reason is not None:
            return [_rejected(command, reason)]
        self._brokers[command.account] = command.broker
        self._account_changed(command.account)
        return [AccountOpened(account=command.account, broker=command.broker)]

    def _mint(self, command: Issue | Deposit) -> list[Event]:
        """Issue (securities) or deposit (cash): new units credited by the issuer."""
        reason = self._mint_reason(command)
        if reason is not None:
            return [_rejected(command, reason)]
        registry = self._registries[command.asset]
        registry.issued += command.amount
        self._asset_changed(command.asset)
        registry.credit(command.account, command.amount)
        made = Issued if isinstance(command, Issue) else Deposited
        return [made(asset=command.asset, account=command.account, amount=command.amount)]

    def _mint_reason(self, command: Issue | Deposit) -> RejectReason | None:
        kind = _SECURITY if isinstance(command, Issue) else AssetKind.CASH
        reason = self._issuer_reason(command.asset, kind, command.actor, command.account)
        if reason is None:
            reason = _amount_reason(command.amount)
        # the registry's own maximum: SUPPLY_MAX, less for a bond or a share with a dividend
        # declared (docs/fixed_income.md)
        if reason is None and (
            self._registries[command.asset].supply + command.amount
            > self._registries[command.asset].supply_max
        ):
            reason = _R.AMOUNT_TOO_LARGE
        return reason

    def _burn(self, command: Redeem | Withdraw) -> list[Event]:
        """Redeem (securities) or withdraw (cash): available units retired by the issuer."""
        kind = _SECURITY if isinstance(command, Redeem) else AssetKind.CASH
        reason = self._issuer_reason(command.asset, kind, command.actor, command.account)
        if reason is None:
            reason = self._debit_reason(command.asset, command.account, command.amount)
        if reason is not None:
            return [_rejected(command, reason)]
        registry = self._registries[command.asset]
        registry.redeemed += command.amount
        self._asset_changed(command.asset)
        registry.debit(command.account, command.amount)
        made = Redeemed if isinstance(command, Redeem) else Withdrawn
        return [made(asset=command.asset, account=command.account, amount=command.amount)]

    def _issuer_reason(
        self, asset: str, kind: AssetKind, actor: str, account: str
    ) -> RejectReason | None:
        registry = self._registries.get(asset)
        if registry is None:
            return _R.UNKNOWN_ASSET
        if registry.kind is not kind:
            return _R.WRONG_ASSET_KIND
        if actor != registry.issuer:
            return _R.NOT_AUTHORIZED
        if account not in self._brokers:
            return _R.UNKNOWN_ACCOUNT
        return None

    def _debit_reason(self, asset: str, account: str, amount: int) -> RejectReason | None:
        """Amount, then freeze, then funds: the common tail of every debit from available."""
        reason = _amount_reason(amount)
        if reason is not None:
            return reason
        if account in self._frozen:
            return _R.ACCOUNT_FROZEN
        if self._registries[asset].available.get(account, 0) < amount:
            return _R.INSUFFICIENT_AVAILABLE
        return None

    def _transfer(self, command: Transfer) -> list[Event]:
        reason = self._transfer_reason(command)
        if reason is not None:
            return [_rejected(command, reason)]
        registry = self._registries[command.asset]
        registry.debit(command.source, command.amount)
        registry.credit(command.destination, command.amount)
        return [
            Transferred(
                asset=command.asset,
                source=command.source,
                destination=command.destination,
                amount=command.amount,
            )
        ]

    def _transfer_reason(self, command: Transfer) -> RejectReason | None:
        if command.asset not in self._registries:
            return _R.UNKNOWN_ASSET
        if command.source not in self._brokers or command.destination not in self._brokers:
            return _R.UNKNOWN_ACCOUNT
        if command.actor != self._brokers[command.source]:
            return _R.NOT_AUTHORIZED
        reason = _amount_reason(command.amount)
        if reason is not None:
            return reason
        if command.source == command.destination:
            return _R.SAME_ACCOUNT
        return self._debit_reason(command.asset, command.source, command.amount)

    def _lock_command(self, command: Lock) -> list[Event]:
        reason = self._lock_command_reason(command)
        if reason is not None:
            return [_rejected(command, reason)]
        registry = self._registries[command.asset]
        registry.lock(command.account, command.amount, command.owner, command.actor)
        return [
            Locked(
                asset=command.asset,
                account=command.account,
                owner=command.owner,
                amount=command.amount,
            )
        ]

    def _lock_command_reason(self, command: Lock) -> RejectReason | None:
        registry = self._registries.get(command.asset)
        if registry is None:
            return _R.UNKNOWN_ASSET
        if command.account not in self._brokers:
            return _R.UNKNOWN_ACCOUNT
        if command.actor not in (self._brokers[command.account], self._operator):
            return _R.NOT_AUTHORIZED
        return self._lock_reason(
            registry, command.account, command.amount, command.owner, command.actor
        )

    def _unlock_command(self, command: Unlock) -> list[Event]:
        reason = self._unlock_reason(command.asset, command.owner, command.amount, command.actor)
        if reason is not None:
            return [_rejected(command, reason)]
        registry = self._registries[command.asset]
        account = registry.locks[command.owner][0]
        registry.release(command.owner, command.amount)
        return [
            Unlocked(
                asset=command.asset, account=account, owner=command.owner, amount=command.amount
            )
        ]

    def _freeze(self, command: Freeze | Unfreeze) -> list[Event]:
        freeze = isinstance(command, Freeze)
        reason: RejectReason | None = None
        if command.actor != self._regulator:
            reason = _R.NOT_AUTHORIZED
        elif command.account not in self._brokers:
            reason = _R.UNKNOWN_ACCOUNT
        elif freeze and command.account in self._frozen:
            reason = _R.ALREADY_FROZEN
        elif not freeze and command.account not in self._frozen:
            reason = _R.NOT_FROZEN
        if reason is not None:
            return [_rejected(command, reason)]
        self._account_changed(command.account)
        if freeze:
            self._frozen.add(command.account)
            return [AccountFrozen(account=command.account)]
        self._frozen.discard(command.account)
        return [AccountUnfrozen(account=command.account)]

    def _settle_trade_command(self, command: SettleTrade) -> list[Event]:
        reason = (
            _R.NOT_AUTHORIZED
            if command.actor != self._operator
            else self.settle_trade(
                command.trade_id,
                command.asset,
                command.price,
                command.quantity,
                command.buyer,
                command.seller,
                command.buy_owner,
                command.sell_owner,
            )
        )
        if reason is not None:
            return [_rejected(command, reason)]
        registry = self._registries[command.asset]
        return [
            _trade_event(
                registry,
                command.trade_id,
                command.price,
                command.quantity,
                command.buyer,
                command.seller,
            )
        ]

    # ----------------------------------------------------------------- hot path

    def lock(self, asset: str, account: str, amount: int, owner: int) -> RejectReason | None:
        """Escrow `amount` of `account`'s available `asset` under `owner` (e.g. an order id),
        held by the operator; adds to an existing lock of the same owner and account. O(1).

        Reasons in order: UNKNOWN_ASSET, UNKNOWN_ACCOUNT, NON_POSITIVE_AMOUNT, AMOUNT_TOO_LARGE,
        ACCOUNT_FROZEN, LOCK_OWNER_CONFLICT, INSUFFICIENT_AVAILABLE, CAPACITY_EXHAUSTED."""
        registry = self._registries.get(asset)
        if registry is None:
            return _R.UNKNOWN_ASSET
        if account not in self._brokers:
            return _R.UNKNOWN_ACCOUNT
        operator = self._operator
        # The venue takes a lock for every net-mode order it accepts: `_lock_reason` in one
        # test, which only a refusal runs again to tell the reason; then Registry.lock, inlined.
        available, locks = registry.available, registry.locks
        held = locks.get(owner)
        have = available.get(account, 0)
        if (
            amount <= 0
            or amount > AMOUNT_MAX
            or account in self._frozen
            or (held is not None and (held[0] != account or held[2] != operator))
            or have < amount
            or (held is None and len(locks) >= LOCKS_MAX)
        ):
            reason = self._lock_reason(registry, account, amount, owner, operator)
            assert reason is not None, f"lock {owner} of {amount} {asset} refused for no reason"
            return reason
        available[account] = have - amount
        locked = registry.locked
        locked[account] = locked.get(account, 0) + amount
        locks[owner] = (account, amount if held is None else held[1] + amount, operator)
        changes = self._changes
        if changes is not None:
            changes.balances.add((asset, account))
            changes.locks.add((asset, owner))
        return None

    def order_escrow(self, asset: str) -> OrderEscrow:
        """The operator's order locks on `asset`, for a caller that checks first (the venue,
        for a net-mode instrument, which locks with `lock`): `release` of a surplus,
        `release_all` of a done order, `held`. Valid for this engine's life
        (registries keep their objects). O(1)."""
        return OrderEscrow(self._registries[asset], self._operator)

    def order_holds(self, asset: str, symbol: str) -> OrderHolds:
        """The operator's holds on `asset` (the security `symbol` or its currency) for the
        resting orders of the instrument `symbol`, for a caller that checks first (the venue,
        which funds a GROSS instrument's orders with them and keeps a net-mode instrument's
        empty): `hold`, `give_back`, `held`, `holders`, `set_to`. Valid for this engine's
        life. O(1)."""
        security = self._registries[symbol]
        assert security.kind is _SECURITY, f"{symbol} is not a security"
        assert asset in (symbol, security.currency), f"{symbol} holds no {asset}"
        return OrderHolds(self._registries[asset], symbol)

    def _lock_reason(
        self, registry: Registry, account: str, amount: int, owner: int, holder: str
    ) -> RejectReason | None:
        if amount <= 0:
            return _R.NON_POSITIVE_AMOUNT
        if amount > AMOUNT_MAX:
            return _R.AMOUNT_TOO_LARGE
        if account in self._frozen:
            return _R.ACCOUNT_FROZEN
        held = registry.locks.get(owner)
        if held is not None and (held[0] != account or held[2] != holder):
            return _R.LOCK_OWNER_CONFLICT
        if registry.available.get(account, 0) < amount:
            return _R.INSUFFICIENT_AVAILABLE
        if held is None and len(registry.locks) >= LOCKS_MAX:
            return _R.CAPACITY_EXHAUSTED
        return None

    def release(self, asset: str, owner: int, amount: int) -> RejectReason | None:
        """Return `amount` of the operator's lock `owner` to available. O(1).

        Reasons in order: UNKNOWN_ASSET, UNKNOWN_LOCK, NOT_AUTHORIZED (another member's lock),
        NON_POSITIVE_AMOUNT, INSUFFICIENT_LOCKED (more than the lock holds)."""
        reason = self._unlock_reason(asset, owner, amount, self._operator)
        if reason is None:
            self._registries[asset].release(owner, amount)
        return reason

    def release_all(self, asset: str, owner: int) -> int:
        """Return whatever the operator's lock `owner` still holds; the amount released (0 when
        there is no such lock, e.g. the order was fully consumed or never funded, or no such
        asset). O(1)."""
        registry = self._registries.get(asset)
        if registry is None:
            return 0
        return OrderEscrow(registry, self._operator).release_all(owner)

    def _unlock_reason(
        self, asset: str, owner: int, amount: int, holder: str
    ) -> RejectReason | None:
        registry = self._registries.get(asset)
        if registry is None:
            return _R.UNKNOWN_ASSET
        held = registry.locks.get(owner)
        if held is None:
            return _R.UNKNOWN_LOCK
        if held[2] != holder:
            return _R.NOT_AUTHORIZED
        if amount <= 0:
            return _R.NON_POSITIVE_AMOUNT
        if amount > held[1]:
            return _R.INSUFFICIENT_LOCKED
        return None

    def settle_trade(
        self,
        trade_id: int,
        asset: str,
        price: int,
        quantity: int,
        buyer: str,
        seller: str,
        buy_owner: int | None = None,
        sell_owner: int | None = None,
        buy_lock_debit: int | None = None,
    ) -> RejectReason | None:
        """DvP for one trade of `quantity` shares of `asset` at `price` fen, both legs or neither.

        `buy_lock_debit` (with `buy_owner`): take this much, at least what the buyer pays, off
        the buy lock, and return what the buyer does not pay to its available in the same step:
        the venue locks a buy at its limit price and gives back price improvement per fill.

        GROSS: the seller's shares (from lock `sell_owner`) go to the buyer and the buyer's
        cash, price * quantity + commission (from lock `buy_owner`), goes to the seller less
        commission and stamp duty, which go to the fee and tax accounts. CASH_NET: the shares
        move now; the cash moves into the buyer's cycle escrow and becomes obligations.
        NET_NET: both legs go into escrow and become obligations. An owner of None takes a
        gross leg from available, or leaves a net obligation unfunded until the cycle.
        Trade ids must increase: each trade settles exactly once. O(1).

        Reasons in order: TRADE_ALREADY_SETTLED, UNKNOWN_ASSET, WRONG_ASSET_KIND, INVALID_TRADE
        (also a `buy_lock_debit` below what the buyer pays, or without a `buy_owner`),
        UNKNOWN_ACCOUNT (buyer, seller), then the seller's leg and the buyer's leg, each:
        ACCOUNT_FROZEN, INSUFFICIENT_AVAILABLE (no owner) or UNKNOWN_LOCK, LOCK_OWNER_CONFLICT,
        INSUFFICIENT_LOCKED (an owner)."""
        if trade_id <= self._trade_id_last:
            return _R.TRADE_ALREADY_SETTLED
        security = self._registries.get(asset)
        if security is None:
            return _R.UNKNOWN_ASSET
        if security.kind is not _SECURITY:
            return _R.WRONG_ASSET_KIND
        notional = price * quantity
        if price <= 0 or quantity <= 0 or notional > AMOUNT_MAX:
            return _R.INVALID_TRADE
        brokers = self._brokers
        if buyer not in brokers or seller not in brokers:
            return _R.UNKNOWN_ACCOUNT
        cash = self._registries[security.currency]
        amounts = trade_cash(security.fees, price, quantity, security.accrual)
        pays = amounts[0]
        debit = pays if buy_lock_debit is None else buy_lock_debit
        if debit < pays or (buy_owner is None and debit != pays):
            return _R.INVALID_TRADE
        mode = security.mode
        frozen = self._frozen
        reason = security.leg_reason(
            seller, quantity, sell_owner, frozen, mode is not SettlementMode.NET_NET
        ) or cash.leg_reason(buyer, debit, buy_owner, frozen, mode is _GROSS)
        if reason is not None:
            return reason
        if mode is _GROSS:  # both paying legs now, from a lock or from available
            security.take(seller, quantity, sell_owner)
            cash.take(buyer, pays, buy_owner, debit - pays)
            shares_to, cash_to = security.available, cash.available
        else:
            shares_to = self._clear(
                security, cash, quantity, pays, buyer, seller, buy_owner, sell_owner
            )
            cash_to = cash.positions
            if debit > pays:
                assert buy_owner is not None
                cash.release(buy_owner, debit - pays)
        deliver_versus_payment(security, shares_to, cash, cash_to, quantity, buyer, seller, amounts)
        self._trade_id_last = trade_id
        self._trade_count += 1
        return None

    def settle_trade_event(
        self,
        trade_id: int,
        asset: str,
        price: int,
        quantity: int,
        buyer: str,
        seller: str,
        buy_owner: int | None = None,
        sell_owner: int | None = None,
        buy_lock_debit: int | None = None,
    ) -> TradeSettled | TradeCleared | RejectReason:
        """`settle_trade`, returning the event a `SettleTrade` command would emit for it (or the
        reason it was refused, having changed nothing). O(1)."""
        reason = self.settle_trade(
            trade_id, asset, price, quantity, buyer, seller, buy_owner, sell_owner, buy_lock_debit
        )
        if reason is not None:
            return reason
        return _trade_event(self._registries[asset], trade_id, price, quantity, buyer, seller)

    def taker_filler(self, asset: str) -> TakerFiller:
        """The `TakerFiller` of a GROSS security, made once per listing: its `fill` is the DvP
        of one continuous trade of a GROSS security between a resting order, whose leg
        comes from its account's hold (`order_holds`), and an incoming order, whose leg comes
        from available: the writes of giving the resting order's share of the hold back and
        then `settle_trade` from available, returning its `TradeSettled`. `maker_debit` 0: the
        resting order sells, and the seller's hold gives up the shares. Otherwise the resting
        order buys and the buyer's hold gives up `maker_debit`, at least what the buyer pays;
        the rest goes back to the buyer's available.

        The venue settles every fill of an incoming order through here. It funds both legs
        before matching (the holds are exact, `Venue.check`; the incoming order's available
        was checked against its limit), so nothing here tells a reason: a trade that would be
        refused is a programmer error, and assertions stop it before any write, both legs or
        neither. Registries stay the same objects for this engine's life;
        the fee schedule is read at each call. O(1)."""
        security = self._registries[asset]
        assert security.mode is _GROSS and security.kind is _SECURITY, f"{asset} is not GROSS"
        return TakerFiller(self, security, self._registries[security.currency])

    def _clear(
        self,
        security: Registry,
        cash: Registry,
        quantity: int,
        pays: int,
        buyer: str,
        seller: str,
        buy_owner: int | None,
        sell_owner: int | None,
    ) -> dict[str, int]:
        """The paying legs of a validated net-mode trade: the cash from the buy lock into the
        cycle escrow and owed; the shares delivered now (CASH_NET) or from the sell lock into
        escrow and owed (NET_NET). Returns where the buyer's shares go: the security's
        available or its cycle positions (the seller's cash goes to the cash positions)."""
        if security.mode is _CASH_NET:
            security.take(seller, quantity, sell_owner)
            shares_to = security.available
        else:
            security.take_to_escrow(seller, quantity, sell_owner)
            security.oblige(seller, -quantity)
            security.gross += quantity
            shares_to = security.positions
        cash.take_to_escrow(buyer, pays, buy_owner)
        cash.oblige(buyer, -pays)
        cash.gross += pays
        changes = cash.changes
        if changes is not None:
            changes.assets.update((security.asset, cash.asset))
        self._cycle_trade_count += 1
        return shares_to

    # ----------------------------------------------------------------- cycles

    def settle_cycle(self) -> list[Event]:
        """Settle every pending position of every asset, all or nothing. If any account's net
        debit exceeds its available plus cycle escrow, emit one CycleFailed per short position
        (by asset, then account) and change nothing: positions and escrow stay for a retry.
        Otherwise release each escrow, apply each net position, and emit PositionSettled rows
        and one AssetNetted per asset (by asset), then CycleSettled; the next cycle opens.
        A freeze does not stop a cycle: its trades were accepted before. O(P log P) for P
        pending positions, plus O(assets)."""
        cycle_id = self._cycle_id
        # gross > 0 iff a trade cleared into the asset this cycle (price, quantity >= 1); unlike
        # the positions dict it does not depend on zero entries, which snapshots leave out.
        pending = [registry for _, registry in sorted(self._registries.items()) if registry.gross]
        failed: list[Event] = [
            CycleFailed(cycle_id=cycle_id, asset=registry.asset, account=account, shortfall=short)
            for registry in pending
            for account, short in registry.shortfalls()
        ]
        if failed:
            return failed
        events: list[Event] = []
        gross_value = net_value = 0
        for registry in pending:
            gross = registry.gross
            settled, net = registry.settle_positions(cycle_id)
            events.extend(settled)
            events.append(
                AssetNetted(cycle_id=cycle_id, asset=registry.asset, gross=gross, net=net)
            )
            if registry.kind is AssetKind.CASH:
                gross_value += gross
                net_value += net
        events.append(
            CycleSettled(
                cycle_id=cycle_id,
                trade_count=self._cycle_trade_count,
                gross_value=gross_value,
                net_value=net_value,
            )
        )
        self._cycle_id += 1
        self._cycle_trade_count = 0
        return events

    # ----------------------------------------------------------------- changes

    def track_changes(self) -> SettlementChanges:
        """From now on, record what every command and hot-path call changes (see
        `settlement.changes`), and return the record. Once per engine, as
        `MatchingEngine.track_changes`. O(assets)."""
        assert self._changes is None, "the settlement engine's changes have a reader already"
        self._changes = SettlementChanges()
        for registry in self._registries.values():
            registry.changes = self._changes
        return self._changes

    def _asset_changed(self, asset: str) -> None:
        if self._changes is not None:
            self._changes.assets.add(asset)

    def _account_changed(self, account: str) -> None:
        if self._changes is not None:
            self._changes.accounts.add(account)

    # ----------------------------------------------------------------- queries

    @property
    def operator(self) -> str:
        return self._operator

    @property
    def regulator(self) -> str:
        return self._regulator

    @property
    def last_trade_id(self) -> int:
        return self._trade_id_last

    @property
    def trade_count(self) -> int:
        """Trades settled or cleared since the start."""
        return self._trade_count

    @property
    def cycle_id(self) -> int:
        """The open cycle: the id the next SettleCycle will carry."""
        return self._cycle_id

    @property
    def cycle_trade_count(self) -> int:
        """Net-mode trades cleared into the open cycle."""
        return self._cycle_trade_count

    def assets(self) -> list[str]:
        return sorted(self._registries)

    def registries(self) -> Mapping[str, Registry]:
        """Every registry by asset, read-only (the same mapping for this engine's life): for
        readers of the whole state, such as the state commitment."""
        return self._registries

    @property
    def outcomes_max(self) -> int:
        """How many command outcomes the engine remembers (its idempotency window)."""
        return self._outcomes_max

    def outcomes(self) -> Mapping[tuple[str, int], tuple[Command, tuple[Event, ...]]]:
        """(actor, command id) -> (command, events) of the remembered outcomes, oldest first,
        read-only (the same mapping for this engine's life)."""
        return self._outcomes

    def accounts(self) -> list[str]:
        return sorted(self._brokers)

    def broker_of(self, account: str) -> str | None:
        return self._brokers.get(account)

    def account_tables(self) -> tuple[Mapping[str, str], AbstractSet[str]]:
        """The live account -> broker table and set of frozen accounts, read-only: for the
        venue's hot path, which checks an account on every order without a call to
        `broker_of` and `is_frozen`. They stay the same objects for this engine's life."""
        return self._brokers, self._frozen

    def is_frozen(self, account: str) -> bool:
        return account in self._frozen

    def registry(self, asset: str) -> Registry:
        """The registry of `asset`, for reading. Raises KeyError naming an unknown asset."""
        registry = self._registries.get(asset)
        if registry is None:
            raise KeyError(f"unknown asset {asset!r}")
        return registry

    def available(self, asset: str, account: str) -> int:
        return self.registry(asset).available.get(account, 0)

    def locked(self, asset: str, account: str) -> int:
        """Locked balance: the account's locks plus its cycle escrow."""
        return self.registry(asset).locked.get(account, 0)

    def locked_by(self, asset: str, owner: int) -> int:
        held = self.registry(asset).locks.get(owner)
        return 0 if held is None else held[1]

    def held(self, asset: str, symbol: str, account: str) -> int:
        """What `account` holds in `asset` for its resting orders on the GROSS instrument
        `symbol` (see `OrderHolds`); 0 when nothing."""
        return self.registry(asset).holds.get(symbol, {}).get(account, 0)

    def escrowed(self, asset: str, account: str) -> int:
        return self.registry(asset).escrow.get(account, 0)

    def position(self, asset: str, account: str) -> int:
        """The account's net obligation in `asset` for the open cycle (+ receive, - deliver)."""
        return self.registry(asset).positions.get(account, 0)

    def supply(self, asset: str) -> int:
        return self.registry(asset).supply

    def fee_schedule(self, asset: str) -> FeeSchedule:
        return self.registry(asset).fees

    def trade_amounts(self, asset: str, price: int, quantity: int) -> TradeAmounts:
        """The cash of a trade in `asset` under its current fee schedule. O(1)."""
        security = self.registry(asset)
        return trade_amounts(security.fees, price, quantity, security.accrual)

    # ----------------------------------------------------------------- state

    def snapshot(self) -> dict[str, Any]:
        """A canonical JSON-ready dict of the whole state, remembered outcomes included.
        O(n log n) in accounts, balances, locks, positions and outcomes."""
        return {
            "version": SNAPSHOT_VERSION,
            "operator": self._operator,
            "regulator": self._regulator,
            "accounts": [
                [account, broker, account in self._frozen]
                for account, broker in sorted(self._brokers.items())
            ],
            "assets": [registry.snapshot() for _, registry in sorted(self._registries.items())],
            "trade_id_last": self._trade_id_last,
            "trade_count": self._trade_count,
            "cycle_id": self._cycle_id,
            "cycle_trade_count": self._cycle_trade_count,
            "outcomes_max": self._outcomes_max,
            "forgotten_ids": self.forgotten_ids(),
            "outcomes": [
                [list(key), to_row(command), [to_row(event) for event in events]]
                for key, (command, events) in self._outcomes.items()
            ],
        }

    @classmethod
    def restore(cls, snapshot: dict[str, Any]) -> SettlementEngine:
        """The engine a `snapshot()` describes; its snapshot and behaviour are identical. O(n)."""
        if snapshot.get("version") != SNAPSHOT_VERSION:  # 1 kept GROSS orders' locks by order
            raise ValueError(
                f"unsupported settlement snapshot version {snapshot.get('version')!r}"
                f" (this engine reads {SNAPSHOT_VERSION})"
            )
        engine = cls(
            operator=snapshot["operator"],
            regulator=snapshot["regulator"],
            command_outcomes_max=snapshot["outcomes_max"],
        )
        for account, broker, frozen in snapshot["accounts"]:
            engine._brokers[account] = broker
            if frozen:
                engine._frozen.add(account)
        for row in snapshot["assets"]:
            engine._registries[row["asset"]] = Registry.restore(row)
        engine._trade_id_last = snapshot["trade_id_last"]
        engine._trade_count = snapshot["trade_count"]
        engine._cycle_id = snapshot["cycle_id"]
        engine._cycle_trade_count = snapshot["cycle_trade_count"]
        for actor, floor in snapshot["forgotten_ids"]:
            if actor is None:
                engine._forgotten_other = floor
            else:
                engine._forgotten[actor] = floor
        for (actor, command_id), command_row, event_rows in snapshot["outcomes"]:
            events = tuple(event_from_row(row) for row in event_rows)
            engine._outcomes[actor, command_id] = (command_from_row(command_row), events)
        return engine

    def state_hash(self) -> str:
        """SHA-256 hex of the canonical JSON of `snapshot()`: sorted keys, no spaces. O(n log n)."""
        canonical = json.dumps(self.snapshot(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def check(self) -> None:
        """Assert every invariant: per asset conservation (available + locked = issued -
        redeemed), no negative balance, locks per account (plus escrow) = locked, positions
        balanced, trade ids consumed once each, bounded tables. O(state)."""
        assert len(self._brokers) <= ACCOUNTS_MAX, f"{len(self._brokers)} accounts"
        assert len(self._registries) <= ASSETS_MAX, f"{len(self._registries)} assets"
        assert self._frozen <= self._brokers.keys(), (
            f"frozen unknown {self._frozen - set(self._brokers)}"
        )
        for asset, registry in self._registries.items():
            assert registry.asset == asset, f"registry {registry.asset!r} filed as {asset!r}"
            assert len(registry.locks) <= LOCKS_MAX, f"{asset}: {len(registry.locks)} locks"
            registry.check(self._brokers)
            if registry.kind is _SECURITY:
                currency = self._registries.get(registry.currency)
                assert currency is not None and currency.kind is AssetKind.CASH, (
                    f"{asset}: currency {registry.currency!r} is not a cash asset"
                )
            for account in (registry.fees.fee_account, registry.fees.tax_account):
                assert not account or account in self._brokers, f"{asset}: fee account {account!r}"
        # Exactly once: trade ids strictly increase, so each id is consumed at most once.
        assert 0 <= self._trade_count <= self._trade_id_last, (
            f"{self._trade_count} trades settled under ids up to {self._trade_id_last}"
        )
        assert 0 <= self._cycle_trade_count <= self._trade_count, f"{self._cycle_trade_count=}"
        assert self._cycle_id >= 1, f"{self._cycle_id=}"
        assert len(self._outcomes) <= self._outcomes_max, f"{len(self._outcomes)} outcomes"
        assert len(self._forgotten) <= FORGOTTEN_ACTORS_MAX, f"{len(self._forgotten)} floors"
        for (actor, command_id), (command, _) in self._outcomes.items():
            assert (command.actor, command.command_id) == (actor, command_id), (actor, command_id)
        # A remembered outcome may lie at or below its actor's floor (a member that sent its
        # ids out of order): it still answers its retry, since `apply` looks it up first.


class TakerFiller:
    """`SettlementEngine.taker_filler` of a GROSS security: `settle_trade`'s writes for the
    two shapes of a continuous trade, the resting order's paying leg from its account's hold
    (`OrderHolds`) and the incoming order's from available (`Registry.take` inlined), the cash
    from `trade_cash` and who receives what from `deliver_versus_payment`, as in
    `settle_trade`; its checks asserted before any write.

    A class, not a closure: the compiled build calls a native method directly, its integer
    arguments unboxed, where it calls a closure as a Python object, each argument boxed and
    parsed."""

    __slots__ = (
        "_asset",
        "_cash",
        "_cash_available",
        "_cash_held",
        "_cash_locked",
        "_currency",
        "_engine",
        "_security",
        "_share_available",
        "_share_held",
        "_share_locked",
    )

    def __init__(self, engine: SettlementEngine, security: Registry, cash: Registry) -> None:
        self._engine = engine
        self._security = security
        self._cash = cash
        self._asset, self._currency = security.asset, security.currency
        self._share_held = security.holds.setdefault(security.asset, {})
        self._share_locked = security.locked
        self._share_available = security.available
        self._cash_held = cash.holds.setdefault(security.asset, {})
        self._cash_locked = cash.locked
        self._cash_available = cash.available

    def fill(
        self,
        trade_id: int,
        price: int,
        quantity: int,
        buyer: str,
        seller: str,
        maker_debit: int,
    ) -> TradeSettled:
        """Settle one fill (see the class); `maker_debit` 0: the resting order sells, and the
        seller's hold gives up the shares; otherwise the resting order buys and the buyer's
        hold gives up `maker_debit`, at least what the buyer pays; the rest goes back to the
        buyer's available. Returns the trade's `TradeSettled`. O(1)."""
        engine = self._engine
        security = self._security
        share_available = self._share_available
        cash_available = self._cash_available
        assert trade_id > engine._trade_id_last, f"trade {trade_id} settled before"
        assert price > 0 and quantity > 0, f"trade {trade_id}: {price=} {quantity=}"
        amounts = trade_cash(security.fees, price, quantity, security.accrual)
        pays, receives, commission, stamp_duty = amounts
        if maker_debit:  # the resting buy pays from its hold, the incoming sell delivers
            cash_held = self._cash_held
            held_left = cash_held.get(buyer, 0) - maker_debit
            shares_left = share_available.get(seller, 0) - quantity
            assert pays <= maker_debit and held_left >= 0 and shares_left >= 0, (
                f"trade {trade_id}: {buyer!r} holds {held_left + maker_debit}, gives "
                f"{maker_debit} for {pays}; {seller!r} has {shares_left + quantity} shares"
            )
            share_available[seller] = shares_left
            cash_held[buyer] = held_left
            cash_locked = self._cash_locked
            cash_locked[buyer] = cash_locked[buyer] - maker_debit
            if maker_debit != pays:  # the buyer's price improvement goes back
                cash_available[buyer] = cash_available[buyer] + maker_debit - pays
        else:  # the resting sell delivers from its hold, the incoming buy pays
            share_held = self._share_held
            held_left = share_held.get(seller, 0) - quantity
            cash_left = cash_available.get(buyer, 0) - pays
            assert held_left >= 0 and cash_left >= 0, (
                f"trade {trade_id}: {seller!r} holds {held_left + quantity} shares, "
                f"{buyer!r} has {cash_left + pays} for {pays}"
            )
            share_held[seller] = held_left
            share_locked = self._share_locked
            share_locked[seller] = share_locked[seller] - quantity
            cash_available[buyer] = cash_left
        # By its module name, not a local: the compiled build then calls the native function
        # directly (a local holding a function is called as a Python object, its arguments
        # boxed).
        deliver_versus_payment(
            security, share_available, self._cash, cash_available, quantity, buyer, seller, amounts
        )
        changes = security.changes
        if changes is not None:  # the paying legs' (`deliver` tells its own)
            asset = self._asset
            changes.balances.add((asset, seller))
            changes.balances.add((self._currency, buyer))
            if maker_debit:
                changes.holds.add((self._currency, asset, buyer))
            else:
                changes.holds.add((asset, asset, seller))
        engine._trade_id_last = trade_id
        engine._trade_count += 1
        # Built as `TradeSettled._make` does, without a call to its Python `__new__`: by
        # keyword a NamedTuple costs twice as much, once per trade.
        return _new_tuple(_SETTLED, (
            trade_id, self._asset, self._currency, price, quantity, buyer, seller,
            pays, receives, commission, stamp_duty,
        ))  # fmt: skip


def deliver_versus_payment(
    security: Registry,
    shares_to: dict[str, int],
    cash: Registry,
    cash_to: dict[str, int],
    quantity: int,
    buyer: str,
    seller: str,
    amounts: tuple[int, int, int, int],
) -> None:
    """The DvP of one trade of `quantity` shares of `security`, once its paying legs are taken
    (or owed), with `amounts`, its cash from `trade_cash` (buyer pays, seller receives,
    commission, stamp duty): the one place that says who receives what. The buyer receives
    the shares in `shares_to`; the seller receives what it receives (the price less its
    commission and the stamp duty) in `cash_to`; the fee account receives both sides'
    commission and the tax account the stamp duty, in `cash_to` too. `shares_to`
    and `cash_to` are a registry's available for a leg that moves now, its cycle positions
    for a leg netted at the cycle. Every settlement path calls it: `settle_trade` (the
    `SettleTrade` command, the venue's net modes and auctions) and the venue's taker fills
    (`taker_filler`). O(1)."""
    _, receives, commission, stamp_duty = amounts
    shares_to[buyer] = shares_to.get(buyer, 0) + quantity
    cash_to[seller] = cash_to.get(seller, 0) + receives
    fees = security.fees
    fee_account, tax_account = fees.fee_account, fees.tax_account
    if commission:
        cash_to[fee_account] = cash_to.get(fee_account, 0) + 2 * commission
    if stamp_duty:
        cash_to[tax_account] = cash_to.get(tax_account, 0) + stamp_duty
    changes = security.changes
    if changes is not None:
        currency = cash.asset
        add = changes.balances.add
        add((security.asset, buyer))
        add((currency, seller))
        if commission:
            add((currency, fee_account))
        if stamp_duty:
            add((currency, tax_account))


def _trade_event(
    security: Registry, trade_id: int, price: int, quantity: int, buyer: str, seller: str
) -> TradeSettled | TradeCleared:
    """The event of a trade that `settle_trade` has just settled in `security`."""
    amounts = trade_cash(security.fees, price, quantity, security.accrual)
    pays, receives, commission, stamp_duty = amounts
    if security.mode is _GROSS:
        return TradeSettled(
            trade_id=trade_id,
            asset=security.asset,
            currency=security.currency,
            price=price,
            quantity=quantity,
            buyer=buyer,
            seller=seller,
            buyer_paid=pays,
            seller_received=receives,
            commission=commission,
            stamp_duty=stamp_duty,
        )
    return TradeCleared(
        trade_id=trade_id,
        asset=security.asset,
        currency=security.currency,
        mode=security.mode,
        price=price,
        quantity=quantity,
        buyer=buyer,
        seller=seller,
        buyer_owes=pays,
        seller_owed=receives,
        commission=commission,
        stamp_duty=stamp_duty,
    )


def _amount_reason(amount: int) -> RejectReason | None:
    if amount <= 0:
        return _R.NON_POSITIVE_AMOUNT
    if amount > AMOUNT_MAX:
        return _R.AMOUNT_TOO_LARGE
    return None


def _name_valid(name: str) -> bool:
    return 0 < len(name) <= NAME_LENGTH_MAX


_COMMAND_NAMES: dict[type[Any], str] = {}


def _rejected(command: Command, reason: RejectReason) -> CommandRejected:
    cls = type(command)
    name = _COMMAND_NAMES.get(cls)
    if name is None:
        name = "".join("_" + c.lower() if c.isupper() else c for c in cls.__name__).lstrip("_")
        _COMMAND_NAMES[cls] = name
    return CommandRejected(command_id=command.command_id, command=name, reason=reason)
