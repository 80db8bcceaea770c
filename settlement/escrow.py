"""The operator's funding of resting orders on one asset: the writes the venue makes for every
order.

Two shapes, by the instrument's settlement mode:

- `OrderHolds` (GROSS): one hold per account for all its resting orders on the instrument,
  part of the account's locked balance. What a resting order needs is a function of its price,
  its open quantity and the fee schedule, which the book and the registry already keep, so the
  venue keeps only the sum per account (`Venue.check` asserts it equals the sum of the
  requirements of the account's resting orders). A fill, a cancel or an amend changes one
  number; no row per order is made, looked up or deleted.
- `OrderEscrow` (the net modes): a lock row per order, owned by the order id, because a net
  trade's legs go into the cycle escrow from the order's own lock.

`SettlementEngine.order_holds(asset, symbol)` and `order_escrow(asset)` hand the venue one of
each per asset of a listed instrument (its cash and its shares), made once and kept. Their
methods write what the venue has already checked, so they tell no reasons: a call that breaks
their preconditions is a programmer error, and assertions stop it before any write. Checks
that name a reason stay on the engine (`lock`, `release`).

They read and write the registry's own dicts, which stay the same objects for the registry's
life, so one made once stays valid. All methods are O(1) unless stated.
"""

from __future__ import annotations

from collections.abc import Mapping

from settlement.registry import Registry


class OrderHolds:
    """The operator's holds on one asset for the resting orders of one GROSS instrument."""

    __slots__ = ("_available", "_held", "_locked", "_registry", "asset", "symbol")

    def __init__(self, registry: Registry, symbol: str) -> None:
        self.asset = registry.asset
        self._registry = registry
        self.symbol = symbol
        self._available = registry.available
        self._locked = registry.locked
        self._held = registry.holds.setdefault(symbol, {})

    def hold(self, account: str, amount: int) -> None:
        """Move `amount` (> 0, at most what is available: asserted) of `account`'s available
        into its hold."""
        available = self._available
        left = available.get(account, 0) - amount
        assert left >= 0 and amount > 0, f"hold of {amount} {self.asset} for {account!r}"
        available[account] = left
        locked = self._locked
        locked[account] = locked.get(account, 0) + amount
        held = self._held
        held[account] = held.get(account, 0) + amount
        changes = self._registry.changes
        if changes is not None:  # (inline: a hold and a give-back per resting order)
            changes.balances.add((self.asset, account))
            changes.holds.add((self.asset, self.symbol, account))

    def give_back(self, account: str, amount: int) -> None:
        """Move `amount` (> 0, at most what `account` holds: asserted) of its hold back to
        its available."""
        held = self._held
        left = held.get(account, 0) - amount
        assert left >= 0 and amount > 0, f"give back {amount} {self.asset} of {account!r}"
        held[account] = left
        self._locked[account] -= amount
        available = self._available
        available[account] = available.get(account, 0) + amount
        changes = self._registry.changes
        if changes is not None:  # (inline: a hold and a give-back per resting order)
            changes.balances.add((self.asset, account))
            changes.holds.add((self.asset, self.symbol, account))

    def held(self, account: str) -> int:
        """What `account` holds for its resting orders on the instrument."""
        return self._held.get(account, 0)

    def holders(self) -> dict[str, int]:
        """account -> what it holds, for every account holding something. O(accounts)."""
        return {account: amount for account, amount in self._held.items() if amount}

    def set_to(self, needs: Mapping[str, int]) -> None:
        """Make every account hold exactly `needs[account]` (0 when absent): give back what
        is no longer needed, then hold what more is (asserted available). The venue's path
        after a command that moves orders no event prices (an auction, the close, a
        self-trade prevention). O(accounts holding + len(needs))."""
        for account, amount in list(self._held.items()):
            surplus = amount - needs.get(account, 0)
            if surplus > 0:
                self.give_back(account, surplus)
        for account, need in needs.items():
            more = need - self._held.get(account, 0)
            if more > 0:
                self.hold(account, more)


class OrderEscrow:
    __slots__ = ("_available", "_locked", "_locks", "_operator", "_registry", "asset")

    def __init__(self, registry: Registry, operator: str) -> None:
        self.asset = registry.asset
        self._registry = registry
        self._available = registry.available
        self._locked = registry.locked
        self._locks = registry.locks
        self._operator = operator

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
        changes = self._registry.changes
        if changes is not None:
            changes.balances.add((self.asset, account))
            changes.locks.add((self.asset, owner))
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
