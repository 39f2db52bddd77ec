#!/usr/bin/env bash
# Coordination cost: 1000 simulated workers (the real acquire/renew/claim/flush scripts at a
# 1 s tick, no load) spread over 10 runs against one redis-server on core 1, with one real
# supervisor. Prints Redis' CPU, its calls per second and per worker-second, and the p50/p99
# of each script (sent to reply, on 32 shared connections).
#
#   bash scripts/bench/coordination.sh [WORKERS=1000] [RUNS=10] [SECONDS=30]
source "$(dirname "$0")/lib.sh"
workers=${1:-1000}
runs=${2:-10}
seconds=${3:-30}
bench_install
bench_build
bench_redis 1
echo "# coordination: $workers simulated workers, $runs runs, $seconds s measured; redis-server $(redis-server --version | grep -o 'v=[0-9.]*') on core 1"
taskset -c 0 "$J4_BIN" bench-coordination --workers "$workers" --runs "$runs" --seconds "$seconds" --redis "$REDIS_URL"
