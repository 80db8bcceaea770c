"""The replication protocol's messages and their wire form.

The exchange proposes blocks and forms certificates; members vote and serve catch-up. Every
message is a JSON object with a `type`:

| type | from -> to | fields |
|---|---|---|
| `propose` | exchange -> member | `block`, `certified` (the exchange's final height) |
| `vote` | member -> exchange | `vote` |
| `certificate` | exchange -> member | `certificate` |
| `fetch` | anyone -> any node | `from` (first height wanted), `limit` |
| `blocks` | the node asked -> asker | `blocks`, `tip`, `certified` |

A page of `blocks` holds `{"block": ..., "certificate": ... or null}` items in height order.

Messages authenticate themselves: blocks carry the proposer's signature, votes and
certificates the members'. So a transport needs no session keys, and a node can take a block
from any peer. `decode` never raises on bad input: it returns a `MalformedMessage` naming the
field and the value, and the shell drops the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import orjson

from ledger.block import Block, MalformedBlockError, QuorumCertificate, Vote
from ledger.canonical import INTEGER_MAX
from ledger.store import BLOCKS_PAGE_MAX, StoredBlock
from ledger.wire import parse_block, parse_certificate, parse_vote

MESSAGE_BYTES_MAX: Final = 64 * 1024 * 1024  # a page of full blocks


@dataclass(frozen=True, slots=True)
class Propose:
    block: Block
    certified: int


@dataclass(frozen=True, slots=True)
class VoteMessage:
    vote: Vote


@dataclass(frozen=True, slots=True)
class Certified:
    certificate: QuorumCertificate


@dataclass(frozen=True, slots=True)
class Fetch:
    start: int
    limit: int


@dataclass(frozen=True, slots=True)
class Blocks:
    blocks: tuple[StoredBlock, ...]
    tip: int
    certified: int


Message = Propose | VoteMessage | Certified | Fetch | Blocks


@dataclass(frozen=True, slots=True)
class MalformedMessage:
    """Why a message was dropped: the field path and the offending value."""

    reason: str

    def __str__(self) -> str:
        return self.reason


def to_dict(message: Message) -> dict[str, object]:
    """The JSON value of a message."""
    match message:
        case Propose(block, certified):
            return {"type": "propose", "block": block.to_dict(), "certified": certified}
        case VoteMessage(vote):
            return {"type": "vote", "vote": vote.to_dict()}
        case Certified(certificate):
            return {"type": "certificate", "certificate": certificate.to_dict()}
        case Fetch(start, limit):
            return {"type": "fetch", "from": start, "limit": limit}
        case Blocks(blocks, tip, certified):
            return {
                "type": "blocks",
                "blocks": [
                    {
                        "block": stored.block.to_dict(),
                        "certificate": None
                        if stored.certificate is None
                        else stored.certificate.to_dict(),
                    }
                    for stored in blocks
                ],
                "tip": tip,
                "certified": certified,
            }


def encode(message: Message) -> bytes:
    return orjson.dumps(to_dict(message))


def decode(data: bytes | str) -> Message | MalformedMessage:
    """A message from its bytes, validated field by field."""
    if len(data) > MESSAGE_BYTES_MAX:
        return MalformedMessage(f"message of {len(data)} bytes, more than {MESSAGE_BYTES_MAX}")
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        return MalformedMessage(f"message is not JSON: {error}")
    return parse_message(value)


def parse_message(value: object) -> Message | MalformedMessage:
    if not isinstance(value, dict):
        return MalformedMessage(f"message: expected an object, got {type(value).__name__}")
    kind = value.get("type")
    fields = _FIELDS.get(kind) if isinstance(kind, str) else None
    if fields is None:
        return MalformedMessage(f"message.type: unknown message type {kind!r}")
    if set(value) != fields:
        extra, missing = sorted(set(value) - fields), sorted(fields - set(value))
        return MalformedMessage(f"{kind}: unknown fields {extra}, missing fields {missing}")
    match kind:
        case "propose":
            block = parse_block(value["block"])
            if isinstance(block, MalformedBlockError):
                return MalformedMessage(f"propose.{block}")
            certified = _height(value["certified"], "propose.certified")
            if isinstance(certified, MalformedMessage):
                return certified
            return Propose(block, certified)
        case "vote":
            vote = parse_vote(value["vote"])
            if isinstance(vote, MalformedBlockError):
                return MalformedMessage(f"vote.{vote}")
            return VoteMessage(vote)
        case "certificate":
            certificate = parse_certificate(value["certificate"])
            if isinstance(certificate, MalformedBlockError):
                return MalformedMessage(f"certificate.{certificate}")
            return Certified(certificate)
        case "fetch":
            start = _height(value["from"], "fetch.from", low=1)
            if isinstance(start, MalformedMessage):
                return start
            limit = _height(value["limit"], "fetch.limit", low=1, high=BLOCKS_PAGE_MAX)
            if isinstance(limit, MalformedMessage):
                return limit
            return Fetch(start, limit)
        case _:
            return _blocks(value)


def _blocks(value: dict[str, object]) -> Blocks | MalformedMessage:
    tip = _height(value["tip"], "blocks.tip")
    if isinstance(tip, MalformedMessage):
        return tip
    certified = _height(value["certified"], "blocks.certified")
    if isinstance(certified, MalformedMessage):
        return certified
    items = value["blocks"]
    if not isinstance(items, list) or len(items) > BLOCKS_PAGE_MAX:
        return MalformedMessage(f"blocks.blocks: expected a list of at most {BLOCKS_PAGE_MAX}")
    page: list[StoredBlock] = []
    for index, item in enumerate(items):
        where = f"blocks.blocks[{index}]"
        if not isinstance(item, dict) or set(item) != {"block", "certificate"}:
            return MalformedMessage(f"{where}: expected an object with block and certificate")
        block = parse_block(item["block"])
        if isinstance(block, MalformedBlockError):
            return MalformedMessage(f"{where}.{block}")
        certificate: QuorumCertificate | None = None
        if item["certificate"] is not None:
            parsed = parse_certificate(item["certificate"])
            if isinstance(parsed, MalformedBlockError):
                return MalformedMessage(f"{where}.{parsed}")
            certificate = parsed
        page.append(StoredBlock(block=block, certificate=certificate))
    return Blocks(tuple(page), tip, certified)


def _height(
    value: object, path: str, *, low: int = 0, high: int = INTEGER_MAX
) -> int | MalformedMessage:
    if type(value) is not int or not low <= value <= high:
        return MalformedMessage(f"{path}: {value!r} is not an integer in {low}..{high}")
    return value


_FIELDS: Final[dict[str, set[str]]] = {
    "propose": {"type", "block", "certified"},
    "vote": {"type", "vote"},
    "certificate": {"type", "certificate"},
    "fetch": {"type", "from", "limit"},
    "blocks": {"type", "blocks", "tip", "certified"},
}
