"""The real local stack (``crowdwatch stack up`` / ``python -m streams.stack up``) answers."""

from __future__ import annotations

import ipaddress
import socket
import time
import urllib.request
import uuid

import pytest

from streams import stack
from streams.settings import Settings, load_settings, stack_file

pytestmark = [
    pytest.mark.integration,
    # kafka-python 3.0 loads its protocol schemas with deprecated importlib.resources calls.
    pytest.mark.filterwarnings("ignore:read_text is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning"),
    pytest.mark.skipif(
        not stack_file().is_file(),
        reason=f"local stack not up ({stack_file()} missing): run `python -m streams.stack up`",
    ),
]


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings()


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback URL
        return int(resp.status), resp.read().decode()


def test_status_reports_all_alive() -> None:
    st = stack.status()
    assert st.all_alive, [s for s in st.services if not (s.alive and s.listening)]
    assert {s.name for s in st.services} == set(stack.SERVICES)
    assert all(s.pid for s in st.services)


def test_stack_file_matches_status(settings: Settings) -> None:
    env = stack.status().env
    assert settings.kafka_bootstrap == env["CROWDWATCH_KAFKA_BOOTSTRAP"]
    assert settings.redis_url.get_secret_value() == env["CROWDWATCH_REDIS_URL"]
    assert settings.prometheus_url == env["CROWDWATCH_PROMETHEUS_URL"]
    assert settings.alertmanager_url == env["CROWDWATCH_ALERTMANAGER_URL"]


def test_kafka_round_trip(settings: Settings) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    topic = f"stack-test-{uuid.uuid4().hex[:12]}"
    kw = settings.kafka_client_kwargs()
    admin = KafkaAdminClient(**kw, client_id="stack-test")
    try:
        admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
        producer = KafkaProducer(**kw, acks="all")
        payloads = [f"post-{i}".encode() for i in range(10)]
        try:
            for i, p in enumerate(payloads):
                producer.send(topic, value=p, key=str(i).encode(), partition=i % 2).get(10)
            producer.flush(10)
        finally:
            producer.close()
        consumer = KafkaConsumer(**kw, enable_auto_commit=False, consumer_timeout_ms=10_000)
        try:
            parts = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
            got: list[bytes] = []
            deadline = time.monotonic() + 20
            while len(got) < len(payloads) and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=1000).values():
                    got += [r.value for r in records]
            assert sorted(got) == sorted(payloads)
            assert consumer.end_offsets(parts) == {parts[0]: 5, parts[1]: 5}
        finally:
            consumer.close()
    finally:
        try:
            admin.delete_topics([topic])
        finally:
            admin.close()


def test_redis_ping(settings: Settings) -> None:
    host_port = settings.redis_url.get_secret_value().split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    assert host == "127.0.0.1"
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"PING\r\n")
        assert s.recv(64).startswith(b"+PONG")


def test_redis_ping_with_client(settings: Settings) -> None:
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    try:
        assert client.ping() is True
    finally:
        client.close()


def test_prometheus_ready(settings: Settings) -> None:
    code, _ = _get(f"{settings.prometheus_url}/-/ready")
    assert code == 200
    code, body = _get(f"{settings.prometheus_url}/api/v1/status/config")
    assert code == 200
    assert "crowdwatch-worker" in body


def test_alertmanager_ready(settings: Settings) -> None:
    code, _ = _get(f"{settings.alertmanager_url}/-/ready")
    assert code == 200


def _non_loopback_address() -> str | None:
    """This host's address on its default route (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.254.254.254", 1))
        except OSError:
            return None
        addr = str(s.getsockname()[0])
    ip = ipaddress.ip_address(addr)
    return None if ip.is_loopback or ip.is_unspecified else addr


def test_services_listen_on_loopback_only() -> None:
    addr = _non_loopback_address()
    if addr is None:
        pytest.skip("this host has no non-loopback IPv4 address")
    cfg = stack._resolve_config(None)
    for name, port in cfg.ports().items():
        with socket.socket() as sock:
            sock.settimeout(0.5)
            assert sock.connect_ex((addr, port)) != 0, f"{name} reachable on {addr}:{port}"
