"""The worker caps glibc's malloc arenas (streams.runtime.limit_malloc_arenas) and hands
malloc's free memory back to the OS every minute (streams.runtime.trim_malloc)."""

from __future__ import annotations

import asyncio
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from streams.app import Pipeline
from streams.runtime import limit_malloc_arenas, trim_malloc
from streams.settings import Settings
from streams.state import MemoryStore

REPO = Path(__file__).resolve().parents[1]

# eight threads allocate at once, then glibc's malloc_stats() prints one block per arena
PROBE = textwrap.dedent("""
    import ctypes, ctypes.util, sys, threading
    from streams.runtime import limit_malloc_arenas
    print(limit_malloc_arenas(int(sys.argv[1])), flush=True)
    barrier = threading.Barrier(8)
    def work():
        keep = [bytes(600) for _ in range(5000)]
        barrier.wait()
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ctypes.CDLL(ctypes.util.find_library("c")).malloc_stats()
""")

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")


def _arenas(cap: int) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(cap)], cwd=REPO, check=True,
                         capture_output=True, text=True, timeout=60)
    return out.stdout.strip(), sum(line.startswith("Arena ") for line in
                                   out.stderr.splitlines())


@glibc
def test_the_cap_holds_for_threads_that_allocate_at_once() -> None:
    assert _arenas(2) == ("True", 2)
    assert _arenas(1) == ("True", 1)
    said, default = _arenas(0)  # glibc's own default: an arena per contending thread
    assert said == "False" and default > 2


def test_settings_and_bad_values() -> None:
    assert Settings().malloc_arena_max == 2
    assert limit_malloc_arenas(0) is False
    with pytest.raises(ValueError):
        limit_malloc_arenas(-1)


# 100,000 2 kB buffers (glibc malloc, not Python's small-object arenas), every 64th kept: the
# freed ones leave whole free pages inside the heap that no top-of-heap trim can return, but
# malloc_trim(0) does
FRAGMENT = textwrap.dedent("""
    import sys
    from streams.runtime import resident_bytes, trim_malloc
    objs = [bytearray(2000) for _ in range(100_000)]
    kept = objs[::64]
    del objs
    before = resident_bytes()
    released = trim_malloc()
    print(before, released, resident_bytes(), len(kept))
""")


@glibc
def test_trim_hands_free_pages_inside_the_heap_back() -> None:
    out = subprocess.run([sys.executable, "-c", FRAGMENT], cwd=REPO, check=True,
                         capture_output=True, text=True, timeout=60)
    before, released, after, _ = (int(x) for x in out.stdout.split())
    assert released > 100 * 2**20  # most of the ~200 MB freed
    assert after <= before - released + 2**20


def _app_tasks(p: Pipeline) -> set[str]:
    """Names of the Faust app's tasks and timers (their functions' names)."""
    return {getattr(t, "__name__", "") for t in p.app._app_tasks}


def test_the_worker_trims_on_a_timer_and_counts_the_bytes(tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:1", app_id=f"test-trim-{tmp_path.name}",
                        data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    assert settings.malloc_trim_every_s == 60
    registry = CollectorRegistry()
    p = Pipeline(settings, store=MemoryStore(), registry=registry, event=None)
    try:
        assert "malloc_trim" in _app_tasks(p)
        junk = [bytearray(2000) for _ in range(20_000)][::64]
        released = asyncio.run(p.trim_memory())
        assert junk
        counted = registry.get_sample_value("crowdwatch_malloc_trimmed_bytes_total") or 0.0
        if platform.libc_ver()[0] == "glibc":
            assert released is not None and counted == released
        else:
            assert released is None and counted == 0
    finally:
        p.executor.shutdown(wait=False)
        p.score_executor.shutdown(wait=False)
    off = Settings(kafka_bootstrap="127.0.0.1:1", app_id=f"test-trim0-{tmp_path.name}",
                   data_dir=tmp_path, malloc_trim_every_s=0,
                   _env_file=None)  # type: ignore[call-arg]
    q = Pipeline(off, store=MemoryStore(), registry=CollectorRegistry(), event=None)
    try:
        assert "malloc_trim" not in _app_tasks(q)
        assert "lag_timer" in _app_tasks(q)
    finally:
        q.executor.shutdown(wait=False)
        q.score_executor.shutdown(wait=False)
    assert trim_malloc() is not None or platform.libc_ver()[0] != "glibc"
