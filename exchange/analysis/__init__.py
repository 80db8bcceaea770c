"""The analyst's library over a member node's ledger: what the notebooks in `notebooks/` call.

A member node's store (`ledger.store.BlockStore`, SQLite) holds the blocks, commands, events,
certificates and evidence, plus the venue's derived tables (`exchange.consortium.indexer`: orders,
trades, settlements, balance_changes). This package reads them into pandas DataFrames and
analyses them; it never writes to a store. Modules:

- `tables`: `NodeLedger.open(DIR/<member>)` and one loader per table (blocks, commands, orders
  and their lifecycle, trades, settlements, balances over time, fees, evidence, certificates).
- `export`: every table as Parquet (`jinlian export`), for DuckDB, pandas or polars users.
- `checks`: verification from a notebook, reusing `ledger.audit`, `ledger.receipt` and
  `exchange.consortium.audit` (chain, certificates, Merkle proofs of chosen trades, re-execution
  from the genesis reproducing the state hash); reconciliation of member nodes block by block;
  conservation of every asset; balances of the tables against the re-executed state.
- `market`: OHLCV bars, VWAP, the book rebuilt from order events (quotes and depth), quoted,
  effective and realized spreads, realized volatility, participant concentration (HHI).
- `post_trade`: DvP timing, locks over time, netting efficiency per cycle, fees and taxes,
  fails.
- `surveillance`: wash trades, spoofing and layering, marking the close; precision and recall
  against ground-truth labels.
- `supply_chain`: payment commitments as tables (participants, commitments and their lineage,
  transfers and financings, payments and failures, invoices) and the questions on them
  (outstanding by issuer and tier, financing costs, the maturity ladder, failures and recourse).

Quantities, prices (ticks) and cash (fen) stay integers in every table; only derived ratios
(spreads, volatility, shares of volume) are floats. pandas, pyarrow and matplotlib are needed
here and nowhere else in the packages, and nothing outside this package imports it except the
`jinlian export` command, lazily.
"""
