"""Topic creation with kafka-python's admin client."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from streams.settings import Settings

log = logging.getLogger(__name__)


def ensure_topics(settings: Settings, names: Iterable[str] | None = None,
                  partitions: int | None = None) -> list[str]:
    """Create the pipeline's topics if missing; return the names that were created. The
    claims topic (input of the rumour stage) gets ``claim_partitions`` partitions."""
    wanted = list(names or (settings.topic_raw, settings.topic_enriched, settings.topic_deadletter,
                            settings.topic_scored, settings.topic_signals, settings.topic_claims,
                            settings.topic_cluster_events))
    admin = KafkaAdminClient(client_id="crowdwatch-admin", request_timeout_ms=15_000,
                             **settings.kafka_client_kwargs())
    try:
        existing = set(admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        if not missing:
            return []
        try:
            admin.create_topics(
                [NewTopic(n, partitions or (settings.claim_partitions if n == settings.topic_claims
                                            else settings.topic_partitions), 1)
                 for n in missing]
            )
        except TopicAlreadyExistsError:  # created concurrently by another worker
            log.debug("topics created concurrently: %s", missing)
        return missing
    finally:
        admin.close()


def delete_topics(settings: Settings, names: Iterable[str]) -> list[str]:
    """Delete the named topics that exist; return the names deleted (tests clean up with it:
    a broker with thousands of topics starts and fails over slowly)."""
    admin = KafkaAdminClient(client_id="crowdwatch-admin", request_timeout_ms=30_000,
                             **settings.kafka_client_kwargs())
    try:
        existing = set(admin.list_topics())
        doomed = [n for n in names if n in existing]
        if doomed:
            admin.delete_topics(doomed)
        return doomed
    finally:
        admin.close()
