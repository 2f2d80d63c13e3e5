"""Shared fixtures of the unit tests."""

from __future__ import annotations

import time
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


_SESSION_START = time.time()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Render docs/reliability.md's generated part when this run recorded figures."""
    from tests.reliability_report import render, results_dir

    folder = results_dir()
    if folder.is_dir() and any(p.stat().st_mtime >= _SESSION_START
                               for p in folder.glob("*.jsonl")):
        render()
