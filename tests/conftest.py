"""Fixtures shared by the test files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.gateway_net import RunningVenue


@pytest.fixture
async def venue(tmp_path: Path) -> AsyncIterator[RunningVenue]:
    """A consortium on loopback in this process: four members and the exchange with its
    gateway, started (recovered) and stopped around the test."""
    running = RunningVenue(tmp_path / "c")
    await running.start()
    yield running
    await running.stop()
