"""Fixtures of the load-generator tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # simproc, the simulator-subprocess helper

from simproc import SimFactory  # noqa: E402


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimFactory]:
    """Start simulators on demand (`sim("--itl-ms", "5")`); every one is stopped, even when the test fails."""
    f = SimFactory(tmp_path)
    try:
        yield f
    finally:
        f.close()
