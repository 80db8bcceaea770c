"""Ed25519 keys: generate, sign, verify, and store as PEM files.

A private key is stored as unencrypted PKCS#8 PEM in a file of mode 0600 that this module
creates and never overwrites; loading refuses a file that group or others may read, as ssh
does. A public key is stored as SubjectPublicKeyInfo PEM, and written in genesis files as the
64 lowercase hex digits of its 32 raw bytes.

Errors: malformed key material (hex, length, PEM, another algorithm, an encrypted key) raises
`KeyFormatError` naming the value or file; a private key file that is too open raises
`InsecureKeyFileError`. A bad signature is never an error: `verify` returns False.
Cost: signing and verifying are each tens of microseconds (see docs/ledger.md).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PUBLIC_KEY_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64
PRIVATE_FILE_MODE: Final = 0o600
PEM_BYTES_MAX: Final = 4096


class KeyFormatError(ValueError):
    """Key material that is not an Ed25519 key in the expected form."""


class InsecureKeyFileError(PermissionError):
    """A private key file that group or others may read or write."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PublicKey:
    """An Ed25519 public key: 32 raw bytes. Equality and hashing use the bytes.

    Construct from untrusted text with `public_key_from_hex`; the constructor raises
    `KeyFormatError` if `raw` is not 32 bytes.
    """

    raw: bytes
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if type(self.raw) is not bytes or len(self.raw) != PUBLIC_KEY_BYTES:
            raise KeyFormatError(
                f"public key {self.raw!r} is not {PUBLIC_KEY_BYTES} bytes of Ed25519 key"
            )
        object.__setattr__(self, "_key", Ed25519PublicKey.from_public_bytes(self.raw))

    def __repr__(self) -> str:
        return f"PublicKey({self.raw.hex()})"

    def hex(self) -> str:
        """The 64 lowercase hex digits written in genesis files."""
        return self.raw.hex()

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True if `signature` is this key's signature of `message`. Never raises on a bad or
        malformed signature. O(len(message))."""
        if len(signature) != SIGNATURE_BYTES:
            return False
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def to_pem(self) -> bytes:
        """SubjectPublicKeyInfo PEM."""
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PrivateKey:
    """An Ed25519 private key. Its repr never shows the secret."""

    key: Ed25519PrivateKey = field(repr=False)
    public_key: PublicKey = field(init=False)

    def __post_init__(self) -> None:
        raw = self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        object.__setattr__(self, "public_key", PublicKey(raw=raw))

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `message`. Deterministic. O(len(message))."""
        return self.key.sign(message)

    def to_pem(self) -> bytes:
        """Unencrypted PKCS#8 PEM: the secret itself, to be written only by `save_private_key`."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def generate_private_key() -> PrivateKey:
    """A new random private key, from the operating system's secure random source."""
    return PrivateKey(key=Ed25519PrivateKey.generate())


def private_key_from_bytes(raw: bytes) -> PrivateKey:
    """The private key whose 32-byte Ed25519 seed is `raw`. For keys derived on purpose from a
    known secret (the simulator derives its consortium's keys from the run's seed, so that a
    rerun signs byte-identical blocks); such keys protect nothing. Raises `KeyFormatError`."""
    if type(raw) is not bytes or len(raw) != PUBLIC_KEY_BYTES:
        raise KeyFormatError(f"private key seed of {len(raw)} bytes, expected {PUBLIC_KEY_BYTES}")
    return PrivateKey(key=Ed25519PrivateKey.from_private_bytes(raw))


def public_key_from_hex(text: str) -> PublicKey:
    """Parse 64 lowercase hex digits. Raises `KeyFormatError` naming the text."""
    if (
        not isinstance(text, str)
        or len(text) != 2 * PUBLIC_KEY_BYTES
        or text.lower() != text
        or not text.isascii()
    ):
        raise KeyFormatError(f"public key {text!r} is not {2 * PUBLIC_KEY_BYTES} lowercase hex")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise KeyFormatError(f"public key {text!r} is not hex") from None
    return PublicKey(raw=raw)


def private_key_from_pem(data: bytes, source: str = "PEM") -> PrivateKey:
    """Parse unencrypted PKCS#8 PEM. Raises `KeyFormatError` naming `source`."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:  # TypeError: the key is encrypted
        raise KeyFormatError(f"{source}: not an unencrypted private key PEM: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFormatError(f"{source}: a {type(key).__name__}, not an Ed25519 private key")
    return PrivateKey(key=key)


def public_key_from_pem(data: bytes, source: str = "PEM") -> PublicKey:
    """Parse SubjectPublicKeyInfo PEM. Raises `KeyFormatError` naming `source`."""
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as error:
        raise KeyFormatError(f"{source}: not a public key PEM: {error}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFormatError(f"{source}: a {type(key).__name__}, not an Ed25519 public key")
    return PublicKey(
        raw=key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def save_private_key(key: PrivateKey, path: Path) -> None:
    """Write `key` to a new file of mode 0600. Raises FileExistsError rather than overwrite
    a key: losing a member's key loses its identity."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    with os.fdopen(descriptor, "wb") as file:
        os.fchmod(file.fileno(), PRIVATE_FILE_MODE)  # whatever the umask
        file.write(key.to_pem())
        file.flush()
        os.fsync(file.fileno())


def load_private_key(path: Path) -> PrivateKey:
    """Read a private key file. Raises `InsecureKeyFileError` if group or others have any
    access to it, `KeyFormatError` if it is not an unencrypted Ed25519 PKCS#8 PEM of at most
    `PEM_BYTES_MAX` bytes, and OSError if it cannot be read."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise InsecureKeyFileError(
            f"{path}: private key file has mode {mode:04o}; run chmod 600 {path}"
        )
    return private_key_from_pem(_read_limited(path), source=str(path))


def save_public_key(key: PublicKey, path: Path) -> None:
    """Write `key` as SubjectPublicKeyInfo PEM, replacing any file at `path`."""
    path.write_bytes(key.to_pem())


def load_public_key(path: Path) -> PublicKey:
    """Read a public key PEM file. Raises `KeyFormatError` naming the path, OSError if it
    cannot be read."""
    return public_key_from_pem(_read_limited(path), source=str(path))


def _read_limited(path: Path) -> bytes:
    with path.open("rb") as file:
        data = file.read(PEM_BYTES_MAX + 1)
    if len(data) > PEM_BYTES_MAX:
        raise KeyFormatError(f"{path}: larger than {PEM_BYTES_MAX} bytes, not a key file")
    return data
