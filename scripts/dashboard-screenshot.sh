#!/usr/bin/env bash
# Takes the dashboard screenshot of docs/dashboard.png: the http-checkout example (five
# steps, checks, a counter and a trend) ramping 4 → 20 VUs, watched through
# `checkout-j4 run --dashboard=0` and captured by headless Chromium mid-run.
#   bash scripts/dashboard-screenshot.sh [OUT.png]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-docs/dashboard.png}"
swift build --product checkout-j4 >/dev/null && swift build --product checkout-server >/dev/null
bin="$(swift build --show-bin-path)"
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin/checkout-server" --port 0 > "$work/server.log" 2>&1 &
for _ in $(seq 100); do grep -q "listening on" "$work/server.log" 2>/dev/null && break; sleep 0.1; done
port="$(grep -o 'listening on http://[0-9.]*:[0-9]*' "$work/server.log" | grep -o '[0-9]*$')"
cat > "$work/run.yaml" <<YAML
name: checkout-dashboard
scenario: checkout
model: vus
start: 4
stages:
  - { duration: 15s, target: 20 }
  - { duration: 25s, target: 20 }
shards: 8
thresholds: ["p95 < 500ms", "errors < 1%", "checks > 99%"]
params:
  baseURL: "http://127.0.0.1:$port"
YAML
"$bin/checkout-j4" run "$work/run.yaml" --workers 2 --quiet --dashboard=0 \
  --pool accounts=examples/http-checkout/data/accounts.csv > "$work/run.log" 2>&1 &
for _ in $(seq 200); do grep -q "dashboard on http" "$work/run.log" 2>/dev/null && break; sleep 0.1; done
url="$(grep -o 'http://127.0.0.1:[0-9]*/runs/[a-z0-9_-]*' "$work/run.log")"
echo "dashboard at $url"
python3 scripts/chromium-capture.py "$url" --png "$out" --width 1280 --height 1400 --timeout 60 \
  --until "[...document.querySelectorAll('svg.chart')].filter(s => +s.dataset.points >= 60).length >= 2"
echo "wrote $out"
