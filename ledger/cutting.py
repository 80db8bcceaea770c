"""When the exchange cuts the next block: a pure function of the queue, the blocks in flight
and the oldest queued command's wait (docs/ledger.md, "Block cutting").

Every block costs each node about the same fixed CPU whatever its size (signing, storing,
hashing, a vote and a certificate: about 0.75-1.9 ms a process on the development machine),
against some 60-80 us a command. So a block of 10 commands spends more on being a block than
on its commands. The rule keeps latency low when the pipeline is idle and stops multiplying
tiny blocks when it is not:

- a full block (`block_commands`) goes at once;
- with no block in flight (idle), a partial block goes at once: a command is proposed as soon
  as it arrives;
- with fewer than `pipeline_blocks` in flight, a partial block goes at once only when it holds
  `block_commands_min` commands (enough that its fixed cost is a small part of its work);
  smaller, it waits for a certificate (the cutter is woken: nothing in flight, so it goes) or
  until its oldest command has waited `block_interval_s`;
- with `pipeline_blocks` or more in flight, it waits for a certificate or `block_interval_s`
  likewise, whatever its size.

Pure: no clock, no IO; the node passes what it reads.
"""

from __future__ import annotations

from typing import Final, NamedTuple

BLOCK_INTERVAL_S: Final = 0.025  # longest wait of a partial block while blocks are in flight
PIPELINE_BLOCKS: Final = 2  # in flight at most, before any partial block waits
BLOCK_COMMANDS_MIN: Final = 128  # a partial block worth cutting beside one in flight


class CutPolicy(NamedTuple):
    block_commands: int  # a full block
    block_commands_min: int = BLOCK_COMMANDS_MIN
    pipeline_blocks: int = PIPELINE_BLOCKS
    block_interval_s: float = BLOCK_INTERVAL_S


def cut_wait_s(queued: int, in_flight: int, waited_s: float, policy: CutPolicy) -> float:
    """How long to wait before cutting (0.0: cut now), given the commands `queued`, the blocks
    `in_flight` (stored, not yet certified) and how long the oldest queued command has waited.
    With nothing queued: `block_interval_s` (the cutter is woken by the next submission)."""
    assert queued >= 0 and in_flight >= 0, (queued, in_flight)
    if queued >= policy.block_commands:
        return 0.0
    if not queued:
        return policy.block_interval_s
    if in_flight < policy.pipeline_blocks and (
        in_flight == 0 or queued >= policy.block_commands_min
    ):
        return 0.0
    return max(0.0, policy.block_interval_s - waited_s)
