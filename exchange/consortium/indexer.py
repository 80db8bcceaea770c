"""The venue's derived tables in a node's block store: what analysts read with plain SQL.

`VenueIndexer` is the `ledger.store.Indexer` of the venue. The block store writes its rows after
the block, with the "indexed up to height" watermark, so the tables always describe exactly the
blocks up to it. Every row names the block (`height`), the event's position in it (`event_idx`:
its index in the concatenation of the block's receipts' events) and the command that produced it
(`command_idx`: its index in the block, the leaf index of its receipt, what a receipt's
inclusion proof starts from; `time_ns`: that command's sequencing time). Columns are integers or
text; enums are their lower-case wire names. Tables (see docs/ledger.md, "Derived tables"):

- `orders`: one row per order lifecycle event (accepted, rejected, order_refused,
  order_unfunded, cancelled, reduced, amended, expired, cancel_rejected, amend_rejected).
- `trades`: one row per `trade` event, keyed by trade id.
- `settlements`: one row per settlement event (trade_settled, trade_cleared, position_settled,
  asset_netted, cycle_settled, cycle_failed).
- `balance_changes`: one row per account and asset that a settlement event moves.

What the events do not carry is not invented. Each event is attributed to the command that
produced it (its receipt): an order event's `broker` is the event's own (`order_refused`) or the
broker of the command that produced it when that command is a broker's order command (place,
cancel, amend: a broker acts only on its own orders), and its `account` the event's or that
place command's; otherwise (an expiry at a phase change, say) they are NULL, and an analyst
joins on the order's `accepted` row. The locks that fund orders (taken on acceptance, released
on cancel, expiry or price improvement) are venue-internal and not events, so
`balance_changes` records the change of each account's holding (available + locked + cycle
escrow) exactly, and its split into available and locked only where the event states it
(NULL otherwise). The commission and stamp duty of a gross trade go to the fee and tax accounts
of the instrument's fee schedule, which the event does not name: those credits are not rows
(they are `commission` and `stamp_duty` in `settlements`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import orjson

from ledger.block import BlockHeader, Receipt
from ledger.store import Row

SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS orders (
        height INTEGER NOT NULL,
        event_idx INTEGER NOT NULL,
        event TEXT NOT NULL,
        order_id INTEGER NOT NULL,
        broker TEXT,
        account TEXT,
        symbol TEXT NOT NULL,
        side TEXT,
        kind TEXT,
        price INTEGER,
        quantity INTEGER,
        remaining INTEGER,
        tif TEXT,
        reason TEXT,
        command_idx INTEGER NOT NULL,
        time_ns INTEGER NOT NULL,
        PRIMARY KEY (height, event_idx)
    ) STRICT, WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS orders_by_order ON orders (order_id, height)",
    """CREATE TABLE IF NOT EXISTS trades (
        trade_id INTEGER PRIMARY KEY,
        height INTEGER NOT NULL,
        event_idx INTEGER NOT NULL,
        symbol TEXT NOT NULL,
        price INTEGER NOT NULL,
        quantity INTEGER NOT NULL,
        buy_order_id INTEGER NOT NULL,
        sell_order_id INTEGER NOT NULL,
        buy_account TEXT NOT NULL,
        sell_account TEXT NOT NULL,
        aggressor TEXT,
        command_idx INTEGER NOT NULL,
        time_ns INTEGER NOT NULL,
        UNIQUE (height, event_idx)
    ) STRICT""",
    """CREATE TABLE IF NOT EXISTS settlements (
        height INTEGER NOT NULL,
        event_idx INTEGER NOT NULL,
        event TEXT NOT NULL,
        trade_id INTEGER,
        cycle_id INTEGER,
        asset TEXT,
        currency TEXT,
        mode TEXT,
        price INTEGER,
        quantity INTEGER,
        buyer TEXT,
        seller TEXT,
        buyer_cash INTEGER,
        seller_cash INTEGER,
        commission INTEGER,
        stamp_duty INTEGER,
        account TEXT,
        amount INTEGER,
        command_idx INTEGER NOT NULL,
        time_ns INTEGER NOT NULL,
        PRIMARY KEY (height, event_idx)
    ) STRICT, WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS settlements_by_trade ON settlements (trade_id)",
    """CREATE TABLE IF NOT EXISTS balance_changes (
        height INTEGER NOT NULL,
        event_idx INTEGER NOT NULL,
        leg INTEGER NOT NULL,
        account TEXT NOT NULL,
        asset TEXT NOT NULL,
        holding_delta INTEGER NOT NULL,
        available_delta INTEGER,
        locked_delta INTEGER,
        event TEXT NOT NULL,
        trade_id INTEGER,
        command_idx INTEGER NOT NULL,
        time_ns INTEGER NOT NULL,
        PRIMARY KEY (height, event_idx, leg)
    ) STRICT, WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS balance_changes_by_account ON balance_changes (account, asset)",
    "CREATE INDEX IF NOT EXISTS trades_by_height ON trades (height)",
)
TABLES: Final = ("orders", "trades", "settlements", "balance_changes")
ORDER_EVENTS: Final = frozenset(
    {
        "accepted",
        "rejected",
        "order_refused",
        "order_unfunded",
        "cancelled",
        "reduced",
        "amended",
        "expired",
        "cancel_rejected",
        "amend_rejected",
    }
)
SETTLEMENT_EVENTS: Final = frozenset(
    {
        "trade_settled",
        "trade_cleared",
        "position_settled",
        "asset_netted",
        "cycle_settled",
        "cycle_failed",
    }
)
# (available_delta, locked_delta) per unit of the amount, for events that move one account.
_ONE_ACCOUNT: Final[dict[str, tuple[int, int]]] = {
    "deposited": (1, 0),
    "issued": (1, 0),
    "withdrawn": (-1, 0),
    "redeemed": (-1, 0),
}
Balance = tuple[str, str, int, int | None, int | None]  # account, asset, holding, avail, locked


class VenueIndexer:
    """The venue's `Indexer`: pure, stateless; one instance may serve any number of stores."""

    __slots__ = ()

    def schema(self) -> Sequence[str]:
        return SCHEMA

    def rows(
        self, height: int, header: BlockHeader, receipts: Sequence[Receipt]
    ) -> Mapping[str, Sequence[Row]]:
        """The rows of the four tables for one block, each event with the command that
        produced it. O(commands + events)."""
        orders: list[Row] = []
        trades: list[Row] = []
        settlements: list[Row] = []
        balances: list[Row] = []
        loads = orjson.loads
        index = 0
        for receipt in receipts:
            if not receipt.events:
                continue
            cause = (receipt.index, receipt.time_ns)
            owner = _owner(receipt.command)
            for data in receipt.events:
                event = loads(data)
                kind = event.get("type")
                if kind == "trade":
                    trades.append(_trade(height, index, event) + cause)
                elif kind in ORDER_EVENTS:
                    orders.append(_order(height, index, kind, event, owner) + cause)
                elif kind in SETTLEMENT_EVENTS:
                    settlements.append(_settlement(height, index, kind, event) + cause)
                changes = _BALANCES.get(kind) if isinstance(kind, str) else None
                if changes is not None:
                    trade_id = event.get("trade_id")
                    for leg, (account, asset, holding, available, locked) in enumerate(
                        changes(event)
                    ):
                        balances.append(
                            (height, index, leg, account, asset, holding, available, locked,
                             kind, trade_id, *cause)
                        )  # fmt: skip
                index += 1
        return {
            "orders": orders,
            "trades": trades,
            "settlements": settlements,
            "balance_changes": balances,
        }


_ORDER_COMMANDS: Final = frozenset({"place", "cancel", "amend"})


def _owner(command: bytes) -> tuple[int, str | None, str | None] | None:
    """(order id, broker, account) of a broker's order command (account: a place's only), or
    None for any other command: who owns the orders its events are about."""
    try:
        value = orjson.loads(command)
    except orjson.JSONDecodeError:
        return None
    if type(value) is not dict or value.get("type") not in _ORDER_COMMANDS:
        return None
    order_id, broker, account = value.get("order_id"), value.get("broker"), value.get("account")
    if type(order_id) is not int or type(broker) is not str:
        return None
    return order_id, broker, account if type(account) is str else None


def _order(
    height: int,
    index: int,
    kind: str,
    event: dict[str, Any],
    owner: tuple[int, str | None, str | None] | None,
) -> Row:
    """An order event's row. Its broker is the event's, or the broker of the order command
    that produced it (a broker acts only on its own orders, so it owns every order that its
    command's events are about: the one it names, and its own resting orders that
    self-trade prevention cancels); its account the event's or, for the order the command
    names, the command's."""
    order_id = event["order_id"]
    broker = account = None
    if owner is not None:
        broker = owner[1]
        account = owner[2] if owner[0] == order_id else None
    return (
        height,
        index,
        kind,
        order_id,
        event.get("broker", broker),
        event.get("account", account),
        event["symbol"],
        event.get("side"),
        event.get("kind"),
        event.get("price"),
        event.get("quantity", event.get("required")),
        event.get("remaining"),
        event.get("tif"),
        event.get("reason"),
    )


def _trade(height: int, index: int, event: dict[str, Any]) -> Row:
    return (
        event["trade_id"],
        height,
        index,
        event["symbol"],
        event["price"],
        event["quantity"],
        event["buy_order_id"],
        event["sell_order_id"],
        event["buy_account"],
        event["sell_account"],
        event.get("aggressor"),
    )


def _settlement(height: int, index: int, kind: str, event: dict[str, Any]) -> Row:
    get = event.get
    amount = get("amount", get("shortfall", get("net", get("net_value"))))
    return (
        height,
        index,
        kind,
        get("trade_id"),
        get("cycle_id"),
        get("asset"),
        get("currency"),
        get("mode"),
        get("price"),
        get("quantity"),
        get("buyer"),
        get("seller"),
        get("buyer_paid", get("buyer_owes")),
        get("seller_received", get("seller_owed")),
        get("commission"),
        get("stamp_duty"),
        get("account"),
        amount,
    )


def _one_account(kind: str) -> Callable[[dict[str, Any]], list[Balance]]:
    available, locked = _ONE_ACCOUNT[kind]

    def changes(event: dict[str, Any]) -> list[Balance]:
        amount = event["amount"]
        return [(event["account"], event["asset"], available * amount, available * amount,
                 locked * amount)]  # fmt: skip

    return changes


def _transferred(event: dict[str, Any]) -> list[Balance]:
    amount, asset = event["amount"], event["asset"]
    return [
        (event["source"], asset, -amount, -amount, 0),
        (event["destination"], asset, amount, amount, 0),
    ]


def _locked(sign: int) -> Callable[[dict[str, Any]], list[Balance]]:
    def changes(event: dict[str, Any]) -> list[Balance]:
        amount = sign * event["amount"]
        return [(event["account"], event["asset"], 0, -amount, amount)]

    return changes


def _trade_settled(event: dict[str, Any]) -> list[Balance]:
    """Gross DvP: the seller's shares leave its lock for the buyer's available; the seller is
    credited its proceeds; the buyer pays out of its order's lock, which also returns any price
    improvement to available, an amount the event does not state: split unknown."""
    asset, cash, quantity = event["asset"], event["currency"], event["quantity"]
    paid, received = event["buyer_paid"], event["seller_received"]
    return [
        (event["seller"], asset, -quantity, 0, -quantity),
        (event["buyer"], asset, quantity, quantity, 0),
        (event["buyer"], cash, -paid, None, None),
        (event["seller"], cash, received, received, 0),
    ]


def _trade_cleared(event: dict[str, Any]) -> list[Balance]:
    """Net modes: the cash (and under net_net the shares) leave the lock for the cycle escrow,
    still held by the same account: no holding changes until `position_settled`. Under cash_net
    the shares move now, as in gross."""
    if event["mode"] != "cash_net":
        return []
    asset, quantity = event["asset"], event["quantity"]
    return [
        (event["seller"], asset, -quantity, 0, -quantity),
        (event["buyer"], asset, quantity, quantity, 0),
    ]


def _position_settled(event: dict[str, Any]) -> list[Balance]:
    """At the cycle the escrow is released and the net position applied: the holding changes
    by the net amount; the split between available and escrow is not stated."""
    return [(event["account"], event["asset"], event["amount"], None, None)]


def _paid(payer_field: str) -> Callable[[dict[str, Any]], list[Balance]]:
    """A coupon or a dividend (docs/fixed_income.md): the payer's cash to the holder."""

    def changes(event: dict[str, Any]) -> list[Balance]:
        amount, cash = event["amount"], event["currency"]
        return [
            (event["holder"], cash, amount, amount, 0),
            (event[payer_field], cash, -amount, -amount, 0),
        ]

    return changes


def _bond_redeemed(event: dict[str, Any]) -> list[Balance]:
    """The holder's units leave it and are retired (the supply falls, as a redemption's);
    the issuer's cash, face plus the last coupon, goes to the holder (nothing for the
    issuer's own units)."""
    quantity, paid = event["quantity"], event["principal"] + event["coupon"]
    changes: list[Balance] = [(event["holder"], event["bond"], -quantity, -quantity, 0)]
    if paid:
        cash = event["currency"]
        changes.append((event["holder"], cash, paid, paid, 0))
        changes.append((event["issuer"], cash, -paid, -paid, 0))
    return changes


_BALANCES: Final[dict[str, Callable[[dict[str, Any]], list[Balance]]]] = {
    **{kind: _one_account(kind) for kind in _ONE_ACCOUNT},
    "transferred": _transferred,
    "locked": _locked(1),
    "unlocked": _locked(-1),
    "trade_settled": _trade_settled,
    "trade_cleared": _trade_cleared,
    "position_settled": _position_settled,
    "coupon_paid": _paid("issuer"),
    "dividend_paid": _paid("payer"),
    "bond_redeemed": _bond_redeemed,
}
