"""Ed25519 keys: RFC 8032 test vector, PEM files, hex for genesis, typed errors."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key as generate_rsa
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
    PublicFormat,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.keys import (
    PRIVATE_FILE_MODE,
    InsecureKeyFileError,
    KeyFormatError,
    PrivateKey,
    PublicKey,
    generate_private_key,
    load_private_key,
    load_public_key,
    private_key_from_pem,
    public_key_from_hex,
    public_key_from_pem,
    save_private_key,
    save_public_key,
)

# RFC 8032 section 7.1, TEST 2: a one-byte message.
RFC8032_SECRET = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"
RFC8032_PUBLIC = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
RFC8032_MESSAGE = bytes.fromhex("72")
RFC8032_SIGNATURE = (
    "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
    "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
)


def rfc8032_key() -> PrivateKey:
    return PrivateKey(key=Ed25519PrivateKey.from_private_bytes(bytes.fromhex(RFC8032_SECRET)))


def test_rfc8032_vector() -> None:
    key = rfc8032_key()
    assert key.public_key.hex() == RFC8032_PUBLIC
    assert key.sign(RFC8032_MESSAGE).hex() == RFC8032_SIGNATURE
    public = public_key_from_hex(RFC8032_PUBLIC)
    assert public.verify(RFC8032_MESSAGE, bytes.fromhex(RFC8032_SIGNATURE))


def test_verify_never_raises_on_a_bad_signature() -> None:
    key = generate_private_key()
    signature = key.sign(b"block")
    public = key.public_key
    assert public.verify(b"block", signature)
    assert not public.verify(b"block!", signature)
    assert not public.verify(b"block", signature[:-1])
    assert not public.verify(b"block", b"")
    assert not public.verify(b"block", bytes(64))
    assert not public.verify(b"block", signature + b"\x00")
    assert not generate_private_key().public_key.verify(b"block", signature)


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=64), st.integers(0, 63), st.integers(0, 7))
def test_any_flipped_signature_bit_fails(message: bytes, byte: int, bit: int) -> None:
    key = rfc8032_key()
    signature = bytearray(key.sign(message))
    assert key.public_key.verify(message, bytes(signature))
    signature[byte] ^= 1 << bit
    assert not key.public_key.verify(message, bytes(signature))


def test_private_key_file_round_trip(tmp_path: Path) -> None:
    key = generate_private_key()
    path = tmp_path / "member.key"
    save_private_key(key, path)
    assert stat.S_IMODE(path.stat().st_mode) == PRIVATE_FILE_MODE
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = load_private_key(path)
    assert loaded.public_key == key.public_key
    assert key.public_key.verify(b"m", loaded.sign(b"m"))
    with pytest.raises(FileExistsError):
        save_private_key(generate_private_key(), path)
    assert load_private_key(path).public_key == key.public_key


def test_private_key_file_that_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "member.key"
    save_private_key(generate_private_key(), path)
    path.chmod(0o640)
    with pytest.raises(InsecureKeyFileError, match=r"mode 0640; run chmod 600"):
        load_private_key(path)


def test_public_key_file_round_trip(tmp_path: Path) -> None:
    public = generate_private_key().public_key
    path = tmp_path / "member.pub"
    save_public_key(public, path)
    assert path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert load_public_key(path) == public
    assert public_key_from_hex(public.hex()) == public
    assert hash(public_key_from_hex(public.hex())) == hash(public)


def test_repr_never_shows_the_secret() -> None:
    key = rfc8032_key()
    assert RFC8032_SECRET not in repr(key)
    assert repr(key.public_key) == f"PublicKey({RFC8032_PUBLIC})"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "00",
        RFC8032_PUBLIC[:-2],
        RFC8032_PUBLIC + "00",
        RFC8032_PUBLIC.upper(),
        "zz" + RFC8032_PUBLIC[2:],
        " " + RFC8032_PUBLIC[1:],
        "é" + RFC8032_PUBLIC[1:],
    ],
)
def test_malformed_public_key_hex_names_the_value(text: str) -> None:
    with pytest.raises(KeyFormatError) as caught:
        public_key_from_hex(text)
    assert repr(text) in str(caught.value)


def test_malformed_raw_public_key() -> None:
    with pytest.raises(KeyFormatError, match="is not 32 bytes"):
        PublicKey(raw=b"\x01" * 31)


def test_malformed_pem_names_the_source(tmp_path: Path) -> None:
    with pytest.raises(KeyFormatError, match=r"^here: not an unencrypted private key PEM"):
        private_key_from_pem(b"garbage", source="here")
    with pytest.raises(KeyFormatError, match=r"^PEM: not a public key PEM"):
        public_key_from_pem(b"garbage")
    rsa = generate_rsa(public_exponent=65537, key_size=1024)
    rsa_private = rsa.private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"x")
    )
    with pytest.raises(KeyFormatError, match="not an unencrypted private key PEM"):
        private_key_from_pem(rsa_private)
    rsa_public = rsa.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(KeyFormatError, match="not an Ed25519 public key"):
        public_key_from_pem(rsa_public)
    encrypted = rfc8032_key().key.private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"secret")
    )
    with pytest.raises(KeyFormatError, match="not an unencrypted private key PEM"):
        private_key_from_pem(encrypted)
    big = tmp_path / "big.pub"
    big.write_bytes(b"x" * 5000)
    with pytest.raises(KeyFormatError, match="^" + re.escape(f"{big}: larger than")):
        load_public_key(big)
