"""Unit tests of streams.stack that need no running services."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams import stack
from streams.stack import StackConfig, StackError


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StackConfig:
    """A config whose state dir and stack file live in tmp_path (never the real stack)."""
    for key in list(os.environ):
        if key.startswith("CROWDWATCH_STACK_") or key == "CROWDWATCH_KAFKA_VERSION":
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("CROWDWATCH_STACK_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("CROWDWATCH_STACK_FILE", str(tmp_path / "stack.env"))
    monkeypatch.setenv("CROWDWATCH_KAFKA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CROWDWATCH_REPO_ROOT", str(tmp_path / "repo"))
    return StackConfig.from_env()


def _props(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def test_defaults_and_env_paths(cfg: StackConfig, tmp_path: Path) -> None:
    assert cfg.state_dir == tmp_path / "state"
    assert cfg.kafka_port == 19092
    assert cfg.controller_port == 19093
    assert cfg.redis_port == 16379
    assert cfg.prometheus_port == 19090
    assert cfg.alertmanager_port == 19095
    assert stack.kafka_libs_dir(cfg, "4.4.0") == tmp_path / "cache" / "kafka-4.4.0" / "libs"


def test_env_overrides_ports(cfg: StackConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROWDWATCH_STACK_KAFKA_PORT", "29092")
    monkeypatch.setenv("CROWDWATCH_STACK_SCRAPE_INTERVAL", "1s")
    c = StackConfig.from_env(redis_port=26379)
    assert (c.kafka_port, c.redis_port, c.scrape_interval) == (29092, 26379, "1s")


def test_bad_ports_rejected(cfg: StackConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(StackError, match="distinct"):
        StackConfig.from_env(alertmanager_port=19093)
    monkeypatch.setenv("CROWDWATCH_STACK_REDIS_PORT", "six")
    with pytest.raises(StackError, match="not an integer"):
        StackConfig.from_env()


def test_server_properties_loopback_only(cfg: StackConfig) -> None:
    props = _props(stack.render_server_properties(cfg))
    for key in ("listeners", "advertised.listeners"):
        hosts = re.findall(r"//([^:,]*):", props[key])
        assert hosts == ["127.0.0.1", "127.0.0.1"], props[key]
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert props["process.roles"] == "broker,controller"
    assert props["log.dirs"] == str(cfg.data_dir("kafka"))
    assert props["num.partitions"] == "4"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "true"


def test_stack_env_file_content(cfg: StackConfig) -> None:
    text = stack.render_stack_env(cfg)
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == [
        "CROWDWATCH_KAFKA_BOOTSTRAP=127.0.0.1:19092",
        "CROWDWATCH_REDIS_URL=redis://127.0.0.1:16379/0",
        "CROWDWATCH_PROMETHEUS_URL=http://127.0.0.1:19090",
        "CROWDWATCH_ALERTMANAGER_URL=http://127.0.0.1:19095",
    ]


def test_stack_env_is_read_by_settings(cfg: StackConfig, tmp_path: Path) -> None:
    from streams.settings import load_settings

    (tmp_path / "stack.env").write_text(stack.render_stack_env(cfg))
    s = load_settings()
    assert s.kafka_bootstrap == "127.0.0.1:19092"
    assert s.redis_url.get_secret_value() == "redis://127.0.0.1:16379/0"
    assert s.alertmanager_url == "http://127.0.0.1:19095"


def test_prometheus_config(cfg: StackConfig) -> None:
    text = stack.render_prometheus_config(cfg)
    doc = json.loads(text.split("\n", 1)[1])  # JSON is YAML; skip the comment line
    assert doc["global"]["scrape_interval"] == "5s"
    assert doc["rule_files"] == [str(cfg.repo_root / "deploy/prometheus/rules/*.yml")]
    am = doc["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am == ["127.0.0.1:19095"]
    job = doc["scrape_configs"][0]
    assert job["job_name"] == "crowdwatch-worker"
    assert job["file_sd_configs"][0]["files"] == [str(cfg.targets_file)]
    targets = json.loads(stack.render_targets(cfg.worker_targets))
    assert targets[0]["targets"] == [f"127.0.0.1:{p}" for p in range(6066, 6070)]


def test_set_worker_targets(cfg: StackConfig) -> None:
    path = stack.set_worker_targets(["127.0.0.1:7000"], cfg)
    assert json.loads(path.read_text())[0]["targets"] == ["127.0.0.1:7000"]


def test_alertmanager_config_choice(cfg: StackConfig) -> None:
    cmd = stack._service_cmd(cfg, "alertmanager", None)
    assert f"--config.file={cfg.service_dir('alertmanager') / 'alertmanager.yml'}" in cmd
    assert "--cluster.listen-address=" in cmd
    assert f"--web.listen-address=127.0.0.1:{cfg.alertmanager_port}" in cmd
    repo_cfg = cfg.repo_alertmanager_config
    repo_cfg.parent.mkdir(parents=True)
    repo_cfg.write_text("route: {receiver: x}\nreceivers: [{name: x}]\n")
    cmd = stack._service_cmd(cfg, "alertmanager", None)
    assert f"--config.file={repo_cfg}" in cmd


def test_redis_and_prometheus_bind_loopback(cfg: StackConfig) -> None:
    redis = stack._service_cmd(cfg, "redis", None)
    assert redis[redis.index("--bind") + 1] == "127.0.0.1"
    assert redis[redis.index("--save") + 1] == ""
    prom = stack._service_cmd(cfg, "prometheus", None)
    assert f"--web.listen-address=127.0.0.1:{cfg.prometheus_port}" in prom
    assert "--web.enable-lifecycle" in prom


def test_cluster_id_shape() -> None:
    for _ in range(200):
        cid = stack.new_cluster_id()
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cid)
        assert not cid.startswith("-")


def test_pom_lists_kafka_and_logging() -> None:
    pom = stack.render_pom("4.4.0")
    assert "<artifactId>kafka_2.13</artifactId><version>4.4.0</version>" in pom
    assert "log4j-slf4j-impl" in pom
    assert "log4j-core" in pom


def test_config_json_round_trip(cfg: StackConfig) -> None:
    c = StackConfig.from_env(kafka_port=29092, worker_targets=["127.0.0.1:1"])
    assert StackConfig.from_json(c.to_json()) == c


def test_stale_pid_file_is_handled(cfg: StackConfig) -> None:
    # A pid that surely is not running: a child that has exited and been reaped.
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = int(proc.stdout)
    pid_file = cfg.pid_file("redis")
    pid_file.parent.mkdir(parents=True)
    pid_file.write_text(f"{dead}\n")
    st = stack.status(cfg)
    assert not st.service("redis").alive
    assert st.service("redis").pid is None
    assert not pid_file.exists()
    # A live pid of another program (this test process) is not believed either.
    pid_file.write_text(f"{os.getpid()}\n")
    assert not stack.status(cfg).service("kafka").alive
    assert not stack.status(cfg).service("redis").alive
    # Garbage in a pid file.
    pid_file.write_text("not a pid\n")
    assert stack.status(cfg).service("redis").pid is None
    assert not stack.status(cfg).all_alive


def test_down_stops_our_process_and_removes_files(
    cfg: StackConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(stack._CMD_MARKERS, "redis", "crowdwatch-fake-redis")
    cmd = [sys.executable, "-c", "import time; time.sleep(60)", "crowdwatch-fake-redis"]
    pid = stack._spawn(cfg, "redis", cmd, cfg.state_dir)
    (cfg.data_dir("redis")).mkdir(parents=True)
    stack.stack_file().write_text(stack.render_stack_env(cfg))
    assert stack.status(cfg).service("redis").pid == pid
    stopped = stack.down(cfg, purge=True)
    assert stopped["redis"] == pid
    assert stopped["kafka"] is None
    assert not stack._pid_alive(pid)
    assert not cfg.pid_file("redis").exists()
    assert not stack.stack_file().exists()
    assert not cfg.data_dir("redis").exists()


def test_kill_service_leaves_pid_file(cfg: StackConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(stack._CMD_MARKERS, "redis", "crowdwatch-fake-redis")
    cmd = [sys.executable, "-c", "import time; time.sleep(60)", "crowdwatch-fake-redis"]
    pid = stack._spawn(cfg, "redis", cmd, cfg.state_dir)
    assert stack.kill_service("redis", signal.SIGKILL, cfg) == pid
    assert not stack.status(cfg).service("redis").alive
    with pytest.raises(StackError, match="not running"):
        stack.kill_service("redis", signal.SIGKILL, cfg)
    with pytest.raises(StackError, match="unknown service"):
        stack.kill_service("zookeeper", signal.SIGKILL, cfg)


def test_port_in_use_by_stranger(cfg: StackConfig) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        c = StackConfig.from_env(redis_port=port)
        with pytest.raises(StackError, match=rf"127\.0\.0\.1:{port} for redis is already in use"):
            stack._check_ports_free(c, ["redis"], grace_s=0.3)
    deadline = time.monotonic() + 2
    while not stack._port_free(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    stack._check_ports_free(c, ["redis"])


def test_up_refuses_port_change_of_running_service(
    cfg: StackConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(stack._CMD_MARKERS, "redis", "crowdwatch-fake-redis")
    cmd = [sys.executable, "-c", "import time; time.sleep(60)", "crowdwatch-fake-redis"]
    pid = stack._spawn(cfg, "redis", cmd, cfg.state_dir)
    try:
        cfg.saved_config_file.write_text(cfg.to_json())
        with pytest.raises(StackError, match="already runs on port 16379"):
            stack.up(StackConfig.from_env(redis_port=26379), install=False)
    finally:
        stack._stop_pid(pid, timeout=5)


def test_main_status_env(cfg: StackConfig, capsys: pytest.CaptureFixture[str]) -> None:
    rc = stack.main(["status", "--env"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert out[0] == "CROWDWATCH_KAFKA_BOOTSTRAP=127.0.0.1:19092"
    assert stack.main(["status"]) == 3  # nothing runs in the tmp state dir
    assert "kafka" in capsys.readouterr().out


def test_main_reports_errors_in_one_line(
    cfg: StackConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack.main(["kill", "redis"]) == 1
    err = capsys.readouterr().err
    assert err == "error: redis is not running\n"


def test_missing_packages_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack, "_which", lambda exe: None if exe == "redis-server" else "/x")
    monkeypatch.setattr(stack.os, "geteuid", lambda: 1000)
    with pytest.raises(StackError, match="missing redis-server: install the Debian packages"):
        stack.ensure_packages(["redis-server", "java"])


def test_missing_packages_installed_as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    installed: set[str] = set()
    calls: list[list[str]] = []

    def which(exe: str) -> str | None:
        if exe in ("redis-server", "prometheus") and exe not in installed:
            return None
        return f"/usr/bin/{exe}"

    def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        assert isinstance(kw["env"], dict)
        assert kw["env"]["DEBIAN_FRONTEND"] == "noninteractive"
        if cmd[1] == "install":
            installed.update(("redis-server", "prometheus"))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(stack, "_which", which)
    monkeypatch.setattr(stack.os, "geteuid", lambda: 0)
    monkeypatch.setattr(stack.subprocess, "run", run)
    assert stack.ensure_packages(["redis-server", "prometheus", "java"]) == (
        "prometheus",
        "redis-server",
    )
    assert calls == [
        ["/usr/bin/apt-get", "update"],
        [
            "/usr/bin/apt-get",
            "install",
            "-y",
            "--no-install-recommends",
            "prometheus",
            "redis-server",
        ],
    ]
    calls.clear()
    assert stack.ensure_packages(["redis-server", "prometheus"]) == ()
    assert calls == []
