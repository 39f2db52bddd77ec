#!/usr/bin/env bash
# Rate precision: 2000 iterations/s for 10 s with 1 and with 4 worker processes (each its own
# `j4 worker`, one supervisor, one redis-server), counted at nginx (one access-log line per
# request). Also the Redis calls per worker-second of real workers, from their
# j4_redis_commands_total metric.
#
#   bash scripts/bench/rate.sh [RATE=2000] [SECONDS=10] [WORKER_COUNTS="1 4"]
source "$(dirname "$0")/lib.sh"
rate=${1:-2000}
seconds=${2:-10}
counts=${3:-"1 4"}
bench_install
bench_build
bench_nginx 1

echo "# rate precision: $rate/s for $seconds s, counted at nginx; $(nproc) cores; j4 $J4_BIN"
echo "# workers expected at_nginx j4_started j4_dropped redis_calls_per_worker_second"
for n in $counts; do
  bench_redis 1
  bench_supervisor
  ports=()
  pids=()
  for w in $(seq "$n"); do
    port=$(free_port)
    "$J4_BIN" worker --redis "$REDIS_URL" --id "rate-$w" --log-level info --metrics-port "$port" > /dev/null 2> "$BENCH_WORK/worker-$w.log" &
    pids+=($!)
    ports+=("$port")
  done
  for port in "${ports[@]}"; do wait_for_metrics "$port"; done
  hold_definition "$BENCH_WORK/rate.yaml" "rate-$n" "$rate" "$seconds" 32 "$NGINX_URL/count/$n"
  nginx_count_reset
  commands() {
    local total=0
    for port in "${ports[@]}"; do
      v=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^j4_redis_commands_total/ { s += $2 } END { printf "%d", s }')
      total=$((total + v))
    done
    echo "$total"
  }
  run=$("$J4_BIN" submit "$BENCH_WORK/rate.yaml" --redis "$REDIS_URL")
  # Calls per worker-second while the run holds: from second 2 to second seconds-1.
  for _ in $(seq 100); do "$J4_BIN" status "$run" --redis "$REDIS_URL" | grep -q running && break; sleep 0.1; done
  sleep 2
  c0=$(commands); t0=$(date +%s.%N)
  sleep $((seconds - 3))
  c1=$(commands); t1=$(date +%s.%N)
  # j4 wait returns once every worker has reported (the run is settled).
  "$J4_BIN" wait "$run" --redis "$REDIS_URL" --json > "$BENCH_WORK/status.json" 2>/dev/null || true
  read -r started dropped < <(python3 -c "import json; s=json.load(open('$BENCH_WORK/status.json')); print(s['started'], s['dropped'])" 2>/dev/null || echo "? ?")
  per=$(awk -v c="$((c1 - c0))" -v a="$t0" -v b="$t1" -v n="$n" 'BEGIN { printf "%.2f", c / (b - a) / n }')
  echo "$n $((rate * seconds)) $(nginx_count) $started $dropped $per"
  # Where any drops were, per tick (t:<n>:d in the run's ticks hash).
  redis-cli -s "$BENCH_WORK/redis.sock" HGETALL "j4:{r:$run}:ticks" | paste - - | awk '$1 ~ /:d$/ && $2 > 0 { printf "#   dropped in tick %s: %s\n", $1, $2 }'
  grep -h "dropped iterations" "$BENCH_WORK"/worker-*.log | sed 's/^/#   /' || true

  stop_processes "${pids[@]}" "$SUPERVISOR_PID"
  bench_redis_stop
done
