"""The rumour stage in a child process of ``crowdwatch worker`` (``rumour_process``).

One worker process runs the enrichment and sentiment threads, the event loop with the
Kafka and Redis clients and the rumour stage's clustering thread, all under one Python
interpreter lock. On two cores that lock, not the CPU, caps the worker: the clustering
thread waits for its turn while the other stages hold it (docs/architecture.md,
"Throughput"). With ``CROWDWATCH_RUMOUR_PROCESS=true`` the worker runs as the *ingest*
side (``worker_role=ingest``: enrichment, sentiment, alerts, writing ``posts.claims``) and
starts ``crowdwatch worker`` once more as its child with ``worker_role=rumours``: the
rumour stage alone, reading ``posts.claims`` in its own consumer group
(``<app_id>-rumours``), with its own ``/metrics`` and ``/health`` on ``rumour_port``.

The two live and die together: the child gets ``SIGTERM`` when the worker's process ends
(Linux ``PR_SET_PDEATHSIG``, so also after ``kill -9``), and the worker stops with exit
code 1 when the child ends, so its supervisor restarts both. The child also watches its
parent itself (:func:`watch_parent`): should the signal not come (the parent died before
the child asked for it) or its graceful stop hang (a batch in the clustering thread, a slow
broker), it sends itself ``SIGTERM`` and, ``PARENT_GRACE_S`` later, exits hard, so a
restarted worker never finds the old child still holding its port (a hard exit loses
nothing: offsets are committed only for finished work). Nothing else is shared: each side
commits its own offsets, and the rumour side rebuilds its clusters from ``posts.claims``
on start (``streams.recovery``) as a single worker does.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streams.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["PARENT_ENV", "RumourProcess", "child_env", "watch_parent"]

_PR_SET_PDEATHSIG = 1
#: the worker's pid, in the child's environment: the child watches it (watch_parent)
PARENT_ENV = "CROWDWATCH_RUMOUR_PARENT_PID"
PARENT_GRACE_S = 20.0


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """``preexec_fn``: SIGTERM when the parent process ends (Linux; elsewhere a no-op)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _child_setup(nice: int) -> None:  # pragma: no cover - runs in the child before exec
    """``preexec_fn``: die with the parent, and run ``nice`` steps below it."""
    _die_with_parent()
    if nice:
        with contextlib.suppress(OSError):
            os.nice(nice)


def child_env(settings: Settings, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: the worker's, with the settings that differ for the rumour
    side (role, consumer group, port). Settings given as command-line options reach the
    child this way too; secrets stay where they were (the environment or the files that
    ``CROWDWATCH_*_FILE`` settings name), and the pseudonym key comes from Redis as for any
    worker."""
    env = dict(os.environ if environ is None else environ)
    env.update({
        "CROWDWATCH_WORKER_ROLE": "rumours",
        "CROWDWATCH_RUMOUR_PROCESS": "false",
        "CROWDWATCH_APP_ID": settings.rumour_app_id,
        "CROWDWATCH_WEB_PORT": str(settings.rumour_port),
        "CROWDWATCH_WEB_HOST": settings.web_host,
        PARENT_ENV: str(os.getpid()),
    })
    if settings.event_file is not None:
        env["CROWDWATCH_EVENT_FILE"] = str(settings.event_file)
    return env


def watch_parent(parent: int, *, grace_s: float = PARENT_GRACE_S, every_s: float = 1.0,
                 ) -> threading.Thread:
    """In the child: a daemon thread that notices the worker ``parent`` is gone (the
    child's parent pid changes, it was re-parented) and then stops this process: ``SIGTERM``
    to itself (Faust's graceful stop) and, if it still runs ``grace_s`` later, ``os._exit(1)``.
    Returns the started thread."""

    def run() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        log.warning("worker (pid %d) is gone: the rumour process stops", parent)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        log.error("rumour process still running %.0f s after its worker ended: exiting",
                  grace_s)
        logging.shutdown()
        os._exit(1)

    thread = threading.Thread(target=run, name="watch-parent", daemon=True)
    thread.start()
    return thread


class RumourProcess:
    """Starts, watches and stops the rumour-stage child of a worker."""

    def __init__(self, settings: Settings, *, loglevel: str = "info",
                 event_path: Path | None = None) -> None:
        self.settings = settings
        self.loglevel = loglevel
        self.event_path = event_path
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "streams.cli", "worker", "--loglevel", self.loglevel]
        if self.event_path is not None:
            cmd += ["--event", str(self.event_path)]
        return cmd

    def start(self) -> None:
        # stdout/stderr are the worker's: one log stream for the supervisor to keep
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            self.command(), env=child_env(self.settings),
            preexec_fn=functools.partial(_child_setup, self.settings.rumour_process_nice))
        log.info("rumour process started (pid %d, consumer group %s, /metrics on port %d, "
                 "nice +%d)", self.proc.pid, self.settings.rumour_app_id,
                 self.settings.rumour_port, self.settings.rumour_process_nice)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def exit_code(self) -> int | None:
        """None while the child runs (or was never started)."""
        return self.proc.poll() if self.proc is not None else None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("rumour process %d did not stop in %.0f s: killed", proc.pid,
                            timeout)
                proc.kill()
                proc.wait()
        return proc.returncode
