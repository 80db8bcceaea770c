"""Inclusion receipts: one event of a final block, provable offline to anyone with the genesis.

A receipt carries the event (its JSON value; its canonical bytes are the leaf), the leaf index
and tree size, the RFC 6962 inclusion proof, the block header and the block's quorum
certificate. `check_receipt` needs only the genesis voters and quorum: the certificate's votes
sign the header hash, the header commits to the events root and event count, and the proof
leads from the leaf to that root. The format is in docs/ledger.md ("Receipts").
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Final

from ledger.block import HASH_BYTES, MalformedBlockError, check_certificate
from ledger.canonical import CanonicalError, canonical_bytes, parse_canonical
from ledger.keys import PublicKey
from ledger.merkle import MerkleTree, ProofError, check_inclusion, leaf_hash
from ledger.store import BlockStore, StoreCorruptError
from ledger.wire import parse_certificate, parse_header

RECEIPT_VERSION: Final = 1
PROOF_HASHES_MAX: Final = 64
FIELDS: Final = (
    "version",
    "genesis_hash",
    "header",
    "certificate",
    "leaf_index",
    "tree_size",
    "proof",
    "leaf",
)


class ReceiptError(Exception):
    """A receipt that cannot be built (no such block, not final yet) or does not verify."""


def build_receipt(store: BlockStore, height: int, leaf_index: int) -> dict[str, Any]:
    """The receipt of event `leaf_index` of the block at `height`. Raises `ReceiptError` if
    the block is not stored or not certified, or has no such event; `StoreCorruptError` naming
    the height if the stored header, certificate or events are corrupt (the events must hash
    to the header's events root, so no receipt is built from a changed byte).
    O(events of the block)."""
    header = store.header(height)
    events = store.events(height)
    if header is None or events is None:
        raise ReceiptError(f"no block at height {height} in {store.path}")
    certificate = store.certificate(height)
    if certificate is None:
        raise ReceiptError(
            f"block {height} is not certified yet (certified height "
            f"{store.certified_height()}): no receipt before it is final"
        )
    tree = MerkleTree.from_leaves(events)
    if tree.size != header.event_count or tree.root() != header.events_root:
        raise StoreCorruptError(
            height,
            f"events: {tree.size} events hashing to {tree.root().hex()}, not the header's "
            f"{header.event_count} events with events_root {header.events_root.hex()}",
        )
    if not 0 <= leaf_index < len(events):
        raise ReceiptError(f"block {height} has {len(events)} events, no event {leaf_index}")
    return {
        "version": RECEIPT_VERSION,
        "genesis_hash": store.genesis_hash.hex(),
        "header": header.to_dict(),
        "certificate": certificate.to_dict(),
        "leaf_index": leaf_index,
        "tree_size": tree.size,
        "proof": [node.hex() for node in tree.inclusion_proof(leaf_index)],
        "leaf": parse_canonical(events[leaf_index]),
    }


def check_receipt(
    receipt: Mapping[str, Any],
    *,
    genesis_hash: bytes,
    voters: Mapping[int, PublicKey],
    quorum: int,
    other_fields: Collection[str] = (),
) -> Any:
    """The receipt's event value if it proves that event final under this genesis; raises
    `ReceiptError` naming the first failure, in this order: the fields, the genesis hash, the
    certificate (for this header, a quorum of distinct voters, their signatures), the tree
    size against the header's event count, the inclusion proof against its events root.
    Besides `FIELDS` the receipt may carry only `other_fields` (the caller checks those, e.g.
    `trade_id`); any other field, at the top or inside the header, the certificate or its
    votes, is refused by name. O(votes + log events)."""
    missing = [name for name in FIELDS if name not in receipt]
    if missing:
        raise ReceiptError(f"receipt has no field {missing[0]!r}")
    unknown = sorted(
        str(name) for name in receipt if name not in FIELDS and name not in other_fields
    )
    if unknown:
        raise ReceiptError(f"receipt has an unknown field {unknown[0]!r:.80}")
    if receipt["version"] != RECEIPT_VERSION:
        raise ReceiptError(f"receipt version {receipt['version']!r}, expected {RECEIPT_VERSION}")
    claimed = _hex(receipt["genesis_hash"], "genesis_hash")
    if claimed != genesis_hash:
        raise ReceiptError(
            f"receipt of genesis {claimed.hex()}, not of this genesis {genesis_hash.hex()}"
        )
    header = parse_header(receipt["header"])
    if isinstance(header, MalformedBlockError):
        raise ReceiptError(f"header: {header}")
    certificate = parse_certificate(receipt["certificate"])
    if isinstance(certificate, MalformedBlockError):
        raise ReceiptError(f"certificate: {certificate}")
    error = check_certificate(certificate, header, voters, quorum)
    if error is not None:
        raise ReceiptError(f"certificate: {error}")
    index, size = (
        _count(receipt["leaf_index"], "leaf_index"),
        _count(receipt["tree_size"], "tree_size"),
    )
    if size != header.event_count:
        raise ReceiptError(f"tree_size {size} is not the header's event_count {header.event_count}")
    proof = receipt["proof"]
    if type(proof) is not list or len(proof) > PROOF_HASHES_MAX:
        raise ReceiptError(f"proof is not a list of at most {PROOF_HASHES_MAX} hashes")
    hashes = [_hex(node, f"proof[{position}]") for position, node in enumerate(proof)]
    try:
        leaf = canonical_bytes(receipt["leaf"])
        check_inclusion(leaf_hash(leaf), index, size, hashes, header.events_root)
    except CanonicalError as problem:
        raise ReceiptError(f"leaf: {problem}") from None
    except ProofError as problem:
        raise ReceiptError(f"block {header.height}: {problem}") from None
    return receipt["leaf"]


def _hex(value: object, name: str) -> bytes:
    if type(value) is not str or len(value) != 2 * HASH_BYTES or value != value.lower():
        raise ReceiptError(f"{name} {value!r:.80} is not {2 * HASH_BYTES} lowercase hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ReceiptError(f"{name} {value!r} is not hex") from None


def _count(value: object, name: str) -> int:
    if type(value) is not int or value < 0:
        raise ReceiptError(f"{name} {value!r:.80} is not a non-negative integer")
    return value
