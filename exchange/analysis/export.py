"""`jinlian export DIR/<member> --out OUT`: every table of a node as Parquet files.

One file per table of `tables.load` (`OUT/blocks.parquet`, `OUT/trades.parquet`, ...), each in
its fixed schema (`schema.LEDGER_SCHEMAS`) with the schema version and the table's name in its
metadata, so DuckDB (`SELECT * FROM 'OUT/trades.parquet'`), pandas or polars read them without
this package, and `source.open_source(OUT)` reads them back as the node's tables. Integer
columns stay 64-bit integers (nullable where the ledger leaves a value NULL); times are UTC
epoch nanoseconds (`time_ns`) beside a UTC timestamp (`time`). Files are written to a temporary
name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from exchange.analysis.schema import write_table
from exchange.analysis.tables import NodeLedger, load


def export_node(directory: Path, out: Path) -> dict[str, int]:
    """Write every table of the node at `directory` to `out/<table>.parquet` (creating `out`)
    and return table -> rows. Raises `exchange.consortium.audit.UsageError` for a node that cannot
    be opened, `OSError` if `out` cannot be written."""
    with NodeLedger.open(directory) as ledger:
        tables = load(ledger).as_dict()
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for name, frame in tables.items():
        table = pa.Table.from_pandas(frame, preserve_index=False)
        write_table(table, out / f"{name}.parquet", "ledger", name)
        counts[name] = len(frame)
    return counts
