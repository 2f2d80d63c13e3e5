"""Shared fixtures of the unit tests."""

from __future__ import annotations

import os
import tempfile
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
#: ``CROWDWATCH_RELIABILITY_RECORD=1``: the fault and fuzz figures of this run go to the
#: tracked docs/reliability-results and docs/reliability.md is rendered at the end; without
#: it they go to a temporary folder and a test run leaves the working tree as it found it
RECORD = "CROWDWATCH_RELIABILITY_RECORD"


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(RECORD) != "1":
        os.environ.setdefault("CROWDWATCH_RELIABILITY_DIR",
                              tempfile.mkdtemp(prefix="crowdwatch-reliability-"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Render docs/reliability.md's generated part when this run recorded figures for it."""
    from tests.reliability_report import render, results_dir

    folder = results_dir()
    if os.environ.get(RECORD) == "1" and folder.is_dir() \
            and any(p.stat().st_mtime >= _SESSION_START for p in folder.glob("*.jsonl")):
        render()
