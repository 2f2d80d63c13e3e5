"""Real local services for tests and development, without Docker.

``up()`` starts, on 127.0.0.1 only:

* Apache Kafka 4.x (KRaft, one combined broker + controller node), run from jars that
  Maven fetches once from Maven Central into a cache directory;
* Redis (Debian ``redis-server``, no persistence);
* Prometheus (Debian ``prometheus``) scraping the crowdwatch workers listed in a
  ``file_sd`` JSON file that tests may rewrite (see :func:`set_worker_targets`), and the
  live connectors' ``--metrics-port`` (job ``crowdwatch-ingest``, its own ``file_sd``
  file: :func:`set_connector_targets`);
* Alertmanager (Debian ``prometheus-alertmanager``), no cluster listener.

Everything lives in the state directory (``~/.crowdwatch/stack`` or
``$CROWDWATCH_STACK_DIR``): configs, pid files, logs and data. The connection settings
are written as dotenv lines to :func:`streams.settings.stack_file`, which
:func:`streams.settings.load_settings` reads.

The functions return data and raise :class:`StackError`; only :func:`main` prints.
``python -m streams.stack up|down|status|restart|kill`` is the command line.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import IO, Any

from streams.settings import stack_file

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "SERVICES",
    "ServiceStatus",
    "StackConfig",
    "StackError",
    "StackStatus",
    "UpResult",
    "down",
    "ensure_kafka_libs",
    "env_lines",
    "kill_service",
    "main",
    "reload_prometheus",
    "render_server_properties",
    "restart_service",
    "set_connector_targets",
    "set_worker_targets",
    "status",
    "up",
]

#: Newest Kafka release that was checked to resolve from Maven Central and run here.
DEFAULT_KAFKA_VERSION = "4.4.0"
#: Tried in order when no version is asked for and the newest one cannot be fetched.
FALLBACK_KAFKA_VERSIONS: tuple[str, ...] = ("4.4.0", "4.3.1", "4.1.2", "4.0.1")
LOG4J_VERSION = "2.24.3"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

#: Start order; ``down`` stops in reverse.
SERVICES: tuple[str, ...] = ("kafka", "redis", "prometheus", "alertmanager")
#: Where Prometheus looks for live connectors by default (job ``crowdwatch-ingest``):
#: ``crowdwatch ingest bluesky --metrics-port 6070``, ``... mastodon --metrics-port 6071``.
CONNECTOR_TARGETS: tuple[str, ...] = ("127.0.0.1:6070", "127.0.0.1:6071")

#: Executable -> Debian package that provides it.
APT_PACKAGES: dict[str, str] = {
    "redis-server": "redis-server",
    "prometheus": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "java": "openjdk-17-jre-headless",
    "mvn": "maven",
}

#: A string that must appear in /proc/<pid>/cmdline for a pid file to be believed.
_CMD_MARKERS: dict[str, str] = {
    "kafka": "kafka.Kafka",
    "redis": "redis-server",
    "prometheus": "prometheus",
    "alertmanager": "alertmanager",
}

STOP_TIMEOUT_S = 15.0
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class StackError(RuntimeError):
    """Something about the local stack failed; the message is one clear line."""


# --------------------------------------------------------------------------- config


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise StackError(f"{name}={raw!r} is not an integer") from exc


def _default_repo_root() -> Path:
    env = os.environ.get("CROWDWATCH_REPO_ROOT", "").strip()
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[1]
    return here if (here / "deploy").is_dir() else Path.cwd()


def default_state_dir() -> Path:
    env = os.environ.get("CROWDWATCH_STACK_DIR", "").strip()
    return Path(env) if env else Path.home() / ".crowdwatch" / "stack"


def default_kafka_cache() -> Path:
    """Root of the jar cache; jars go to ``<root>/kafka-<version>/libs``."""
    env = os.environ.get("CROWDWATCH_KAFKA_CACHE", "").strip()
    return Path(env) if env else Path.home() / ".cache" / "crowdwatch"


@dataclass(frozen=True)
class StackConfig:
    """Where and how the stack runs. :meth:`from_env` applies ``CROWDWATCH_STACK_*``."""

    state_dir: Path = field(default_factory=default_state_dir)
    kafka_cache: Path = field(default_factory=default_kafka_cache)
    #: Empty: :data:`DEFAULT_KAFKA_VERSION`, falling back along :data:`FALLBACK_KAFKA_VERSIONS`.
    kafka_version: str = ""
    kafka_port: int = 19092
    controller_port: int = 19093
    redis_port: int = 16379
    prometheus_port: int = 19090
    alertmanager_port: int = 19095
    scrape_interval: str = "5s"
    worker_targets: tuple[str, ...] = (
        "127.0.0.1:6066",
        "127.0.0.1:6067",
        "127.0.0.1:6068",
        "127.0.0.1:6069",
    )
    kafka_heap: str = "512m"
    start_timeout_s: float = 90.0
    repo_root: Path = field(default_factory=_default_repo_root)

    @classmethod
    def from_env(cls, **overrides: Any) -> StackConfig:
        """Defaults, then environment variables, then non-None keyword overrides."""
        base = cls()
        env: dict[str, Any] = {
            "kafka_version": os.environ.get("CROWDWATCH_KAFKA_VERSION", "").strip(),
            "kafka_port": _env_int("CROWDWATCH_STACK_KAFKA_PORT", base.kafka_port),
            "controller_port": _env_int("CROWDWATCH_STACK_CONTROLLER_PORT", base.controller_port),
            "redis_port": _env_int("CROWDWATCH_STACK_REDIS_PORT", base.redis_port),
            "prometheus_port": _env_int("CROWDWATCH_STACK_PROMETHEUS_PORT", base.prometheus_port),
            "alertmanager_port": _env_int(
                "CROWDWATCH_STACK_ALERTMANAGER_PORT", base.alertmanager_port
            ),
            "scrape_interval": os.environ.get("CROWDWATCH_STACK_SCRAPE_INTERVAL", "").strip()
            or base.scrape_interval,
            "kafka_heap": os.environ.get("CROWDWATCH_STACK_KAFKA_HEAP", "").strip()
            or base.kafka_heap,
        }
        targets = os.environ.get("CROWDWATCH_STACK_WORKER_TARGETS", "").strip()
        if targets:
            env["worker_targets"] = tuple(t.strip() for t in targets.split(",") if t.strip())
        timeout = os.environ.get("CROWDWATCH_STACK_TIMEOUT", "").strip()
        if timeout:
            env["start_timeout_s"] = float(timeout)
        env.update({k: v for k, v in overrides.items() if v is not None})
        for key in ("state_dir", "kafka_cache", "repo_root"):
            if key in env:
                env[key] = Path(env[key]).expanduser()
        if "worker_targets" in env:
            env["worker_targets"] = tuple(env["worker_targets"])
        cfg = replace(base, **env)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        ports = self.ports()
        for name, port in ports.items():
            if not 1 <= port <= 65535:
                raise StackError(f"{name} port {port} is out of range")
        if len(set(ports.values())) != len(ports):
            raise StackError(f"stack ports must be distinct, got {ports}")

    def ports(self) -> dict[str, int]:
        return {
            "kafka": self.kafka_port,
            "kafka-controller": self.controller_port,
            "redis": self.redis_port,
            "prometheus": self.prometheus_port,
            "alertmanager": self.alertmanager_port,
        }

    def port_of(self, service: str) -> int:
        return self.ports()[service]

    # -- paths
    def service_dir(self, service: str) -> Path:
        return self.state_dir / service

    def data_dir(self, service: str) -> Path:
        return self.service_dir(service) / "data"

    def pid_file(self, service: str) -> Path:
        return self.service_dir(service) / f"{service}.pid"

    def log_file(self, service: str) -> Path:
        return self.service_dir(service) / f"{service}.log"

    @property
    def saved_config_file(self) -> Path:
        return self.state_dir / "stack.json"

    @property
    def targets_file(self) -> Path:
        return self.service_dir("prometheus") / "targets" / "workers.json"

    @property
    def connector_targets_file(self) -> Path:
        return self.service_dir("prometheus") / "targets" / "connectors.json"

    @property
    def rules_glob(self) -> str:
        return str(self.repo_root / "deploy" / "prometheus" / "rules" / "*.yml")

    @property
    def repo_alertmanager_config(self) -> Path:
        return self.repo_root / "deploy" / "alertmanager" / "alertmanager.yml"

    def to_json(self) -> str:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        return json.dumps(
            {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}, indent=2
        )

    @classmethod
    def from_json(cls, text: str) -> StackConfig:
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        data: dict[str, Any] = {k: v for k, v in raw.items() if k in known}
        for key in ("state_dir", "kafka_cache", "repo_root"):
            if key in data:
                data[key] = Path(data[key])
        if "worker_targets" in data:
            data["worker_targets"] = tuple(data["worker_targets"])
        return cls(**data)


def _resolve_config(cfg: StackConfig | None) -> StackConfig:
    """The given config; else the one the running stack was started with; else from env."""
    if cfg is not None:
        return cfg
    fresh = StackConfig.from_env()
    saved = fresh.saved_config_file
    if saved.is_file():
        with contextlib.suppress(ValueError, TypeError):
            return StackConfig.from_json(saved.read_text(encoding="utf-8"))
    return fresh


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    port: int
    alive: bool
    listening: bool
    log: Path


@dataclass(frozen=True)
class StackStatus:
    services: tuple[ServiceStatus, ...]
    env: dict[str, str]
    stack_file: Path
    state_dir: Path

    @property
    def all_alive(self) -> bool:
        return all(s.alive and s.listening for s in self.services)

    def service(self, name: str) -> ServiceStatus:
        for s in self.services:
            if s.name == name:
                return s
        raise StackError(f"unknown service {name!r}; known: {', '.join(SERVICES)}")


@dataclass(frozen=True)
class UpResult:
    #: service -> "started" or "already running"
    actions: dict[str, str]
    status: StackStatus
    kafka_version: str
    kafka_jars: int
    kafka_libs: Path
    #: step -> seconds ("apt", "kafka-jars", "kafka-format", "start", "total")
    timings: dict[str, float]
    installed_packages: tuple[str, ...] = ()

    @property
    def already_running(self) -> bool:
        return all(a == "already running" for a in self.actions.values())


# --------------------------------------------------------------------------- rendering


def env_lines(cfg: StackConfig) -> list[str]:
    """The dotenv lines (``KEY=value``) that point crowdwatch at this stack."""
    return [f"{k}={v}" for k, v in env_dict(cfg).items()]


def env_dict(cfg: StackConfig) -> dict[str, str]:
    return {
        "CROWDWATCH_KAFKA_BOOTSTRAP": f"127.0.0.1:{cfg.kafka_port}",
        "CROWDWATCH_REDIS_URL": f"redis://127.0.0.1:{cfg.redis_port}/0",
        "CROWDWATCH_PROMETHEUS_URL": f"http://127.0.0.1:{cfg.prometheus_port}",
        "CROWDWATCH_ALERTMANAGER_URL": f"http://127.0.0.1:{cfg.alertmanager_port}",
    }


def render_stack_env(cfg: StackConfig) -> str:
    header = "# Written by `crowdwatch stack up`; removed by `crowdwatch stack down`.\n"
    return header + "\n".join(env_lines(cfg)) + "\n"


def render_server_properties(cfg: StackConfig) -> str:
    """KRaft combined-mode config for one node listening on 127.0.0.1 only."""
    host = "127.0.0.1"
    props: dict[str, str | int] = {
        "process.roles": "broker,controller",
        "node.id": 1,
        "controller.quorum.bootstrap.servers": f"{host}:{cfg.controller_port}",
        "listeners": f"PLAINTEXT://{host}:{cfg.kafka_port},CONTROLLER://{host}:{cfg.controller_port}",
        "advertised.listeners": (
            f"PLAINTEXT://{host}:{cfg.kafka_port},CONTROLLER://{host}:{cfg.controller_port}"
        ),
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(cfg.data_dir("kafka")),
        "num.network.threads": 2,
        "num.io.threads": 4,
        "num.recovery.threads.per.data.dir": 1,
        "num.partitions": 4,
        "default.replication.factor": 1,
        "min.insync.replicas": 1,
        "offsets.topic.replication.factor": 1,
        "offsets.topic.num.partitions": 4,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        "group.initial.rebalance.delay.ms": 0,
        # A broker restarted after kill -9 waits out its old registration's session
        # (default 9 s) before it may register again: keep that short for fault tests.
        "broker.session.timeout.ms": 4000,
        "broker.heartbeat.interval.ms": 1000,
        "group.min.session.timeout.ms": 1000,
        "auto.create.topics.enable": "true",
        "delete.topic.enable": "true",
        "log.retention.hours": 6,
        "log.segment.bytes": 64 * 1024 * 1024,
        "log.retention.check.interval.ms": 60_000,
    }
    lines = ["# Generated by streams/stack.py; rewritten on every start."]
    lines += [f"{k}={v}" for k, v in props.items()]
    return "\n".join(lines) + "\n"


def render_log4j2(log_file: Path) -> str:
    """log4j2 properties: WARN and above to one file, nothing on the console."""
    return (
        "status = error\n"
        "appender.file.type = File\n"
        "appender.file.name = file\n"
        f"appender.file.fileName = {log_file}\n"
        "appender.file.layout.type = PatternLayout\n"
        "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
        "rootLogger.level = warn\n"
        "rootLogger.appenderRef.file.ref = file\n"
    )


def render_prometheus_config(cfg: StackConfig) -> str:
    # JSON is valid YAML: no YAML library needed.
    doc = {
        "global": {
            "scrape_interval": cfg.scrape_interval,
            "evaluation_interval": cfg.scrape_interval,
            "external_labels": {"stack": "crowdwatch-local"},
        },
        "rule_files": [cfg.rules_glob],
        "alerting": {
            "alertmanagers": [
                {"static_configs": [{"targets": [f"127.0.0.1:{cfg.alertmanager_port}"]}]}
            ]
        },
        "scrape_configs": [
            {
                "job_name": "crowdwatch-worker",
                "file_sd_configs": [{"files": [str(cfg.targets_file)], "refresh_interval": "1s"}],
            },
            {
                "job_name": "crowdwatch-ingest",
                "file_sd_configs": [{"files": [str(cfg.connector_targets_file)],
                                     "refresh_interval": "1s"}],
            },
            {
                "job_name": "prometheus",
                "static_configs": [{"targets": [f"127.0.0.1:{cfg.prometheus_port}"]}],
            },
        ],
    }
    return "# Generated by streams/stack.py\n" + json.dumps(doc, indent=2) + "\n"


def render_targets(targets: Sequence[str]) -> str:
    return json.dumps([{"targets": list(targets), "labels": {"stack": "local"}}], indent=2) + "\n"


def render_alertmanager_config() -> str:
    return (
        "# Generated by streams/stack.py: no receivers (deploy/alertmanager/alertmanager.yml\n"
        "# replaces this when it exists).\n"
        "route:\n"
        "  receiver: 'null'\n"
        "  group_wait: 0s\n"
        "  group_interval: 1s\n"
        "  repeat_interval: 1h\n"
        "receivers:\n"
        "  - name: 'null'\n"
    )


def render_pom(version: str) -> str:
    deps = [
        ("org.apache.kafka", "kafka_2.13", version),
        ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
        ("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J_VERSION),
    ]
    body = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>"
        for g, a, v in deps
    )
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0">\n'
        "  <modelVersion>4.0.0</modelVersion>\n"
        "  <groupId>crowdwatch.local</groupId>\n"
        f"  <artifactId>kafka-libs-{version}</artifactId>\n"
        "  <version>1</version>\n"
        "  <packaging>pom</packaging>\n"
        f"  <dependencies>\n{body}\n  </dependencies>\n"
        "</project>\n"
    )


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, base64url without padding (as ``Uuid``)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cid.startswith("-"):
            return cid


# --------------------------------------------------------------------------- helpers


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


@contextlib.contextmanager
def _locked(cfg: StackConfig) -> Iterator[None]:
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    with (cfg.state_dir / ".lock").open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _pid_alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        _CHILDREN.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else ""
    if state == "Z":
        # A zombie leader of a multi-threaded process (the JVM) may still have threads
        # tearing down and holding its sockets: dead only once they are gone.
        with contextlib.suppress(OSError):
            if len(os.listdir(f"/proc/{pid}/task")) > 1:
                return True
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def _cmdline(pid: int) -> str | None:
    """The process's command line; None where /proc cannot tell."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _pid_is_ours(pid: int, service: str) -> bool:
    """Alive and (where /proc tells) running the service's command."""
    if not _pid_alive(pid):
        return False
    cmdline = _cmdline(pid)
    # Right after fork/exec the command line reads empty for a moment.
    deadline = time.monotonic() + 1.0
    while cmdline == "" and time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.02)
        cmdline = _cmdline(pid)
    if not cmdline:
        return _pid_alive(pid)
    return _CMD_MARKERS[service] in cmdline


def _read_pid(cfg: StackConfig, service: str) -> int | None:
    try:
        return int(cfg.pid_file(service).read_text().strip())
    except (OSError, ValueError):
        return None


def _running_pid(cfg: StackConfig, service: str) -> int | None:
    """The pid of our running service, or None (a stale pid file is removed)."""
    pid = _read_pid(cfg, service)
    if pid is None:
        cfg.pid_file(service).unlink(missing_ok=True)
        return None
    if _pid_is_ours(pid, service):
        return pid
    cfg.pid_file(service).unlink(missing_ok=True)
    return None


def _port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback URL we built
            return 200 <= int(resp.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _redis_ping(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _kafka_probe(port: int) -> str:
    """Empty when the broker answers a metadata request, else why not."""
    if not _port_open(port):
        return f"port {port} not open"
    try:
        from kafka.admin import KafkaAdminClient  # kafka-python, a crowdwatch dependency
    except ImportError:  # pragma: no cover - the port answering must do
        return ""
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=f"127.0.0.1:{port}",
            client_id="crowdwatch-stack",
            request_timeout_ms=5000,
            bootstrap_timeout_ms=3000,
        )
    except Exception as exc:
        return f"admin client: {exc!r}"[:300]
    try:
        admin.list_topics()
        return ""
    except Exception as exc:
        return f"list_topics: {exc!r}"[:300]
    finally:
        with contextlib.suppress(Exception):
            admin.close()


def _probe(cfg: StackConfig, service: str) -> str:
    """Empty when the service answers, else a short reason."""
    if service == "kafka":
        return _kafka_probe(cfg.kafka_port)
    if service == "redis":
        return "" if _redis_ping(cfg.redis_port) else "no PONG"
    if service in ("prometheus", "alertmanager"):
        url = f"http://127.0.0.1:{cfg.port_of(service)}/-/ready"
        return "" if _http_ok(url) else f"{url} not ready"
    raise StackError(f"unknown service {service!r}; known: {', '.join(SERVICES)}")


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


def _check_service_name(name: str) -> None:
    if name not in SERVICES:
        raise StackError(f"unknown service {name!r}; known: {', '.join(SERVICES)}")


# --------------------------------------------------------------------------- installation


def _which(exe: str) -> str | None:
    return shutil.which(exe)


def ensure_packages(executables: Sequence[str] | None = None) -> tuple[str, ...]:
    """Install the Debian packages of missing executables (as root). Returns what was installed."""
    wanted = list(executables) if executables is not None else list(APT_PACKAGES)
    missing = [exe for exe in wanted if _which(exe) is None]
    if not missing:
        return ()
    packages = sorted({APT_PACKAGES[exe] for exe in missing})
    apt = _which("apt-get")
    if os.geteuid() != 0 or apt is None:
        raise StackError(
            f"missing {', '.join(missing)}: install the Debian packages {' '.join(packages)}"
            " (or run `crowdwatch stack up` as root on Debian/Ubuntu)"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in ([apt, "update"], [apt, "install", "-y", "--no-install-recommends", *packages]):
        proc = subprocess.run(  # noqa: S603 - fixed apt-get command line
            cmd, env=env, capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
            raise StackError(f"`{' '.join(cmd)}` failed ({proc.returncode}): {tail}")
    still = [exe for exe in missing if _which(exe) is None]
    if still:
        raise StackError(f"installed {' '.join(packages)} but {', '.join(still)} is still missing")
    return tuple(packages)


def kafka_libs_dir(cfg: StackConfig, version: str) -> Path:
    return cfg.kafka_cache / f"kafka-{version}" / "libs"


def _libs_complete(libs: Path) -> bool:
    return (libs / ".complete").is_file() and any(libs.glob("kafka_2.13-*.jar"))


def _fetch_kafka_libs(cfg: StackConfig, version: str) -> Path:
    mvn = _which("mvn")
    if mvn is None:
        raise StackError("`mvn` not found: install Maven (Debian package `maven`)")
    libs = kafka_libs_dir(cfg, version)
    work = libs.parent
    work.mkdir(parents=True, exist_ok=True)
    pom = work / "pom.xml"
    pom.write_text(render_pom(version), encoding="utf-8")
    tmp = work / f"libs.tmp.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        mvn,
        "-q",
        "-B",
        "-Dstyle.color=never",
        "-f",
        str(pom),
        f"{DEPENDENCY_PLUGIN}:copy-dependencies",
        f"-DoutputDirectory={tmp}",
        "-DincludeScope=runtime",
    ]
    proc = subprocess.run(  # noqa: S603 - fixed mvn command line
        cmd, capture_output=True, text=True, check=False, timeout=900
    )
    if proc.returncode != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
        shutil.rmtree(tmp, ignore_errors=True)
        out = (proc.stdout + proc.stderr).strip().splitlines()
        errors = [line for line in out if "ERROR" in line] or out
        raise StackError(
            f"fetching Kafka {version} jars with Maven failed: {' | '.join(errors[-2:])[:400]}"
        )
    jars = sorted(p.name for p in tmp.glob("*.jar"))
    (tmp / ".complete").write_text("\n".join(jars) + "\n", encoding="utf-8")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.replace(libs)
    return libs


def _kafka_candidates(cfg: StackConfig) -> list[str]:
    return [cfg.kafka_version] if cfg.kafka_version else list(FALLBACK_KAFKA_VERSIONS)


def _cached_kafka_libs(cfg: StackConfig) -> tuple[str, Path] | None:
    for version in _kafka_candidates(cfg):
        libs = kafka_libs_dir(cfg, version)
        if _libs_complete(libs):
            return version, libs
    return None


def ensure_kafka_libs(cfg: StackConfig) -> tuple[str, Path]:
    """(version, libs dir) of the Kafka jars, fetched from Maven Central once."""
    cached = _cached_kafka_libs(cfg)
    if cached is not None:
        return cached
    candidates = _kafka_candidates(cfg)
    errors: list[str] = []
    for version in candidates:
        try:
            return version, _fetch_kafka_libs(cfg, version)
        except (StackError, subprocess.TimeoutExpired) as exc:
            errors.append(str(exc))
    raise StackError(errors[-1] if len(errors) == 1 else "; ".join(errors))


def _java_cmd(cfg: StackConfig, libs: Path, log4j_file: Path) -> list[str]:
    java = _which("java")
    if java is None:
        raise StackError("`java` not found: install Java 17+ (openjdk-17-jre-headless)")
    return [
        java,
        "-Xms128m",
        f"-Xmx{cfg.kafka_heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExplicitGCInvokesConcurrent",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j_file}",
        f"-Dkafka.logs.dir={cfg.service_dir('kafka')}",
        "-cp",
        f"{libs}/*",
    ]


def _format_kafka(cfg: StackConfig, libs: Path) -> bool:
    """Format the KRaft log dir unless it is formatted already. True when it formatted."""
    data = cfg.data_dir("kafka")
    if (data / "meta.properties").is_file():
        return False
    shutil.rmtree(data, ignore_errors=True)  # a half-formatted dir from a crash
    kdir = cfg.service_dir("kafka")
    cluster_id = new_cluster_id()
    _write_atomic(kdir / "cluster.id", cluster_id + "\n")
    cmd = [
        *_java_cmd(cfg, libs, kdir / "log4j2.properties"),
        "kafka.tools.StorageTool",
        "format",
        "--standalone",
        "-t",
        cluster_id,
        "-c",
        str(kdir / "server.properties"),
    ]
    proc = subprocess.run(  # noqa: S603 - java from PATH, our arguments
        cmd, capture_output=True, text=True, check=False, timeout=120
    )
    if proc.returncode != 0:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
        raise StackError(f"formatting the Kafka log dir {data} failed: {tail}")
    return True


# --------------------------------------------------------------------------- start / stop


def _spawn(cfg: StackConfig, service: str, cmd: list[str], cwd: Path) -> int:
    log = cfg.log_file(service)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - our service command line
            cmd,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    _CHILDREN[proc.pid] = proc
    _write_atomic(cfg.pid_file(service), f"{proc.pid}\n")
    return proc.pid


def _service_cmd(cfg: StackConfig, service: str, libs: Path | None) -> list[str]:
    sdir = cfg.service_dir(service)
    data = cfg.data_dir(service)
    if service == "kafka":
        assert libs is not None  # noqa: S101 - internal invariant
        return [
            *_java_cmd(cfg, libs, sdir / "log4j2.properties"),
            "kafka.Kafka",
            str(sdir / "server.properties"),
        ]
    if service == "redis":
        exe = _which("redis-server")
        if exe is None:
            raise StackError("`redis-server` not found: install the Debian package redis-server")
        return [
            exe,
            "--bind",
            "127.0.0.1",
            "--port",
            str(cfg.redis_port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(data),
            "--protected-mode",
            "yes",
        ]
    if service == "prometheus":
        exe = _which("prometheus")
        if exe is None:
            raise StackError("`prometheus` not found: install the Debian package prometheus")
        return [
            exe,
            f"--config.file={sdir / 'prometheus.yml'}",
            f"--web.listen-address=127.0.0.1:{cfg.prometheus_port}",
            f"--storage.tsdb.path={data}",
            "--storage.tsdb.retention.time=2d",
            "--web.enable-lifecycle",
        ]
    if service == "alertmanager":
        exe = _which("prometheus-alertmanager") or _which("alertmanager")
        if exe is None:
            raise StackError(
                "`prometheus-alertmanager` not found: install the Debian package"
                " prometheus-alertmanager"
            )
        repo_cfg = cfg.repo_alertmanager_config
        config = repo_cfg if repo_cfg.is_file() else sdir / "alertmanager.yml"
        # another config file for this start (tests point the webhook at a local receiver)
        override = os.environ.get("CROWDWATCH_STACK_ALERTMANAGER_CONFIG", "").strip()
        if override:
            config = Path(override)
        return [
            exe,
            f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{cfg.alertmanager_port}",
            "--cluster.listen-address=",
            f"--storage.path={data}",
        ]
    raise StackError(f"unknown service {service!r}")


def _prepare(cfg: StackConfig, service: str) -> None:
    """Write the service's generated config files and create its dirs."""
    sdir = cfg.service_dir(service)
    cfg.data_dir(service).mkdir(parents=True, exist_ok=True)
    if service == "kafka":
        _write_atomic(sdir / "server.properties", render_server_properties(cfg))
        _write_atomic(sdir / "log4j2.properties", render_log4j2(sdir / "server.log"))
    elif service == "prometheus":
        _write_atomic(sdir / "prometheus.yml", render_prometheus_config(cfg))
        _write_atomic(cfg.targets_file, render_targets(cfg.worker_targets))
        _write_atomic(cfg.connector_targets_file, render_targets(CONNECTOR_TARGETS))
    elif service == "alertmanager" and not cfg.repo_alertmanager_config.is_file():
        _write_atomic(sdir / "alertmanager.yml", render_alertmanager_config())


def _ports_of(service: str, cfg: StackConfig) -> list[tuple[str, int]]:
    if service == "kafka":
        return [("kafka", cfg.kafka_port), ("kafka-controller", cfg.controller_port)]
    return [(service, cfg.port_of(service))]


def _check_ports_free(cfg: StackConfig, services: Sequence[str], grace_s: float = 2.0) -> None:
    """Fail clearly when a port is taken; ``grace_s`` lets a just-killed process let go."""
    deadline = time.monotonic() + grace_s
    for service in services:
        for label, port in _ports_of(service, cfg):
            while not _port_free(port) and time.monotonic() < deadline:
                time.sleep(0.1)
            if not _port_free(port):
                env = "CROWDWATCH_STACK_" + label.upper().replace("KAFKA-", "") + "_PORT"
                raise StackError(
                    f"port 127.0.0.1:{port} for {label} is already in use by a process that is"
                    f" not this stack's; stop it or choose another port ({env})"
                )


def _wait_ready(cfg: StackConfig, services: Sequence[str], timeout: float) -> None:
    pending = list(services)
    reasons: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while pending:
        for service in list(pending):
            pid = _read_pid(cfg, service)
            if pid is None or not _pid_alive(pid):
                raise StackError(
                    f"{service} exited during start-up; log {cfg.log_file(service)}:"
                    f" {_log_tail(cfg.log_file(service)) or '(empty)'}"
                )
            reasons[service] = _probe(cfg, service)
            if not reasons[service]:
                pending.remove(service)
        if not pending:
            return
        if time.monotonic() > deadline:
            why = "; ".join(f"{s}: {reasons.get(s, '?')}" for s in pending)
            raise StackError(f"not ready after {timeout:.0f}s ({why}); logs in {cfg.state_dir}")
        time.sleep(0.2)


def _stop_pid(pid: int, timeout: float = STOP_TIMEOUT_S) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            kill_deadline = time.monotonic() + 5
            while _pid_alive(pid) and time.monotonic() < kill_deadline:
                time.sleep(0.05)
            break
        time.sleep(0.1)
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        with contextlib.suppress(Exception):
            child.wait(timeout=1)


def _stop_service(cfg: StackConfig, service: str) -> int | None:
    pid = _running_pid(cfg, service)
    if pid is not None:
        _stop_pid(pid)
    cfg.pid_file(service).unlink(missing_ok=True)
    return pid


def _start_services(
    cfg: StackConfig, services: Sequence[str], libs: Path | None, timings: dict[str, float]
) -> None:
    _check_ports_free(cfg, services)
    for service in services:
        _prepare(cfg, service)
    if "kafka" in services:
        assert libs is not None  # noqa: S101 - internal invariant
        t0 = time.monotonic()
        if _format_kafka(cfg, libs):
            timings["kafka-format"] = round(time.monotonic() - t0, 2)
    t0 = time.monotonic()
    started: list[str] = []
    try:
        for service in services:
            _spawn(cfg, service, _service_cmd(cfg, service, libs), cfg.service_dir(service))
            started.append(service)
        _wait_ready(cfg, services, cfg.start_timeout_s)
    except BaseException:
        for service in reversed(started):
            _stop_service(cfg, service)
        raise
    timings["start"] = round(time.monotonic() - t0, 2)


# --------------------------------------------------------------------------- public API


def _status_unlocked(cfg: StackConfig) -> StackStatus:
    services = []
    for service in SERVICES:
        pid = _running_pid(cfg, service)
        port = cfg.port_of(service)
        services.append(
            ServiceStatus(
                name=service,
                pid=pid,
                port=port,
                alive=pid is not None,
                listening=pid is not None and _port_open(port),
                log=cfg.log_file(service),
            )
        )
    return StackStatus(
        services=tuple(services),
        env=env_dict(cfg),
        stack_file=stack_file(),
        state_dir=cfg.state_dir,
    )


def status(cfg: StackConfig | None = None) -> StackStatus:
    """Pid, port, alive and listening for each service (stale pid files are removed)."""
    return _status_unlocked(_resolve_config(cfg))


def _saved_conflicts(cfg: StackConfig) -> None:
    """Refuse to change the ports of services that run with other ports."""
    if not cfg.saved_config_file.is_file():
        return
    try:
        saved = StackConfig.from_json(cfg.saved_config_file.read_text(encoding="utf-8"))
    except (ValueError, TypeError):
        return
    for service in SERVICES:
        if _running_pid(saved, service) is None:
            continue
        if _ports_of(service, saved) != _ports_of(service, cfg):
            raise StackError(
                f"{service} already runs on port {saved.port_of(service)} (state dir"
                f" {cfg.state_dir}); run `crowdwatch stack down` before changing ports"
            )


def up(cfg: StackConfig | None = None, *, install: bool = True) -> UpResult:
    """Start whatever is not running, wait until all answer, write the stack file.

    Without ``cfg``: the config the stack was last started with (while its state says
    it is up), else :meth:`StackConfig.from_env`.
    """
    cfg = _resolve_config(cfg)
    cfg.validate()
    t_start = time.monotonic()
    timings: dict[str, float] = {}
    with _locked(cfg):
        _saved_conflicts(cfg)
        running = {s: _running_pid(cfg, s) for s in SERVICES}
        to_start = [s for s in SERVICES if running[s] is None]
        installed: tuple[str, ...] = ()
        if to_start and install:
            t0 = time.monotonic()
            need = {
                "kafka": ("java", "mvn"),
                "redis": ("redis-server",),
                "prometheus": ("prometheus",),
                "alertmanager": ("prometheus-alertmanager",),
            }
            exes = [exe for s in to_start for exe in need[s]]
            if "alertmanager" in to_start and _which("alertmanager") is not None:
                exes.remove("prometheus-alertmanager")
            installed = ensure_packages(exes)
            timings["apt"] = round(time.monotonic() - t0, 2)
        t0 = time.monotonic()
        if "kafka" in to_start:
            version, libs = ensure_kafka_libs(cfg)
        else:  # running: report what is cached, never fetch
            version, libs = _cached_kafka_libs(cfg) or (cfg.kafka_version or "?", Path())
        timings["kafka-jars"] = round(time.monotonic() - t0, 2)
        jars = len(list(libs.glob("*.jar"))) if libs != Path() else 0
        cfg = replace(cfg, kafka_version=version)
        if to_start:
            _write_atomic(cfg.saved_config_file, cfg.to_json() + "\n")
            _start_services(cfg, to_start, libs if "kafka" in to_start else None, timings)
        _write_atomic(stack_file(), render_stack_env(cfg))
        st = _status_unlocked(cfg)
    timings["total"] = round(time.monotonic() - t_start, 2)
    actions = {s: ("started" if s in to_start else "already running") for s in SERVICES}
    return UpResult(
        actions=actions,
        status=st,
        kafka_version=version,
        kafka_jars=jars,
        kafka_libs=libs,
        timings=timings,
        installed_packages=installed,
    )


def down(cfg: StackConfig | None = None, *, purge: bool = False) -> dict[str, int | None]:
    """Stop all services (reverse order), remove pid files and the stack file.

    ``purge`` also deletes the data dirs (Kafka's log dir: the next ``up`` re-formats).
    Returns service -> pid that was stopped (None: was not running).
    """
    cfg = _resolve_config(cfg)
    stopped: dict[str, int | None] = {}
    with _locked(cfg):
        for service in reversed(SERVICES):
            stopped[service] = _stop_service(cfg, service)
        stack_file().unlink(missing_ok=True)
        if purge:
            for service in SERVICES:
                shutil.rmtree(cfg.data_dir(service), ignore_errors=True)
            (cfg.service_dir("kafka") / "cluster.id").unlink(missing_ok=True)
        cfg.saved_config_file.unlink(missing_ok=True)
    return stopped


def kill_service(name: str, sig: int = signal.SIGKILL, cfg: StackConfig | None = None) -> int:
    """Send ``sig`` to a running service (fault injection). Returns its pid.

    The pid file stays: :func:`status` then reports the service dead and
    :func:`restart_service` starts it again on the same data.
    """
    _check_service_name(name)
    cfg = _resolve_config(cfg)
    pid = _running_pid(cfg, name)
    if pid is None:
        raise StackError(f"{name} is not running")
    os.kill(pid, sig)
    if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
        deadline = time.monotonic() + (5 if sig == signal.SIGKILL else STOP_TIMEOUT_S)
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    return pid


def restart_service(name: str, cfg: StackConfig | None = None) -> ServiceStatus:
    """Stop the service if it runs, start it again with the same data, wait until ready."""
    _check_service_name(name)
    cfg = _resolve_config(cfg)
    with _locked(cfg):
        _stop_service(cfg, name)
        libs: Path | None = None
        if name == "kafka":
            _, libs = ensure_kafka_libs(cfg)
        _start_services(cfg, [name], libs, {})
        return _status_unlocked(cfg).service(name)


def set_worker_targets(targets: Sequence[str], cfg: StackConfig | None = None) -> Path:
    """Rewrite the ``crowdwatch-worker`` file_sd targets (Prometheus re-reads it within ~1 s)."""
    cfg = _resolve_config(cfg)
    _write_atomic(cfg.targets_file, render_targets(targets))
    return cfg.targets_file


def set_connector_targets(targets: Sequence[str], cfg: StackConfig | None = None) -> Path:
    """Rewrite the ``crowdwatch-ingest`` file_sd targets: the ``--metrics-port`` of the live
    connectors (``crowdwatch ingest bluesky|mastodon``); re-read within ~1 s."""
    cfg = _resolve_config(cfg)
    _write_atomic(cfg.connector_targets_file, render_targets(targets))
    return cfg.connector_targets_file


def reload_prometheus(cfg: StackConfig | None = None) -> None:
    """Ask Prometheus to re-read its config and rule files (``POST /-/reload``)."""
    cfg = _resolve_config(cfg)
    req = urllib.request.Request(f"http://127.0.0.1:{cfg.prometheus_port}/-/reload", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            if int(resp.status) != 200:
                raise StackError(f"prometheus reload answered HTTP {resp.status}")
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace").strip()
        raise StackError(f"prometheus reload failed: HTTP {exc.code} {body[:300]}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise StackError(f"prometheus reload failed: {exc}") from exc


# --------------------------------------------------------------------------- command line


def _status_table(st: StackStatus) -> list[str]:
    rows = [("service", "pid", "port", "alive", "listening")]
    rows += [
        (
            s.name,
            str(s.pid or "-"),
            str(s.port),
            "yes" if s.alive else "no",
            "yes" if s.listening else "no",
        )
        for s in st.services
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m streams.stack",
        description="Real local Kafka, Redis, Prometheus and Alertmanager on 127.0.0.1.",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    pu = sub.add_parser("up", help="start the local stack (idempotent)")
    pu.add_argument("--state-dir", type=Path)
    pu.add_argument("--kafka-version")
    pu.add_argument("--kafka-port", type=int)
    pu.add_argument("--controller-port", type=int)
    pu.add_argument("--redis-port", type=int)
    pu.add_argument("--prometheus-port", type=int)
    pu.add_argument("--alertmanager-port", type=int)
    pu.add_argument("--scrape-interval", help="Prometheus scrape/evaluation interval, e.g. 5s")
    pu.add_argument("--timeout", type=float, dest="start_timeout_s", help="start-up timeout (s)")
    pu.add_argument("--no-install", action="store_true", help="never run apt-get")
    pd = sub.add_parser("down", help="stop the local stack")
    pd.add_argument("--purge", action="store_true", help="also delete data (Kafka re-formats)")
    ps = sub.add_parser("status", help="show the services")
    ps.add_argument("--env", action="store_true", help="print the dotenv lines only")
    ps.add_argument("--json", action="store_true")
    pr = sub.add_parser("restart", help="restart one service on the same data")
    pr.add_argument("service", choices=SERVICES)
    pk = sub.add_parser("kill", help="send a signal to one service (fault injection)")
    pk.add_argument("service", choices=SERVICES)
    pk.add_argument("--signal", default="KILL", help="signal name or number (default KILL)")
    return p


def _parse_signal(text: str) -> int:
    if text.isdigit():
        return int(text)
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError as exc:
        raise StackError(f"unknown signal {text!r}") from exc


def _emit(out: IO[str], line: str = "") -> None:
    out.write(line + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = sys.stdout
    # kafka-python logs connection attempts; keep the console to our own lines.
    logging.getLogger("kafka").addHandler(logging.NullHandler())
    logging.getLogger("kafka").propagate = False
    try:
        if args.cmd == "up":
            overrides = {
                "state_dir": args.state_dir,
                "kafka_version": args.kafka_version,
                "kafka_port": args.kafka_port,
                "controller_port": args.controller_port,
                "redis_port": args.redis_port,
                "prometheus_port": args.prometheus_port,
                "alertmanager_port": args.alertmanager_port,
                "scrape_interval": args.scrape_interval,
                "start_timeout_s": args.start_timeout_s,
            }
            given = any(v is not None for v in overrides.values())
            cfg = StackConfig.from_env(**overrides) if given else None
            res = up(cfg, install=not args.no_install)
            if res.installed_packages:
                _emit(out, f"installed: {' '.join(res.installed_packages)}")
            if res.already_running:
                _emit(out, f"stack already running (Kafka {res.kafka_version})")
            else:
                for name, action in res.actions.items():
                    _emit(out, f"{name}: {action}")
                _emit(out, f"Kafka {res.kafka_version}, {res.kafka_jars} jars in {res.kafka_libs}")
            for line in _status_table(res.status):
                _emit(out, line)
            steps = ", ".join(f"{k} {v:.2f}s" for k, v in res.timings.items())
            _emit(out, f"timings: {steps}")
            _emit(out, f"settings written to {res.status.stack_file}")
        elif args.cmd == "down":
            stopped = down(purge=args.purge)
            for name, pid in stopped.items():
                _emit(out, f"{name}: {'stopped pid ' + str(pid) if pid else 'not running'}")
            if args.purge:
                _emit(out, "data purged")
        elif args.cmd == "status":
            st = status()
            if args.env:
                for key, value in st.env.items():
                    _emit(out, f"{key}={value}")
            elif args.json:
                data = {
                    "services": [{**asdict(s), "log": str(s.log)} for s in st.services],
                    "env": st.env,
                    "stack_file": str(st.stack_file),
                    "state_dir": str(st.state_dir),
                    "all_alive": st.all_alive,
                }
                _emit(out, json.dumps(data, indent=2))
            else:
                for line in _status_table(st):
                    _emit(out, line)
                _emit(out, f"state dir: {st.state_dir}")
            return 0 if st.all_alive or args.env else 3
        elif args.cmd == "restart":
            s = restart_service(args.service)
            _emit(out, f"{s.name}: restarted, pid {s.pid}, port {s.port}")
        elif args.cmd == "kill":
            pid = kill_service(args.service, _parse_signal(args.signal))
            _emit(out, f"{args.service}: sent {args.signal} to pid {pid}")
    except StackError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except BrokenPipeError:  # output piped into `head` and the like
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
