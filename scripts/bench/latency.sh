#!/usr/bin/env bash
# Latency truth: a fixed rate against `j4 sink --stall 10s:1s` (for the last second of every
# ten, every request waits until the stall ends). The true latency of a request is measured
# from when it was meant to start, so a request meant to start in a stall waits for the rest
# of it. J4 (open model, latency from the intended start) is compared with the truth computed
# from the schedule, and with hey at the same rate (closed loop: a worker waiting in a stall
# sends nothing, so the stall hides from its percentiles: coordinated omission).
#
#   bash scripts/bench/latency.sh [RATE=200] [SECONDS=30]      # SECONDS a multiple of 10
source "$(dirname "$0")/lib.sh"
rate=${1:-200}
seconds=${2:-30}
bench_install
bench_build
bench_redis 1
bench_sink --stall 10s:1s
url=$SINK_URL
hold_definition "$BENCH_WORK/stall.yaml" latency-truth "$rate" "$seconds" 16 "$url/"
"$J4_BIN" run "$BENCH_WORK/stall.yaml" --redis "$REDIS_URL" --quiet --summary-json "$BENCH_WORK/j4.json" > /dev/null 2>&1 || true
# hey: -q is per worker; 10 workers at rate/10 each.
hey -z "${seconds}s" -c 10 -q $((rate / 10)) "$url/" > "$BENCH_WORK/hey.txt" 2>&1 || true

python3 - "$rate" "$seconds" "$BENCH_WORK/j4.json" "$BENCH_WORK/hey.txt" <<'PY'
import json, re, sys
rate, seconds, j4file, heyfile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
period, stall = 10.0, 1.0
s = json.load(open(j4file))
lat = s.get("latency_ms") or {}
base_ms = lat.get("p50") or 0.0
# The schedule: one request every 1/rate s; those meant to start inside a stall wait for its end.
# Over whole periods the phase between run and stall does not change the set (to within 1/rate).
truth = []
for i in range(rate * seconds):
    t = (i + 0.5) / rate
    phase = t % period
    wait = (period - phase) if phase >= period - stall else 0.0
    truth.append(wait * 1000 + base_ms)
truth.sort()
def pct(v, p): return v[min(len(v) - 1, max(0, int(len(v) * p + 0.999999) - 1))]
t99, tmax = pct(truth, 0.99), truth[-1]
hey = open(heyfile).read()
m99 = re.search(r"99%% in ([0-9.]+) secs".replace("%%", "%"), hey)
slow = re.search(r"Slowest:\s+([0-9.]+) secs", hey)
count = re.search(r"\[200\]\s+(\d+) responses", hey)
h99 = float(m99.group(1)) * 1000 if m99 else float("nan")
hmax = float(slow.group(1)) * 1000 if slow else float("nan")
print(f"# latency truth: {rate}/s for {seconds} s against j4 sink --stall 10s:1s")
print(f"{'':24}{'p99 ms':>10}{'max ms':>10}{'p99 vs truth':>14}{'requests':>10}")
print(f"{'truth (from schedule)':24}{t99:10.1f}{tmax:10.1f}{'':>14}{rate * seconds:10d}")
print(f"{'j4 (open model)':24}{lat.get('p99', float('nan')):10.1f}{lat.get('max', float('nan')):10.1f}{100 * (lat.get('p99', 0) - t99) / t99:+13.1f}%{s.get('started', 0):10d}")
print(f"{'hey -q (closed loop)':24}{h99:10.1f}{hmax:10.1f}{100 * (h99 - t99) / t99:+13.1f}%{int(count.group(1)) if count else 0:10d}")
PY
