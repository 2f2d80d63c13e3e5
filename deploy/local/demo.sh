#!/usr/bin/env bash
# Set up (apt + .venv) and run the embedded demo: a synthetic King's Day sample replayed
# through a worker, live in the terminal, /metrics on 127.0.0.1:6066. Ctrl-C stops it.
# Extra arguments go to `crowdwatch demo`, e.g. `deploy/local/demo.sh --duration 60`.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/local/setup.sh >/dev/null
exec .venv/bin/crowdwatch demo "$@"
