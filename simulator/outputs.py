"""The simulator's own Parquet files (orders, trades, labels, agents), in the fixed schemas of
`exchange.analysis.schema.SIMULATOR_SCHEMAS` with its version in their metadata.

The simulation runs on a virtual clock that counts from the start of the trading day; the files
state real times, as the ledger does: `time_ns` is UTC epoch nanoseconds (the scenario's trading
day's start, `inprocess.day_start_ns`, plus the virtual time) and `time` the same instant as a
UTC timestamp. Labels name the exchange's order id (`order_id`, what the ledger holds) and the
agent's own (`client_order_id`): the same number in process, the id the exchange assigned in
network mode (from the orders table's `exchange_order_id`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy
import pyarrow as pa
import pyarrow.compute as pc

from exchange.analysis.schema import SIMULATOR_SCHEMAS, TIMESTAMP, conform, write_table

DayStarts = Sequence[tuple[int, int, int]]  # (virtual start ns, epoch start ns, date) by day


def day_starts(tables: dict[str, pa.Table], start_ns: int) -> list[tuple[int, int, int]]:
    """Where each trading day of the run starts, in virtual and in epoch ns, with its date:
    from its `days` table (a multi-day run's days sit apart on the calendar), else one day at
    `start_ns` (date 0: any)."""
    days = tables.get("days")
    if days is None or days.num_rows == 0:
        return [(0, start_ns, 0)]
    virtual = days.column("start_ns").to_pylist()
    epoch = days.column("start_epoch_ns").to_pylist()
    dates = days.column("day").to_pylist()
    return sorted(zip(virtual, epoch, dates, strict=True))


def epoch_times(table: pa.Table, start_ns: int | DayStarts) -> pa.Table:
    """`table` with `time_ns` moved from virtual to epoch nanoseconds and a `time` timestamp
    column (a table without `time_ns` is returned as it is). `start_ns`: the epoch of virtual
    time 0, or each day's (virtual start, epoch start, date): a time is moved by its day's,
    which is the row's `day` if the table has that column (a day's end, when its positions
    and cycle are recorded, is also the next day's virtual start), else the day it falls in."""
    if "time_ns" not in table.column_names:
        return table
    starts = [(0, start_ns, 0)] if isinstance(start_ns, int) else list(start_ns)
    virtual = table.column("time_ns").cast(pa.int64()).to_numpy(zero_copy_only=False)
    firsts = numpy.array([first for first, _, _ in starts], dtype=numpy.int64)
    shifts = numpy.array([epoch - first for first, epoch, _ in starts], dtype=numpy.int64)
    dates = [date for _, _, date in starts]
    if "day" in table.column_names and len(starts) > 1:
        index = pc.index_in(table.column("day"), value_set=pa.array(dates, pa.int64()))
        day = index.fill_null(0).to_numpy(zero_copy_only=False)
    else:
        day = numpy.maximum(numpy.searchsorted(firsts, virtual, side="right") - 1, 0)
    epoch = pa.array(virtual + shifts[day], pa.int64())
    table = table.set_column(table.column_names.index("time_ns"), "time_ns", epoch)
    return table.append_column("time", epoch.cast(TIMESTAMP))


def exchange_labels(labels: pa.Table, orders: pa.Table) -> pa.Table:
    """`labels` whose `order_id` is the exchange's, the agent's kept as `client_order_id`. In
    network mode the orders table maps each placed order to its `exchange_order_id` (a label
    of an order the exchange never acknowledged keeps a null id); in process they are one."""
    client = labels.column("order_id")
    if "exchange_order_id" not in orders.column_names:
        return labels.append_column("client_order_id", client)
    places = orders.filter(pc.equal(orders.column("action"), "place"))
    index = pc.index_in(client, value_set=places.column("order_id"))
    exchange = pc.take(places.column("exchange_order_id"), index)
    labels = labels.set_column(labels.column_names.index("order_id"), "order_id", exchange)
    return labels.append_column("client_order_id", client)


def write_tables(tables: dict[str, pa.Table], directory: Path, start_ns: int) -> None:
    """Write every table of `as_written` as `directory/<name>.parquet`."""
    for name, table in as_written(tables, start_ns).items():
        write_table(table, directory / f"{name}.parquet", "simulator", name)


def as_written(tables: dict[str, pa.Table], start_ns: int) -> dict[str, pa.Table]:
    """The run's tables as the files hold them: times in epoch ns (`start_ns` is the first
    trading day's start; a multi-day run's `days` table places each later day on its date),
    labels with the exchange's order ids, each in its fixed schema."""
    written = dict(tables)
    orders = written.get("orders")
    if orders is not None and "exchange_order_id" not in orders.column_names:
        # in process the venue is sent the agent's id: a placed order's exchange id is its own
        placed = pc.equal(orders.column("action"), "place")
        own = pc.if_else(placed, orders.column("order_id"), pa.scalar(None, pa.int64()))
        written["orders"] = orders.append_column("exchange_order_id", own)
    if "labels" in written and "orders" in written:
        written["labels"] = exchange_labels(written["labels"], written["orders"])
    schemas = SIMULATOR_SCHEMAS
    starts = day_starts(tables, start_ns)
    return {
        name: conform(epoch_times(table, starts), schemas[name])
        if name in schemas
        else epoch_times(table, starts)
        for name, table in written.items()
    }
