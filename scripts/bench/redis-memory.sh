#!/usr/bin/env bash
# Redis memory of one long run at 100 ms ticks, measured with MEMORY USAGE (SAMPLES 0: every
# field counted) on a real cluster: j4 sink (latency 2-8 ms, 1 % errors, so histograms and
# error classes are filled as in a real test), a supervisor folding older state after
# DETAIL, two workers, 200 iterations/s over 16 shards. Every 30 s it prints the run's bytes
# by kind of key. At the end it projects a 24-hour run from what it measured: the kept part
# (the default --detail of 15 minutes of seconds and of ticks) and one folded minute per
# minute of the run, next to the same run without compaction.
#
#   bash scripts/bench/redis-memory.sh [MINUTES=6] [DETAIL=2m]
#   J4_BIN=path/to/j4 bash scripts/bench/redis-memory.sh 6 2m
source "$(dirname "$0")/lib.sh"
minutes=${1:-6}
detail=${2:-2m}
bash scripts/setup.sh demo
bench_build
bench_redis 1
bench_sink --latency 5ms --jitter 3ms --error-rate 0.01
"$J4_BIN" supervisor --redis "$REDIS_URL" --detail "$detail" --log-level error &
for w in 1 2; do "$J4_BIN" worker --redis "$REDIS_URL" --id "mem$w" --log-level error & done
cat > "$BENCH_WORK/run.yaml" <<YAML
name: redis-memory
scenario: http
model: arrival-rate
start: 200
stages: [{ duration: 24h, target: 200 }]
tick: 100ms
shards: 16
params: { request: { url: "$SINK_URL/" } }
YAML
run=$("$J4_BIN" submit "$BENCH_WORK/run.yaml" --redis "$REDIS_URL")
sock=$BENCH_WORK/redis.sock
echo "# run $run: 200/s, tick 100 ms, 16 shards, 2 workers, supervisor --detail $detail, for $minutes min ($J4_BIN)"
measure() {
  python3 - "$sock" "$run" "$1" <<'PY'
import subprocess, sys, json, statistics
sock, run, elapsed = sys.argv[1], sys.argv[2], sys.argv[3]
def cli(*a):
    return subprocess.run(["redis-cli", "-s", sock, *a], capture_output=True, text=True, check=True).stdout.split("\n")
prefix = f"j4:{{r:{run}}}:"
keys = [k for k in cli("--scan", "--pattern", prefix + "*") if k]
kinds, sizes = {}, {}
for k in keys:
    rest = k[len(prefix):]
    kind = "m" if rest.startswith("m:") else "m60" if rest.startswith("m60:") else "claims" if rest.startswith("claims:") else rest
    b = int(cli("MEMORY", "USAGE", k, "SAMPLES", "0")[0] or 0)
    kinds.setdefault(kind, []).append(b)
    sizes[k] = b
ctl = dict(zip(*[iter(cli("HGETALL", prefix + "ctl")[:-1])] * 2))
plan_fields = int(cli("HLEN", prefix + "plan")[0] or 0)
tick_fields = int(cli("HLEN", prefix + "ticks")[0] or 0)
used = next(l.split(":")[1] for l in cli("INFO", "memory") if l.startswith("used_memory:"))
total = sum(sizes.values())
line = " ".join(f"{k}={sum(v) / 1024:.0f}KiB/{len(v)}" for k, v in sorted(kinds.items()))
print(f"{elapsed} s: run keys {total / 1048576:.2f} MiB ({line}); plan {plan_fields} fields, ticks {tick_fields} fields; "
      f"compacted_tick {ctl.get('compacted_tick', '-')}, compacted_s {ctl.get('compacted_s', '-')}; used_memory {int(used) / 1048576:.1f} MiB", flush=True)
state = {"kinds": kinds, "plan_fields": plan_fields, "tick_fields": tick_fields}
open(f"{sock}.last.json", "w").write(json.dumps(state))
PY
}
start=$(date +%s)
while true; do
  elapsed=$(( $(date +%s) - start ))
  [ "$elapsed" -ge 30 ] && measure "$elapsed"
  [ "$elapsed" -ge $((minutes * 60)) ] && break
  sleep 30
done
python3 - "$sock.last.json" <<'PY'
import json, statistics, sys
s = json.load(open(sys.argv[1]))
k = s["kinds"]
second = statistics.median(k["m"]) if k.get("m") else 0
# Whole minutes only: the first and the newest folded minute may hold part of one.
minutes = sorted(k.get("m60", []))
minute = statistics.median(minutes[1:-1] or minutes) if minutes else 0
per_tick = (sum(k.get("plan", [0])) + sum(k.get("ticks", [0]))) / max(1, s["plan_fields"])
fixed = sum(sum(v) for name, v in k.items() if name not in ("m", "m60", "plan", "ticks"))
ticks_day, kept_ticks, kept_s = 864_000, 9_000 + 30, 900
with_c = fixed + kept_ticks * per_tick + kept_s * second + 1440 * minute
without = fixed + ticks_day * per_tick + 86_400 * second
print(f"# measured: a second's hash {second / 1024:.2f} KiB, a folded minute's {minute / 1024:.2f} KiB, "
      f"plan + ticks {per_tick:.0f} B per tick, everything else {fixed / 1024:.0f} KiB")
print(f"# projected 24 h at 100 ms ticks, default --detail 15m: {with_c / 1048576:.1f} MiB "
      f"({kept_s} seconds and {kept_ticks} ticks kept, 1440 minutes folded); "
      f"{60 * minute / 1048576:.2f} MiB per run-hour after the first 15 min; "
      f"without compaction: {without / 1048576:.0f} MiB")
PY
"$J4_BIN" stop "$run" --redis "$REDIS_URL" >/dev/null
