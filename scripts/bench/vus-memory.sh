#!/usr/bin/env bash
# Memory per idle long-lived VU: one `j4 worker` holds N VUs of the built-in `sleep`
# scenario (each iteration sleeps 10 s: a VU waiting between messages, as a chat client
# does), and its resident memory (VmRSS) is read before the run and at the plateau.
#
#   bash scripts/bench/vus-memory.sh [COUNTS="10000 100000"] [HOLD_SECONDS=40]
source "$(dirname "$0")/lib.sh"
counts=${1:-"10000 100000"}
hold=${2:-40}
bench_install
bench_build
echo "# memory per idle VU: built-in sleep scenario (10 s per iteration), one worker; j4 $J4_BIN"
echo "# vus rss_before_kib rss_plateau_kib kib_per_vu vus_running"
for n in $counts; do
  bench_redis 1
  bench_supervisor
  port=$(free_port)
  "$J4_BIN" worker --redis "$REDIS_URL" --id "mem" --log-level error --metrics-port "$port" > /dev/null 2>&1 &
  worker=$!
  wait_for_metrics "$port"
  before=$(awk '/VmRSS/ {print $2}' "/proc/$worker/status")
  cat > "$BENCH_WORK/vus.yaml" <<YAML
name: idle-vus-$n
scenario: sleep
model: vus
start: $n
stages: [{ duration: ${hold}s, target: $n }]
shards: 64
params: { duration: 10s }
YAML
  run=$("$J4_BIN" submit "$BENCH_WORK/vus.yaml" --redis "$REDIS_URL")
  peak=0
  for _ in $(seq $((hold - 5))); do
    sleep 1
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$worker/status")
    [ "$rss" -gt "$peak" ] && peak=$rss
  done
  running=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^j4_vus\{/ { printf "%d", $2 }')
  per=$(awk -v a="$before" -v b="$peak" -v n="$n" 'BEGIN { printf "%.1f", (b - a) / n }')
  echo "$n $before $peak $per $running"
  "$J4_BIN" abort "$run" --redis "$REDIS_URL" >/dev/null 2>&1 || true
  stop_processes "$worker" "$SUPERVISOR_PID"
  bench_redis_stop
done
