"""Supply-chain finance through the member API of a running exchange: a bank registers its
clients' keys and forwards their signed commands as `admin` requests; others may not."""

from __future__ import annotations

import pytest

from exchange.gateway.client import RequestError
from exchange.supply_chain import signed_request
from ledger.keys import private_key_from_bytes
from settlement import supply_chain_types as scf
from tests.gateway_net import RunningVenue

CORE_KEY = private_key_from_bytes(b"\x01" * 32)
SUPPLIER_KEY = private_key_from_bytes(b"\x02" * 32)


async def test_a_bank_forwards_its_clients_signed_commands(venue: RunningVenue) -> None:
    operator = await venue.client("exchange", member=True)
    bank = await venue.client("bank1", member=True)
    await operator.admin({"type": "begin_day", "day": 20261123})
    for command_id, account in enumerate(("CORE", "SUP"), start=9_000):
        opened = await operator.admin({"type": "open_account", "command_id": command_id,
                                       "account": account, "broker": "bank1"})  # fmt: skip
        assert [e["type"] for e in opened["events"]] == ["account_opened"], opened
    for command_id, (name, role, key) in enumerate(
        (("CORE", "core_enterprise", CORE_KEY), ("SUP", "supplier", SUPPLIER_KEY)), start=9_000
    ):
        registered = await bank.admin({"type": "register_participant", "command_id": command_id,
                                       "participant": name, "role": role,
                                       "public_key": key.public_key.hex()})  # fmt: skip
        assert [e["type"] for e in registered["events"]] == ["participant_registered"]
    await bank.admin({"type": "set_credit_limit", "command_id": 9_002, "participant": "CORE",
                      "limit": 10_000})  # fmt: skip
    issue = scf.IssueCommitment(command_id=1, actor="bank1", participant="CORE", holder="SUP",
                                amount=5_000, currency="CNY", maturity=20261130,
                                signature="")  # fmt: skip
    issued = await bank.admin(signed_request(issue, CORE_KEY))
    assert [(e["type"], e["piece"]) for e in issued["events"]] == [("commitment_issued", 1)]
    # signed by the wrong key: refused by the venue, with the participant named
    confirm = scf.ConfirmCommitment(command_id=1, actor="bank1", participant="SUP", piece=1,
                                    signature="")  # fmt: skip
    forged = await bank.admin(signed_request(confirm, CORE_KEY))
    assert [(e["reason"], e["value"]) for e in forged["events"]] == [("bad_signature", "SUP")]
    confirmed = await bank.participant_command(confirm, SUPPLIER_KEY)
    assert [e["type"] for e in confirmed["events"]] == ["commitment_confirmed"]
    # a broker or the regulator may not send supply-chain commands
    regulator = await venue.client("regulator1", member=True)
    with pytest.raises(RequestError, match="may not send"):
        await regulator.admin(signed_request(confirm, SUPPLIER_KEY))
    assert venue.gateway is not None and venue.gateway.machine is not None
    chain = venue.gateway.machine.venue.supply_chain
    assert chain.outstanding("CORE") == 5_000
