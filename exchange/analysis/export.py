"""`jinlian export DIR/<member> --out OUT`: every table of a node as Parquet files.

One file per table of `tables.load` (`OUT/blocks.parquet`, `OUT/trades.parquet`, ...), written
with pyarrow, so DuckDB (`SELECT * FROM 'OUT/trades.parquet'`), pandas or polars read them
without this package. Integer columns stay 64-bit integers (nullable where the ledger leaves a
value NULL); times are UTC timestamps in nanoseconds beside the raw `time_ns`. Files are
written to a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

from pathlib import Path

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
        target = out / f"{name}.parquet"
        partial = out / f".{name}.parquet.partial"
        frame.to_parquet(partial, engine="pyarrow", index=False)
        partial.replace(target)
        counts[name] = len(frame)
    return counts
