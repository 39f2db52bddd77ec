#!/usr/bin/env bash
# Sets up, builds, and runs a real demo load test end to end: `j4 sink` as the target and
# `j4 run` with its own private redis-server, 4 workers, ramp to 100/s, hold, ramp down.
#   bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh demo
swift build --product j4      # a debug build is quicker to make; use -c release for real load
J4="$(swift build --show-bin-path)/j4"

"$J4" sink --port 8080 --latency 5ms --jitter 2ms > /tmp/j4-demo-sink.log 2>&1 &
sink=$!
trap 'kill $sink 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q listening /tmp/j4-demo-sink.log 2>/dev/null && break; sleep 0.1; done

# The live dashboard too, when its port is free: j4 prints the address to open.
dashboard=()
if ! (exec 3<>/dev/tcp/127.0.0.1/8089) 2>/dev/null; then dashboard=(--dashboard); fi
"$J4" run examples/demo.yaml --workers 4 --summary-json /tmp/j4-demo-summary.json "${dashboard[@]}"
echo
echo "the sink counted: $(curl -s http://127.0.0.1:8080/__sink/stats | head -c 200)..."
echo "summary JSON: /tmp/j4-demo-summary.json"
