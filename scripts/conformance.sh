#!/usr/bin/env bash
# Randomized conformance harness: draws run definitions and cluster shapes from a seed, runs
# each end to end (j4 sink --access-log, a private redis-server on a unix socket, j4 worker and
# j4 supervisor processes or j4 run --workers N) and checks the invariants of docs/FAILURES.md and
# docs/PROTOCOL.md at the receiving server. See scripts/conformance.py.
#   bash scripts/conformance.sh [--seed N] [--cases N] [--minutes M] [--j4 PATH] [--keep]
# Needs a built j4 (default .build/debug/j4: swift build --product j4). Installs redis-server
# (redis-cli) with apt-get when missing, using sudo only when not root. A failed case prints
# the command that reruns just that case; exit 1 when any case failed.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "conformance: installing redis-server" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
fi
command -v python3 >/dev/null 2>&1 || { echo "conformance: python3 is not on PATH" >&2; exit 3; }

exec python3 scripts/conformance.py "$@"
