#!/usr/bin/env bash
# Worker memory over a long run: one j4 worker at a fixed rate against j4 sink, its RSS
# sampled every 10 s. Flat RSS means no raw samples are kept: only counters and histogram
# buckets, flushed each second.
#
#   bash scripts/bench/memory.sh [MINUTES=10] [RATE=1000]
#   J4_BIN=path/to/j4 bash scripts/bench/memory.sh 10 1000     # a j4 you built yourself
#
# Prints one line per sample (elapsed s, RSS KiB, iterations so far) and a summary line.
set -euo pipefail
cd "$(dirname "$0")/../.."
minutes=${1:-10}
rate=${2:-1000}
bash scripts/setup.sh
if [ -z "${J4_BIN:-}" ]; then
  swift build -c release --product j4 >&2
  J4_BIN=.build/release/j4
fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
redis-server --port 0 --unixsocket "$work/redis.sock" --save "" --appendonly no >/dev/null &
for _ in $(seq 50); do [ -S "$work/redis.sock" ] && break; sleep 0.1; done
redis="unix://$work/redis.sock"
"$J4_BIN" sink --port 0 > "$work/sink.out" &
for _ in $(seq 100); do grep -q listening "$work/sink.out" 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' "$work/sink.out")
"$J4_BIN" supervisor --redis "$redis" --log-level warning &
"$J4_BIN" worker --redis "$redis" --id bench --log-level warning &
worker=$!
cat > "$work/run.yaml" <<YAML
name: memory
scenario: http
model: arrival-rate
start: $rate
stages: [{ duration: ${minutes}m, target: $rate }]
shards: 16
params: { request: { url: "$url/" } }
YAML
run=$("$J4_BIN" submit "$work/run.yaml" --redis "$redis")
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
