#!/usr/bin/env bash
# What the web dashboard costs Redis: a live run (50/s, one supervisor, one worker) watched
# by 1, then 100 open streams of `j4 dashboard`; counts the commands the dashboard's own
# connection sends, with MONITOR, over SECONDS for each. Its cost does not depend on the
# build, so a debug j4 does (J4_BIN=.build/debug/j4).
#
#   bash scripts/bench/dashboard-redis.sh [STREAMS="1 100"] [SECONDS=10]
source "$(dirname "$0")/lib.sh"
counts=${1:-"1 100"}
seconds=${2:-10}
bash scripts/setup.sh demo >/dev/null
bench_build
port=$(free_port)
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
REDIS_URL="redis://127.0.0.1:$port"
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
bench_sink
"$J4_BIN" supervisor --redis "$REDIS_URL" --log-level error &
"$J4_BIN" worker --redis "$REDIS_URL" --log-level error &
cat > "$BENCH_WORK/run.yaml" <<YAML
name: dashboard-bench
scenario: http
model: arrival-rate
start: 50
stages: [{ duration: 300s, target: 50 }]
shards: 8
params: { request: { url: "$SINK_URL/" } }
YAML
run=$("$J4_BIN" submit "$BENCH_WORK/run.yaml" --redis "$REDIS_URL")
"$J4_BIN" dashboard --redis "$REDIS_URL" --port 0 2> "$BENCH_WORK/dashboard.out" &
wait_for_file_text "$BENCH_WORK/dashboard.out" "listening on"
dashboard=$(grep -o 'http://[0-9.:]*' "$BENCH_WORK/dashboard.out" | head -1)
sleep 5  # the run starts (its tick 0 is a few seconds after submit)
echo "# dashboard-redis: run $run at 50/s; commands of j4 dashboard's Redis connection over ${seconds}s (MONITOR)"
for n in $counts; do
  pids=()
  for _ in $(seq "$n"); do curl -sN "$dashboard/api/runs/$run/stream" > /dev/null & pids+=($!); done
  sleep 3  # every stream open and primed
  addrs=$(redis-cli -p "$port" client list | grep 'name=j4-dashboard' | grep -o 'addr=[^ ]*' | cut -d= -f2)
  timeout "$seconds" redis-cli -p "$port" monitor > "$BENCH_WORK/monitor.txt" || true
  calls=0
  for a in $addrs; do calls=$((calls + $(grep -cF "$a]" "$BENCH_WORK/monitor.txt" || true))); done
  echo "streams=$n calls=$calls per_second=$(python3 -c "print(round($calls / $seconds, 1))")"
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
done
"$J4_BIN" abort "$run" --redis "$REDIS_URL" >/dev/null
