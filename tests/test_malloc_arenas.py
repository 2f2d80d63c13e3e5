"""The worker caps glibc's malloc arenas (streams.runtime.limit_malloc_arenas)."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from streams.runtime import limit_malloc_arenas
from streams.settings import Settings

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
