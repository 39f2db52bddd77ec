#!/usr/bin/env bash
# Worker memory over a long run: one j4 worker at a fixed rate against j4 sink, its RSS
# sampled every 10 s. Flat RSS means no raw samples are kept: only counters and histogram
# buckets, flushed each second.
#
#   bash scripts/bench/memory.sh [MINUTES=10] [RATE=1000]
#   J4_BIN=path/to/j4 bash scripts/bench/memory.sh 10 1000     # a j4 you built yourself
#
# Prints one line per sample (elapsed s, RSS KiB, iterations so far) and a summary line.
source "$(dirname "$0")/lib.sh"
minutes=${1:-10}
rate=${2:-1000}
bash scripts/setup.sh demo
bench_build
bench_redis 1
bench_sink
url=$SINK_URL
bench_supervisor
"$J4_BIN" worker --redis "$REDIS_URL" --id bench --log-level warning &
worker=$!
hold_definition "$BENCH_WORK/run.yaml" memory "$rate" $((minutes * 60)) 16 "$url/"
run=$("$J4_BIN" submit "$BENCH_WORK/run.yaml" --redis "$REDIS_URL")
echo "# run $run: $rate/s for $minutes min, worker pid $worker ($J4_BIN)"
echo "# elapsed_s rss_kib requests_at_sink"
start=$(date +%s)
first=""
while kill -0 "$worker" 2>/dev/null; do
  now=$(date +%s); elapsed=$((now - start))
  rss=$(awk '/VmRSS/ {print $2}' /proc/$worker/status)
  sent=$(curl -s "$url/__sink/stats" | grep -o '"requests":[0-9]*' | cut -d: -f2)
  echo "$elapsed $rss $sent"
  [ -z "$first" ] && [ "$elapsed" -ge 60 ] && first=$rss
  [ "$elapsed" -ge $((minutes * 60 + 5)) ] && break
  sleep 10
done
last=$rss
echo "# summary: worker RSS ${first:-?} KiB after 1 min, $last KiB at $((elapsed / 60)) min; $sent requests at the sink"
