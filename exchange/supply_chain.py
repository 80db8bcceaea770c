"""The participant's side of supply-chain finance: signing commands and hashing invoices.

A participant (core enterprise, supplier, factor) holds its own Ed25519 key; its bank
registers the public key on the ledger and forwards the signed commands through its member
session. What is signed is `exchange.venue.supply_chain.signing_bytes`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, TypeVar

from exchange.venue.supply_chain import command_fields, signing_bytes
from ledger.canonical import canonical_bytes
from ledger.keys import PrivateKey
from settlement.supply_chain_types import FinanceCommitment, ParticipantCommand

C = TypeVar("C", bound=ParticipantCommand)


def sign(command: C, key: PrivateKey) -> C:
    """The command with the participant's signature. O(fields)."""
    signature = key.sign(signing_bytes(command)).hex()
    return dataclasses.replace(command, signature=signature)


def cosign(command: FinanceCommitment, factor_key: PrivateKey) -> FinanceCommitment:
    """A financing with the factor's signature too (over the same bytes)."""
    return dataclasses.replace(
        command, factor_signature=factor_key.sign(signing_bytes(command)).hex()
    )


def invoice_key_hash(seller: str, buyer: str, number: str) -> str:
    """SHA-256 (hex) of the canonical JSON [seller, buyer, number]: what the ledger keeps to
    find the same invoice registered twice. Guessable when numbers have little entropy."""
    return hashlib.sha256(canonical_bytes([seller, buyer, number])).hexdigest()


def invoice_content_hash(content: bytes) -> str:
    """SHA-256 (hex) of the invoice's full content (its document's bytes)."""
    return hashlib.sha256(content).hexdigest()


def signed_request(command: ParticipantCommand, key: PrivateKey) -> dict[str, Any]:
    """The signed command as the JSON object a bank's member session sends in an `admin`
    request (`Client.admin(signed_request(...))`): `actor` must be that bank."""
    return command_fields(sign(command, key))
