#!/usr/bin/env bash
# Stop the local stack; --purge also deletes its data.
# See streams/stack.py. Options are passed through: python -m streams.stack down --help
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
exec "${PYTHON:-python3}" -m streams.stack down "$@"
