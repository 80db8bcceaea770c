"""Stateful property test: random mixes of registry commands, locks, releases, gross and net
trades and cycles, applied to the engine and to a naive model (flat dicts, a list of
obligations netted by summing). After every step: the engine's `check()`, and every balance,
lock, escrow and net position equals the model's. Refused commands change nothing; replayed
commands return their original events (command ids are per actor, so they collide across
actors, as members' do); snapshot/restore is invisible."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

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
from settlement.engine import SettlementEngine
from settlement.events import (
    AssetNetted,
    CommandRejected,
    CycleFailed,
    CycleSettled,
    Event,
    PositionSettled,
)
from settlement.types import AssetKind, SettlementMode

OPERATOR, REGULATOR, BANK, ISSUER = "EXCHANGE", "CSRC", "BANK", "ISSUER"
MALLORY = "MALLORY"
CASH = "CNY"
MODES = {"S1": SettlementMode.GROSS, "S2": SettlementMode.CASH_NET, "S3": SettlementMode.NET_NET}
SECURITIES = sorted(MODES)
ASSETS = [CASH, *SECURITIES]
BROKERS = {"A": "BRK1", "B": "BRK1", "C": "BRK2", "D": "BRK2", "E": "BRK1"}
ACCOUNT_NAMES = [*BROKERS, "NOPE"]

# sampled_from with repeats: mostly valid values, now and then an unknown or wrong one.
accounts = st.sampled_from(["A", "B", "C"] * 3 + ["D", "E", "NOPE"])
assets = st.sampled_from(ASSETS * 3 + ["NOPE"])
securities = st.sampled_from(SECURITIES)
trade_assets = st.sampled_from(SECURITIES * 4 + [CASH])
amounts = st.integers(-1, 5_000)
owners = st.integers(1, 4)  # few owner references, so that they collide
maybe_owners = st.sampled_from([None] * 4 + list(range(1, 5)))
ORDER_OWNER_FIRST = 1_000  # owners of matched_orders: fresh each time
honesty = st.sampled_from([1] * 9 + [0])  # 0: the command comes from the wrong member
fresh = st.sampled_from([1] * 19 + [0])  # 0: reuse the last trade id


class Model:
    """Obviously-correct bookkeeping: no escrow tricks, netting is a sum over a list."""

    def __init__(self) -> None:
        self.brokers: dict[str, str] = {"FEE": OPERATOR, "TAX": OPERATOR}
        self.frozen: set[str] = set()
        self.fees: dict[str, tuple[int, int]] = {asset: (0, 0) for asset in SECURITIES}
        self.available: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.locks: dict[tuple[str, int], list[Any]] = {}  # (asset, owner) -> [acct, n, holder]
        self.escrow: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.obligations: list[tuple[str, str, int]] = []  # asset, account, delta
        self.gross: defaultdict[str, int] = defaultdict(int)
        self.supply: defaultdict[str, int] = defaultdict(int)
        self.last_trade_id = 0
        self.cycle_id = 1
        self.cycle_trades = 0

    def locked(self, asset: str, account: str) -> int:
        held = sum(
            n for (a, _), (acct, n, _) in self.locks.items() if (a, acct) == (asset, account)
        )
        return held + self.escrow[(asset, account)]

    def position(self, asset: str, account: str) -> int:
        return sum(d for a, acct, d in self.obligations if (a, acct) == (asset, account))

    def can_debit(self, asset: str, account: str, amount: int) -> bool:
        return account not in self.frozen and self.available[(asset, account)] >= amount

    def consume(self, asset: str, owner: int, amount: int) -> None:
        lock = self.locks[(asset, owner)]
        lock[1] -= amount
        if lock[1] == 0:
            del self.locks[(asset, owner)]


def kind_of(asset: str) -> AssetKind | None:
    return None if asset not in ASSETS else AssetKind.CASH if asset == CASH else AssetKind.SECURITY


class SettlementMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine = SettlementEngine(operator=OPERATOR, regulator=REGULATOR)
        self.model = Model()
        self.command_ids: dict[str, int] = {}  # each actor numbers its own commands
        self.order_owner = ORDER_OWNER_FIRST
        self.history: list[tuple[Command, list[Event]]] = []

    # ------------------------------------------------------------------ plumbing

    def apply(self, command_type: type[Any], /, **fields: Any) -> list[Event]:
        actor = fields["actor"]  # ids are per actor: they collide across actors, by design
        command_id = self.command_ids[actor] = self.command_ids.get(actor, 0) + 1
        command = command_type(command_id=command_id, **fields)
        before = self.engine.snapshot()
        events: list[Event] = self.engine.apply(command)
        self.history.append((command, events))
        if isinstance(events[0], CommandRejected):
            assert len(events) == 1
            after = self.engine.snapshot()
            del before["outcomes"], after["outcomes"]
            assert after == before, f"refused {command} changed the state"
        return events

    def expect(self, events: list[Event], ok: bool) -> bool:
        accepted = not isinstance(events[0], CommandRejected)
        assert accepted == ok, f"model expected ok={ok}, engine said {events}"
        return ok

    @initialize()
    def setup(self) -> None:
        self.apply(DefineAsset, actor=OPERATOR, asset=CASH, kind=AssetKind.CASH, issuer=BANK)
        for asset in SECURITIES:
            self.apply(
                DefineAsset,
                actor=OPERATOR,
                asset=asset,
                kind=AssetKind.SECURITY,
                issuer=ISSUER,
                mode=MODES[asset],
            )
        for account in ("FEE", "TAX"):
            self.apply(OpenAccount, actor=OPERATOR, account=account, broker=OPERATOR)
        for account in ("A", "B", "C"):
            self.open_account(account, 1, honest=1)
            self.mint(CASH, account, 20_000, honest=1)  # small enough for cycles to fail
            for asset in SECURITIES:
                self.mint(asset, account, 200, honest=1)

    # ------------------------------------------------------------------ registry commands

    @rule(account=accounts, by_operator=st.integers(0, 2), honest=honesty)
    def open_account(self, account: str, by_operator: int, honest: int) -> None:
        broker = BROKERS.get(account, "")  # "" is an invalid broker: NOPE is never opened
        actor = OPERATOR if by_operator == 0 else broker if honest else MALLORY
        events = self.apply(OpenAccount, actor=actor, account=account, broker=broker)
        ok = actor != MALLORY and broker != "" and account not in self.model.brokers
        if self.expect(events, ok):
            self.model.brokers[account] = broker

    @rule(asset=assets, account=accounts, amount=amounts, honest=honesty)
    def mint(self, asset: str, account: str, amount: int, honest: int) -> None:
        kind = kind_of(asset)
        command_type = Deposit if kind is AssetKind.CASH else Issue
        issuer = BANK if kind is AssetKind.CASH else ISSUER
        events = self.apply(
            command_type,
            actor=issuer if honest else MALLORY,
            asset=asset,
            account=account,
            amount=amount,
        )
        m = self.model
        if self.expect(events, bool(kind and honest and account in m.brokers and amount > 0)):
            m.available[(asset, account)] += amount
            m.supply[asset] += amount

    @rule(asset=assets, account=accounts, amount=amounts, honest=honesty)
    def burn(self, asset: str, account: str, amount: int, honest: int) -> None:
        kind = kind_of(asset)
        command_type = Withdraw if kind is AssetKind.CASH else Redeem
        issuer = BANK if kind is AssetKind.CASH else ISSUER
        events = self.apply(
            command_type,
            actor=issuer if honest else MALLORY,
            asset=asset,
            account=account,
            amount=amount,
        )
        m = self.model
        ok = kind and honest and account in m.brokers and amount > 0
        if self.expect(events, bool(ok and m.can_debit(asset, account, amount))):
            m.available[(asset, account)] -= amount
            m.supply[asset] -= amount

    @rule(asset=assets, source=accounts, destination=accounts, amount=amounts, honest=honesty)
    def transfer(self, asset: str, source: str, destination: str, amount: int, honest: int) -> None:
        m = self.model
        actor = m.brokers.get(source, "BRK1") if honest else MALLORY
        events = self.apply(
            Transfer,
            actor=actor,
            asset=asset,
            source=source,
            destination=destination,
            amount=amount,
        )
        ok = asset in ASSETS and source in m.brokers and destination in m.brokers
        ok = ok and bool(honest) and amount > 0 and source != destination
        if self.expect(events, ok and m.can_debit(asset, source, amount)):
            m.available[(asset, source)] -= amount
            m.available[(asset, destination)] += amount

    @rule(account=accounts, freeze=st.booleans(), honest=honesty)
    def freeze(self, account: str, freeze: bool, honest: int) -> None:
        m = self.model
        command_type = Freeze if freeze else Unfreeze
        events = self.apply(command_type, actor=REGULATOR if honest else MALLORY, account=account)
        ok = bool(honest) and account in m.brokers and (account in m.frozen) != freeze
        if self.expect(events, ok):
            (m.frozen.add if freeze else m.frozen.discard)(account)

    @rule(asset=securities, commission_bps=st.integers(0, 30), stamp_duty_bps=st.integers(0, 30))
    def set_fees(self, asset: str, commission_bps: int, stamp_duty_bps: int) -> None:
        events = self.apply(
            SetFeeSchedule,
            actor=OPERATOR,
            asset=asset,
            commission_bps=commission_bps,
            stamp_duty_bps=stamp_duty_bps,
            fee_account="FEE",
            tax_account="TAX",
        )
        self.expect(events, True)
        self.model.fees[asset] = (commission_bps, stamp_duty_bps)

    # ------------------------------------------------------------------ locks

    def lock_ok(self, asset: str, account: str, amount: int, owner: int, holder: str) -> bool:
        m = self.model
        held = m.locks.get((asset, owner))
        if asset not in ASSETS or account not in m.brokers or amount <= 0:
            return False
        if held is not None and (held[0] != account or held[2] != holder):
            return False
        return m.can_debit(asset, account, amount)

    def model_lock(self, asset: str, account: str, amount: int, owner: int, holder: str) -> None:
        m = self.model
        m.available[(asset, account)] -= amount
        held = m.locks.setdefault((asset, owner), [account, 0, holder])
        held[1] += amount

    @rule(asset=assets, account=accounts, amount=amounts, owner=owners, hot=st.booleans())
    def lock(self, asset: str, account: str, amount: int, owner: int, hot: bool) -> None:
        if hot:
            holder = OPERATOR
            reason = self.engine.lock(asset, account, amount, owner)
            accepted = reason is None
            assert accepted == self.lock_ok(asset, account, amount, owner, holder), reason
        else:
            holder = self.model.brokers.get(account, MALLORY)
            events = self.apply(
                Lock, actor=holder, asset=asset, account=account, amount=amount, owner=owner
            )
            accepted = self.expect(events, self.lock_ok(asset, account, amount, owner, holder))
        if accepted:
            self.model_lock(asset, account, amount, owner, holder)

    @rule(asset=assets, owner=owners, amount=amounts, how=st.sampled_from(["hot", "all", "cmd"]))
    def unlock(self, asset: str, owner: int, amount: int, how: str) -> None:
        m = self.model
        held = m.locks.get((asset, owner))
        if how == "all":
            released = self.engine.release_all(asset, owner)
            expected = held[1] if held is not None and held[2] == OPERATOR else 0
            assert released == expected
            amount = released
            accepted = released > 0
        elif how == "hot":
            reason = self.engine.release(asset, owner, amount)
            ok = held is not None and held[2] == OPERATOR and 0 < amount <= held[1]
            assert (reason is None) == ok, reason
            accepted = ok
        else:
            actor = held[2] if held is not None else OPERATOR
            events = self.apply(Unlock, actor=actor, asset=asset, owner=owner, amount=amount)
            accepted = self.expect(events, held is not None and 0 < amount <= held[1])
        if accepted and held is not None:
            m.available[(asset, held[0])] += amount
            m.consume(asset, owner, amount)

    # ------------------------------------------------------------------ trades and cycles

    @rule(
        asset=trade_assets,
        price=st.integers(0, 300),
        quantity=st.integers(1, 300),
        buyer=accounts,
        seller=accounts,
        buy_owner=maybe_owners,
        sell_owner=maybe_owners,
        stale=fresh,
        hot=st.booleans(),
    )
    def trade(
        self,
        asset: str,
        price: int,
        quantity: int,
        buyer: str,
        seller: str,
        buy_owner: int | None,
        sell_owner: int | None,
        stale: int,
        hot: bool,
    ) -> None:
        m = self.model
        trade_id = m.last_trade_id + 1 if stale else max(m.last_trade_id, 1)
        legs = (trade_id, asset, price, quantity, buyer, seller, buy_owner, sell_owner)
        ok = self.trade_ok(*legs)
        if hot:
            reason = self.engine.settle_trade(*legs)
            assert (reason is None) == ok, f"model ok={ok}, engine {reason!r} for {legs}"
        else:
            events = self.apply(
                SettleTrade,
                actor=OPERATOR,
                trade_id=trade_id,
                asset=asset,
                price=price,
                quantity=quantity,
                buyer=buyer,
                seller=seller,
                buy_owner=buy_owner,
                sell_owner=sell_owner,
            )
            self.expect(events, ok)
        if ok:
            self.model_trade(*legs)

    @rule(
        asset=securities,
        pick_sell=st.integers(0, 99),
        pick_buy=st.integers(0, 99),
        share=st.integers(1, 4),
        hot=st.booleans(),
    )
    def funded_trade(
        self, asset: str, pick_sell: int, pick_buy: int, share: int, hot: bool
    ) -> None:
        """A trade between the accounts of two live locks, sized to fit them most of the time."""
        m = self.model
        sells = sorted((o, acct, n) for (a, o), (acct, n, _) in m.locks.items() if a == asset)
        buys = sorted((o, acct, n) for (a, o), (acct, n, _) in m.locks.items() if a == CASH)
        if not sells or not buys:
            return
        sell_owner, seller, held_shares = sells[pick_sell % len(sells)]
        buy_owner, buyer, held_cash = buys[pick_buy % len(buys)]
        quantity = max(1, held_shares * share // 4)
        price = max(1, held_cash // (2 * quantity))
        self.trade(asset, price, quantity, buyer, seller, buy_owner, sell_owner, 1, hot)

    @rule(
        asset=st.sampled_from(SECURITIES[1:]),
        pick_sell=st.integers(0, 99),
        pick_buy=st.integers(0, 99),
        share=st.integers(1, 4),
    )
    def funded_net_trade(self, asset: str, pick_sell: int, pick_buy: int, share: int) -> None:
        """The same in a net mode, where escrow and netting happen: weighs the mix toward them."""
        self.funded_trade(asset, pick_sell, pick_buy, share, hot=True)

    @rule(
        account=st.sampled_from(["A", "B", "C"]),
        asset=st.sampled_from(ASSETS),
        amount=st.integers(1, 30_000),
        owner=owners,
    )
    def fund_order(self, account: str, asset: str, amount: int, owner: int) -> None:
        """A hot-path lock with mostly valid arguments, as the venue takes for an order."""
        if asset != CASH:
            amount = 1 + amount % 400
        self.lock(asset, account, amount, owner, hot=True)

    @rule(
        asset=securities,
        buyer=st.sampled_from(["A", "B", "C"]),
        seller=st.sampled_from(["A", "B", "C"]),
        price=st.integers(1, 100),
        quantity=st.integers(1, 100),
        slack=st.integers(0, 500),
        release=st.booleans(),
        stale=fresh,
    )
    def matched_orders(
        self,
        asset: str,
        buyer: str,
        seller: str,
        price: int,
        quantity: int,
        slack: int,
        release: bool,
        stale: int,
    ) -> None:
        """What the venue does: lock the buy order's cash and the sell order's shares, trade,
        then release what the buy order no longer needs."""
        buy_owner, sell_owner = self.order_owner, self.order_owner + 1
        self.order_owner += 2
        pays = self.amounts(asset, price, quantity)[0]
        self.lock(CASH, buyer, pays + slack, buy_owner, hot=True)
        self.lock(asset, seller, quantity, sell_owner, hot=True)
        self.trade(asset, price, quantity, buyer, seller, buy_owner, sell_owner, stale, True)
        if release:
            self.unlock(CASH, buy_owner, 0, "all")
            self.unlock(asset, sell_owner, 0, "all")

    def trade_ok(
        self,
        trade_id: int,
        asset: str,
        price: int,
        quantity: int,
        buyer: str,
        seller: str,
        buy_owner: int | None,
        sell_owner: int | None,
    ) -> bool:
        m = self.model
        if trade_id <= m.last_trade_id or asset not in MODES or price <= 0:
            return False
        if buyer not in m.brokers or seller not in m.brokers:
            return False
        mode = MODES[asset]
        pays = self.amounts(asset, price, quantity)[0]
        return self.leg_ok(
            asset, seller, quantity, sell_owner, mode is not SettlementMode.NET_NET
        ) and self.leg_ok(CASH, buyer, pays, buy_owner, mode is SettlementMode.GROSS)

    def leg_ok(self, asset: str, account: str, amount: int, owner: int | None, now: bool) -> bool:
        if owner is None:
            return not now or self.model.can_debit(asset, account, amount)
        held = self.model.locks.get((asset, owner))
        return held is not None and held[0] == account and held[1] >= amount

    def amounts(self, asset: str, price: int, quantity: int) -> tuple[int, int, int, int]:
        commission_bps, stamp_duty_bps = self.model.fees[asset]
        notional = price * quantity
        commission = notional * commission_bps // 10_000
        stamp = notional * stamp_duty_bps // 10_000
        return notional + commission, notional - commission - stamp, commission, stamp

    def model_trade(
        self,
        trade_id: int,
        asset: str,
        price: int,
        quantity: int,
        buyer: str,
        seller: str,
        buy_owner: int | None,
        sell_owner: int | None,
    ) -> None:
        m = self.model
        mode = MODES[asset]
        pays, receives, commission, stamp = self.amounts(asset, price, quantity)
        m.last_trade_id = trade_id
        legs = [(asset, seller, buyer, quantity, quantity, sell_owner)]
        legs.append((CASH, buyer, seller, pays, receives, buy_owner))
        fee_legs = [("FEE", 2 * commission), ("TAX", stamp)]
        for index, (leg_asset, payer, payee, debit, credit, owner) in enumerate(legs):
            now = mode is SettlementMode.GROSS or (index == 0 and mode is SettlementMode.CASH_NET)
            if owner is not None:
                m.consume(leg_asset, owner, debit)
                if not now:
                    m.escrow[(leg_asset, payer)] += debit
            elif now:
                m.available[(leg_asset, payer)] -= debit
            if now:
                m.available[(leg_asset, payee)] += credit
                continue
            m.gross[leg_asset] += debit
            m.obligations += [(leg_asset, payer, -debit), (leg_asset, payee, credit)]
            if leg_asset == CASH:
                m.obligations += [(CASH, account, n) for account, n in fee_legs if n]
        if mode is SettlementMode.GROSS:
            for account, n in fee_legs:
                m.available[(CASH, account)] += n
        else:
            m.cycle_trades += 1

    @rule(honest=honesty)
    def cycle(self, honest: int) -> None:
        m = self.model
        events = self.apply(SettleCycle, actor=OPERATOR if honest else MALLORY)
        if not self.expect(events, bool(honest)):
            return
        net: defaultdict[tuple[str, str], int] = defaultdict(int)
        for asset, account, delta in m.obligations:
            net[(asset, account)] += delta
        shorts = [
            CycleFailed(cycle_id=m.cycle_id, asset=asset, account=account, shortfall=-left)
            for (asset, account), n in sorted(net.items())
            if (left := m.available[(asset, account)] + m.escrow[(asset, account)] + n) < 0
        ]
        if shorts:
            assert events == shorts
            return
        self.model_cycle(events, net)

    def model_cycle(self, events: list[Event], net: dict[tuple[str, str], int]) -> None:
        m = self.model
        expected_rows = {key: n for key, n in net.items() if n}
        moved = {(e.asset, e.account): e.amount for e in events if isinstance(e, PositionSettled)}
        assert moved == expected_rows  # the netting equals the sum of the gross obligations
        netted = {e.asset: (e.gross, e.net) for e in events if isinstance(e, AssetNetted)}
        debits = {
            asset: sum(-n for (a, _), n in net.items() if a == asset and n < 0) for asset in ASSETS
        }
        assert netted == {asset: (m.gross[asset], debits[asset]) for asset in {a for a, _ in net}}
        assert events[-1] == CycleSettled(
            cycle_id=m.cycle_id,
            trade_count=m.cycle_trades,
            gross_value=m.gross[CASH],
            net_value=debits[CASH],
        )
        for key, amount in list(m.escrow.items()):
            m.available[key] += amount
        for key, n in net.items():
            m.available[key] += n
        m.escrow.clear()
        m.obligations.clear()
        m.gross.clear()
        m.cycle_id += 1
        m.cycle_trades = 0

    # ------------------------------------------------------------------ idempotency, snapshots

    @precondition(lambda self: bool(self.history))
    @rule(pick=st.integers(0, 10**6))
    def replay(self, pick: int) -> None:
        command, events = self.history[pick % len(self.history)]
        before = self.engine.snapshot()
        assert self.engine.apply(command) == events
        assert self.engine.snapshot() == before

    @rule()
    def restore(self) -> None:
        snapshot = self.engine.snapshot()
        restored = SettlementEngine.restore(json.loads(json.dumps(snapshot)))
        assert restored.snapshot() == snapshot
        assert restored.state_hash() == self.engine.state_hash()
        self.engine = restored

    @invariant()
    def consistent(self) -> None:
        engine, m = self.engine, self.model
        engine.check()
        for asset in ASSETS:
            assert engine.supply(asset) == m.supply[asset]
            for account in m.brokers:
                key = (asset, account)
                assert engine.available(asset, account) == m.available[key], key
                assert engine.locked(asset, account) == m.locked(asset, account), key
                assert engine.escrowed(asset, account) == m.escrow[key], key
                assert engine.position(asset, account) == m.position(asset, account), key
                assert engine.is_frozen(account) == (account in m.frozen)
            locks = {owner: list(row) for owner, row in engine.registry(asset).locks.items()}
            assert locks == {o: row for (a, o), row in m.locks.items() if a == asset}, asset
        assert engine.last_trade_id == m.last_trade_id
        assert engine.cycle_id == m.cycle_id and engine.cycle_trade_count == m.cycle_trades


SettlementMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=100, deadline=None
)
test_settlement_machine = SettlementMachine.TestCase
