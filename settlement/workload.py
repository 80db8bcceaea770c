"""A seeded model-3 workload for the net settlement benchmark: many trades, one cycle.

Pure and deterministic (a 64-bit LCG, no `random`): the same arguments build the same engine
and the same trades on every machine. Timing belongs to the caller (`jinlian bench`), since a
pure module reads no clock.
"""

from __future__ import annotations

from collections.abc import Iterator

from settlement.commands import (
    Command,
    DefineAsset,
    Deposit,
    Issue,
    OpenAccount,
    SetFeeSchedule,
)
from settlement.engine import SettlementEngine
from settlement.events import CommandRejected, Event
from settlement.types import AssetKind, SettlementMode

NetTrade = tuple[int, str, int, int, str, str]  # trade_id, asset, price, quantity, buyer, seller

OPERATOR = "EXCHANGE"
REGULATOR = "REGULATOR"
CASH_ISSUER = "BANK"
SECURITY_ISSUER = "ISSUER"
FEE_ACCOUNT = "FEES"
TAX_ACCOUNT = "TAXES"
CASH_PER_ACCOUNT = 10**15  # fen: more than any account can owe in the workload
SHARES_PER_ACCOUNT = 10**12


def net_settlement_workload(
    *,
    trade_count: int = 1_000_000,
    account_count: int = 1_000,
    security_count: int = 10,
    seed: int = 1,
) -> tuple[SettlementEngine, list[NetTrade]]:
    """An engine with `security_count` NET_NET securities (3 bps commission, 5 bps stamp duty),
    `account_count` funded accounts, and `trade_count` trades between distinct random accounts.
    O(trade_count + account_count * security_count)."""
    assert trade_count >= 0 and account_count >= 2 and security_count >= 1, "bad workload size"
    engine = SettlementEngine(operator=OPERATOR, regulator=REGULATOR)
    accounts = [f"ACCT{index:06d}" for index in range(account_count)]
    securities = [f"SEC{index:03d}" for index in range(security_count)]
    for command in _setup_commands(accounts, securities):
        (event,) = engine.apply(command)
        assert not isinstance(event, CommandRejected), f"workload setup refused: {event}"
    numbers = _lcg(seed)
    trades: list[NetTrade] = []
    for trade_id in range(1, trade_count + 1):
        buyer = next(numbers) % account_count
        seller = (buyer + 1 + next(numbers) % (account_count - 1)) % account_count
        asset = securities[next(numbers) % security_count]
        price = 1_000 + next(numbers) % 9_000  # 10.00 to 99.99 yuan
        quantity = 100 * (1 + next(numbers) % 50)
        trades.append((trade_id, asset, price, quantity, accounts[buyer], accounts[seller]))
    return engine, trades


def run_net_settlement(engine: SettlementEngine, trades: list[NetTrade]) -> list[Event]:
    """Clear every trade as unfunded model-3 obligations, then settle one cycle; the cycle's
    events. This is what the benchmark times. O(trades + positions log positions)."""
    settle_trade = engine.settle_trade
    for trade_id, asset, price, quantity, buyer, seller in trades:
        reason = settle_trade(trade_id, asset, price, quantity, buyer, seller)
        assert reason is None, f"trade {trade_id} refused: {reason!r}"
    return engine.settle_cycle()


def _setup_commands(accounts: list[str], securities: list[str]) -> Iterator[Command]:
    ids = iter(range(1, 10**12))
    yield DefineAsset(
        command_id=next(ids), actor=OPERATOR, asset="CNY", kind=AssetKind.CASH, issuer=CASH_ISSUER
    )
    for account in [FEE_ACCOUNT, TAX_ACCOUNT, *accounts]:
        yield OpenAccount(command_id=next(ids), actor=OPERATOR, account=account, broker="BROKER")
    for security in securities:
        yield DefineAsset(
            command_id=next(ids),
            actor=OPERATOR,
            asset=security,
            kind=AssetKind.SECURITY,
            issuer=SECURITY_ISSUER,
            mode=SettlementMode.NET_NET,
        )
        yield SetFeeSchedule(
            command_id=next(ids),
            actor=OPERATOR,
            asset=security,
            commission_bps=3,
            stamp_duty_bps=5,
            fee_account=FEE_ACCOUNT,
            tax_account=TAX_ACCOUNT,
        )
    for account in accounts:
        yield Deposit(
            command_id=next(ids),
            actor=CASH_ISSUER,
            asset="CNY",
            account=account,
            amount=CASH_PER_ACCOUNT,
        )
        for security in securities:
            yield Issue(
                command_id=next(ids),
                actor=SECURITY_ISSUER,
                asset=security,
                account=account,
                amount=SHARES_PER_ACCOUNT,
            )


def _lcg(seed: int) -> Iterator[int]:
    """Knuth's MMIX linear congruential generator; yields the high 33 bits."""
    state = seed & 0xFFFFFFFFFFFFFFFF
    while True:
        state = (state * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        yield state >> 31
