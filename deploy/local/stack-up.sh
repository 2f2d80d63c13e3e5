#!/usr/bin/env bash
# Start the local stack (Kafka, Redis, Prometheus, Alertmanager) on 127.0.0.1.
# See streams/stack.py. Options are passed through: python -m streams.stack up --help
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
exec "${PYTHON:-python3}" -m streams.stack up "$@"
