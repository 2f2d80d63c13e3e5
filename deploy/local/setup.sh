#!/usr/bin/env bash
# Everything crowdwatch needs on a fresh Debian/Ubuntu machine, idempotent:
#   - apt: redis-server, prometheus, prometheus-alertmanager, openssl (test certificates)
#     (when root and missing)
#   - a virtualenv in .venv with crowdwatch and its dev tools, at the exact versions (and
#     sha256 hashes) of requirements.lock (Linux x86_64 + CPython 3.11; regenerate it with
#     deploy/local/lock.sh); elsewhere the newest versions pyproject.toml allows, with a warning
#   - skipped when requirements.lock, pyproject.toml and this script are unchanged since the
#     last successful run in this checkout (.venv/.crowdwatch-setup; delete it to reinstall)
# Kafka's jars are fetched from Maven Central by `crowdwatch stack up` (cached).
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v prometheus >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
command -v openssl >/dev/null || need+=(openssl)
if ((${#need[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "missing (install as root): ${need[*]}" >&2
    exit 1
  fi
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
# what the install below depends on: when none of it changed since the last successful run
# and the editable install still imports from this checkout, there is nothing to do (the
# demo and the tests call this script on every run; pip took seconds and printed
# setuptools' editable-install notice each time)
stamp=.venv/.crowdwatch-setup
want=$(cat requirements.lock pyproject.toml deploy/local/setup.sh | sha256sum | cut -d' ' -f1)
want="$want $(pwd)"
if [[ -f $stamp && $(cat "$stamp") == "$want" && -x .venv/bin/crowdwatch ]] \
    && (cd / && "$OLDPWD/.venv/bin/python" -c "import streams.cli" 2>/dev/null); then
  echo "ready: .venv/bin/crowdwatch (up to date)"
  exit 0
fi
rm -f "$stamp"
.venv/bin/python -m pip install -q --upgrade pip
target=$(.venv/bin/python -c 'import platform, sys; print(platform.system(), platform.machine(), "%d.%d" % sys.version_info[:2])')
if [[ $target == "Linux x86_64 3.11" ]]; then
  .venv/bin/python -m pip install -q --require-hashes -r requirements.lock
  .venv/bin/python -m pip install -q --no-deps -e .
else
  echo "warning: requirements.lock is for Linux x86_64 / Python 3.11, not $target:" \
       "installing the newest versions pyproject.toml allows (untested combination)" >&2
  .venv/bin/python -m pip install -q -e ".[dev]"
fi
echo "$want" > "$stamp"
echo "ready: .venv/bin/crowdwatch"
