"""Fixed Parquet schemas, with a version in each file's metadata, for every table the project
writes: the ledger's tables (`jinlian export`) and the simulator's own outputs.

A table's schema is fixed by the table, not by its content: an empty column is written with its
real type (never Arrow `null`), an integer column with missing values stays `int64`, and every
time is UTC epoch nanoseconds twice, `time_ns` (`int64`, exact, for joins) and `time`
(`timestamp[ns, tz=UTC]`). Each file carries `jinlian.table` (`ledger.trades`,
`simulator.orders`, ...) and `jinlian.schema_version` in its Parquet key-value metadata;
`check_file` refuses a file whose version is not `SCHEMA_VERSION` (an older file names its
version and how to rewrite it) or that holds another table than the one asked for.

Only pyarrow is imported here, so the simulator writes its files with the same schemas.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.parquet as pq

# 1: `jinlian export` and the simulator before versions (no metadata; simulator times counted
# from the start of the virtual day). 2: fixed schemas, epoch times with a timestamp column.
# A new table (the supply chain's) leaves the version: each file's own schema is unchanged, and
# `source.open_source` names the files an older export lacks.
SCHEMA_VERSION: Final = 2
VERSION_KEY: Final = b"jinlian.schema_version"
TABLE_KEY: Final = b"jinlian.table"

TIMESTAMP: Final = pa.timestamp("ns", tz="UTC")
_TYPES: Final = {
    "i": pa.int64(),
    "s": pa.string(),
    "b": pa.bool_(),
    "t": TIMESTAMP,
    "f": pa.float64(),
    "ls": pa.list_(pa.string()),
}


class SchemaError(ValueError):
    """A Parquet file that is not the table, or not the schema version, a reader expects."""


def _schema(spec: str) -> pa.Schema:
    """`"height:i hash:s ..."` as a schema: i int64, s string, b bool, t timestamp, f float64,
    ls list of strings."""
    fields = []
    for item in spec.split():
        name, code = item.split(":")
        fields.append(pa.field(name, _TYPES[code]))
    return pa.schema(fields)


_BLOCK_TIME = "time_ns:i time:t"
LEDGER_SCHEMAS: Final[dict[str, pa.Schema]] = {
    "blocks": _schema(
        "height:i hash:s parent_hash:s time_ns:i command_count:i commands_root:s "
        "receipts_root:s state_hash:s proposer:i votes:i certified:b time:t"
    ),
    "certificates": _schema("height:i header_hash:s member:i member_name:s signature:s"),
    "commands": _schema(
        "height:i idx:i time_ns:i type:s broker:s order_id:i account:s symbol:s side:s kind:s "
        "price:i quantity:i data:s time:t"
    ),
    "orders": _schema(
        "height:i event_idx:i event:s order_id:i broker:s account:s symbol:s side:s kind:s "
        f"price:i quantity:i remaining:i tif:s reason:s command_idx:i {_BLOCK_TIME}"
    ),
    "order_lifecycle": _schema(
        "order_id:i broker:s account:s symbol:s side:s kind:s tif:s price:i quantity:i "
        "accepted_height:i accepted_event_idx:i accepted_time_ns:i last_time_ns:i "
        "reject_reason:s filled:i cancelled:i expired:i open:i amends:i status:s "
        "accepted_time:t last_time:t"
    ),
    "trades": _schema(
        "trade_id:i height:i event_idx:i symbol:s price:i quantity:i buy_order_id:i "
        f"sell_order_id:i buy_account:s sell_account:s aggressor:s command_idx:i {_BLOCK_TIME} "
        "notional:i buy_broker:s sell_broker:s"
    ),
    "settlements": _schema(
        "height:i event_idx:i event:s trade_id:i cycle_id:i asset:s currency:s mode:s price:i "
        "quantity:i buyer:s seller:s buyer_cash:i seller_cash:i commission:i stamp_duty:i "
        f"account:s amount:i command_idx:i {_BLOCK_TIME}"
    ),
    "balance_changes": _schema(
        "height:i event_idx:i leg:i account:s asset:s holding_delta:i available_delta:i "
        f"locked_delta:i event:s trade_id:i command_idx:i {_BLOCK_TIME}"
    ),
    "holding_changes": _schema(
        "height:i event_idx:i leg:i account:s asset:s holding_delta:i available_delta:i "
        f"locked_delta:i event:s trade_id:i command_idx:i {_BLOCK_TIME}"
    ),
    "balances": _schema(
        "height:i event_idx:i leg:i account:s asset:s holding_delta:i available_delta:i "
        f"locked_delta:i event:s trade_id:i command_idx:i {_BLOCK_TIME} holding:i"
    ),
    "fees": _schema(
        f"height:i event_idx:i {_BLOCK_TIME} event:s trade_id:i asset:s currency:s mode:s "
        "price:i quantity:i buyer:s seller:s commission:i stamp_duty:i buyer_broker:s "
        "seller_broker:s notional:i fees_total:i buyer_fees:i seller_fees:i"
    ),
    "auctions": _schema(
        f"height:i event_idx:i command_idx:i {_BLOCK_TIME} symbol:s phase:s price:i volume:i "
        "imbalance:i imbalance_side:s"
    ),
    "accounts": _schema("account:s broker:s"),
    "instruments": _schema(
        "symbol:s reference_price:i tick_size:i lot:i price_limit_pct:i settlement:s t_plus:i "
        "commission_bps:i stamp_duty_bps:i"
    ),
    "evidence": _schema("seq:i id:s height:i kind:s data:s"),
    "days": _schema(f"day:i height:i event_idx:i command_idx:i {_BLOCK_TIME}"),
    "participants": _schema(
        "participant:s bank:s role:s credit_limit:i height:i event_idx:i command_idx:i day:i "
        f"{_BLOCK_TIME}"
    ),
    "commitments": _schema(
        "piece:i root:i parent:i depth:i tier:i issuer:s holder:s holder_role:s amount:i "
        "currency:s maturity:i invoice:s recourse:b confirmed:b pledged:b pledgee:s status:s "
        "transfers:i paid:i recovered:i recovered_from:s height:i event_idx:i command_idx:i "
        f"day:i {_BLOCK_TIME} settled_height:i settled_time_ns:i settled_time:t"
    ),
    "commitment_transfers": _schema(
        "height:i event_idx:i command_idx:i day:i piece:i kind:s transferor:s holder:s "
        "factor:s recourse:b amount:i currency:s issuer:s maturity:i price:i discount:i days:i "
        f"{_BLOCK_TIME}"
    ),
    "commitment_payments": _schema(
        "height:i event_idx:i command_idx:i day:i event:s piece:i issuer:s holder:s payer:s "
        "amount:i moved:i currency:s maturity:i due:i available:i transferors:ls reason:s "
        f"{_BLOCK_TIME}"
    ),
    "invoices": _schema(
        "key_hash:s content_hash:s seller:s buyer:s amount:i confirmed:b piece:i height:i "
        f"event_idx:i command_idx:i day:i {_BLOCK_TIME}"
    ),
}

SIMULATOR_SCHEMAS: Final[dict[str, pa.Schema]] = {
    "orders": _schema(
        "time_ns:i order_id:i agent_id:i action:s account:s symbol:s side:s price:i "
        "quantity:i ioc:b outcome:s tif:s post_only:b exchange_order_id:i latency_us:i time:t"
    ),
    "trades": _schema(
        "trade_id:i time_ns:i height:i symbol:s price:i quantity:i buy_order_id:i "
        "sell_order_id:i buy_account:s sell_account:s buy_agent_id:i sell_agent_id:i "
        "aggressor:s time:t"
    ),
    "labels": _schema(
        "time_ns:i agent_id:i label:s role:s order_id:i client_order_id:i symbol:s time:t"
    ),
    "agents": _schema("agent_id:i name:s kind:s broker:s accounts:ls"),
}

SCHEMAS: Final[dict[str, dict[str, pa.Schema]]] = {
    "ledger": LEDGER_SCHEMAS,
    "simulator": SIMULATOR_SCHEMAS,
}


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns, in its order and types: a column the table
    lacks is added as nulls of its type. Raises SchemaError naming a column the schema does not
    have or cannot be cast to its type (a table's columns are the schema's, not the data's)."""
    extra = [name for name in table.column_names if name not in schema.names]
    if extra:
        raise SchemaError(f"columns {extra} are not in the schema ({', '.join(schema.names)})")
    columns = []
    for field in schema:
        column = table.column(field.name) if field.name in table.column_names else None
        if column is None or column.null_count == len(column):
            # absent, empty or all missing: its type is the schema's, whatever pandas inferred
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        try:
            columns.append(column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise SchemaError(
                f"column {field.name!r} of type {column.type} is not {field.type}: {error}"
            ) from error
    return pa.Table.from_arrays(columns, schema=schema)


def write_table(table: pa.Table, path: Path, source: str, name: str) -> None:
    """Write `table` to `path` as the `source.name` table (`ledger.trades`), conformed to its
    schema when `name` has one, with the version metadata; written under a temporary name and
    renamed, so a reader never sees half a file."""
    schema = SCHEMAS[source].get(name)
    if schema is not None:
        table = conform(table, schema)
    metadata = dict(table.schema.metadata or {})
    metadata.pop(b"pandas", None)  # the pandas index metadata describes no fixed schema
    metadata[VERSION_KEY] = str(SCHEMA_VERSION).encode()
    metadata[TABLE_KEY] = f"{source}.{name}".encode()
    partial = path.with_name(f".{path.name}.partial")
    pq.write_table(table.replace_schema_metadata(metadata), partial)
    partial.replace(path)


def check_file(path: Path, source: str, name: str) -> None:
    """Refuse `path` unless it is the `source.name` table at `SCHEMA_VERSION`. Reads only the
    footer. Raises SchemaError naming the file, what it holds and what was expected, or
    FileNotFoundError."""
    metadata = pq.read_schema(path).metadata or {}
    found = metadata.get(VERSION_KEY)
    if found is None:
        raise SchemaError(
            f"{path}: schema version 1 (no {VERSION_KEY.decode()} in its metadata: written "
            f"before versions, with times counted from the start of the virtual day), this "
            f"reader needs version {SCHEMA_VERSION}: re-export it (`jinlian export`) or re-run "
            f"the simulation"
        )
    version = int(found)
    if version != SCHEMA_VERSION:
        older = "older" if version < SCHEMA_VERSION else "newer"
        raise SchemaError(
            f"{path}: schema version {version} is {older} than this reader's "
            f"{SCHEMA_VERSION}: re-export it with this version of `jinlian export` (or re-run "
            f"the simulation)"
        )
    table = metadata.get(TABLE_KEY, b"").decode()
    if table != f"{source}.{name}":
        raise SchemaError(f"{path}: holds the table {table!r}, not {source}.{name}")


def read_table(path: Path, source: str, name: str) -> pa.Table:
    """The `source.name` table at `path`, after `check_file`."""
    check_file(path, source, name)
    return pq.read_table(path)
