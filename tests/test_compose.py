"""Static checks of the Docker Compose deployment; no Docker engine needed.

They keep docker-compose.yml, deploy/Dockerfile, .dockerignore and the Prometheus,
Alertmanager and Grafana configs consistent with each other and with the code: image
pins, paths that exist, environment variables that are real settings, ports and host
names that line up, commands the CLI accepts. ``promtool``, ``amtool`` and ``docker
compose`` validate their files where they are installed (skipped, with the reason,
where not).
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from packaging.specifiers import SpecifierSet

from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROMETHEUS_FILE = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTMANAGER_FILE = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DOCKERIGNORE = ROOT / ".dockerignore"

ENV_PREFIX = "CROWDWATCH_"
EXPECTED_SERVICES = {"kafka", "redis", "worker", "ingest", "bluesky", "prometheus", "alertmanager",
                     "grafana"}
#: Services that may publish a port to the host (and then on the loopback only).
PUBLISHED = {"grafana", "prometheus"}
#: An exact release: 4.3.1, v3.13.4, 7.4.9-alpine, 3.11.15-slim (not 7, 7.4, latest).
PINNED_TAG = re.compile(r"^v?\d+\.\d+\.\d+(?:[-.][A-Za-z0-9.]+)*$")


# --------------------------------------------------------------------------- helpers


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = _load_yaml(COMPOSE_FILE)
    assert isinstance(doc, dict), "docker-compose.yml is not a mapping"
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    svcs = compose.get("services")
    assert isinstance(svcs, dict) and svcs, "docker-compose.yml has no services"
    return svcs


@pytest.fixture(scope="module")
def prometheus() -> dict[str, Any]:
    doc = _load_yaml(PROMETHEUS_FILE)
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _env(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping (compose allows a list of KEY=VALUE too)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = (item.split("=", 1) for item in raw)
        return {p[0]: (p[1] if len(p) > 1 else "") for p in pairs}
    return {str(k): "" if v is None else str(v) for k, v in raw.items()}


def _split_image(ref: str) -> tuple[str, str | None]:
    """``[registry[:port]/]name[:tag][@digest]`` -> (name, tag)."""
    ref = ref.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, None


def _mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, is_bind) of each volume entry, short or long syntax."""
    out = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            src, dst = str(entry.get("source", "")), str(entry["target"])
            out.append((src, dst, entry.get("type") == "bind"))
        else:
            parts = str(entry).split(":")
            src, dst = parts[0], parts[1] if len(parts) > 1 else parts[0]
            out.append((src, dst, src.startswith((".", "/", "~"))))
    return out


def _host_path_of(service: dict[str, Any], container_path: str) -> Path | None:
    """The repository path that a bind mount of ``service`` shows at ``container_path``."""
    target = PurePosixPath(container_path)
    for src, dst, is_bind in _mounts(service):
        if not is_bind:
            continue
        mount = PurePosixPath(dst)
        if target == mount or mount in target.parents:
            return (ROOT / src / target.relative_to(mount)).resolve()
    return None


def _command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def _listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` -> {NAME: (host, port)}."""
    out = {}
    for item in value.split(","):
        name, _, address = item.strip().partition("://")
        host, _, port = address.rpartition(":")
        out[name] = (host, int(port))
    return out


def _dockerfile() -> tuple[Path, Path]:
    """(build context, Dockerfile) of the worker service."""
    build = _load_yaml(COMPOSE_FILE)["services"]["worker"]["build"]
    context = ROOT / build.get("context", ".")
    return context, context / build.get("dockerfile", "Dockerfile")


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            word, _, rest = full.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _json_or_words(args: str) -> list[str]:
    return [str(a) for a in json.loads(args)] if args.startswith("[") else shlex.split(args)


def _copy_sources(dockerfile: Path) -> list[str]:
    """Sources of the COPY/ADD instructions that read the build context."""
    sources: list[str] = []
    for word, args in _instructions(dockerfile):
        if word not in ("COPY", "ADD"):
            continue
        words = _json_or_words(args)
        flags = [w for w in words if w.startswith("--")]
        if any(f.startswith("--from=") for f in flags):
            continue
        paths = [w for w in words if not w.startswith("--")]
        sources += paths[:-1]
    return sources


def _final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    instructions = _instructions(dockerfile)
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


# --------------------------------------------------------------------------- compose


def test_compose_parses_with_the_expected_services(services: dict[str, Any]) -> None:
    assert set(services) == EXPECTED_SERVICES


def test_every_image_is_pinned(services: dict[str, Any], pyproject: dict[str, Any]) -> None:
    version = pyproject["project"]["version"]
    for name, svc in services.items():
        assert "image" in svc, f"{name}: no image"
        _, tag = _split_image(svc["image"])
        assert tag, f"{name}: image {svc['image']!r} has no tag"
        assert tag != "latest", f"{name}: image {svc['image']!r} uses latest"
        if "build" in svc:
            # Built here: tagged with the project's own version.
            assert tag == version, f"{name}: built image tag {tag!r} != project {version}"
        else:
            assert PINNED_TAG.match(tag), f"{name}: {svc['image']!r} is not an exact release"


def test_build_dockerfile_exists(services: dict[str, Any]) -> None:
    built = {n: s["build"] for n, s in services.items() if "build" in s}
    assert "worker" in built
    for name, build in built.items():
        context = ROOT / build.get("context", ".")
        assert context.is_dir(), f"{name}: build context {context} missing"
        assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name


def test_bind_mount_sources_exist_and_named_volumes_are_declared(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    declared = set(compose.get("volumes") or {})
    for name, svc in services.items():
        for src, dst, is_bind in _mounts(svc):
            if is_bind:
                assert not Path(src).is_absolute(), f"{name}: absolute host path {src}"
                assert (ROOT / src).exists(), f"{name}: bind mount source {src} does not exist"
            else:
                assert src in declared, f"{name}: volume {src!r} (at {dst}) not declared"


def test_worker_environment_is_real_settings(services: dict[str, Any]) -> None:
    fields = Settings.model_fields
    for name in ("worker", "ingest"):
        env = _env(services[name])
        assert env, f"{name}: no environment"
        values = {}
        for key, value in env.items():
            assert key.startswith(ENV_PREFIX), f"{name}: {key} is not a {ENV_PREFIX}* variable"
            field = key.removeprefix(ENV_PREFIX).lower()
            assert field in fields, f"{name}: {key} is not a Settings field"
            values[field] = value
        Settings.model_validate(values)  # and the values parse (ports are ints, ...)


def test_kafka_bootstrap_is_the_internal_listener(services: dict[str, Any]) -> None:
    kafka = _env(services["kafka"])
    advertised = _listeners(kafka["KAFKA_ADVERTISED_LISTENERS"])
    listening = _listeners(kafka["KAFKA_LISTENERS"])
    inter = kafka["KAFKA_INTER_BROKER_LISTENER_NAME"]
    assert advertised[inter][0] == "kafka", "clients must be sent to the kafka service name"
    assert advertised[inter][1] == listening[inter][1]
    for name in ("worker", "ingest", "bluesky"):
        bootstrap = _env(services[name])["CROWDWATCH_KAFKA_BOOTSTRAP"]
        assert bootstrap == "{}:{}".format(*advertised[inter]), name
    # KRaft: the voter is this node on its controller listener
    node, _, voter = kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node == str(kafka["KAFKA_NODE_ID"])
    controller = kafka["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert voter == f"kafka:{listening[controller][1]}"
    assert int(kafka["KAFKA_NUM_PARTITIONS"]) == Settings.model_fields["topic_partitions"].default
    # the data volume is where the broker writes its log
    assert kafka["KAFKA_LOG_DIRS"] in {dst for _, dst, _ in _mounts(services["kafka"])}


def test_redis_url_points_at_the_redis_service(services: dict[str, Any]) -> None:
    url = urlparse(_env(services["worker"])["CROWDWATCH_REDIS_URL"])
    assert url.scheme == "redis"
    assert url.hostname == "redis" and "redis" in services
    cmd = _command(services["redis"])
    port = int(cmd[cmd.index("--port") + 1]) if "--port" in cmd else 6379
    assert url.port == port


def test_worker_web_listens_in_container_only(services: dict[str, Any]) -> None:
    worker = services["worker"]
    env = _env(worker)
    # All interfaces *inside the container*, so Prometheus (another container on the
    # stack's network) can scrape each replica; nothing is published to the host.
    assert ipaddress.ip_address(env["CROWDWATCH_WEB_HOST"]).is_unspecified
    assert int(env["CROWDWATCH_WEB_PORT"]) == Settings.model_fields["web_port"].default
    assert "ports" not in worker, "the worker's /metrics and /health must not be published"
    # `docker compose up --scale worker=3` needs compose to pick container names.
    assert "container_name" not in worker
    health = " ".join(worker["healthcheck"]["test"])
    assert "/health" in health and "CROWDWATCH_WEB_PORT" in health


def test_only_grafana_and_prometheus_are_published_on_loopback(
    services: dict[str, Any],
) -> None:
    for name, svc in services.items():
        ports = svc.get("ports") or []
        if not ports:
            continue
        assert name in PUBLISHED, f"{name} publishes {ports}"
        for port in ports:
            host_ip = (
                port.get("host_ip", "") if isinstance(port, dict) else str(port).split(":")[0]
            )
            assert ipaddress.ip_address(host_ip).is_loopback, f"{name}: {port} not on loopback"
    assert services["grafana"]["ports"] == ["127.0.0.1:3000:3000"]


def test_commands_are_accepted_by_the_cli(services: dict[str, Any]) -> None:
    import typer.core
    import typer.main

    from streams.cli import app

    cli = typer.main.get_command(app)
    assert isinstance(cli, typer.core.TyperGroup)
    assert _command(services["worker"]) == ["worker"]  # the image's ENTRYPOINT is crowdwatch
    for name in ("worker", "ingest"):
        sub, *args = _command(services[name])
        command = cli.commands[sub]
        with command.make_context(sub, list(args)) as ctx:
            assert ctx.params is not None
    assert "demo" in services["ingest"].get("profiles", [])
    assert "profiles" not in services["worker"]


def test_live_bluesky_connector(services: dict[str, Any], prometheus: dict[str, Any]) -> None:
    """`docker compose --profile live up`: a Bluesky connector for the worker's event,
    its /metrics scraped by Prometheus (job crowdwatch-ingest) but never published."""
    import typer.core
    import typer.main

    from streams.cli import app
    from streams.ingest.common import IngestSettings

    svc = services["bluesky"]
    assert svc.get("profiles") == ["live"]
    assert svc["image"] == services["worker"]["image"]
    cmd = _command(svc)
    assert cmd[:2] == ["ingest", "bluesky"]
    cli = typer.main.get_command(app)
    assert isinstance(cli, typer.core.TyperGroup)
    group = cli.commands["ingest"]
    assert isinstance(group, typer.core.TyperGroup)
    with group.commands["bluesky"].make_context("bluesky", cmd[2:]) as ctx:
        assert ctx.params["metrics_port"] is not None
        event = str(ctx.params["event_path"])
    port = int(ctx.params["metrics_port"])
    # the worker's event file, mounted
    host = _host_path_of(svc, event)
    assert host is not None and host.is_file(), f"bluesky: {event} is not mounted"
    assert host == _host_path_of(services["worker"], _env(services["worker"])[
        "CROWDWATCH_EVENT_FILE"])
    # every variable is a real setting (Kafka from Settings, the rest IngestSettings)
    env = _env(svc)
    ingest_fields = IngestSettings.model_fields
    values = {}
    for key in env:
        field = key.removeprefix(ENV_PREFIX).lower()
        if field.startswith("ingest_"):
            assert field.removeprefix("ingest_") in ingest_fields, key
            values[field.removeprefix("ingest_")] = env[key]
        else:
            assert field in Settings.model_fields, key
    ingest = IngestSettings.model_validate(values)
    # /metrics on all interfaces inside the container only; Prometheus finds it
    assert ipaddress.ip_address(ingest.metrics_host).is_unspecified
    assert "ports" not in svc
    (sd,) = _job(prometheus, "crowdwatch-ingest")["dns_sd_configs"]
    assert sd["names"] == ["bluesky"] and sd["type"] == "A" and sd["port"] == port
    # the cursor survives a restart: the state dir is on a named volume
    state = PurePosixPath(str(ingest.state_dir))
    assert any(not is_bind and (PurePosixPath(dst) == state or PurePosixPath(dst) in
                                state.parents) for _, dst, is_bind in _mounts(svc))
    assert svc["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_demo_and_event_files_are_mounted(services: dict[str, Any]) -> None:
    replay_files = [a for a in _command(services["ingest"])[1:] if a.endswith(".jsonl")]
    assert replay_files
    for path in replay_files:
        host = _host_path_of(services["ingest"], path)
        assert host is not None and host.is_file(), f"ingest: {path} is not mounted"
    event = _env(services["worker"])["CROWDWATCH_EVENT_FILE"]
    host = _host_path_of(services["worker"], event)
    assert host is not None and host.is_file(), f"worker: {event} is not mounted"


def test_services_wait_for_healthy_dependencies(services: dict[str, Any]) -> None:
    for name in ("kafka", "redis", "worker", "prometheus", "alertmanager", "grafana"):
        assert "healthcheck" in services[name], f"{name}: no healthcheck"
    depends = services["worker"]["depends_on"]
    for dep in ("kafka", "redis"):
        assert depends[dep]["condition"] == "service_healthy"
    assert services["ingest"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    kafka_check = services["kafka"]["healthcheck"]["test"]
    assert "/opt/kafka/bin/kafka-topics.sh" in kafka_check


def test_grafana_ships_no_default_secret(services: dict[str, Any]) -> None:
    env = _env(services["grafana"])
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]+\}", env["GF_SECURITY_ADMIN_PASSWORD"])
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"


def test_grafana_provisioning(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    datasources = _load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")
    (ds,) = datasources["datasources"]
    assert ds["uid"] == "prometheus" and ds["type"] == "prometheus"
    url = urlparse(ds["url"])
    assert url.hostname in services and url.port == 9090
    providers = _load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "crowdwatch.yml")
    (provider,) = providers["providers"]
    assert provider["folder"] == "crowdwatch" and provider["type"] == "file"
    dashboards = _host_path_of(grafana, provider["options"]["path"])
    assert dashboards == (GRAFANA_DIR / "dashboards").resolve() and dashboards.is_dir()
    provisioning = _host_path_of(grafana, "/etc/grafana/provisioning")
    assert provisioning == (GRAFANA_DIR / "provisioning").resolve()


def _provisioned_datasources() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted((GRAFANA_DIR / "provisioning" / "datasources").glob("*.y*ml")):
        for ds in _load_yaml(path).get("datasources") or []:
            assert ds["uid"] not in out, f"datasource uid {ds['uid']} provisioned twice"
            out[ds["uid"]] = ds
    return out


def _dashboard_files() -> dict[Path, dict[str, Any]]:
    files = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
    assert files, "no dashboards: run `python -m dashboards.generate`"
    return {p: json.loads(p.read_text(encoding="utf-8")) for p in files}


def _used_datasources(node: Any) -> Iterator[dict[str, Any]]:
    """Every {"type", "uid"} datasource reference anywhere in a dashboard document."""
    if isinstance(node, dict):
        ds = node.get("datasource")
        if isinstance(ds, dict) and "uid" in ds:
            yield ds
        for value in node.values():
            yield from _used_datasources(value)
    elif isinstance(node, list):
        for value in node:
            yield from _used_datasources(value)


def test_every_dashboard_file_is_mounted_and_unique(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    providers = _load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "crowdwatch.yml")
    (provider,) = providers["providers"]
    uids = set()
    for path, doc in _dashboard_files().items():
        container = PurePosixPath(provider["options"]["path"]) / path.name
        assert _host_path_of(grafana, str(container)) == path.resolve(), f"{path} not mounted"
        assert doc.get("uid") and doc["uid"] not in uids, f"{path}: missing or duplicate uid"
        uids.add(doc["uid"])
        assert doc.get("title"), path


def test_every_dashboard_datasource_is_provisioned(services: dict[str, Any]) -> None:
    provisioned = _provisioned_datasources()
    for path, doc in _dashboard_files().items():
        for ref in _used_datasources(doc):
            if ref["uid"] == "-- Grafana --":  # built in: the annotation store
                continue
            assert ref["uid"] in provisioned, f"{path.name}: {ref['uid']} not provisioned"
            assert ref.get("type") == provisioned[ref["uid"]]["type"], (path.name, ref)


def test_worker_api_datasource(services: dict[str, Any]) -> None:
    """The Infinity datasource: plugin installed, pointed at the worker's web port, token
    from the environment that compose requires for both Grafana and the workers."""
    provisioned = _provisioned_datasources()
    (api,) = [ds for ds in provisioned.values()
              if ds["type"] == "yesoreyeram-infinity-datasource"]
    grafana_env = _env(services["grafana"])
    plugins = [p.strip().split()[0] for p in grafana_env["GF_INSTALL_PLUGINS"].split(",")]
    assert "yesoreyeram-infinity-datasource" in plugins
    for spec in grafana_env["GF_INSTALL_PLUGINS"].split(","):
        parts = spec.split()
        assert len(parts) == 2 and PINNED_TAG.match(parts[1]), f"plugin {spec!r} not pinned"
    url = urlparse(api["url"])
    assert url.hostname == "worker" and url.hostname in services
    assert url.port == int(_env(services["worker"])["CROWDWATCH_WEB_PORT"])
    assert api["jsonData"]["allowedHosts"] == [api["url"]]
    assert api["jsonData"]["auth_method"] == "bearerToken"
    token = api["secureJsonData"]["bearerToken"]
    var = re.fullmatch(r"\$\{?(\w+)\}?", token)
    assert var, "the bearer token must come from the environment, not the file"
    required = re.compile(r"\$\{" + re.escape(var[1]) + r":\?[^}]+\}")
    assert required.fullmatch(grafana_env[var[1]]), "Grafana must get the token from compose"
    assert required.fullmatch(_env(services["worker"])[var[1]]), "the workers check the token"
    # every table panel of the worker API calls this datasource's host
    for path, doc in _dashboard_files().items():
        for panel in doc["panels"]:
            for target in panel.get("targets") or []:
                if target.get("datasource", {}).get("uid") == api["uid"]:
                    assert target["url"].startswith(api["url"] + "/api/"), (path.name, target)


def test_area_map_files_are_served(services: dict[str, Any]) -> None:
    """The geomap's gazetteer and outlines: generated files, mounted under Grafana's public
    directory at the paths the dashboards name."""
    grafana = services["grafana"]
    referenced = set()
    for doc in _dashboard_files().values():
        for panel in doc["panels"]:
            if panel["type"] != "geomap":
                continue
            for layer in panel["options"]["layers"]:
                for key in ("gazetteer",):
                    if layer.get("location", {}).get(key):
                        referenced.add(layer["location"][key])
                if layer.get("config", {}).get("src"):
                    referenced.add(layer["config"]["src"])
    assert referenced
    for rel in referenced:
        host = _host_path_of(grafana, f"/usr/share/grafana/{rel}")
        assert host is not None and host.is_file(), f"{rel} is not mounted into Grafana"


# --------------------------------------------------------------------------- prometheus


def _job(prometheus: dict[str, Any], name: str) -> dict[str, Any]:
    jobs = {j["job_name"]: j for j in prometheus["scrape_configs"]}
    assert name in jobs, f"no scrape job {name!r} in {PROMETHEUS_FILE}"
    return jobs[name]


def test_prometheus_scrapes_every_worker_replica(
    prometheus: dict[str, Any], services: dict[str, Any]
) -> None:
    env = _env(services["worker"])
    ports = [int(env["CROWDWATCH_WEB_PORT"])]
    if env.get("CROWDWATCH_RUMOUR_PROCESS", "false").lower() == "true":  # and its child's
        ports.append(int(env["CROWDWATCH_RUMOUR_WEB_PORT"]))
    sds = _job(prometheus, "crowdwatch-worker")["dns_sd_configs"]
    assert [sd["port"] for sd in sds] == ports
    for sd in sds:
        assert sd["names"] == ["worker"] and "worker" in services
        assert sd["type"] == "A"


def test_prometheus_alerting_and_rules(
    prometheus: dict[str, Any], services: dict[str, Any]
) -> None:
    (am,) = prometheus["alerting"]["alertmanagers"]
    (target,) = am["static_configs"][0]["targets"]
    host, _, port = target.partition(":")
    assert host in services and port == "9093"
    (rules,) = prometheus["rule_files"]
    host_glob = _host_path_of(services["prometheus"], rules)
    assert host_glob == (ROOT / "deploy" / "prometheus" / "rules" / "*.yml").resolve()
    assert host_glob.parent.is_dir()
    config = _host_path_of(services["prometheus"], "/etc/prometheus/prometheus.yml")
    assert config == PROMETHEUS_FILE.resolve()


def test_prometheus_matches_the_local_stack(prometheus: dict[str, Any]) -> None:
    """Same worker job, intervals and rules directory as ``crowdwatch stack up``."""
    from streams.stack import StackConfig, render_prometheus_config

    local = yaml.safe_load(render_prometheus_config(StackConfig(repo_root=ROOT)))
    local_jobs = {j["job_name"] for j in local["scrape_configs"]}
    for name in ("crowdwatch-worker", "crowdwatch-ingest"):
        assert name in local_jobs, name
        _job(prometheus, name)
    for key in ("scrape_interval", "evaluation_interval"):
        assert prometheus["global"][key] == local["global"][key], key
    (local_rules,) = local["rule_files"]
    assert Path(local_rules).parent == ROOT / "deploy" / "prometheus" / "rules"


def test_promtool_check_config(prometheus: dict[str, Any], tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus); cannot validate")
    res = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_FILE)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    # The rules glob is a container path; check again with it pointing at the
    # repository's rule files, so promtool validates those as well.
    doc = dict(prometheus, rule_files=[str(ROOT / "deploy" / "prometheus" / "rules" / "*.yml")])
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump(doc), encoding="utf-8")
    res = subprocess.run(
        [promtool, "check", "config", str(copy)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_amtool_check_config() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool not installed (Debian package prometheus-alertmanager); "
                    "cannot validate")
    res = subprocess.run(
        [amtool, "check-config", str(ALERTMANAGER_FILE)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_alertmanager_routes_to_default_receiver(services: dict[str, Any]) -> None:
    doc = _load_yaml(ALERTMANAGER_FILE)
    assert doc["route"]["receiver"] == "default"
    assert doc["route"]["group_by"] == ["alertname", "event", "area"]
    names = [r["name"] for r in doc["receivers"]]
    assert names[0] == "default"
    # every route's receiver is defined (the alerts issue routes per team and severity)
    routes = [doc["route"], *doc["route"].get("routes", [])]
    assert {r["receiver"] for r in routes if "receiver" in r} <= set(names)
    config = _host_path_of(services["alertmanager"], "/etc/alertmanager/alertmanager.yml")
    assert config == ALERTMANAGER_FILE.resolve()


def test_docker_compose_config_validates(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker CLI not installed; compose schema not validated")
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=30, check=False
    )
    if probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed; compose schema not validated")
    res = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "--profile", "demo", "--profile", "live",
         "config", "--quiet"],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path),
             "GRAFANA_ADMIN_PASSWORD": "test-only", "CROWDWATCH_API_TOKEN": "test-only"},
    )
    assert res.returncode == 0, res.stdout + res.stderr


# --------------------------------------------------------------------------- image


def test_dockerfile_copy_sources_exist() -> None:
    context, dockerfile = _dockerfile()
    sources = _copy_sources(dockerfile)
    assert "pyproject.toml" in sources
    for src in sources:
        assert (context / src).exists(), f"{dockerfile.name}: COPY source {src} missing"


def test_dockerignore_keeps_the_copied_sources_only() -> None:
    _, dockerfile = _dockerfile()
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    # Allow-list: everything (.git, .env with the Grafana password, caches) is out ...
    assert patterns[0] == "*"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    # ... except what the Dockerfile copies.
    for src in _copy_sources(dockerfile):
        assert src.rstrip("/") in allowed, f".dockerignore excludes COPY source {src}"


def test_dockerfile_base_images_are_pinned(pyproject: dict[str, Any]) -> None:
    _, dockerfile = _dockerfile()
    args: dict[str, str] = {}
    stages: set[str] = set()
    requires = SpecifierSet(pyproject["project"]["requires-python"])
    for word, rest in _instructions(dockerfile):
        if word == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args.setdefault(key.strip(), value.strip().strip("\"'"))
        elif word == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            ref = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
            if len(words) >= 3 and words[1].upper() == "AS":
                stages.add(words[2])
            if ref in stages:
                continue
            repo, tag = _split_image(ref)
            assert tag and PINNED_TAG.match(tag), f"FROM {ref} is not an exact release"
            if repo.endswith("python"):
                version = tag.split("-", 1)[0]
                assert requires.contains(version), f"{ref} does not satisfy {requires}"


def test_dockerfile_runtime(pyproject: dict[str, Any]) -> None:
    _, dockerfile = _dockerfile()
    final = _final_stage(dockerfile)
    by_word: dict[str, list[str]] = {}
    for word, rest in final:
        by_word.setdefault(word, []).append(rest)
    (entrypoint,) = by_word["ENTRYPOINT"]
    assert json.loads(entrypoint) == ["crowdwatch"]
    assert "crowdwatch" in pyproject["project"]["scripts"]
    assert json.loads(by_word["CMD"][-1]) == ["worker"]
    user = by_word["USER"][-1].split(":")[0]
    assert user not in ("root", "0"), "the image must not run as root"
    assert by_word["EXPOSE"] == [str(Settings.model_fields["web_port"].default)]
    env = " ".join(by_word.get("ENV", []))
    assert re.search(r"\bHF_HUB_OFFLINE=1\b", env)
    # CPU-only torch comes from the PyTorch CPU index, before the project is installed
    runs = [rest for word, rest in _instructions(dockerfile) if word == "RUN"]
    torch_run = next(i for i, r in enumerate(runs) if "download.pytorch.org" in r or
                     "TORCH_INDEX_URL" in r)
    project_run = next(i for i, r in enumerate(runs) if re.search(r"pip install\b.*\s\.(\s|$)", r))
    assert torch_run < project_run
