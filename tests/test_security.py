"""Kafka TLS / SASL and secrets from settings: what reaches the clients, and that secrets never
show in a repr, a JSON dump or a log line."""

from __future__ import annotations

import logging
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr

from streams.settings import Settings

SECRET = "s3cr3t-Pa55"


def test_plaintext_has_no_tls() -> None:
    s = Settings(kafka_bootstrap="k:9092")
    assert s.kafka_ssl_context() is None
    assert "ssl_cafile" not in s.kafka_client_kwargs()


def test_sasl_ssl_with_a_private_ca_reaches_both_kafka_clients() -> None:
    certifi = pytest.importorskip("certifi")
    s = Settings(kafka_bootstrap="k:9093", kafka_security_protocol="SASL_SSL",
                 kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="cw",
                 kafka_sasl_password=SecretStr(SECRET), kafka_ssl_cafile=Path(certifi.where()))
    kw = s.kafka_client_kwargs()
    assert kw["security_protocol"] == "SASL_SSL"
    assert kw["sasl_plain_password"] == SECRET
    assert kw["ssl_cafile"] == certifi.where()
    ctx = s.kafka_ssl_context()
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.cert_store_stats()["x509_ca"] > 0


def test_mutual_tls_loads_the_client_certificate(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "client.key", tmp_path / "client.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=crowdwatch-test",
                    "-passout", f"pass:{SECRET}"], check=True, capture_output=True)
    s = Settings(kafka_bootstrap="k:9093", kafka_security_protocol="SSL",
                 kafka_ssl_certfile=cert, kafka_ssl_keyfile=key,
                 kafka_ssl_key_password=SecretStr(SECRET))
    assert s.kafka_ssl_context() is not None  # wrong password or files would raise
    kw = s.kafka_client_kwargs()
    assert (kw["ssl_certfile"], kw["ssl_keyfile"], kw["ssl_password"]) == \
        (str(cert), str(key), SECRET)
    wrong = s.model_copy(update={"kafka_ssl_key_password": SecretStr("wrong")})
    with pytest.raises(ssl.SSLError):
        wrong.kafka_ssl_context()


def test_secrets_never_show(caplog: pytest.LogCaptureFixture) -> None:
    secret = SecretStr(SECRET)
    s = Settings(kafka_sasl_password=secret, redis_url=SecretStr(f"redis://cw:{SECRET}@r:6379"),
                 pseudonym_key=secret, api_token=secret, metrics_token=secret,
                 grafana_token=secret, kafka_ssl_key_password=secret)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("crowdwatch.test").warning("settings: %s / %r", s, s)
    for text in (str(s), repr(s), s.model_dump_json(), caplog.text):
        assert SECRET not in text
