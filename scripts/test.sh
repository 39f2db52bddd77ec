#!/usr/bin/env bash
# Sets up and runs every test: unit tables, real redis-server, real j4 processes, and the
# examples against their own servers; then the fuzzer, the conformance harness and the fault
# nemesis, each bounded.
#   bash scripts/test.sh          everything (what CI runs)
#   bash scripts/test.sh --fast   the inner loop: the pure tables and the Redis-level tests
#                                 (J4CoreTests, J4RuntimeTests, J4RedisTests), no process
#                                 tests, no fuzzer, no harness, no nemesis
set -euo pipefail
cd "$(dirname "$0")/.."
fast=0
case "${1:-}" in
  "") ;;
  --fast) fast=1 ;;
  *) echo "test.sh: unknown option '$1'; accepted: --fast" >&2; exit 2 ;;
esac
bash scripts/setup.sh test
if [ "$fast" = 1 ]; then
  swift build --build-tests
  swift test --skip-build --filter 'J4CoreTests|J4RuntimeTests|J4RedisTests'
  exit 0
fi
# The examples' own manifests must stay valid (their sources are built by the root package).
for example in examples/http-checkout examples/chat; do
  swift package --package-path "$example" dump-package >/dev/null
done
swift build --build-tests
swift test --skip-build
# The definition parser under libFuzzer, for a bounded time: it prints how many inputs it tried.
bash scripts/fuzz-definitions.sh 120
# The randomized conformance harness for a bounded time (no new case after 3 minutes), on
# the debug build just built: rates up to 500/s and 100 VUs, which a debug build carries on
# two cores (full ranges on a release build: scripts/conformance.sh --j4 .build/release/j4).
# The harness's seed is the hash of the checked-out revision (git rev-parse), so each
# revision searches new cases; a failure prints the command that reruns it.
seed=$(( 16#$(git rev-parse --short=7 HEAD 2>/dev/null || echo 1) ))
# --no-lock: the build above is done; the lock is for a harness run beside a developer's builds.
bash scripts/conformance.sh --seed "$seed" --cases 1000 --minutes 3 --max-rate 500 --max-vus 100 --no-lock
# The fault nemesis for 2 minutes on the same build and seed: one run through random faults
# (workers, supervisors and Redis killed, stopped, restarted; CLIENT PAUSE; j4 scale; latency).
bash scripts/nemesis.sh --minutes 2 --seed "$seed" --j4 .build/debug/j4
