"""`jinlian verify`, `jinlian receipt` and `jinlian verify-receipt`: the venue's glue around
`ledger.audit` and `ledger.receipt`.

A node directory (`DIR/<member>`, written by `jinlian init`) holds `node.json`, whose `genesis`
and `store` paths are relative to the directory. Every outside input is validated here and
every failure comes back as a `UsageError` or a report line naming the value, never as a
traceback.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from exchange.consortium.indexer import VenueIndexer
from exchange.consortium.init import venue_from_genesis
from exchange.venue.machine import VenueMachine
from ledger.audit import AuditReport, Authority, audit_store
from ledger.block import Receipt
from ledger.genesis import Genesis, GenesisError, load_genesis
from ledger.receipt import ReceiptError, build_receipt, check_receipt
from ledger.store import BlockStore, StoreError

NODE_CONFIG_BYTES_MAX: Final = 64 * 1024
INDEX_BATCH_BLOCKS: Final = 32  # blocks per transaction of `jinlian index`
RECEIPT_BYTES_MAX: Final = 1024 * 1024


class UsageError(Exception):
    """A node directory, genesis, store or receipt file that cannot be used at all."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    directory: Path
    genesis: Genesis
    store_path: Path


def load_node(directory: Path) -> Node:
    """Read `directory/node.json` and the genesis it names. Raises `UsageError`."""
    config_path = directory / "node.json"
    value = _read_json(config_path, NODE_CONFIG_BYTES_MAX)
    if not isinstance(value, dict):
        raise UsageError(f"{config_path}: not a JSON object")
    paths: dict[str, Path] = {}
    for name in ("genesis", "store"):
        field = value.get(name)
        if not isinstance(field, str) or not field:
            raise UsageError(f"{config_path}: {name} {field!r} is not a path")
        paths[name] = directory / field
    return Node(
        directory=directory, genesis=_load_genesis(paths["genesis"]), store_path=paths["store"]
    )


def authority(genesis: Genesis) -> Authority:
    return Authority(
        genesis_hash=genesis.hash,
        proposer=genesis.exchange.id,
        proposer_key=genesis.exchange.public_key,
        voters=genesis.voters(),
        quorum=genesis.quorum(),
    )


def verify_node(directory: Path) -> AuditReport:
    """Audit the node's whole store from its genesis. Raises `UsageError` if the node, its
    genesis or its store cannot be opened; anything wrong inside the store is the report's."""
    node = load_node(directory)
    store = open_store(node)
    try:
        machine = VenueMachine(venue_from_genesis(node.genesis))
        return audit_store(store, authority(node.genesis), machine)
    finally:
        store.close()


def index_node(directory: Path) -> tuple[int, int]:
    """`jinlian index`: build the node's derived tables up to its tip, batch by batch (each
    batch with its watermark in one transaction, so an interrupted run resumes where it
    stopped). Safe beside the running node (the watermark is re-read under SQLite's write
    lock). Returns the watermark before and after. Raises `UsageError` naming the store or the
    height that failed."""
    node = load_node(directory)
    store = open_store(node)
    try:
        before = watermark = store.indexed_height()
        while True:
            tip = store.tip()
            if tip is None or watermark >= tip[0]:
                return before, watermark
            watermark = store.index_blocks(INDEX_BATCH_BLOCKS)
    except (StoreError, sqlite3.Error) as error:
        raise UsageError(f"{node.store_path}: indexing: {error}") from None
    finally:
        store.close()


def format_report(report: AuditReport) -> str:
    if not report.ok:
        return f"height {report.failed_height}: {report.failure}"
    tip = "none" if report.state_hash is None else report.state_hash.hex()
    indexed = (
        f"derived tables indexed to height {report.indexed_height}"
        if report.indexed_height >= report.blocks
        else f"derived tables indexed to height {report.indexed_height} of {report.blocks} "
        f"(compared up to it; blocks above rebuilt only: `jinlian index` catches up)"
    )
    return (
        f"OK: {report.blocks} blocks, {report.commands} commands, {report.events} events, "
        f"{report.derived_rows} derived rows, {indexed}, certified height "
        f"{report.certified_height}, state hash at tip {tip}"
    )


def _stored_receipt(
    directory: Path, what: str, find: Callable[[BlockStore], tuple[int, int] | None]
) -> tuple[dict[str, Any], tuple[int, int]]:
    """The receipt of the command that `find` locates in the node's store (`what` names it in
    errors), and where it is. Raises `UsageError`, `ReceiptError` (not found, block not
    certified, store unreadable)."""
    node = load_node(directory)
    store = open_store(node)
    try:
        where = find(store)
        if where is None:
            raise ReceiptError(f"{what} is not in {node.store_path}")
        return build_receipt(store, *where), where
    except StoreError as error:
        raise ReceiptError(str(error)) from None
    except sqlite3.Error as error:
        raise ReceiptError(f"{node.store_path}: unreadable: {error}") from None
    finally:
        store.close()


def trade_receipt(directory: Path, trade_id: int) -> dict[str, Any]:
    """The receipt of trade `trade_id` from the node's store. Raises `UsageError`,
    `ReceiptError` (unknown trade, block not certified)."""
    receipt, (height, index) = _stored_receipt(
        directory, f"trade {trade_id}", lambda store: find_trade(store, trade_id)
    )
    if trade_in(receipt["leaf"], trade_id) is None:
        raise ReceiptError(
            f"block {height}: the trades table puts trade {trade_id} at command {index}, whose "
            f"events are {orjson.dumps(receipt['leaf']['events']).decode()[:120]} "
            f"(run jinlian verify {directory})"
        )
    return {**receipt, "trade_id": trade_id}


def order_receipt(directory: Path, order_id: int) -> dict[str, Any]:
    """The receipt of the command that placed order `order_id` (its events say whether it was
    accepted, and what it traded at once), from the node's store. Raises `UsageError`,
    `ReceiptError` (unknown order, block not certified)."""
    receipt, (height, index) = _stored_receipt(
        directory, f"order {order_id}", lambda store: find_order(store, order_id)
    )
    if placing(receipt["command"], receipt["leaf"], order_id) is None:
        raise ReceiptError(
            f"block {height}: the orders table puts order {order_id}'s placing at command "
            f"{index}, which is {receipt['command'][:120]} (run jinlian verify {directory})"
        )
    return {**receipt, "order_id": order_id}


def placing(command: object, leaf: object, order_id: int) -> dict[str, Any] | None:
    """The first event about order `order_id` among a receipt leaf's events if the receipt's
    command (its JSON text) is the `place` of that order, else None."""
    try:
        value = orjson.loads(command) if isinstance(command, str) else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict) or value.get("type") != "place":
        return None
    if value.get("order_id") != order_id:
        return None
    events = leaf.get("events") if isinstance(leaf, dict) else None
    for event in events if isinstance(events, list) else ():
        if isinstance(event, dict) and event.get("order_id") == order_id:
            found: dict[str, Any] = event
            return found
    return None


def find_order(store: BlockStore, order_id: int) -> tuple[int, int] | None:
    """(height, command index) of the command that placed the order: from the `orders` table
    (its first row) if the store has an indexer, else (or above its watermark) by scanning
    the stored commands. Raises `StoreError`. O(log orders) when indexed, O(commands not
    indexed) otherwise."""

    def places(receipt: Receipt) -> bool:
        command = orjson.loads(receipt.command)
        return bool(command.get("type") == "place" and command.get("order_id") == order_id)

    return _find_receipt(
        store,
        "SELECT height, command_idx FROM orders WHERE order_id = ? "
        "ORDER BY height, event_idx LIMIT 1",
        order_id,
        places,
    )


def trade_in(leaf: object, trade_id: int) -> dict[str, Any] | None:
    """The `trade` event of `trade_id` among a receipt leaf's events, or None."""
    events = leaf.get("events") if isinstance(leaf, dict) else None
    for event in events if isinstance(events, list) else ():
        trade = isinstance(event, dict) and event.get("type") == "trade"
        if trade and event.get("trade_id") == trade_id:
            found: dict[str, Any] = event
            return found
    return None


def find_trade(store: BlockStore, trade_id: int) -> tuple[int, int] | None:
    """(height, command index) of the command whose receipt holds the trade: from the `trades`
    table if the store has an indexer, else (or above its watermark, which the table does not
    cover yet) by scanning the stored receipts. Raises `StoreError`. O(log trades) when
    indexed, O(events not indexed) otherwise."""

    def trades(receipt: Receipt) -> bool:
        for data in receipt.events:
            event = orjson.loads(data)
            if event.get("type") == "trade" and event.get("trade_id") == trade_id:
                return True
        return False

    return _find_receipt(
        store, "SELECT height, command_idx FROM trades WHERE trade_id = ?", trade_id, trades
    )


def _find_receipt(
    store: BlockStore, query: str, key: int, matches: Callable[[Receipt], bool]
) -> tuple[int, int] | None:
    """(height, command index) of the first stored command whose receipt `matches`: from the
    derived table (`query` on `key`) if the store has an indexer, else (or above its
    watermark, which the table does not cover yet) by scanning the stored receipts."""
    first = 1
    if store.indexer is not None:
        found = store.read(query, (key,))
        if found:
            return int(found[0][0]), int(found[0][1])
        first = store.indexed_height() + 1
    tip = store.tip()
    for height in range(first, 0 if tip is None else tip[0] + 1):
        for receipt in store.receipts(height) or []:
            if matches(receipt):
                return height, receipt.index
    return None


def verify_receipt_file(path: Path, genesis_path: Path) -> str | None:
    """None if the receipt in `path` proves a final trade (`trade_id`) or the placing of an
    order (`order_id`) under the genesis, else the first failure. Raises `UsageError` if a
    file cannot be read."""
    genesis = _load_genesis(genesis_path)
    receipt = _read_json(path, RECEIPT_BYTES_MAX)
    if not isinstance(receipt, dict):
        return f"{path}: a receipt is a JSON object"
    name = "order_id" if "order_id" in receipt and "trade_id" not in receipt else "trade_id"
    wanted = receipt.get(name)
    if type(wanted) is not int:
        return f"{name} {wanted!r:.80} is not an integer"
    try:
        leaf = check_receipt(
            receipt,
            genesis_hash=genesis.hash,
            voters=genesis.voters(),
            quorum=genesis.quorum(),
            other_fields=(name,),
        )
    except ReceiptError as error:
        return str(error)
    if name == "trade_id" and trade_in(leaf, wanted) is None:
        return f"leaf has no trade {wanted}: {orjson.dumps(leaf['events']).decode()[:120]}"
    if name == "order_id" and placing(receipt["command"], leaf, wanted) is None:
        return f"the command is not the placing of order {wanted}: {receipt['command'][:120]}"
    return None


def open_store(node: Node) -> BlockStore:
    """The node's block store with the venue's indexer. Raises `UsageError`."""
    if not node.store_path.is_file():
        raise UsageError(f"no block store at {node.store_path}")
    try:
        return BlockStore.open(node.store_path, node.genesis.hash, indexer=VenueIndexer())
    except (StoreError, sqlite3.Error) as error:
        raise UsageError(f"{node.store_path}: {error}") from None


def _load_genesis(path: Path) -> Genesis:
    try:
        return load_genesis(path)
    except (GenesisError, OSError) as error:
        raise UsageError(f"genesis: {error}") from None


def _read_json(path: Path, size_max: int) -> object:
    try:
        with path.open("rb") as file:
            data = file.read(size_max + 1)
    except OSError as error:
        raise UsageError(f"{path}: {error.strerror or error}") from None
    if len(data) > size_max:
        raise UsageError(f"{path}: larger than {size_max} bytes")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise UsageError(f"{path}: not JSON: {error}") from None


def receipt_bytes(receipt: dict[str, Any]) -> bytes:
    """The receipt file's bytes: indented JSON with sorted keys."""
    return orjson.dumps(receipt, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
