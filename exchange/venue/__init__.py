"""The venue core: the deterministic state machine every member runs.

`venue` (the `Venue`, composing matching and settlement with its funding rules), `types` (the
venue's own commands and events), `outcomes` (remembered outcomes), `commitment` (the
incremental state commitment that block headers sign), `machine` (the ledger's `StateMachine`
adapter), `wire` and `wire_fast` (the JSON vocabulary), `setup` (commands that set a venue up).
Pure: no clock, no randomness, no IO (tests/test_architecture.py).
"""
