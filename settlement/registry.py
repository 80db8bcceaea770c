"""One asset's registry: balances per account, escrow locks, and the positions of the open cycle.

Every account's holding is `available + locked`. `locked` is the sum of the account's locks (each
tagged with an owner reference such as an order id and with the member that holds it), its
holds (the operator's, one amount per instrument and account: what the account's resting
orders on a GROSS instrument need, see `settlement.escrow.OrderHolds`) and its cycle escrow:
what net-mode trades took from locks and the next cycle will consume. `positions`
are the obligations of the open cycle, the net amount each account receives (+) or delivers (-);
they are not balances and sum to zero.

The methods below do no validation beyond assertions: the engine validates first, then mutates,
so a refused operation changes nothing. All are O(1) unless stated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from settlement.changes import SettlementChanges
from settlement.events import PositionSettled
from settlement.fees import ZERO_FEES, FeeSchedule, rates_valid
from settlement.types import (
    SUPPLY_MAX,
    AssetKind,
    RejectReason,
    SettlementMode,
)

LockRow = tuple[str, int, str]  # account, amount, holder


class Registry:
    __slots__ = (
        "accrual",
        "accrual_max",
        "asset",
        "available",
        "changes",
        "currency",
        "escrow",
        "fees",
        "gross",
        "holds",
        "issued",
        "issuer",
        "kind",
        "locked",
        "locks",
        "mode",
        "positions",
        "redeemed",
        "supply_max",
    )

    def __init__(
        self, *, asset: str, kind: AssetKind, issuer: str, currency: str, mode: SettlementMode
    ) -> None:
        self.asset = asset
        self.kind = kind
        self.issuer = issuer
        self.currency = currency
        self.mode = mode
        self.fees: FeeSchedule = ZERO_FEES
        # A bond's interest per unit (face x coupon bps x days, see `settlement.fees`): what
        # a unit has accrued on the current day, and the most any day accrues. Derived from
        # the bond's terms and the day (`settlement.corporate_actions`), so not in snapshots;
        # 0 for every other asset.
        self.accrual = 0
        self.accrual_max = 0
        # The most issuance may bring the supply to: SUPPLY_MAX, less for a bond or a share
        # with a dividend declared, so that every payment stays within SUPPLY_MAX (derived
        # from their terms by `settlement.corporate_actions`, so not in snapshots either).
        self.supply_max = SUPPLY_MAX
        self.issued = 0
        self.redeemed = 0
        self.available: dict[str, int] = {}
        self.locked: dict[str, int] = {}
        self.locks: dict[int, LockRow] = {}
        # instrument symbol -> account -> amount (zeros may stay); each dict, once made, is
        # kept for the registry's life (an `OrderHolds` reads it directly)
        self.holds: dict[str, dict[str, int]] = {}
        self.escrow: dict[str, int] = {}
        self.positions: dict[str, int] = {}
        self.gross = 0  # sum of the debit legs cleared into the open cycle
        # the engine's record of changes, while a reader follows it: every write below (and
        # every writer of these dicts elsewhere in settlement) tells it what it changed
        self.changes: SettlementChanges | None = None

    @property
    def supply(self) -> int:
        return self.issued - self.redeemed

    def credit(self, account: str, amount: int) -> None:
        available = self.available
        available[account] = available.get(account, 0) + amount
        if self.changes is not None:
            self.changes.balances.add((self.asset, account))

    def debit(self, account: str, amount: int) -> None:
        remaining = self.available.get(account, 0) - amount
        assert remaining >= 0, f"{self.asset}: debit of {amount} overdraws {account!r}"
        self.available[account] = remaining
        if self.changes is not None:
            self.changes.balances.add((self.asset, account))

    def lock(self, account: str, amount: int, owner: int, holder: str) -> None:
        """Move available to locked under `owner` (adds to an existing lock of that owner)."""
        self.debit(account, amount)
        locked = self.locked
        locked[account] = locked.get(account, 0) + amount
        held = self.locks.get(owner)
        self.locks[owner] = (account, amount if held is None else held[1] + amount, holder)
        if self.changes is not None:
            self.changes.locks.add((self.asset, owner))

    def release(self, owner: int, amount: int) -> None:
        """Move `amount` of the lock `owner` back to available; a lock reaching zero goes away."""
        account = self._consume(owner, amount)
        self.locked[account] -= amount
        self.credit(account, amount)

    def leg_reason(
        self, account: str, amount: int, owner: int | None, frozen: set[str], gross: bool
    ) -> RejectReason | None:
        """Why a trade leg of `amount` cannot be taken from `owner`'s lock (or, with no owner,
        from `account`'s available when the leg moves now), or None. A net leg with no owner
        is an unfunded obligation: nothing to check until the cycle."""
        if owner is None:
            if not gross:
                return None
            if account in frozen:
                return RejectReason.ACCOUNT_FROZEN
            if self.available.get(account, 0) < amount:
                return RejectReason.INSUFFICIENT_AVAILABLE
            return None
        held = self.locks.get(owner)
        if held is None:
            return RejectReason.UNKNOWN_LOCK
        if held[0] != account:
            return RejectReason.LOCK_OWNER_CONFLICT
        if held[1] < amount:
            return RejectReason.INSUFFICIENT_LOCKED
        return None

    def take(self, source: str, debit: int, owner: int | None, refund: int = 0) -> None:
        """A validated gross paying leg: `debit` from `owner`'s lock of `source` (from its
        available when None); a `refund` more leaves the lock back to `source`'s available.
        Who receives it is `settlement.engine.deliver_versus_payment`'s to say."""
        available = self.available
        if owner is None:
            assert not refund, f"{self.asset}: a refund without a lock"
            left = available[source] - debit
            assert left >= 0, f"{self.asset}: debit of {debit} overdraws {source!r}"
            available[source] = left
        else:
            locks = self.locks
            account, held, holder = locks[owner]
            taken = debit + refund
            assert account == source and 0 < taken <= held, f"{self.asset}: lock {owner} short"
            if held == taken:
                del locks[owner]
            else:
                locks[owner] = (account, held - taken, holder)
            self.locked[source] -= taken
            if refund:
                available[source] = available.get(source, 0) + refund
        changes = self.changes
        if changes is not None:
            changes.balances.add((self.asset, source))
            if owner is not None:
                changes.locks.add((self.asset, owner))

    def take_to_escrow(self, account: str, amount: int, owner: int | None) -> None:
        """Move a validated net leg from `owner`'s lock into the cycle escrow (still locked).
        With no owner nothing is escrowed: the obligation is unfunded until the cycle."""
        if owner is not None:
            self._consume(owner, amount)
            escrow = self.escrow
            escrow[account] = escrow.get(account, 0) + amount
            if self.changes is not None:
                self.changes.balances.add((self.asset, account))

    def oblige(self, account: str, delta: int) -> None:
        positions = self.positions
        positions[account] = positions.get(account, 0) + delta
        if self.changes is not None:
            self.changes.balances.add((self.asset, account))

    def _consume(self, owner: int, amount: int) -> str:
        """Take `amount` off the lock record of `owner` (not off the locked balance)."""
        account, held, holder = self.locks[owner]
        assert 0 < amount <= held, f"{self.asset}: lock {owner} holds {held}, not {amount}"
        if held == amount:
            del self.locks[owner]
        else:
            self.locks[owner] = (account, held - amount, holder)
        if self.changes is not None:
            self.changes.locks.add((self.asset, owner))
        return account

    def shortfalls(self) -> list[tuple[str, int]]:
        """(account, shortfall) for each net debit that available + escrow cannot cover, sorted
        by account. O(positions + shorts log shorts)."""
        available, escrow = self.available, self.escrow
        short = []
        for account, net in self.positions.items():
            if net < 0:
                left = available.get(account, 0) + escrow.get(account, 0) + net
                if left < 0:
                    short.append((account, -left))
        short.sort()
        return short

    def settle_positions(self, cycle_id: int) -> tuple[list[PositionSettled], int]:
        """Release the cycle escrow to available, apply every net position, clear the cycle.
        Returns the nonzero positions (sorted by account) and the net debit total.
        The caller has checked `shortfalls()` is empty. O(positions log positions)."""
        available, locked = self.available, self.locked
        if self.changes is not None:
            asset = self.asset
            self.changes.balances.update((asset, a) for a in (*self.escrow, *self.positions))
            self.changes.assets.add(asset)
        for account, amount in self.escrow.items():
            locked[account] -= amount
            available[account] = available.get(account, 0) + amount
        settled = []
        net_total = 0
        for account in sorted(self.positions):
            net = self.positions[account]
            if net == 0:
                continue
            left = available.get(account, 0) + net
            assert left >= 0, f"{self.asset}: cycle {cycle_id} overdraws {account!r} by {-left}"
            available[account] = left
            if net < 0:
                net_total -= net
            settled.append(
                PositionSettled(cycle_id=cycle_id, asset=self.asset, account=account, amount=net)
            )
        self.escrow.clear()
        self.positions.clear()
        self.gross = 0
        return settled, net_total

    def check(self, accounts: Mapping[str, str]) -> None:
        """Assert every invariant of this registry. O(accounts + locks + holds)."""
        asset = self.asset
        assert 0 <= self.redeemed <= self.issued, f"{asset}: redeemed {self.redeemed} > issued"
        assert self.supply <= self.supply_max <= SUPPLY_MAX, f"{asset}: supply {self.supply}"
        total = sum(self.available.values()) + sum(self.locked.values())
        assert total == self.supply, f"{asset}: balances sum to {total}, supply {self.supply}"
        for table in (self.available, self.locked, self.escrow):
            for account, amount in table.items():
                assert amount >= 0, f"{asset}: negative balance {amount} of {account!r}"
                assert account in accounts, f"{asset}: balance of unknown account {account!r}"
        by_account = dict(self.escrow)
        for symbol, holds in self.holds.items():
            for account, amount in holds.items():
                assert amount >= 0, f"{asset}: negative hold {amount} of {account!r} on {symbol}"
                by_account[account] = by_account.get(account, 0) + amount
        for owner, (account, amount, _holder) in self.locks.items():
            assert amount > 0, f"{asset}: empty lock {owner} kept"
            by_account[account] = by_account.get(account, 0) + amount
        for account in set(by_account) | set(self.locked):
            held, locked = by_account.get(account, 0), self.locked.get(account, 0)
            assert held == locked, f"{asset}: locks of {account!r} sum to {held}, locked {locked}"
        net = sum(self.positions.values())
        assert net == 0, f"{asset}: cycle positions sum to {net}, not 0"
        assert all(account in accounts for account in self.positions), f"{asset}: bad position"
        assert self.gross >= 0, f"{asset}: negative gross {self.gross}"
        if any(self.positions.values()) or self.escrow:
            assert self.gross > 0, f"{asset}: cycle positions without a cleared trade"
        self._check_definition()

    def _check_definition(self) -> None:
        asset = self.asset
        assert rates_valid(self.fees), f"{asset}: fee rates out of range {self.fees}"
        if self.kind is AssetKind.CASH:
            assert self.currency == asset, f"{asset}: cash with currency {self.currency!r}"
            assert self.mode is SettlementMode.GROSS, f"{asset}: cash in mode {self.mode}"
            assert self.fees == ZERO_FEES, f"{asset}: cash with fees {self.fees}"
        elif self.mode is SettlementMode.GROSS:
            assert not self.positions and not self.escrow, f"{asset}: GROSS with positions"

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready canonical dict: zero balances left out, rows sorted. O(n log n)."""
        balances = [
            [account, self.available.get(account, 0), self.locked.get(account, 0)]
            for account in sorted(set(self.available) | set(self.locked))
        ]
        return {
            "asset": self.asset,
            "kind": int(self.kind),
            "issuer": self.issuer,
            "currency": self.currency,
            "mode": int(self.mode),
            "fees": [
                self.fees.commission_bps,
                self.fees.stamp_duty_bps,
                self.fees.fee_account,
                self.fees.tax_account,
            ],
            "issued": self.issued,
            "redeemed": self.redeemed,
            "balances": [row for row in balances if row[1] or row[2]],
            "locks": [[owner, *row] for owner, row in sorted(self.locks.items())],
            "holds": sorted(
                [symbol, account, amount]
                for symbol, holds in self.holds.items()
                for account, amount in holds.items()
                if amount
            ),
            "escrow": sorted([a, n] for a, n in self.escrow.items() if n),
            "positions": sorted([a, n] for a, n in self.positions.items() if n),
            "gross": self.gross,
        }

    @classmethod
    def restore(cls, row: dict[str, Any]) -> Registry:
        """The registry a `snapshot()` describes. O(n)."""
        registry = cls(
            asset=row["asset"],
            kind=AssetKind(row["kind"]),
            issuer=row["issuer"],
            currency=row["currency"],
            mode=SettlementMode(row["mode"]),
        )
        commission_bps, stamp_duty_bps, fee_account, tax_account = row["fees"]
        registry.fees = FeeSchedule(
            commission_bps=commission_bps,
            stamp_duty_bps=stamp_duty_bps,
            fee_account=fee_account,
            tax_account=tax_account,
        )
        registry.issued, registry.redeemed = row["issued"], row["redeemed"]
        for account, available, locked in row["balances"]:
            if available:
                registry.available[account] = available
            if locked:
                registry.locked[account] = locked
        for owner, account, amount, holder in row["locks"]:
            registry.locks[owner] = (account, amount, holder)
        for symbol, account, amount in row["holds"]:
            registry.holds.setdefault(symbol, {})[account] = amount
        registry.escrow = dict((a, n) for a, n in row["escrow"])
        registry.positions = dict((a, n) for a, n in row["positions"])
        registry.gross = row["gross"]
        return registry
