"""One way in for the library and the notebooks: a member node's store or a `jinlian export`
directory, with DuckDB as the SQL engine over either.

`open_source(path)` takes `DIR/<member>` (a node: its SQLite store is read through
`tables.NodeLedger`) or an export directory (`OUT/<table>.parquet` written by `jinlian
export`). `Source.tables()` gives every table in its fixed schema (`schema.LEDGER_SCHEMAS`), the
same columns and dtypes from either; `Source.query(sql)` runs SQL with every table as a view and
returns a pandas frame. Over an export the views read the Parquet files themselves, so DuckDB
streams a ledger larger than memory and only the result is materialised; over a node they are
the loaded frames. What needs the stored blocks (the audit, re-execution, locks over time) needs
a node: `Source.ledger` is None for an export.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import duckdb
import pandas as pd
import pyarrow as pa

from exchange.analysis.schema import LEDGER_SCHEMAS, check_file, read_table
from exchange.analysis.tables import NodeLedger, Tables, arrow_frame, load


class SourceError(ValueError):
    """A path that is neither a node directory nor a complete export directory."""


@dataclass(kw_only=True)
class Source:
    """A node or an export; use as a context manager. `kind` is "node" or "export"."""

    path: Path
    kind: str
    ledger: NodeLedger | None = None
    _tables: Tables | None = field(default=None, repr=False)
    _connection: duckdb.DuckDBPyConnection | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    def tables(self) -> Tables:
        """Every table, loaded once (a node: from its store; an export: from its files)."""
        if self._tables is None:
            if self.ledger is not None:
                self._tables = load(self.ledger)
            else:
                # pyarrow reads the files exactly (DuckDB's TIMESTAMPTZ is in microseconds)
                self._tables = Tables(**{
                    name: arrow_frame(read_table(self.path / f"{name}.parquet", "ledger", name))
                    for name in LEDGER_SCHEMAS
                })  # fmt: skip
        return self._tables

    def connection(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with one view per table (for an export, over its files)."""
        if self._connection is None:
            connection = duckdb.connect()
            if self.ledger is None:
                for name in LEDGER_SCHEMAS:
                    path = str(self.path / f"{name}.parquet").replace("'", "''")
                    connection.execute(
                        f"CREATE VIEW \"{name}\" AS SELECT * FROM read_parquet('{path}')"
                    )
            else:
                for name, frame in self.tables().as_dict().items():
                    connection.register(name, frame)
            self._connection = connection
        return self._connection

    def query(self, sql: str, parameters: list[object] | None = None) -> pd.DataFrame:
        """The result of `sql` (DuckDB's dialect; tables by name: `trades`, `orders`, ...) as
        pandas, integers exact (int64, or nullable Int64 where a value is missing)."""
        table = self.connection().sql(sql, params=parameters or None).to_arrow_table()
        # DuckDB sums BIGINT as HUGEINT (a decimal of scale 0 in Arrow): back to int64, which
        # raises rather than wraps if a value does not fit
        columns = [
            column.cast(pa.int64())
            if pa.types.is_decimal(column.type) and column.type.scale == 0
            else column
            for column in table.columns
        ]
        return arrow_frame(pa.table(columns, names=table.column_names))

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        if self.ledger is not None:
            self.ledger.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def open_source(path: Path | str) -> Source:
    """A node directory (it has `node.json`) or an export directory (it has the export's
    files, each checked for its table and schema version). Raises SourceError naming the path
    and what is missing, schema.SchemaError for a file of another version, or
    `exchange.consortium.audit.UsageError` for a node that cannot be opened."""
    directory = Path(path)
    if (directory / "node.json").is_file():
        return Source(path=directory, kind="node", ledger=NodeLedger.open(directory))
    missing = [name for name in LEDGER_SCHEMAS if not (directory / f"{name}.parquet").is_file()]
    if len(missing) == len(LEDGER_SCHEMAS):
        raise SourceError(
            f"{directory}: neither a node directory (no node.json) nor a `jinlian export` "
            f"directory (no <table>.parquet files)"
        )
    if missing:
        raise SourceError(
            f"{directory}: the export lacks {', '.join(missing)} (.parquet): written by an "
            f"older `jinlian export`? re-export it"
        )
    for name in LEDGER_SCHEMAS:
        check_file(directory / f"{name}.parquet", "ledger", name)
    return Source(path=directory, kind="export")
