"""A member node's ledger as pandas DataFrames: one loader per table.

`NodeLedger.open(DIR/<member>)` reads the node's `node.json`, its genesis and its block store
(opened with the venue's indexer, as `jinlian verify` does). Each loader runs one query on the
store and returns a DataFrame whose integer columns stay integers (nullable `Int64` where the
derived table leaves a value NULL). Every row that comes from a block carries its `height`, its
position (`event_idx` or `idx`) and a `time_ns` and `time` (UTC): the sequencing time of the
command it comes from (or that produced it: `command_idx`) where the row has one, else its
block's; tables join on `(height, event_idx)` or `(height, command_idx)` and sort into ledger
order.

The derived tables (orders, trades, settlements, balance changes) are built by the node's
indexer behind its "indexed up to height" watermark (docs/ledger.md, "Derived tables"); the
blocks, commands and events are read up to the tip. Opening a node whose watermark is below its
tip warns (`IndexBehindWarning`, naming both heights and `jinlian index`), and `NodeLedger` has
`indexed_height` and `tip_height`: the derived frames hold the blocks 1..indexed_height only,
and `derived` reads no row above the watermark read at open, so every derived frame of one
`NodeLedger` covers the same blocks even while the node indexes on.

What the derived tables leave out (docs/ledger.md, "Derived tables") is filled here only where
it follows exactly from the ledger:

- `holding_changes` adds the genesis holdings (height 0) and the commission and stamp duty that
  a gross `trade_settled` credits to the fee and tax accounts (`exchange.venue.setup.FEE_ACCOUNT`,
  `TAX_ACCOUNT`, which `jinlian init` names in every fee schedule): commission is charged to
  each side, so the fee account receives twice the event's `commission`.
- `order_lifecycle` folds the order events and the trades into one row per order: every change
  of an order's open quantity is exactly one trade, cancel, reduce, amend or expiry event
  (matching/events.py), so the filled, cancelled and open quantities are exact.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import orjson
import pandas as pd
import pyarrow as pa

from exchange.analysis import supply_chain
from exchange.analysis.schema import LEDGER_SCHEMAS, conform
from exchange.consortium.audit import load_node, open_store
from exchange.venue.setup import FEE_ACCOUNT, TAX_ACCOUNT
from ledger.block import Receipt
from ledger.genesis import Genesis
from ledger.store import BlockStore

DERIVED_TABLES: Final = ("orders", "trades", "settlements", "balance_changes")
_NULLABLE_INT: Final = "Int64"


class IndexBehindWarning(UserWarning):
    """The node's derived tables do not cover every stored block yet."""


@dataclass(kw_only=True)
class NodeLedger:
    """One member node's directory, genesis and open store. Use as a context manager.
    `indexed_height` and `tip_height` are read at open: the derived frames cover blocks
    1..indexed_height."""

    directory: Path
    genesis: Genesis
    store: BlockStore
    indexed_height: int = 0
    tip_height: int = 0

    @classmethod
    def open(cls, directory: Path | str) -> NodeLedger:
        """Open `DIR/<member>`. Raises `exchange.consortium.audit.UsageError` naming the path if
        the node directory, its genesis or its store cannot be opened; warns
        `IndexBehindWarning` if the derived tables stop below the tip."""
        node = load_node(Path(directory))
        store = open_store(node)
        tip = store.tip()
        ledger = cls(
            directory=node.directory,
            genesis=node.genesis,
            store=store,
            indexed_height=store.indexed_height(),
            tip_height=0 if tip is None else tip[0],
        )
        if ledger.indexed_height < ledger.tip_height:
            warnings.warn(
                IndexBehindWarning(
                    f"{node.directory}: derived tables indexed to height "
                    f"{ledger.indexed_height}, tip {ledger.tip_height}: orders, trades, "
                    f"settlements and balance changes stop at height {ledger.indexed_height} "
                    f"(`jinlian index {node.directory}` builds the rest)"
                ),
                stacklevel=2,
            )
        return ledger

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def name(self) -> str:
        return self.directory.name

    def account_brokers(self) -> dict[str, str]:
        """Account (as the ledger writes it, `"10001"`) -> broker name, from the genesis."""
        return {
            str(account): broker.name
            for broker in self.genesis.brokers
            for account in broker.accounts
        }


def exact_frame(rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> pd.DataFrame:
    """A DataFrame of `rows` whose integer columns stay exact: a column of integers becomes
    int64, or nullable Int64 when some values are missing, never float64, which rounds past
    2**53 (a time in nanoseconds). Columns are converted by pyarrow, which reads Python
    integers and None exactly; a column of mixed types stays a column of objects. O(cells)."""
    values_by_column = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    series: dict[str, Any] = {}
    for name, values in zip(columns, values_by_column, strict=True):
        try:
            array = pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            series[name] = pd.Series(values, dtype=object)
            continue
        if pa.types.is_integer(array.type):
            integer = array.to_pandas(types_mapper={array.type: pd.Int64Dtype()}.get)
            series[name] = integer if array.null_count else integer.astype("int64")
        elif pa.types.is_null(array.type):
            series[name] = pd.Series([None] * len(values), dtype=object)
        else:
            series[name] = array.to_pandas()
    return pd.DataFrame(series, columns=list(columns))


def _records(records: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    return exact_frame([[record.get(name) for name in columns] for record in records], columns)


def _with_time(frame: pd.DataFrame, blocks: pd.DataFrame) -> pd.DataFrame:
    """`frame` with the `time_ns` and `time` of its block (by `height`); `time_ns` stays an
    exact integer (nullable where the height is not a block, such as 0 for the genesis). A
    frame that has its own `time_ns` (each command's) only gains `time`."""
    if "time_ns" in frame.columns:
        frame["time"] = pd.to_datetime(frame["time_ns"], unit="ns", utc=True)
        return frame
    times = blocks[["height", "time_ns", "time"]].astype({"time_ns": _NULLABLE_INT})
    merged = frame.merge(times, on="height", how="left", validate="many_to_one")
    if merged["time_ns"].notna().all():
        merged["time_ns"] = merged["time_ns"].astype("int64")
    return merged


def _integers(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    for column in columns:
        if frame[column].dtype != "int64":
            frame[column] = frame[column].astype(_NULLABLE_INT)
    return frame


def blocks(ledger: NodeLedger) -> pd.DataFrame:
    """One row per block: height, hash, time, counts, roots, state hash, proposer, and the
    number of votes in its certificate (0 if not certified). Hashes are hex. O(blocks)."""
    rows = ledger.store.read(
        "SELECT b.height, b.hash, b.header, c.data FROM blocks b "
        "LEFT JOIN certificates c ON c.height = b.height ORDER BY b.height"
    )
    records = []
    for height, block_hash, header_bytes, certificate in rows:
        header = orjson.loads(header_bytes)
        votes = 0 if certificate is None else len(orjson.loads(certificate)["votes"])
        records.append(
            {
                "height": height,
                "hash": bytes(block_hash).hex(),
                "parent_hash": header["parent_hash"],
                "time_ns": header["time_ns"],
                "command_count": header["command_count"],
                "commands_root": header["commands_root"],
                "receipts_root": header["receipts_root"],
                "state_hash": header["state_hash"],
                "proposer": header["proposer"],
                "votes": votes,
                "certified": certificate is not None,
            }
        )
    frame = _records(records, _BLOCK_COLUMNS)
    frame["time"] = pd.to_datetime(frame["time_ns"], unit="ns", utc=True)
    return frame


_BLOCK_COLUMNS: Final = [
    "height",
    "hash",
    "parent_hash",
    "time_ns",
    "command_count",
    "commands_root",
    "receipts_root",
    "state_hash",
    "proposer",
    "votes",
    "certified",
]


def certificates(ledger: NodeLedger) -> pd.DataFrame:
    """One row per vote of every stored certificate: height, header_hash, member (and its
    name), signature. O(votes)."""
    names = {member.id: member.name for member in ledger.genesis.members}
    records = []
    for height, data in ledger.store.read("SELECT height, data FROM certificates ORDER BY height"):
        certificate = orjson.loads(data)
        for vote in certificate["votes"]:
            records.append(
                {
                    "height": height,
                    "header_hash": certificate["header_hash"],
                    "member": vote["member"],
                    "member_name": names.get(vote["member"]),
                    "signature": vote["signature"],
                }
            )
    columns = ["height", "header_hash", "member", "member_name", "signature"]
    return pd.DataFrame.from_records(records, columns=columns)


def commands(
    ledger: NodeLedger,
    blocks_frame: pd.DataFrame | None = None,
    scf_events: list[dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """One row per sequenced command: height, idx, its own `time_ns`, type, the fields analysts
    filter on (broker, order_id, account, symbol, side, kind, price, quantity) and `data`, the
    command's canonical JSON. O(commands). Given `scf_events`, also appends the supply-chain
    events (`supply_chain.scf_events`) to it, in the same pass over the blocks."""
    records = []
    for height, receipts in _receipts(ledger):
        for receipt in receipts:
            value: dict[str, Any] = orjson.loads(receipt.command)
            record = {"height": height, "idx": receipt.index, "time_ns": receipt.time_ns,
                      "type": value.get("type")}  # fmt: skip
            record.update({name: value.get(name) for name in _COMMAND_FIELDS})
            record["data"] = receipt.command.decode()
            records.append(record)
        if scf_events is not None:
            scf_events.extend(supply_chain.scf_events([(height, receipts)]))
    columns = ["height", "idx", "time_ns", "type", *_COMMAND_FIELDS, "data"]
    frame = _records(records, columns)
    return _with_time(frame, blocks(ledger) if blocks_frame is None else blocks_frame)


def _receipts(ledger: NodeLedger) -> Iterator[tuple[int, list[Receipt]]]:
    """(height, receipts) of every stored block in order, a page of blobs at a time."""
    height = 1
    while page := ledger.store.blocks_from(height):
        for stored in page:
            yield stored.block.header.height, stored.receipts()
        height += len(page)


_COMMAND_FIELDS: Final = (
    "broker",
    "order_id",
    "account",
    "symbol",
    "side",
    "kind",
    "price",
    "quantity",
)


def events(
    ledger: NodeLedger, types: Sequence[str], blocks_frame: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The stored events of these `types`, one row each, with every field of the event as a
    column (height, event_idx, command_idx, time_ns: the command that produced it and its time,
    type, ...). For what the derived tables do not keep, such as the `gross_value` of a
    `cycle_settled`. O(events)."""
    wanted = set(types)
    records = []
    for height, receipts in _receipts(ledger):
        index = 0
        for receipt in receipts:
            for data in receipt.events:
                event = orjson.loads(data)
                if event.get("type") in wanted:
                    records.append({"height": height, "event_idx": index,
                                    "command_idx": receipt.index, "time_ns": receipt.time_ns,
                                    **event})  # fmt: skip
                index += 1
    columns = ["height", "event_idx", "command_idx", "time_ns", "type"]
    columns += sorted({name for record in records for name in record} - set(columns))
    frame = _records(records, columns)
    return _with_time(frame, blocks(ledger) if blocks_frame is None else blocks_frame)


def derived(
    ledger: NodeLedger, table: str, blocks_frame: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One of the venue's derived tables as it is stored, with block times, in ledger order.
    Raises ValueError naming an unknown table."""
    if table not in DERIVED_TABLES:
        raise ValueError(f"table {table!r} is not one of {', '.join(DERIVED_TABLES)}")
    order = "trade_id" if table == "trades" else "height, event_idx"
    if table == "balance_changes":
        order += ", leg"
    names = [row[0] for row in ledger.store.read("SELECT name FROM pragma_table_info(?)", [table])]
    rows = ledger.store.read(
        f"SELECT {', '.join(names)} FROM {table} WHERE height <= ? ORDER BY {order}",
        [ledger.indexed_height],
    )
    frame = exact_frame(rows, names)
    frame = _integers(frame, [column for column in frame.columns if column in _INTEGER_COLUMNS])
    return _with_time(frame, blocks(ledger) if blocks_frame is None else blocks_frame)


_INTEGER_COLUMNS: Final = frozenset(
    {
        "order_id",
        "price",
        "quantity",
        "remaining",
        "trade_id",
        "cycle_id",
        "buyer_cash",
        "seller_cash",
        "commission",
        "stamp_duty",
        "amount",
        "available_delta",
        "locked_delta",
    }
)


def orders(ledger: NodeLedger, blocks_frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """The `orders` table: one row per order event, broker and account filled in from the
    order's `accepted` row where the event's block did not name them."""
    frame = derived(ledger, "orders", blocks_frame)
    owners = frame[frame["event"] == "accepted"].drop_duplicates("order_id")
    owners = owners.set_index("order_id")[["broker", "account"]]
    for column in ("broker", "account"):
        frame[column] = frame[column].fillna(frame["order_id"].map(owners[column]))
    return frame


def trades(ledger: NodeLedger, blocks_frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """The `trades` table with block times, `notional` (price x quantity) and both brokers."""
    frame = derived(ledger, "trades", blocks_frame)
    brokers = ledger.account_brokers()
    frame["notional"] = frame["price"] * frame["quantity"]
    frame["buy_broker"] = frame["buy_account"].map(brokers)
    frame["sell_broker"] = frame["sell_account"].map(brokers)
    return frame


def order_lifecycle(orders_frame: pd.DataFrame, trades_frame: pd.DataFrame) -> pd.DataFrame:
    """One row per order: who placed it, its terms as accepted (`price` the last amended one),
    when it was accepted and last changed, and its quantities: `filled`, `cancelled` (cancelled
    or reduced away), `expired`, `open` (still resting at the tip), and `status` (rejected,
    open, partially_filled, filled, cancelled, expired). Every change of an order's open
    quantity is one trade, cancel, reduce, amend or expiry event, so folding them in ledger
    order is exact. O(order events + trades)."""
    changes = _order_changes(orders_frame, trades_frame)
    lives: dict[int, dict[str, Any]] = {}
    row: Any
    for row in changes.itertuples(index=False):
        event, order_id = row.event, row.order_id
        life = lives.get(order_id)
        if life is None:
            if event not in _BEGINNING:
                continue  # a cancel or amend refused for an unknown order
            life = lives[order_id] = _new_life(row)
            continue
        if event == "trade":
            life["filled"] += row.quantity
            life["open"] -= row.quantity
        elif event in ("cancelled", "reduced"):
            life["cancelled"] += row.quantity
            life["open"] -= row.quantity
        elif event == "expired":
            life["expired"] += row.quantity
            life["open"] -= row.quantity
        elif event == "amended":
            life["price"], life["open"] = row.price, row.quantity
            life["amends"] += 1
        else:
            continue  # rejected cancels and amends change nothing
        life["last_time_ns"] = row.time_ns
    frame = _records(list(lives.values()), _LIFE_COLUMNS)
    frame["status"] = [_status(life) for life in lives.values()]
    integer_columns = ["price", "quantity", "accepted_height", "accepted_event_idx",
                       "accepted_time_ns", "last_time_ns", "filled", "cancelled", "expired",
                       "open"]  # fmt: skip
    frame = _integers(frame, integer_columns)
    frame["accepted_time"] = pd.to_datetime(frame["accepted_time_ns"], unit="ns", utc=True)
    frame["last_time"] = pd.to_datetime(frame["last_time_ns"], unit="ns", utc=True)
    return frame


_BEGINNING: Final = ("accepted", "rejected", "order_refused", "order_unfunded")
_LIFE_COLUMNS: Final = [
    "order_id", "broker", "account", "symbol", "side", "kind", "tif", "price", "quantity",
    "accepted_height", "accepted_event_idx", "accepted_time_ns", "last_time_ns", "reject_reason",
    "filled", "cancelled", "expired", "open", "amends",
]  # fmt: skip


def _order_changes(orders_frame: pd.DataFrame, trades_frame: pd.DataFrame) -> pd.DataFrame:
    """Order events and both sides of every trade as one frame in ledger order."""
    columns = ["height", "event_idx", "time_ns", "event", "order_id", "broker", "account",
               "symbol", "side", "kind", "tif", "price", "quantity", "reason"]  # fmt: skip
    sides = [
        trades_frame.assign(event="trade", order_id=trades_frame[column])
        for column in ("buy_order_id", "sell_order_id")
    ]
    parts = [orders_frame.reindex(columns=columns)]
    parts += [side.reindex(columns=columns) for side in sides if not side.empty]
    changes = pd.concat(parts, ignore_index=True)
    return changes.sort_values(["height", "event_idx"], kind="stable")


def _new_life(row: Any) -> dict[str, Any]:
    accepted = row.event == "accepted"
    quantity = row.quantity if accepted else None
    return {
        "order_id": row.order_id, "broker": row.broker, "account": row.account,
        "symbol": row.symbol, "side": row.side, "kind": row.kind, "tif": row.tif,
        "price": row.price, "quantity": quantity,
        "accepted_height": row.height if accepted else None,
        "accepted_event_idx": row.event_idx if accepted else None,
        "accepted_time_ns": row.time_ns if accepted else None,
        "last_time_ns": row.time_ns,
        "reject_reason": None if accepted else row.reason,
        "filled": 0, "cancelled": 0, "expired": 0, "open": quantity if accepted else 0,
        "amends": 0,
    }  # fmt: skip


def _status(life: dict[str, Any]) -> str:
    if life["accepted_height"] is None:
        return "rejected"
    if life["open"] > 0:
        return "partially_filled" if life["filled"] else "open"
    if life["expired"]:
        return "expired"
    if life["cancelled"]:
        return "cancelled"
    return "filled"


def settlements(ledger: NodeLedger, blocks_frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """The `settlements` table with block times, in ledger order."""
    return derived(ledger, "settlements", blocks_frame)


def holding_changes(
    ledger: NodeLedger,
    blocks_frame: pd.DataFrame | None = None,
    scf: dict[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Every change of an account's holding of an asset, in ledger order: the genesis holdings
    (height 0, event `genesis`), the `balance_changes` table, and what the table leaves out:
    the commission and stamp duty credits of gross trades to the fee and tax accounts, and the
    cash the supply chain moves (financings, maturity payments, recourse claims:
    `supply_chain.cash_changes`, of the blocks up to the indexed height, like the table).
    Columns: height, event_idx, leg, account, asset, holding_delta, available_delta,
    locked_delta, event, trade_id, time_ns, time."""
    blocks_frame = blocks(ledger) if blocks_frame is None else blocks_frame
    scf = supply_chain_frames(ledger) if scf is None else scf
    scf_cash = supply_chain.cash_changes(scf["commitment_transfers"], scf["commitment_payments"])
    scf_cash = scf_cash[scf_cash["height"] <= ledger.indexed_height]
    genesis = pd.DataFrame.from_records(
        [
            {"height": 0, "event_idx": -1, "leg": leg, "account": str(holding["account"]),
             "asset": holding["asset"], "holding_delta": holding["amount"],
             "available_delta": holding["amount"], "locked_delta": 0, "event": "genesis"}
            for leg, holding in enumerate(ledger.genesis.holdings)
        ]
    )  # fmt: skip
    table = derived(ledger, "balance_changes", blocks_frame)
    gross = settlements(ledger, blocks_frame)
    gross = gross[gross["event"] == "trade_settled"]
    fee_rows = []
    for account, column, factor, leg in ((FEE_ACCOUNT, "commission", 2, 4),
                                         (TAX_ACCOUNT, "stamp_duty", 1, 5)):  # fmt: skip
        credit = gross[["height", "event_idx", "currency", "trade_id"]].rename(
            columns={"currency": "asset"}
        )
        credit = credit.assign(leg=leg, account=account, event="trade_settled",
                               holding_delta=gross[column] * factor)  # fmt: skip
        credit["available_delta"] = credit["holding_delta"]
        credit["locked_delta"] = 0
        fee_rows.append(credit[credit["holding_delta"] != 0])
    parts = [genesis, table, *fee_rows, *([scf_cash] if not scf_cash.empty else [])]
    changes = pd.concat(parts, ignore_index=True)
    changes = changes.drop(columns=["time_ns", "time"], errors="ignore")
    changes = changes.sort_values(["height", "event_idx", "leg"], kind="stable")
    changes = _integers(
        changes.reset_index(drop=True),
        ["height", "event_idx", "leg", "holding_delta", "available_delta", "locked_delta",
         "trade_id"],
    )  # fmt: skip
    return _with_time(changes, blocks_frame)


def balances(changes: pd.DataFrame) -> pd.DataFrame:
    """Balances over time from `holding_changes`: one row per change with `holding`, the
    account's holding of the asset after it (available + locked + cycle escrow)."""
    frame = changes.copy()
    frame["holding"] = frame.groupby(["account", "asset"])["holding_delta"].cumsum()
    return frame


def balances_at(changes: pd.DataFrame, height: int | None = None) -> pd.DataFrame:
    """Each account's holding of each asset after block `height` (the tip if None): a table
    indexed by account with one column per asset, zeros where an account never held it."""
    frame = changes if height is None else changes[changes["height"] <= height]
    totals = frame.groupby(["account", "asset"])["holding_delta"].sum()
    return totals.unstack("asset", fill_value=0).astype("int64")


def fees(settlements_frame: pd.DataFrame, account_brokers: dict[str, str]) -> pd.DataFrame:
    """One row per settled or cleared trade with its fees: commission (charged to each side),
    stamp duty (the seller's), the brokers of both sides, and what each side paid:
    `buyer_fees` (its commission) and `seller_fees` (its commission and the stamp duty)."""
    kinds = settlements_frame["event"].isin(["trade_settled", "trade_cleared"])
    columns = ["height", "event_idx", "time_ns", "time", "event", "trade_id", "asset",
               "currency", "mode", "price", "quantity", "buyer", "seller", "commission",
               "stamp_duty"]  # fmt: skip
    frame = settlements_frame.loc[kinds, columns].copy()
    frame["buyer_broker"] = frame["buyer"].map(account_brokers)
    frame["seller_broker"] = frame["seller"].map(account_brokers)
    frame["notional"] = frame["price"] * frame["quantity"]
    frame["fees_total"] = 2 * frame["commission"] + frame["stamp_duty"]
    frame["buyer_fees"] = frame["commission"]
    frame["seller_fees"] = frame["commission"] + frame["stamp_duty"]
    return frame.reset_index(drop=True)


def evidence(ledger: NodeLedger) -> pd.DataFrame:
    """The node's recorded evidence (equivocation, diverged, invalid_block, bad_vote): seq,
    id, height, kind and the evidence as JSON text. Empty on an honest consortium."""
    rows = ledger.store.read("SELECT seq, id, height, kind, data FROM evidence ORDER BY seq")
    records = [
        {"seq": seq, "id": bytes(ident).hex(), "height": height, "kind": kind,
         "data": bytes(data).decode(errors="replace")}
        for seq, ident, height, kind, data in rows
    ]  # fmt: skip
    return pd.DataFrame.from_records(records, columns=["seq", "id", "height", "kind", "data"])


def auctions(ledger: NodeLedger, blocks_frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per call auction's uncross (`auction_uncrossed` events, in no derived table):
    symbol, `phase` (the auction that uncrossed: `call_auction` for the opening,
    `closing_auction`), price (None when nothing could execute), volume, and `imbalance`, the
    buy quantity minus the sell quantity executable at the price (`imbalance_side` buy, sell or
    none). O(events)."""
    found = events(ledger, ["auction_uncrossed", "phase_changed"], blocks_frame)
    columns = list(LEDGER_SCHEMAS["auctions"].names)
    if not (found["type"] == "auction_uncrossed").any():
        return pd.DataFrame({name: [] for name in columns})
    found = found.sort_values(["height", "event_idx"], kind="stable")
    # the phase an auction closed: the symbol's phase before its uncross
    found["phase"] = (
        found.groupby("symbol")["phase"].shift(1).where(found["type"] == "auction_uncrossed")
    )
    uncrossed = found[found["type"] == "auction_uncrossed"].copy()
    imbalance = uncrossed["imbalance"].astype("int64")
    uncrossed["imbalance_side"] = ["buy" if i > 0 else "sell" if i < 0 else "none"
                                   for i in imbalance]  # fmt: skip
    return uncrossed.reindex(columns=columns).reset_index(drop=True)


def supply_chain_frames(
    ledger: NodeLedger, events: Iterable[dict[str, Any]] | None = None
) -> dict[str, pd.DataFrame]:
    """The supply-chain tables (`exchange.analysis.supply_chain.TABLES`) folded from the
    stored events up to the tip (or from `events`, `supply_chain.scf_events` already read), by
    name. O(commands + supply-chain events)."""
    if events is None:
        events = supply_chain.scf_events(_receipts(ledger))
    tables = supply_chain.fold(events)
    return {name: arrow_frame(table) for name, table in tables.items()}


def accounts(ledger: NodeLedger) -> pd.DataFrame:
    """Who owns which account: one row per account of the genesis with its broker, plus the
    operator's fee and tax accounts (broker None)."""
    brokers = ledger.account_brokers()
    for account in (FEE_ACCOUNT, TAX_ACCOUNT):
        brokers.setdefault(account, None)  # type: ignore[arg-type]
    return pd.DataFrame({"account": list(brokers), "broker": list(brokers.values())})


def instruments(ledger: NodeLedger) -> pd.DataFrame:
    """The instruments of the genesis: reference price (ticks), tick size, lot, price limit,
    settlement mode, T+n, commission and stamp duty in bps."""
    columns = LEDGER_SCHEMAS["instruments"].names
    return _records(list(ledger.genesis.instruments), columns)


def arrow_frame(table: pa.Table) -> pd.DataFrame:
    """An Arrow table as pandas with the integer rule of `exact_frame`: int64 columns stay
    int64, nullable `Int64` where a value is missing; timestamps are UTC datetimes."""
    frame: pd.DataFrame = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_integer(field.type) and column.null_count == 0:
            frame[field.name] = frame[field.name].astype("int64")
    return frame


def typed(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """`frame` in the fixed schema of the ledger table `name` (schema.LEDGER_SCHEMAS): the
    same columns and dtypes whether the table was read from a node's store or from an export.
    Raises schema.SchemaError naming a column the table does not have."""
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    return arrow_frame(conform(table, LEDGER_SCHEMAS[name]))


@dataclass(frozen=True, slots=True, kw_only=True)
class Tables:
    """Every table of one node, loaded once, in the fixed schemas of `schema.LEDGER_SCHEMAS`.
    `as_dict()` for export."""

    blocks: pd.DataFrame
    certificates: pd.DataFrame
    commands: pd.DataFrame
    orders: pd.DataFrame
    order_lifecycle: pd.DataFrame
    trades: pd.DataFrame
    settlements: pd.DataFrame
    balance_changes: pd.DataFrame
    holding_changes: pd.DataFrame
    balances: pd.DataFrame
    fees: pd.DataFrame
    auctions: pd.DataFrame
    accounts: pd.DataFrame
    instruments: pd.DataFrame
    evidence: pd.DataFrame
    days: pd.DataFrame
    participants: pd.DataFrame
    commitments: pd.DataFrame
    commitment_transfers: pd.DataFrame
    commitment_payments: pd.DataFrame
    invoices: pd.DataFrame

    def as_dict(self) -> dict[str, pd.DataFrame]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def load(ledger: NodeLedger) -> Tables:
    """Every table of the node. O(size of the store)."""
    blocks_frame = blocks(ledger)
    orders_frame = orders(ledger, blocks_frame)
    trades_frame = trades(ledger, blocks_frame)
    settlements_frame = settlements(ledger, blocks_frame)
    scf_events: list[dict[str, Any]] = []
    commands_frame = commands(ledger, blocks_frame, scf_events)  # one pass over the blocks
    scf = supply_chain_frames(ledger, scf_events)
    changes = holding_changes(ledger, blocks_frame, scf)
    frames = {
        "blocks": blocks_frame,
        "certificates": certificates(ledger),
        "commands": commands_frame,
        "orders": orders_frame,
        "order_lifecycle": order_lifecycle(orders_frame, trades_frame),
        "trades": trades_frame,
        "settlements": settlements_frame,
        "balance_changes": derived(ledger, "balance_changes", blocks_frame),
        "holding_changes": changes,
        "balances": balances(changes),
        "fees": fees(settlements_frame, ledger.account_brokers()),
        "auctions": auctions(ledger, blocks_frame),
        "accounts": accounts(ledger),
        "instruments": instruments(ledger),
        "evidence": evidence(ledger),
        **scf,
    }
    return Tables(**{name: typed(frame, name) for name, frame in frames.items()})
