"""Merkle tree hashes, inclusion proofs and consistency proofs of RFC 6962 / RFC 9162.

Definitions (RFC 9162, section 2.1.1), for a list D[n] of n byte strings:

- MTH({}) = SHA-256() (the empty tree);
- MTH({d0}) = SHA-256(0x00 || d0) (a leaf);
- MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])) for n > 1, where k is the largest
  power of two smaller than n.

The prefixes keep a leaf from ever being read as an inner node. Proofs are lists of 32-byte
hashes ordered from the leaf (or the old tree) upward, exactly as the RFC's PATH and PROOF
produce them, so any standard verifier, such as Certificate Transparency's, checks them.

`MerkleTree` keeps every level of the tree it was built from, so each proof is O(log n)
lookups; a proof for an older, smaller tree size adds at most O(log n) hashes per step along
its right edge. The verifiers are written from RFC 9162 sections 2.1.3.2 and 2.1.4.2 and are
independent of the tree: they need only the hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Final

HASH_BYTES: Final = 32
LEAF_PREFIX: Final = b"\x00"
NODE_PREFIX: Final = b"\x01"
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()
PROOF_HASHES_MAX: Final = 64  # a tree of up to 2**64 leaves; a longer proof is refused

_sha256 = hashlib.sha256


class ProofError(ValueError):
    """A proof, or the sizes and hashes it is checked against, is not valid."""


def leaf_hash(leaf: bytes) -> bytes:
    """SHA-256(0x00 || leaf). O(len(leaf))."""
    return _sha256(LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right). O(1)."""
    return _sha256(NODE_PREFIX + left + right).digest()


def split_size(size: int) -> int:
    """The RFC's k: the largest power of two smaller than `size`. Requires size >= 2."""
    assert size >= 2, f"no split for a tree of size {size}"
    return 1 << ((size - 1).bit_length() - 1)


def merkle_root(leaves: Iterable[bytes]) -> bytes:
    """MTH of the leaves (raw data, hashed here with the leaf prefix). O(n) time and memory."""
    return root_of_leaf_hashes([leaf_hash(leaf) for leaf in leaves])


def root_of_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH of a tree whose leaf hashes are given. O(n) time and memory."""
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    while len(level) > 1:
        level = _parent_level(level)
    return level[0]


def _parent_level(level: list[bytes]) -> list[bytes]:
    """Hash pairs; an odd last node moves up unchanged.

    Building bottom-up this way gives the RFC's tree: a right edge of r nodes at level j is
    split at the largest power of two below r, which is what the recursive definition does.
    """
    sha256 = _sha256
    prefix = NODE_PREFIX
    parents = [
        sha256(prefix + level[index] + level[index + 1]).digest()
        for index in range(0, len(level) - 1, 2)
    ]
    if len(level) % 2:
        parents.append(level[-1])
    return parents


class MerkleTree:
    """An immutable Merkle tree over a list of leaves, keeping every level for fast proofs.

    Memory: about 2n hashes. Building: O(n) hashes (about 100,000 leaves in a fraction of a
    second). `levels[j][i]` is the hash of leaves [i * 2**j, min((i + 1) * 2**j, size)).
    """

    __slots__ = ("_levels", "_size")

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        """A tree over the given leaf hashes (see `from_leaves` for raw data). O(n)."""
        level = list(leaf_hashes)
        assert all(len(hash_) == HASH_BYTES for hash_ in level), "leaf hash of the wrong size"
        self._size = len(level)
        self._levels = [level]
        while len(level) > 1:
            level = _parent_level(level)
            self._levels.append(level)

    @classmethod
    def from_leaves(cls, leaves: Iterable[bytes]) -> MerkleTree:
        """A tree over raw leaf data, each hashed with the leaf prefix. O(n)."""
        return cls([leaf_hash(leaf) for leaf in leaves])

    @property
    def size(self) -> int:
        return self._size

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first `size` leaves (all by default). O(1) for the whole tree, O(log n)
        otherwise. Raises `ProofError` if size is negative or larger than the tree."""
        size = self._size if size is None else size
        self._check_size(size, "size")
        return self._range_hash(0, size)

    def leaf_hash(self, index: int) -> bytes:
        """The stored hash of leaf `index`. Raises `ProofError` if there is no such leaf."""
        if not 0 <= index < self._size:
            raise ProofError(f"leaf index {index} is not in a tree of size {self._size}")
        return self._levels[0][index]

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]): the audit path of leaf `index` in the tree of its first `size`
        leaves (all by default), leaf end first. O(log n) for the whole tree, O(log^2 n) for an
        older size at worst. Raises `ProofError` unless 0 <= index < size <= self.size."""
        size = self._size if size is None else size
        self._check_size(size, "size")
        if not 0 <= index < size:
            raise ProofError(f"leaf index {index} is not in a tree of size {size}")
        proof: list[bytes] = []
        start, end = 0, size
        while end - start > 1:  # walk down from the root, taking the sibling of each step
            middle = start + split_size(end - start)
            if index < middle:
                proof.append(self._range_hash(middle, end))
                end = middle
            else:
                proof.append(self._range_hash(start, middle))
                start = middle
        proof.reverse()
        return proof

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """PROOF(size1, D[size2]) of RFC 9162 section 2.1.4.1, oldest subtree first.

        Empty when size1 is 0 or equals size2 (the RFC defines proofs for 0 < size1 < size2;
        `verify_consistency` treats the two edge cases explicitly). O(log^2 n) at worst.
        Raises `ProofError` unless 0 <= size1 <= size2 <= self.size.
        """
        size2 = self._size if size2 is None else size2
        self._check_size(size2, "size2")
        if not 0 <= size1 <= size2:
            raise ProofError(f"size1 {size1} is not in [0, size2 {size2}]")
        if size1 in (0, size2):
            return []
        proof: list[bytes] = []
        old, start, end = size1, 0, size2
        whole = True  # SUBPROOF's b: the old tree is still a whole subtree of the left edge
        while old != end - start:
            middle = start + split_size(end - start)
            if old <= middle - start:
                proof.append(self._range_hash(middle, end))
                end = middle
            else:
                proof.append(self._range_hash(start, middle))
                old -= middle - start
                start = middle
                whole = False
        if not whole:
            proof.append(self._range_hash(start, end))
        proof.reverse()
        return proof

    def check(self) -> None:
        """Assert every structural invariant: each node is the hash of its children. O(n)."""
        assert len(self._levels[0]) == self._size
        for depth in range(1, len(self._levels)):
            assert self._levels[depth] == _parent_level(self._levels[depth - 1])
        assert len(self._levels[-1]) <= 1

    def _check_size(self, size: int, name: str) -> None:
        if not 0 <= size <= self._size:
            raise ProofError(f"{name} {size} is not in [0, tree size {self._size}]")

    def _range_hash(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a range the RFC recursion produces (start is a multiple of the
        largest power of two not above end - start). A stored node when the range is one,
        otherwise split as the RFC splits. O(log n)."""
        count = end - start
        if count == 0:
            return EMPTY_ROOT
        depth = (count - 1).bit_length()  # the level whose nodes span at least `count` leaves
        if (
            depth < len(self._levels)
            and start % (1 << depth) == 0
            and end == min(start + (1 << depth), self._size)
        ):
            return self._levels[depth][start >> depth]
        middle = start + split_size(count)
        return node_hash(self._range_hash(start, middle), self._range_hash(middle, end))


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """The root that an inclusion proof leads to (RFC 9162 section 2.1.3.2, steps 1 to 4).

    Raises `ProofError` naming the problem when index is not below size, a hash is not 32
    bytes, or the proof has too many or too few hashes for that index and size. O(log n).
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    _check_hashes(proof, leaf_hash)
    fn, sn = index, size - 1
    result = leaf_hash
    for position, sibling in enumerate(proof):
        if sn == 0:
            raise ProofError(
                f"proof has {len(proof)} hashes, more than the {position} that leaf {index} "
                f"of a tree of size {size} needs"
            )
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(
            f"proof has {len(proof)} hashes, too few for leaf {index} of a tree of size {size}"
        )
    return result


def check_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise `ProofError` unless `proof` shows that leaf `index` of the tree of `size` leaves
    with this `root` has this `leaf_hash`. O(log n)."""
    computed = root_from_inclusion_proof(leaf_hash, index, size, proof)
    if computed != root:
        raise ProofError(
            f"inclusion proof of leaf {index} in size {size} leads to root {computed.hex()}, "
            f"not {root.hex()}"
        )


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """`check_inclusion` as a boolean: never raises. O(log n)."""
    try:
        check_inclusion(leaf_hash, index, size, proof, root)
    except ProofError:
        return False
    return True


def check_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """Raise `ProofError` unless `proof` shows that the tree of size1 leaves with `root1` is a
    prefix of the tree of size2 leaves with `root2` (RFC 9162 section 2.1.4.2). O(log n).

    Edge cases the RFC leaves to the caller: size1 == size2 needs an empty proof and equal
    roots; size1 == 0 needs an empty proof and root1 equal to the empty-tree root.
    """
    if not 0 <= size1 <= size2:
        raise ProofError(f"size1 {size1} is not in [0, size2 {size2}]")
    _check_hashes(proof, root1, root2)
    if size1 in (0, size2):
        _check_trivial_consistency(size1, size2, root1, root2, proof)
        return
    if not proof:
        raise ProofError(f"empty consistency proof from size {size1} to {size2}")
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # the old tree is a whole subtree: its root starts the path
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    old_root = new_root = path[0]
    for position, sibling in enumerate(path[1:], start=1):
        if sn == 0:
            raise ProofError(
                f"consistency proof from {size1} to {size2} has hashes left over at {position}"
            )
        if fn & 1 or fn == sn:
            old_root = node_hash(sibling, old_root)
            new_root = node_hash(sibling, new_root)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            new_root = node_hash(new_root, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"consistency proof from {size1} to {size2} has too few hashes")
    if old_root != root1:
        raise ProofError(f"consistency proof leads to old root {old_root.hex()}, not {root1.hex()}")
    if new_root != root2:
        raise ProofError(f"consistency proof leads to new root {new_root.hex()}, not {root2.hex()}")


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> bool:
    """`check_consistency` as a boolean: never raises. O(log n)."""
    try:
        check_consistency(size1, size2, root1, root2, proof)
    except ProofError:
        return False
    return True


def _check_trivial_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    if proof:
        raise ProofError(f"consistency proof from {size1} to {size2} must be empty")
    if size1 == 0 and root1 != EMPTY_ROOT:
        raise ProofError(f"root {root1.hex()} of size 0 is not the empty-tree root")
    if size1 == size2 and root1 != root2:
        raise ProofError(f"roots {root1.hex()} and {root2.hex()} differ at one size {size1}")


def _check_hashes(proof: Sequence[bytes], *hashes: bytes) -> None:
    if len(proof) > PROOF_HASHES_MAX:
        raise ProofError(f"proof has {len(proof)} hashes, more than {PROOF_HASHES_MAX}")
    for position, hash_ in enumerate(proof):
        if len(hash_) != HASH_BYTES:
            raise ProofError(f"proof hash {position} has {len(hash_)} bytes, not {HASH_BYTES}")
    for hash_ in hashes:
        if len(hash_) != HASH_BYTES:
            shown = hash_[:HASH_BYTES].hex() + ("..." if len(hash_) > HASH_BYTES else "")
            raise ProofError(f"hash {shown!r} has {len(hash_)} bytes, not {HASH_BYTES}")
