"""The venue as the ledger's state machine: two members executing the same block agree on the
receipts root and state hash; a member given different commands diverges and the header check
names it; a command's bytes are parsed once, and bytes that are no command are an error event."""

from __future__ import annotations

from typing import Any

import orjson

from exchange.bench.flow import make_flow
from exchange.bench.venue_bench import OPERATOR, venue_setup, wrap
from exchange.venue.machine import VenueMachine
from exchange.venue.venue import Venue
from exchange.venue.wire import venue_command_to_dict
from ledger.block import Block, BlockHeader, DivergedError
from ledger.canonical import canonical_bytes
from ledger.machine import Execution, encode_commands, execute, re_execute
from ledger.merkle import merkle_root
from matching.commands import PlaceOrder

TIME_NS = 1_767_600_000_000_000_000


def block_commands() -> list[dict[str, Any]]:
    flow = make_flow(5, 2_000, depth_orders=300)
    accounts = {c.order_id: c.account for c in flow.setup[2:] if isinstance(c, PlaceOrder)}
    commands = [*venue_setup(flow), *wrap(flow.commands, accounts)]
    return [venue_command_to_dict(command) for command in commands]


def member() -> VenueMachine:
    return VenueMachine(Venue(operator=OPERATOR, regulator="CSRC"))


def block_of(commands: list[bytes], times: list[int], execution: Execution) -> Block:
    """The block a proposer would sign (unsigned here: re-execution does not check it)."""
    header = BlockHeader(
        height=1,
        parent_hash=bytes(32),
        time_ns=times[-1],
        proposer=0,
        command_count=len(commands),
        commands_root=merkle_root(commands),
        receipts_root=execution.receipts_root,
        state_hash=execution.state_hash,
    )
    return Block(header=header, commands=tuple(commands), times_ns=tuple(times), signature=b"")


def times_for(commands: list[bytes]) -> list[int]:
    return [TIME_NS + index // 3 for index in range(len(commands))]


def test_two_members_agree_on_a_block_of_venue_commands() -> None:
    commands = encode_commands(block_commands())
    times = times_for(commands)
    proposer = execute(member(), commands, times)
    replica, divergence = re_execute(member(), block_of(commands, times, proposer))
    assert divergence is None
    assert replica.events == proposer.events
    events = [orjson.loads(event) for each in proposer.events for event in each]
    assert any(event["type"] == "trade_settled" for event in events)


def test_command_times_are_in_the_receipts_not_in_the_state() -> None:
    """The venue takes its time from commands (begin_day), so the state hash of the same
    commands at other times is the same (no state hash changes with v2); the receipts differ."""
    commands = encode_commands(block_commands())
    at_times = execute(member(), commands, times_for(commands))
    at_zero = execute(member(), commands, [0] * len(commands))
    assert at_times.state_hash == at_zero.state_hash
    assert at_times.events == at_zero.events
    assert at_times.receipts_root != at_zero.receipts_root


def test_a_member_with_a_changed_command_diverges() -> None:
    values = block_commands()
    commands = encode_commands(values)
    times = times_for(commands)
    block = block_of(commands, times, execute(member(), commands, times))
    position = next(i for i, c in enumerate(values) if c["type"] == "place" and c["side"] == "buy")
    changed = list(commands)
    value = values[position]
    changed[position] = canonical_bytes({**value, "quantity": value["quantity"] + 100})
    _, divergence = re_execute(member(), Block(header=block.header, commands=tuple(changed),
                                               times_ns=block.times_ns, signature=b""))  # fmt: skip
    assert isinstance(divergence, DivergedError)
    assert "receipts_root" in str(divergence) and "re-execution gave" in str(divergence)
    retimed = list(times)
    retimed[position] += 1
    _, divergence = re_execute(member(), Block(header=block.header, commands=block.commands,
                                               times_ns=tuple(retimed), signature=b""))  # fmt: skip
    assert isinstance(divergence, DivergedError)  # a command's time is in its receipt


def test_an_unparsable_command_is_an_error_event_on_every_member() -> None:
    machine = member()
    events = machine.apply(
        canonical_bytes({"type": "place", "broker": "B1", "order_id": "x"}), TIME_NS
    )
    assert [orjson.loads(event) for event in events] == [
        {
            "type": "error",
            "field": "order_id",
            "message": "order_id must be an integer, got 'x'",
        }
    ]
    not_json = {"type": "error", "field": None, "message": "command is not JSON"}
    for data in (b"not json", b'{"type": "place"', b"\xff"):
        assert [orjson.loads(event) for event in machine.apply(data, TIME_NS)] == [not_json]
    assert [orjson.loads(event) for event in machine.apply(b"[1, 2]", TIME_NS)] == [
        {"type": "error", "field": None, "message": "a command must be a JSON object, got [1, 2]"}
    ]
    assert machine.state_hash() == member().state_hash()
