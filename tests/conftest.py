"""Shared fixtures of the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.event import EventConfig, load_event
from models.lang import HybridDetector

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_EVENT = ROOT / "streams" / "data" / "koningsdag-amsterdam.yaml"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def event() -> EventConfig:
    """The packaged example event (Koningsdag in Amsterdam)."""
    return load_event(EXAMPLE_EVENT)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (the public labelled data sets); skips when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def detector() -> HybridDetector:
    """One language detector for the whole run: building lingua's models takes ~1 s."""
    return HybridDetector()
