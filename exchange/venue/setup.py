"""Commands that set up a venue: cash and a security, fee and tax accounts, funded accounts.

Shared by the demo and the benchmarks (and later the simulator and `jinlian init`): one place
that knows the order in which registries, accounts and holdings must be created.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from exchange.venue.types import VenueCommand
from settlement.commands import DefineAsset, Deposit, Issue, OpenAccount, SetFeeSchedule
from settlement.types import AssetKind

FEE_ACCOUNT = "FEES"
TAX_ACCOUNT = "TAX"


@dataclass(frozen=True, slots=True, kw_only=True)
class Funding:
    """Who runs the registries and what every account starts with."""

    operator: str
    cash_issuer: str
    security_issuer: str
    cash: int  # fen per account
    shares: int  # per account
    commission_bps: int = 0
    stamp_duty_bps: int = 0
    currency: str = "CNY"


def registry_setup(
    funding: Funding, symbol: str, accounts: Mapping[str, str], first_command_id: int = 1
) -> list[VenueCommand]:
    """Define the cash and `symbol` registries, open the fee and tax accounts and `accounts`
    (account -> broker), and fund each with `funding.cash` and `funding.shares`."""
    ids: Iterator[int] = iter(range(first_command_id, first_command_id + 10**9))
    operator = funding.operator
    commands: list[VenueCommand] = [
        DefineAsset(
            command_id=next(ids),
            actor=operator,
            asset=funding.currency,
            kind=AssetKind.CASH,
            issuer=funding.cash_issuer,
            currency=funding.currency,
        ),
        DefineAsset(
            command_id=next(ids),
            actor=operator,
            asset=symbol,
            kind=AssetKind.SECURITY,
            issuer=funding.security_issuer,
            currency=funding.currency,
        ),
        OpenAccount(command_id=next(ids), actor=operator, account=FEE_ACCOUNT, broker=operator),
        OpenAccount(command_id=next(ids), actor=operator, account=TAX_ACCOUNT, broker=operator),
        SetFeeSchedule(
            command_id=next(ids),
            actor=operator,
            asset=symbol,
            commission_bps=funding.commission_bps,
            stamp_duty_bps=funding.stamp_duty_bps,
            fee_account=FEE_ACCOUNT,
            tax_account=TAX_ACCOUNT,
        ),
    ]
    for account, broker in accounts.items():
        commands.append(
            OpenAccount(command_id=next(ids), actor=operator, account=account, broker=broker)
        )
        commands.append(
            Deposit(
                command_id=next(ids),
                actor=funding.cash_issuer,
                asset=funding.currency,
                account=account,
                amount=funding.cash,
            )
        )
        commands.append(
            Issue(
                command_id=next(ids),
                actor=funding.security_issuer,
                asset=symbol,
                account=account,
                amount=funding.shares,
            )
        )
    return commands
