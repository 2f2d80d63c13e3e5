"""Redis with TLS and an ACL user, as a guarded production Redis runs: a real ``redis-server``
on 127.0.0.1 with a private CA, TLS only (no plaintext port), the default user off and a
``crowdwatch`` user limited to its own key prefix. The store, the shared pseudonym key and the
CLI reach it through settings alone; a wrong CA, a wrong password or a plain ``redis://`` URL
do not."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from models.enrich import PostSummary
from streams.embedded import free_port
from streams.runtime import redis_store, with_shared_pseudonym_key
from streams.settings import Settings

PASSWORD = "Acl-pa55/w%rd"  # '/' and '%' must survive the URL (percent-encoded)
QUOTED = "Acl-pa55%2Fw%25rd"

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None or shutil.which("openssl") is None,
    reason="needs redis-server and openssl (deploy/local/setup.sh installs both)")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _certificates(folder: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it."""
    ca_key, ca, key, csr, cert, ext = (folder / f"{name}-{n}" for n in (
        "ca.key", "ca.pem", "server.key", "server.csr", "server.pem", "ext.cnf"))
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key),
             "-out", str(ca), "-days", "1", "-subj", f"/CN={name} test CA")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
             "-subj", "/CN=127.0.0.1")
    ext.write_text("subjectAltName=IP:127.0.0.1\n", encoding="utf-8")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", str(cert), "-days", "1", "-extfile", str(ext))
    return ca, cert, key


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, Path]]:
    """(port, the CA that signed the server, another CA) of a TLS-only Redis with ACLs."""
    folder = tmp_path_factory.mktemp("redis-tls")
    ca, cert, key = _certificates(folder, "crowdwatch")
    other_ca, _, _ = _certificates(folder, "other")
    port = free_port()
    conf = folder / "redis.conf"
    conf.write_text("\n".join([
        "bind 127.0.0.1", "port 0", f"tls-port {port}", f"tls-cert-file {cert}",
        f"tls-key-file {key}", f"tls-ca-cert-file {ca}", "tls-auth-clients no",
        'save ""', "appendonly no", f"dir {folder}",
        "user default off",
        f"user crowdwatch on >{PASSWORD} ~cwtls:* +@all -@dangerous +info",
    ]) + "\n", encoding="utf-8")
    proc = subprocess.Popen(["redis-server", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not asyncio.run(_ping(_settings(port, ca))):
            assert time.monotonic() < deadline and proc.poll() is None, "redis did not start"
            time.sleep(0.2)
        yield port, ca, other_ca
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _settings(port: int, ca: Path | None, password: str = QUOTED,
              scheme: str = "rediss") -> Settings:
    return Settings(redis_url=SecretStr(f"{scheme}://crowdwatch:{password}@127.0.0.1:{port}/0"),
                    redis_prefix="cwtls", redis_ssl_cafile=ca)


async def _ping(settings: Settings) -> bool:
    store = redis_store(settings)
    try:
        return await store.ping()  # False when unreachable or refused
    finally:
        await store.close()


async def _counts(settings: Settings) -> dict[str, int]:
    store = redis_store(settings)
    try:
        return await store.counts("tls-event")  # raises what the connection raised
    finally:
        await store.close()


def _summary(pid: str) -> PostSummary:
    return PostSummary(id=pid, minute="202704271200", lang="nl", platform="bluesky",
                       areas=("dam",), topics=("crowd",), keywords=(), kind="post")


def test_the_store_counts_through_tls_as_the_acl_user(tls_redis: tuple[int, Path, Path]) -> None:
    port, ca, _ = tls_redis
    settings = _settings(port, ca)
    assert settings.redis_uses_tls

    async def go() -> tuple[list[bool], list[bool], dict[str, int]]:
        store = redis_store(settings)
        try:
            first = await store.record_batch("tls-event", [_summary("a"), _summary("b")])
            again = await store.record_batch("tls-event", [_summary("a")])  # re-delivery
            return first, again, await store.counts("tls-event")
        finally:
            await store.close()

    first, again, counts = asyncio.run(go())
    assert first == [True, True] and again == [False]
    assert counts["posts"] == 2


def test_the_shared_pseudonym_key_is_kept_in_the_tls_redis(
    tls_redis: tuple[int, Path, Path],
) -> None:
    port, ca, _ = tls_redis
    one = with_shared_pseudonym_key(_settings(port, ca))
    two = with_shared_pseudonym_key(_settings(port, ca))
    key = one.pseudonym_key.get_secret_value()
    assert len(key) == 64 and key == two.pseudonym_key.get_secret_value()


def test_a_wrong_ca_or_password_is_refused(tls_redis: tuple[int, Path, Path]) -> None:
    port, ca, other_ca = tls_redis
    refused = [_settings(port, other_ca), _settings(port, ca, password="wrong"),
               _settings(port, None, scheme="redis")]
    assert [asyncio.run(_ping(s)) for s in refused] == [False, False, False]
    with pytest.raises(Exception, match=r"(?i)certificate verify failed"):
        asyncio.run(_counts(refused[0]))
    with pytest.raises(Exception, match=r"(?i)password|auth"):
        asyncio.run(_counts(refused[1]))


def test_tls_files_with_a_plain_url_are_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="rediss://"):
        Settings(redis_url=SecretStr("redis://127.0.0.1:6379/0"),
                 redis_ssl_cafile=tmp_path / "ca.pem")
    assert Settings(redis_url=SecretStr("redis://127.0.0.1:6379/0")).redis_client_kwargs() == {}


def test_the_cli_reads_the_tls_redis(tls_redis: tuple[int, Path, Path]) -> None:
    port, ca, _ = tls_redis
    env = {**os.environ, "CROWDWATCH_REDIS_URL": f"rediss://crowdwatch:{QUOTED}@127.0.0.1:{port}/0",
           "CROWDWATCH_REDIS_PREFIX": "cwtls", "CROWDWATCH_REDIS_SSL_CAFILE": str(ca),
           "CROWDWATCH_STACK_FILE": os.devnull}
    res = subprocess.run([sys.executable, "-m", "streams.cli", "rumours", "--json"], env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
    assert PASSWORD not in res.stderr + res.stdout
