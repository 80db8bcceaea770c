"""Commands the settlement engine accepts. Imperative names; frozen values.

Every command carries a `command_id` (the idempotency key: the same id applied again changes
nothing and reports the original outcome) and an `actor`, the member id that sent it. Amounts
are integers in the asset's unit: shares for a security, fen for cash.
"""

from __future__ import annotations

from dataclasses import dataclass

from settlement.types import AssetKind, SettlementMode


@dataclass(frozen=True, slots=True, kw_only=True)
class DefineAsset:
    """Create a registry (by the operator). A security settles against `currency`, a cash asset;
    a cash asset's `currency` is its own id and its mode is GROSS."""

    command_id: int
    actor: str
    asset: str
    kind: AssetKind
    issuer: str
    currency: str = "CNY"
    mode: SettlementMode = SettlementMode.GROSS


@dataclass(frozen=True, slots=True, kw_only=True)
class SetFeeSchedule:
    """Replace a security's fee schedule (by the operator); applies to later trades."""

    command_id: int
    actor: str
    asset: str
    commission_bps: int = 0
    stamp_duty_bps: int = 0
    fee_account: str = ""
    tax_account: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenAccount:
    """Open an account owned by `broker` (by the operator or that broker)."""

    command_id: int
    actor: str
    account: str
    broker: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Issue:
    """Create units of a security in `account` (by the asset's issuer)."""

    command_id: int
    actor: str
    asset: str
    account: str
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Redeem:
    """Retire available units of a security from `account` (by the asset's issuer)."""

    command_id: int
    actor: str
    asset: str
    account: str
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Deposit:
    """Mint cash into `account` against money received outside the ledger (by the cash issuer)."""

    command_id: int
    actor: str
    asset: str
    account: str
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Withdraw:
    """Burn available cash of `account` paid out outside the ledger (by the cash issuer)."""

    command_id: int
    actor: str
    asset: str
    account: str
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Transfer:
    """Free-of-payment move of available units (by the broker owning `source`)."""

    command_id: int
    actor: str
    asset: str
    source: str
    destination: str
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Lock:
    """Escrow available units under an owner reference (by the account's broker or the operator).
    Locking again under the same owner, account and holder adds to the lock."""

    command_id: int
    actor: str
    asset: str
    account: str
    amount: int
    owner: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Unlock:
    """Return `amount` of a lock to available (by the member that took the lock)."""

    command_id: int
    actor: str
    asset: str
    owner: int
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Freeze:
    """Stop every debit and new lock of an account (by the regulator). Credits still arrive."""

    command_id: int
    actor: str
    account: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Unfreeze:
    command_id: int
    actor: str
    account: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SettleTrade:
    """Settle (GROSS) or clear (CASH_NET, NET_NET) one trade (by the operator).

    `price` is in fen per share. `sell_owner` / `buy_owner` name the locks that fund the legs;
    None takes a gross leg from available, or records a net obligation with nothing escrowed.
    """

    command_id: int
    actor: str
    trade_id: int
    asset: str
    price: int
    quantity: int
    buyer: str
    seller: str
    buy_owner: int | None = None
    sell_owner: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SettleCycle:
    """Settle every pending net position, all or nothing (by the operator)."""

    command_id: int
    actor: str


Command = (
    DefineAsset
    | SetFeeSchedule
    | OpenAccount
    | Issue
    | Redeem
    | Deposit
    | Withdraw
    | Transfer
    | Lock
    | Unlock
    | Freeze
    | Unfreeze
    | SettleTrade
    | SettleCycle
)
