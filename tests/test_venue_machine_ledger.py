"""The venue as the ledger's state machine: two members executing the same block agree on the
events root and state hash; a member given different commands diverges and the header check
names it."""

from __future__ import annotations

from typing import Any

import orjson

from exchange.bench.flow import make_flow
from exchange.bench.venue_bench import OPERATOR, venue_setup, wrap
from exchange.venue.machine import VenueMachine
from exchange.venue.venue import Venue
from exchange.venue.wire import venue_command_to_dict
from ledger.block import BlockHeader, DivergedError, values_root
from ledger.machine import execute, re_execute
from matching.commands import PlaceOrder


def block_commands() -> list[dict[str, Any]]:
    flow = make_flow(5, 2_000, depth_orders=300)
    accounts = {c.order_id: c.account for c in flow.setup[2:] if isinstance(c, PlaceOrder)}
    commands = [*venue_setup(flow), *wrap(flow.commands, accounts)]
    return [venue_command_to_dict(command) for command in commands]


def member() -> VenueMachine:
    return VenueMachine(Venue(operator=OPERATOR, regulator="CSRC"))


def header_for(commands: list[dict[str, Any]], execution: Any) -> BlockHeader:
    return BlockHeader(
        height=1,
        parent_hash=bytes(32),
        time_ns=1,
        commands_root=values_root(commands),
        command_count=len(commands),
        events_root=execution.events_root,
        event_count=execution.event_count,
        state_hash=execution.state_hash,
        proposer=0,
    )


def test_two_members_agree_on_a_block_of_venue_commands() -> None:
    commands = block_commands()
    proposer = execute(member(), commands)
    header = header_for(commands, proposer)
    replica, divergence = re_execute(member(), header, commands)
    assert divergence is None
    assert replica.events == proposer.events
    assert any(orjson.loads(event)["type"] == "trade_settled" for event in proposer.events)


def test_a_member_with_a_changed_command_diverges() -> None:
    commands = block_commands()
    header = header_for(commands, execute(member(), commands))
    changed = list(commands)
    position = next(i for i, c in enumerate(changed) if c["type"] == "place" and c["side"] == "buy")
    changed[position] = {**changed[position], "quantity": changed[position]["quantity"] + 100}
    _, divergence = re_execute(member(), header, changed)
    assert isinstance(divergence, DivergedError)
    assert "re-execution gave" in str(divergence)


def test_an_unparsable_command_is_an_error_event_on_every_member() -> None:
    machine = member()
    events = machine.apply({"type": "place", "broker": "B1", "order_id": "x"})
    assert [orjson.loads(event) for event in events] == [
        {
            "type": "error",
            "field": "order_id",
            "message": "order_id must be an integer, got 'x'",
        }
    ]
    assert machine.state_hash() == member().state_hash()
