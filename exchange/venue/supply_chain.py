"""The venue's side of supply-chain finance: what a participant signs, and the Ed25519 check.

A participant signs `signing_bytes(command)`: a domain prefix and the canonical JSON of the
command as it goes on the wire, without its signature fields. A factor co-signing a financing
signs the same bytes. The check is deterministic (the same bytes, key and signature verify or
not on every member), so the pure core may call it: settlement's `SupplyChain` receives it as
its `verify` function.
"""

from __future__ import annotations

import dataclasses
from enum import IntEnum
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.canonical import canonical_bytes
from settlement.supply_chain import wire_name
from settlement.supply_chain_types import (
    PUBLIC_KEY_HEX_LENGTH,
    SIGNATURE_HEX_LENGTH,
    ParticipantCommand,
)

DOMAIN: Final = b"jinlian/v1/scf\n"
SIGNATURE_FIELDS: Final = frozenset({"signature", "factor_signature"})
_HEX: Final = frozenset("0123456789abcdef")


def command_fields(command: Any) -> dict[str, Any]:
    """The command as its JSON object (`type` and every field; enums as lower-case names,
    tuples as arrays), the form `exchange.venue.wire` parses."""
    data: dict[str, Any] = {"type": wire_name(type(command))}
    for field in dataclasses.fields(command):
        value = getattr(command, field.name)
        if isinstance(value, IntEnum):
            value = value.name.lower()
        elif isinstance(value, tuple):
            value = list(value)
        data[field.name] = value
    return data


def signing_bytes(command: ParticipantCommand) -> bytes:
    """What the participant (and a financing's factor) signs. O(fields)."""
    data = command_fields(command)
    for name in SIGNATURE_FIELDS:
        data.pop(name, None)
    return DOMAIN + canonical_bytes(data)


def verify_signature(command: Any, public_key: str, signature: str) -> bool:
    """Whether `signature` (hex) by `public_key` (hex, raw Ed25519) signs the command. Any
    malformed key or signature is a failed check, never an exception."""
    if len(public_key) != PUBLIC_KEY_HEX_LENGTH or len(signature) != SIGNATURE_HEX_LENGTH:
        return False
    if not (set(public_key) <= _HEX and set(signature) <= _HEX):
        return False
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key))
        key.verify(bytes.fromhex(signature), signing_bytes(command))
    except (InvalidSignature, ValueError):
        return False
    return True
