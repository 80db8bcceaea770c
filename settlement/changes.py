"""What the settlement engine changed since its reader last drained it: the balances, holds,
locks, registries, accounts and remembered outcomes whose state is different, told by the
engine and its registries as they change them.

The engine keeps no such record until a reader asks for one
(`SettlementEngine.track_changes`, which the state commitment calls): an engine nobody
follows pays one test per change and grows nothing. A reader drains the record once per
block, so it holds at most what one block changed.
"""

from __future__ import annotations


class SettlementChanges:
    """Keys of what changed:

    - `balances`: (asset, account) whose available, locked, cycle escrow or net position
      changed;
    - `holds`: (asset, symbol, account) whose hold for the resting orders of the GROSS
      instrument `symbol` changed;
    - `locks`: (asset, owner) whose lock was taken, changed or released;
    - `assets`: registries defined or changed (fee schedule, issued, redeemed, gross);
    - `accounts`: accounts opened, frozen or unfrozen;
    - `outcomes`: (actor, command id) of the command outcomes remembered (the oldest ones
      are forgotten as new ones come: a reader finds those in `SettlementEngine.outcomes`).
    """

    __slots__ = ("accounts", "assets", "balances", "holds", "locks", "outcomes")

    def __init__(self) -> None:
        self.balances: set[tuple[str, str]] = set()
        self.holds: set[tuple[str, str, str]] = set()
        self.locks: set[tuple[str, int]] = set()
        self.assets: set[str] = set()
        self.accounts: set[str] = set()
        self.outcomes: set[tuple[str, int]] = set()

    def clear(self) -> None:
        self.balances.clear()
        self.holds.clear()
        self.locks.clear()
        self.assets.clear()
        self.accounts.clear()
        self.outcomes.clear()
