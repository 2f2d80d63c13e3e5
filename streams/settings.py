"""One frozen settings object for the whole process.

Values come from (highest first): explicit keyword arguments, ``CROWDWATCH_*``
environment variables, the stack file written by ``crowdwatch stack up``
(``CROWDWATCH_STACK_FILE``, default ``~/.crowdwatch/stack.env``), then defaults.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_HOME = Path(os.environ.get("CROWDWATCH_HOME", str(Path.home() / ".crowdwatch")))


def stack_file() -> Path:
    """Where ``crowdwatch stack up`` writes the connection settings of the local stack."""
    return Path(os.environ.get("CROWDWATCH_STACK_FILE", str(DEFAULT_HOME / "stack.env")))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CROWDWATCH_",
        frozen=True,
        extra="ignore",
        env_file_encoding="utf-8",
    )

    # --- services (empty = not configured) ---
    kafka_bootstrap: str = Field(
        default="", description="Kafka bootstrap servers, host:port[,host:port]. Empty: none."
    )
    kafka_security_protocol: str = Field(default="PLAINTEXT",
                                         description="PLAINTEXT, SSL, SASL_SSL")
    kafka_sasl_mechanism: str = Field(default="", description="PLAIN, SCRAM-SHA-256, SCRAM-SHA-512")
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_cafile: Path | None = Field(default=None, description=(
        "PEM file of the CA(s) that signed the brokers' certificates (SSL / SASL_SSL); none: "
        "the system's CAs"))
    kafka_ssl_certfile: Path | None = Field(default=None, description=(
        "PEM client certificate for mutual TLS (with kafka_ssl_keyfile)"))
    kafka_ssl_keyfile: Path | None = Field(default=None, description="PEM client private key")
    kafka_ssl_key_password: SecretStr = Field(default=SecretStr(""), description=(
        "Password of the client private key, if it is encrypted"))
    redis_url: SecretStr = Field(
        default=SecretStr(""), description=(
            "redis://[user:pass@]host:port/db, or rediss://... for TLS; user:pass is a Redis "
            "ACL user (percent-encode special characters). Empty: memory store."))
    redis_ssl_cafile: Path | None = Field(default=None, description=(
        "rediss:// only: PEM file of the CA(s) that signed the Redis server's certificate; "
        "none: the system's CAs"))
    redis_ssl_certfile: Path | None = Field(default=None, description=(
        "rediss:// only: PEM client certificate, when Redis asks for one (tls-auth-clients)"))
    redis_ssl_keyfile: Path | None = Field(default=None, description=(
        "rediss:// only: PEM private key of the client certificate"))
    redis_prefix: str = Field(default="cw", min_length=1,
                              description="Key prefix in Redis (one per deployment)")
    prometheus_url: str = ""
    alertmanager_url: str = ""
    grafana_url: str = Field(default="", description=(
        "Grafana base URL: target of `crowdwatch dashboards push` and of the worker's "
        "annotations (flagged clusters, official posts). Empty: no annotations"))
    grafana_token: SecretStr = Field(default=SecretStr(""), description=(
        "Grafana service-account token (Editor) for dashboards push and annotations"))

    # --- topics ---
    topic_raw: str = "posts.raw"
    topic_enriched: str = "posts.enriched"
    topic_deadletter: str = "posts.deadletter"
    topic_scored: str = "posts.scored"
    topic_signals: str = "signals"
    topic_claims: str = Field(default="posts.claims", description=(
        "Input of the rumour stage; one partition by default so one worker sees every post "
        "of the event (see docs/architecture.md, 'Rumour clusters across partitions')"))
    topic_cluster_events: str = "clusters.events"
    claim_partitions: int = Field(default=1, ge=1)
    topic_partitions: int = Field(default=4, ge=1)

    # --- crowd mood ---
    sentiment_model: str = Field(
        default="default",
        description="'default' (the offline model built from installed packages), 'off', or "
        "a local transformers directory (e.g. a downloaded cardiffnlp model)")
    sentiment_batch_size: int = Field(default=64, ge=1)
    sentiment_max_length: int | None = Field(
        default=None, ge=8, description="Tokens per post; none = the model's advice, else 128")
    sentiment_threads: int = Field(default=2, ge=1, description="CPU threads (torch, ONNX Runtime)")
    sentiment_backend: Literal["auto", "torch", "onnx"] = Field(
        default="auto", description="'auto': ONNX Runtime on CPU when installed (the model is "
        "exported once into the cache), else torch; 'torch' or 'onnx' to force one")
    sentiment_quantize: bool | None = Field(
        default=None, description="int8 dynamic quantisation; none = the model's advice "
        "(on for the default model)")
    sentiment_cache_size: int = Field(default=100_000, ge=0)
    # --- rumour clusters ---
    rumours_enabled: bool = Field(default=True, description="Run the rumour-cluster stage")
    cluster_embedder: str = Field(default="default", description=(
        "default (multilingual-e5-small) | hashing (no model) | off | a local path"))
    cluster_embedder_precision: Literal["auto", "bf16", "int8", "fp32"] = Field(
        default="auto", description=(
            "Numeric format of a transformer embedder on the CPU. 'auto': int8 where dynamic "
            "int8 is exact (VNNI), else fp32. 'bf16': faster on CPUs with AMX or AVX512-BF16 "
            "and independent of batching, but the shipped threshold and rumour score were "
            "calibrated on int8 vectors (docs/rumour-model.md)"))
    cluster_ttl_s: float = Field(default=3 * 3600.0, gt=0,
                                 description="Event-time idle time before a cluster expires")
    cluster_max_posts: int = Field(default=2_000_000, ge=1000, description=(
        "Post ids the rumour stage remembers at most (oldest forgotten first; ~1.4 KB each): "
        "caps its memory when the TTL window holds more posts than this"))
    cluster_max_clusters: int = Field(default=300_000, ge=100, description=(
        "Live clusters at most (the least recently touched expires first): caps the rumour "
        "stage's memory when the TTL window holds more claims than this"))
    cluster_semantic_cosine: float = Field(default=0.88, gt=0, le=1)
    cluster_near_duplicate_jaccard: float = Field(default=0.5, gt=0, le=1)
    rumour_flag_threshold: float = Field(default=0.5, gt=0, lt=1)
    rumour_state_ttl_s: int = Field(default=6 * 3600, ge=60, description=(
        "Redis TTL of cluster snapshots (they hold sample post texts)"))
    quiet_after_s: float = Field(default=60.0, gt=0, description=(
        "Seconds of processing time without a post moving event time after which the "
        "timers judge at the newest event time plus the time since: rumour lifecycles fade "
        "and resolve, unanswered questions keep ageing and mood shifts of areas nobody "
        "posts about end, also in a stream with no posts at all"))
    rumour_top_k: int = Field(default=5, ge=1, le=20,
                              description="Rank labels 1..K of the top flagged clusters")
    rebuttal_auto_link: bool = Field(default=True, description=(
        "Link an official denial to the rumour cluster it matches (else only by hand: "
        "crowdwatch rebut)"))
    pseudonym_key: SecretStr = Field(default=SecretStr(""), description=(
        "HMAC key for pseudonymising author ids; empty: a random key per process"))
    pseudonymise_authors: bool = Field(default=True, description=(
        "Replace author ids and handles with keyed pseudonyms (p:<hmac>) in the enrich "
        "stage, before posts.enriched (docs/data-protection.md). False only with a legal "
        "basis to see handles"))
    mood_window_minutes: int = Field(default=5, ge=1)
    mood_baseline_minutes: int = Field(default=60, ge=2)
    mood_sigma: float = Field(default=3.0, gt=0)
    mood_min_posts: int = Field(default=20, ge=1)

    # --- worker ---
    app_id: str = Field(default="crowdwatch", description="Faust app id = Kafka consumer group")
    web_host: str = Field(default="127.0.0.1", description="Bind address of /metrics and /health")
    web_port: int = Field(default=6066, ge=0, le=65535)
    rumour_process: bool = Field(default=False, description=(
        "Run the rumour stage in a child process of `crowdwatch worker` (its own Python "
        "interpreter, so its clustering does not wait for the enrichment and sentiment "
        "threads' turn; consumer group <app_id>-rumours, /metrics and /health on "
        "rumour_web_port). The worker stops when the child does and the child when the "
        "worker does"))
    rumour_process_nice: int = Field(default=5, ge=0, le=19, description=(
        "Niceness added to the rumour process (Linux scheduling priority): when the two "
        "cores are saturated the mood path (enrichment, sentiment: the command post's live "
        "panels) keeps its latency and the rumour stage trails by seconds and catches up; "
        "0 = equal priority"))
    rumour_web_port: int = Field(default=0, ge=0, le=65535, description=(
        "Port of the rumour process's /metrics and /health; 0 = web_port + 1"))
    worker_role: Literal["all", "ingest", "rumours"] = Field(default="all", description=(
        "What this worker process runs: all stages; 'ingest' = enrichment, sentiment, "
        "alerts, writing posts.claims for a rumour process; 'rumours' = the rumour stage "
        "only (set by the worker for its child when rumour_process is on)"))
    api_token: SecretStr = Field(default=SecretStr(""), description=(
        "Bearer token required by the worker's /api/* (citizen data). Empty: /api/* answers "
        "only when CROWDWATCH_WEB_HOST is a loopback address, else 403"))
    metrics_token: SecretStr = Field(default=SecretStr(""), description=(
        "Bearer token required by /metrics when set (Prometheus: authorization.credentials)"))
    broker_session_timeout: float = Field(default=30.0, gt=0)
    batch_size: int = Field(default=500, ge=1, description="Posts taken from the stream at once")
    agent_concurrency: int = Field(
        default=2, ge=1, le=16, description="Batches in flight at once per worker (pipelining)")
    cpu_processes: int = Field(
        default=0, ge=0, le=32,
        description="Child processes for parsing/enrichment; 0 = a thread in the worker "
        "(fastest on 2 cores, where the event loop and Kafka already use both)")
    batch_within: float = Field(default=0.2, gt=0, description="Max seconds to wait for a batch")
    data_dir: Path = Field(default=DEFAULT_HOME / "worker", description="Faust table data dir")
    stall_after_s: float = Field(default=60.0, gt=0, description=(
        "A partition with lag whose committed and processed offsets have not moved for this "
        "long is stalled: crowdwatch_consumer_stalled=1, /health 503, alert WorkerStalled"))
    stall_restart_s: float = Field(default=120.0, ge=0, description=(
        "Stop the worker (exit code 1) when a stalled partition has gone this long without "
        "progress (at least stall_after_s), so its supervisor restarts it and the group "
        "rebalances; 0 = never. Not while the state store is unreachable"))

    malloc_arena_max: int = Field(default=2, ge=0, le=64, description=(
        "glibc malloc arenas for the worker process (mallopt M_ARENA_MAX, set at start); "
        "0 = glibc's default (8 per core). Fewer arenas fragment less: the worker's memory "
        "grew about half as fast in the soak with 2"))
    malloc_trim_every_s: float = Field(default=60.0, ge=0, description=(
        "Every this many seconds the worker hands the memory glibc's malloc holds free back "
        "to the OS (malloc_trim); 0 = never"))

    # --- ingest rules ---
    max_text_chars: int = Field(default=10_000, ge=1, description="Longer texts are dead-lettered")
    event_file: Path | None = Field(default=None, description="Event YAML; none = no tagging")
    dedupe_ttl_s: int = Field(default=7 * 24 * 3600, ge=60, description="Post-id dedupe window")

    @property
    def kafka_configured(self) -> bool:
        return bool(self.kafka_bootstrap.strip())

    @property
    def redis_configured(self) -> bool:
        return bool(self.redis_url.get_secret_value().strip())

    @property
    def rumour_app_id(self) -> str:
        """Consumer group of the rumour process (``rumour_process``)."""
        return f"{self.app_id}-rumours"

    @property
    def rumour_port(self) -> int:
        """Port of the rumour process's /metrics and /health (``rumour_process``)."""
        return self.rumour_web_port or self.web_port + 1

    @model_validator(mode="after")
    def _redis_tls_needs_rediss(self) -> Settings:
        self.redis_client_kwargs()  # raises on TLS files with a plain redis:// URL
        return self

    @property
    def redis_uses_tls(self) -> bool:
        return self.redis_url.get_secret_value().strip().lower().startswith("rediss://")

    def redis_client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis.from_url`` (sync and asyncio) beyond the URL:
        the TLS files of a ``rediss://`` URL. Certificate and host-name checks stay on
        (redis-py's defaults). TLS files with a plain ``redis://`` URL are a configuration
        error: the connection would silently go unencrypted."""
        given = {"ssl_ca_certs": self.redis_ssl_cafile, "ssl_certfile": self.redis_ssl_certfile,
                 "ssl_keyfile": self.redis_ssl_keyfile}
        files = {k: v for k, v in given.items() if v is not None}
        if not files:
            return {}
        if not self.redis_uses_tls:
            raise ValueError("CROWDWATCH_REDIS_SSL_* is set but CROWDWATCH_REDIS_URL is not a "
                             "rediss:// URL: the connection would not be encrypted")
        return {k: str(v) for k, v in files.items()}

    def kafka_client_kwargs(self) -> dict[str, Any]:
        """Connection keyword arguments shared by kafka-python and aiokafka clients."""
        kw: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap,
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            kw["sasl_mechanism"] = self.kafka_sasl_mechanism
            kw["sasl_plain_username"] = self.kafka_sasl_username
            kw["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_uses_tls:  # kafka-python's names; aiokafka/Faust use kafka_ssl_context()
            for name in ("cafile", "certfile", "keyfile"):
                value = getattr(self, f"kafka_ssl_{name}")
                if value is not None:
                    kw[f"ssl_{name}"] = str(value)
            if self.kafka_ssl_key_password.get_secret_value():
                kw["ssl_password"] = self.kafka_ssl_key_password.get_secret_value()
        return kw

    @property
    def kafka_uses_tls(self) -> bool:
        return self.kafka_security_protocol.upper().endswith("SSL")

    def kafka_ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for aiokafka and Faust (SSL / SASL_SSL), None without TLS:
        certificate and host-name checks on, the configured CA and client certificate."""
        if not self.kafka_uses_tls:
            return None
        ctx = ssl.create_default_context(
            cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None)
        if self.kafka_ssl_certfile is not None:
            ctx.load_cert_chain(
                str(self.kafka_ssl_certfile),
                str(self.kafka_ssl_keyfile) if self.kafka_ssl_keyfile else None,
                password=self.kafka_ssl_key_password.get_secret_value() or None)
        return ctx


def load_settings(**overrides: Any) -> Settings:
    """Settings from env + the stack file (if present) + explicit overrides."""
    env_file = stack_file()
    return Settings(_env_file=env_file if env_file.is_file() else None, **overrides)  # type: ignore[call-arg]
