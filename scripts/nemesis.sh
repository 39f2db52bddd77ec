#!/usr/bin/env bash
# The fault nemesis: one long run on a small cluster (redis-server with AOF, 2 supervisors,
# 3 to 5 workers reaching Redis through a delay proxy, j4 sink --access-log) while random
# faults hit it: workers SIGKILLed, restarted under their own id, stopped (SIGSTOP/SIGCONT)
# and sent SIGTERM; the leading supervisor SIGKILLed or sent SIGTERM; Redis SIGKILLed and
# restarted from its AOF; CLIENT PAUSE; j4 scale; latency on the workers' link to Redis.
# Then it checks at the server: no iteration twice, per-tick accounting, load back within 5 %
# of the plan after each fault, no J4 process crashed, Redis memory bounded.
#   bash scripts/nemesis.sh [--minutes M] [--seed N] [--j4 PATH] [--rate R] [--fsync always|everysec]
# It prints its seed, a line per fault with its recovery time, and one summary line; exit 1
# when an invariant broke. Needs a built j4 (default .build/release/j4, else .build/debug/j4);
# installs redis-server with scripts/setup.sh when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh demo  # redis-server and redis-cli, when missing
command -v python3 >/dev/null 2>&1 || { echo "nemesis: python3 is not on PATH" >&2; exit 3; }

exec python3 scripts/nemesis.py "$@"
