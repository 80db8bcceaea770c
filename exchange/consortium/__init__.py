"""The consortium: init, node and exchange processes, the indexer, verify, receipts, soak."""
