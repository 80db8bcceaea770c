"""The operator's order locks on one asset: the writes the venue makes for every order.

`SettlementEngine.order_escrow(asset)` hands the venue one `OrderEscrow` per asset of a listed
instrument (its cash and its shares), made once and kept. Its methods write what the venue has
already checked, so they tell no reasons: a call that breaks their preconditions is a programmer
error, and assertions stop it before any write. Checks that name a reason stay on the engine
(`lock_reason`, `lock`, `release`).

It reads and writes the registry's own dicts, which stay the same objects for the registry's
life, so an escrow made once stays valid. All methods are O(1).
"""

from __future__ import annotations

from settlement.registry import Registry
from settlement.types import LOCKS_MAX


class OrderEscrow:
    __slots__ = ("_available", "_locked", "_locks", "_operator", "_registry", "asset")

    def __init__(self, registry: Registry, operator: str) -> None:
        self.asset = registry.asset
        self._registry = registry
        self._available = registry.available
        self._locked = registry.locked
        self._locks = registry.locks
        self._operator = operator

    def lock_checked(self, account: str, amount: int, owner: int) -> None:
        """`SettlementEngine.lock` of `amount` under `owner`, which `lock_reason` has just
        accepted with nothing changed since: the writes alone (adds to an existing lock of
        the same owner and account)."""
        available, locks = self._available, self._locks
        left = available.get(account, 0) - amount
        held = locks.get(owner)
        operator = self._operator
        assert left >= 0 and amount > 0, f"lock {owner} of {amount} {self.asset} not checked"
        assert (
            len(locks) < LOCKS_MAX if held is None else held[0] == account and held[2] == operator
        ), f"lock {owner} of {amount} {self.asset} for {account!r}: {held}"
        available[account] = left
        locked = self._locked
        locked[account] = locked.get(account, 0) + amount
        locks[owner] = (account, amount if held is None else held[1] + amount, operator)

    def release_all(self, owner: int) -> int:
        """Return whatever the operator's lock `owner` still holds to its account's available;
        the amount released (0 when there is no such lock, e.g. the order was fully consumed
        or never funded)."""
        locks = self._locks
        held = locks.pop(owner, None)  # one lookup for the common case, a lock to give back
        if held is None:
            return 0
        account, amount, holder = held
        if holder != self._operator:  # a member's lock: not the operator's to release
            locks[owner] = held
            return 0
        self._locked[account] -= amount
        available = self._available
        available[account] = available.get(account, 0) + amount
        return amount

    def release(self, owner: int, amount: int) -> None:
        """`SettlementEngine.release` of `amount` from the operator's lock `owner`, which holds
        at least that (asserted): `Registry.release`, the writes alone. A lock reaching zero
        goes away. (An amend's or a reconcile's surplus: not on the per-order hot path.)"""
        row = self._locks.get(owner)
        assert row is not None and row[2] == self._operator and 0 < amount <= row[1], (
            f"release of {amount} {self.asset} from lock {owner}: {row}"
        )
        self._registry.release(owner, amount)

    def held(self, owner: int) -> int:
        """What the lock `owner` holds now (0 when there is none)."""
        row = self._locks.get(owner)
        return 0 if row is None else row[1]
