#!/usr/bin/env bash
# Set up (apt + .venv), start the local stack (Kafka KRaft, Redis, Prometheus, Alertmanager
# on 127.0.0.1), run lint, types and the whole test suite, stop the stack.
# Extra arguments go to pytest, e.g. `deploy/local/test.sh -k pipeline`.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/local/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

started_here=0
if ! crowdwatch stack status >/dev/null 2>&1; then
  crowdwatch stack up
  started_here=1
fi
cleanup() { if ((started_here)); then crowdwatch stack down || true; fi; }
trap cleanup EXIT

ruff check .
mypy
lint-imports
python -m pytest "$@"
