"""The shared ledger: canonical bytes, SHA-256, RFC 6962 Merkle trees, Ed25519 keys, blocks,
quorum certificates and the genesis file. Generic: it replicates commands for any deterministic
state machine and knows nothing of orders. Formats: docs/ledger.md."""
