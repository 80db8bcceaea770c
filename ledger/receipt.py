"""Receipts: what one command of a final block did, provable offline to anyone with the genesis.

A receipt carries the command (the JSON text of its raw bytes), its leaf in the block's receipts
tree (`{"command_hash", "events", "index", "time_ns"}`: the command's position, its sequencing
time, SHA-256 of its bytes and the events it produced), the tree size, the RFC 6962 inclusion
proof, the block header and the block's quorum certificate. `check_receipt` needs only the
genesis voters and quorum: the certificate's votes sign the header hash, the header commits to
the receipts root and command count, the proof leads from the leaf to that root, and the
command hashes to the leaf's `command_hash`. So an order or a trade is proved together with the
command that caused it and its time. The format is in docs/ledger.md ("Receipts").
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from typing import Any, Final

from ledger.block import HASH_BYTES, MalformedBlockError, check_certificate
from ledger.canonical import CanonicalError, canonical_bytes, parse_canonical
from ledger.keys import PublicKey
from ledger.merkle import MerkleTree, ProofError, check_inclusion, leaf_hash
from ledger.store import BlockStore, StoreCorruptError
from ledger.wire import parse_certificate, parse_header

RECEIPT_VERSION: Final = 2
PROOF_HASHES_MAX: Final = 64
FIELDS: Final = (
    "version",
    "genesis_hash",
    "header",
    "certificate",
    "leaf_index",
    "tree_size",
    "proof",
    "command",
    "leaf",
)
LEAF_FIELDS: Final = ("command_hash", "events", "index", "time_ns")


class ReceiptError(Exception):
    """A receipt that cannot be built (no such block, not final yet) or does not verify."""


def build_receipt(store: BlockStore, height: int, index: int) -> dict[str, Any]:
    """The receipt of command `index` of the block at `height`. Raises `ReceiptError` if the
    block is not stored or not certified, or has no such command; `StoreCorruptError` naming
    the height if the stored header, certificate or blob is corrupt (the receipts must hash to
    the header's receipts root, so no receipt is built from a changed byte). O(block)."""
    header = store.header(height)
    receipts = store.receipts(height)
    if header is None or receipts is None:
        raise ReceiptError(f"no block at height {height} in {store.path}")
    certificate = store.certificate(height)
    if certificate is None:
        raise ReceiptError(
            f"block {height} is not certified yet (certified height "
            f"{store.certified_height()}): no receipt before it is final"
        )
    leaves = [receipt.leaf() for receipt in receipts]
    tree = MerkleTree.from_leaves(leaves)
    if tree.size != header.command_count or tree.root() != header.receipts_root:
        raise StoreCorruptError(
            height,
            f"receipts: {tree.size} receipts hashing to {tree.root().hex()}, not the header's "
            f"{header.command_count} with receipts_root {header.receipts_root.hex()}",
        )
    if not 0 <= index < len(receipts):
        raise ReceiptError(f"block {height} has {len(receipts)} commands, no command {index}")
    return {
        "version": RECEIPT_VERSION,
        "genesis_hash": store.genesis_hash.hex(),
        "header": header.to_dict(),
        "certificate": certificate.to_dict(),
        "leaf_index": index,
        "tree_size": tree.size,
        "proof": [node.hex() for node in tree.inclusion_proof(index)],
        "command": receipts[index].command.decode(),
        "leaf": parse_canonical(leaves[index]),
    }


def check_receipt(
    receipt: Mapping[str, Any],
    *,
    genesis_hash: bytes,
    voters: Mapping[int, PublicKey],
    quorum: int,
    other_fields: Collection[str] = (),
) -> dict[str, Any]:
    """The receipt's leaf (`{"command_hash", "events", "index", "time_ns"}`) if it proves that
    command and its events final under this genesis; raises `ReceiptError` naming the first
    failure, in this order: the fields, the genesis hash, the certificate (for this header, a
    quorum of distinct voters, their signatures), the tree size against the header's command
    count, the leaf's fields and index, the command against the leaf's `command_hash`, the
    inclusion proof against the receipts root. Besides `FIELDS` the receipt may carry only
    `other_fields` (the caller checks those, e.g. `trade_id`); any other field, at the top or
    inside the header, the certificate or its votes, is refused by name. O(votes + log
    commands + size of the leaf)."""
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
    if size != header.command_count:
        raise ReceiptError(
            f"tree_size {size} is not the header's command_count {header.command_count}"
        )
    leaf = _leaf(receipt["leaf"], index)
    command = receipt["command"]
    if type(command) is not str:
        raise ReceiptError(f"command {command!r:.80} is not a string")
    digest = hashlib.sha256(command.encode()).hexdigest()
    if digest != leaf["command_hash"]:
        raise ReceiptError(
            f"command hashes to {digest}, not the leaf's command_hash {leaf['command_hash']!r:.80}"
        )
    proof = receipt["proof"]
    if type(proof) is not list or len(proof) > PROOF_HASHES_MAX:
        raise ReceiptError(f"proof is not a list of at most {PROOF_HASHES_MAX} hashes")
    hashes = [_hex(node, f"proof[{position}]") for position, node in enumerate(proof)]
    try:
        check_inclusion(leaf_hash(canonical_bytes(leaf)), index, size, hashes, header.receipts_root)
    except CanonicalError as problem:
        raise ReceiptError(f"leaf: {problem}") from None
    except ProofError as problem:
        raise ReceiptError(f"block {header.height}: {problem}") from None
    return leaf


def _leaf(value: object, index: int) -> dict[str, Any]:
    """The leaf object, its fields checked: what the proof and the command hash are over."""
    if type(value) is not dict:
        raise ReceiptError(f"leaf {value!r:.80} is not an object")
    if sorted(value) != list(LEAF_FIELDS):
        raise ReceiptError(
            f"leaf fields {sorted(map(str, value))!r:.120}, expected {list(LEAF_FIELDS)}"
        )
    if value["index"] != index or type(value["index"]) is not int:
        raise ReceiptError(f"leaf index {value['index']!r:.80} is not leaf_index {index}")
    _count(value["time_ns"], "leaf.time_ns")
    _hex(value["command_hash"], "leaf.command_hash")
    if type(value["events"]) is not list:
        raise ReceiptError(f"leaf.events {value['events']!r:.80} is not a list")
    return value


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
