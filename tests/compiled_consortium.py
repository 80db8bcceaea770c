"""A consortium session in one process, for running the shell on the compiled build.

`python -m tests.compiled_consortium DIR` starts the exchange with its gateway and four member
nodes on loopback (`tests.gateway_net.RunningVenue`), opens the market as the operator, lets two
brokers trade, waits until the trade's block is final, and prints one JSON line: the build,
the trade and the final height. The suite runs the pure build; this runs whatever
`JINLIAN_BUILD` selects, so tests/test_compiled_build.py runs it on the compiled build, where a
use of a core class that mypyc does not allow (a Python subclass, an undeclared attribute)
fails.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson

from exchange import compiled
from tests.gateway_net import RunningVenue, order

FINAL_TIMEOUT_S = 30


async def session(directory: Path) -> dict[str, Any]:
    venue = RunningVenue(directory)
    await venue.start()
    try:
        await venue.open_market()
        seller = await venue.client("broker2")
        buyer = await venue.client("broker1")
        await seller.place(**order("ask-1", "20001", "sell", 1002, 300))
        await buyer.place(**order("bid-1", "10001", "buy", 1002, 300))
        report = await buyer.next_report()
        while report["report"] != "trade":
            report = await buyer.next_report()
        final = await asyncio.wait_for(buyer.finals.get(), FINAL_TIMEOUT_S)
        while final["height"] < report["height"]:
            final = await asyncio.wait_for(buyer.finals.get(), FINAL_TIMEOUT_S)
        return {
            "build": compiled.current().build,
            "trade": {key: report[key] for key in ("price", "quantity", "order_id")},
            "final_height": final["height"],
            "signers": len(final["certificate"]["votes"]),
        }
    finally:
        await venue.stop()


def main() -> int:
    result = asyncio.run(session(Path(sys.argv[1])))
    print(orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
