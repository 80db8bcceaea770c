"""Wire-stable enumerations and limits of the settlement layer.

Every enum value here goes on the wire and into the ledger: values are explicit and append-only,
never renumbered. Limits keep every integer inside int64 and every table bounded.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

SUPPLY_MAX = 10**18  # issued - redeemed per asset; every balance is below it, so all fit int64
AMOUNT_MAX = SUPPLY_MAX  # one command's amount, one trade's notional
ACCOUNTS_MAX = 1_000_000
ASSETS_MAX = 100_000
LOCKS_MAX = 10_000_000  # live escrow locks per asset: at most one per open net-mode order
NAME_LENGTH_MAX = 32  # asset, account and member ids
BPS_MAX: Final = 1_000  # a fee rate above 10% is a typo, not a schedule
# Final: the compiled build folds them into the fee rules (`settlement.fees`) as constants;
# a plain module name is a dict lookup in the module's globals at every use.
BPS_DENOMINATOR: Final = 10_000
COMMAND_OUTCOMES_MAX = 10_000  # remembered command outcomes (idempotency window)


class AssetKind(IntEnum):
    SECURITY = 1  # shares, bonds, fund units; counted in units (shares)
    CASH = 2  # a tokenized deposit or wholesale digital currency; counted in fen


class SettlementMode(IntEnum):
    """How the trades of an instrument settle (BIS DvP models)."""

    GROSS = 1  # model 1: both legs move at trade time, trade by trade (default)
    CASH_NET = 2  # model 2: securities gross at trade time, cash netted at the cycle
    NET_NET = 3  # model 3: both legs netted per account per asset at the cycle


class RejectReason(IntEnum):
    """Why a command or hot-path call was refused. Append only; see docs/settlement.md for order."""

    NOT_AUTHORIZED = 1  # the actor lacks the role, is not the issuer, broker or lock holder
    UNKNOWN_ASSET = 2
    UNKNOWN_ACCOUNT = 3
    WRONG_ASSET_KIND = 4  # e.g. a deposit of a security, a trade in cash
    NON_POSITIVE_AMOUNT = 5
    AMOUNT_TOO_LARGE = 6  # above AMOUNT_MAX, or the supply would pass SUPPLY_MAX
    ACCOUNT_FROZEN = 7
    INSUFFICIENT_AVAILABLE = 8
    INSUFFICIENT_LOCKED = 9
    UNKNOWN_LOCK = 10  # no lock with this owner reference in this asset
    LOCK_OWNER_CONFLICT = 11  # the owner reference holds a lock of another account or holder
    DUPLICATE_ASSET = 12
    DUPLICATE_ACCOUNT = 13
    INVALID_ASSET = 14  # bad id or issuer, a cash asset with a currency or mode of its own
    UNKNOWN_CURRENCY = 15  # a security whose currency is not a defined cash asset
    INVALID_FEE_SCHEDULE = 16  # a rate outside 0..BPS_MAX
    INVALID_ACCOUNT = 17  # empty or too long account or broker id
    ALREADY_FROZEN = 18
    NOT_FROZEN = 19
    SAME_ACCOUNT = 20  # a transfer to its own source
    INVALID_TRADE = 21  # price or quantity not positive, or notional above AMOUNT_MAX
    TRADE_ALREADY_SETTLED = 22  # trade ids must increase; this one is not above the last
    CAPACITY_EXHAUSTED = 23  # too many accounts, assets or locks
    COMMAND_ID_TOO_OLD = 24  # at or below an id forgotten by the idempotency window
    COMMAND_ID_REUSED = 25  # a remembered id sent with different contents


def name_of(member: IntEnum) -> str:
    """The JSON name of an enum member: lower-case, as on the wire."""
    return member.name.lower()
