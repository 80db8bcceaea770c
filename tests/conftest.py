"""Fixtures shared by the test files."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

# The suite runs the reference build, the pure source, unless JINLIAN_BUILD says otherwise (set
# before anything imports the core: exchange/compiled.py decides at the first core import).
# tests/test_compiled_build.py runs both builds in their own processes and compares them.
os.environ.setdefault("JINLIAN_BUILD", "pure")

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
