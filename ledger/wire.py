"""The JSON form of blocks, votes and quorum certificates: parsing at the edge.

Parsing takes the value `orjson.loads` returns and is strict: exactly the fields `to_dict`
writes, integers within their range, hashes as 64 and signatures as 128 lowercase hex digits,
at most `BLOCK_COMMANDS_MAX` commands and `MEMBERS_MAX` votes. Anything else comes back as a
`MalformedBlockError` naming the field path and the offending value; parsing never raises on
bad input. A block's commands travel as strings holding each command's canonical JSON text and
are taken as their UTF-8 bytes, never parsed here: `check_commands` hashes them against the
header, and the state machine parses each once. O(size of the value).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

from ledger.block import (
    BLOCK_COMMANDS_MAX,
    HASH_BYTES,
    MEMBERS_MAX,
    SIGNATURE_BYTES,
    Block,
    BlockHeader,
    MalformedBlockError,
    QuorumCertificate,
    Vote,
)
from ledger.canonical import INTEGER_MAX

_SHOWN_CHARS_MAX: Final = 80
Parsed = TypeVar("Parsed")


class _FieldError(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")


def parse_header(value: object) -> BlockHeader | MalformedBlockError:
    """A header from its JSON form."""
    return _parse(_header, value, "header")


def parse_block(value: object) -> Block | MalformedBlockError:
    """A block from its JSON form."""
    return _parse(_block, value, "block")


def parse_vote(value: object) -> Vote | MalformedBlockError:
    """A vote from its JSON form."""
    return _parse(_vote, value, "vote")


def parse_certificate(value: object) -> QuorumCertificate | MalformedBlockError:
    """A quorum certificate from its JSON form."""
    return _parse(_certificate, value, "certificate")


def _parse(
    parser: Callable[[object, str], Parsed], value: object, path: str
) -> Parsed | MalformedBlockError:
    try:
        return parser(value, path)
    except _FieldError as error:
        return MalformedBlockError(None, str(error))


def _header(value: object, path: str) -> BlockHeader:
    fields = _fields(
        value,
        path,
        (
            "height",
            "parent_hash",
            "time_ns",
            "proposer",
            "command_count",
            "commands_root",
            "receipts_root",
            "state_hash",
        ),
    )
    return BlockHeader(
        height=_integer(fields, path, "height", minimum=1),
        parent_hash=_hex(fields, path, "parent_hash", HASH_BYTES),
        time_ns=_integer(fields, path, "time_ns"),
        proposer=_integer(fields, path, "proposer"),
        command_count=_integer(fields, path, "command_count", maximum=BLOCK_COMMANDS_MAX),
        commands_root=_hex(fields, path, "commands_root", HASH_BYTES),
        receipts_root=_hex(fields, path, "receipts_root", HASH_BYTES),
        state_hash=_hex(fields, path, "state_hash", HASH_BYTES),
    )


def _block(value: object, path: str) -> Block:
    """Commands are strings (the JSON text of each command's bytes): their UTF-8 bytes are the
    bytes the proposer hashed, taken as they are (`check_commands` hashes them)."""
    fields = _fields(value, path, ("header", "commands", "times_ns", "signature"))
    commands: list[bytes] = []
    for index, command in enumerate(_list(fields, path, "commands", BLOCK_COMMANDS_MAX)):
        if type(command) is not str or not command:
            raise _FieldError(
                f"{path}.commands[{index}]", f"{_show(command)} is not a non-empty string"
            )
        commands.append(command.encode())
    times: list[int] = []
    for index, time_ns in enumerate(_list(fields, path, "times_ns", BLOCK_COMMANDS_MAX)):
        if type(time_ns) is not int or not 0 <= time_ns <= INTEGER_MAX:
            raise _FieldError(
                f"{path}.times_ns[{index}]",
                f"{_show(time_ns)} is not an integer in [0, {INTEGER_MAX}]",
            )
        times.append(time_ns)
    if len(times) != len(commands):
        raise _FieldError(f"{path}.times_ns", f"{len(times)} times for {len(commands)} commands")
    return Block(
        header=_header(fields["header"], f"{path}.header"),
        commands=tuple(commands),
        times_ns=tuple(times),
        signature=_hex(fields, path, "signature", SIGNATURE_BYTES),
    )


def _vote(value: object, path: str) -> Vote:
    fields = _fields(value, path, ("member", "header_hash", "signature"))
    return Vote(
        member=_integer(fields, path, "member"),
        header_hash=_hex(fields, path, "header_hash", HASH_BYTES),
        signature=_hex(fields, path, "signature", SIGNATURE_BYTES),
    )


def _certificate(value: object, path: str) -> QuorumCertificate:
    fields = _fields(value, path, ("height", "header_hash", "votes"))
    votes = _list(fields, path, "votes", MEMBERS_MAX)
    return QuorumCertificate(
        height=_integer(fields, path, "height", minimum=1),
        header_hash=_hex(fields, path, "header_hash", HASH_BYTES),
        votes=tuple(_vote(vote, f"{path}.votes[{index}]") for index, vote in enumerate(votes)),
    )


def _fields(value: object, path: str, names: tuple[str, ...]) -> dict[str, object]:
    if type(value) is not dict:
        raise _FieldError(path, f"{_show(value)} is not an object")
    for name in names:
        if name not in value:
            raise _FieldError(f"{path}.{name}", "missing")
    if len(value) != len(names):
        extra = sorted(str(key) for key in value if key not in names)
        raise _FieldError(f"{path}.{extra[0]}", "unknown field")
    return value


def _integer(
    fields: dict[str, object], path: str, name: str, minimum: int = 0, maximum: int = INTEGER_MAX
) -> int:
    value = fields[name]
    if type(value) is not int or not minimum <= value <= maximum:
        raise _FieldError(
            f"{path}.{name}", f"{_show(value)} is not an integer in [{minimum}, {maximum}]"
        )
    return value


def _hex(fields: dict[str, object], path: str, name: str, size: int) -> bytes:
    value = fields[name]
    if (
        type(value) is not str
        or len(value) != 2 * size
        or not value.isascii()
        or value.lower() != value
    ):
        raise _FieldError(f"{path}.{name}", f"{_show(value)} is not {2 * size} lowercase hex")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise _FieldError(f"{path}.{name}", f"{_show(value)} is not hex") from None


def _list(fields: dict[str, object], path: str, name: str, size_max: int) -> list[object]:
    value = fields[name]
    if type(value) is not list:
        raise _FieldError(f"{path}.{name}", f"{_show(value)} is not a list")
    if len(value) > size_max:
        raise _FieldError(f"{path}.{name}", f"{len(value)} items, more than {size_max}")
    return value


def _show(value: object) -> str:
    shown = repr(value)
    if len(shown) <= _SHOWN_CHARS_MAX:
        return shown
    return shown[: _SHOWN_CHARS_MAX - 3] + "..."
