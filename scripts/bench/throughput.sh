#!/usr/bin/env bash
# Throughput next to wrk, hey, h2load, ab and Locust: every generator on core 0, nginx (one
# worker) on core 1, the same number of keep-alive connections, interleaved repetitions,
# medians. Prints requests per second and requests per generator CPU-second (user + system
# time of the generator process, from /usr/bin/time).
#
#   bash scripts/bench/throughput.sh [SECONDS=10] [REPETITIONS=3] [CONNECTIONS=50]
#   J4_BIN=path/to/j4 bash scripts/bench/throughput.sh      # a j4 you built yourself
#   TOOLS="j4-vus wrk" bash scripts/bench/throughput.sh     # a subset
#
# j4-vus and j4-rate run the built-in http scenario (vus and arrival-rate, the rate far above
# what one core reaches); j4-rate-held holds RATE_HELD/s (default 30,000); j4-scenario and
# j4-scenario2 run scenarios written in Swift (examples/bench-scenarios: one it.request per
# iteration; two requests and a check), each a request per VU at a time, as j4-vus.
# Over HTTPS (nginx's TLS port, HTTP/1.1 or HTTP/2 by ALPN): j4-https (the built-in scenario,
# HTTP/1.1 on the lean client) next to hey-https; j4-h2 (version "2", the lean HTTP/2 client,
# a connection per VU with one stream in flight) next to h2load-h2 (50 connections, one
# stream at a time on each).
source "$(dirname "$0")/lib.sh"
seconds=${1:-10}
reps=${2:-3}
conns=${3:-50}
tools=${TOOLS:-"j4-vus j4-rate j4-rate-held j4-scenario j4-scenario2 wrk hey h2load ab locust-fast j4-https hey-https j4-h2 h2load-h2"}
bench_install
bench_build
case " $tools " in
  *" j4-scenario"*)
    if [ -z "${J4_SCENARIOS_BIN:-}" ]; then
      swift build -c release --product j4-bench-scenarios >&2
      J4_SCENARIOS_BIN=$J4_ROOT/.build/release/j4-bench-scenarios
    fi ;;
esac
bench_nginx 1
bench_redis 1
url="$NGINX_URL/"

cat > "$BENCH_WORK/vus.yaml" <<YAML
name: throughput-vus
scenario: http
model: vus
start: $conns
stages: [{ duration: ${seconds}s, target: $conns }]
shards: $conns
params: { request: { url: "$url" } }
YAML
for v in 1.1 2; do
  cat > "$BENCH_WORK/https-$v.yaml" <<YAML
name: throughput-https
scenario: http
model: vus
start: $conns
stages: [{ duration: ${seconds}s, target: $conns }]
shards: $conns
params: { request: { url: "$NGINX_TLS_URL/" }, version: "$v" }
YAML
done
for scenario in fetch browse; do
  cat > "$BENCH_WORK/$scenario.yaml" <<YAML
name: throughput-$scenario
scenario: $scenario
model: vus
start: $conns
stages: [{ duration: ${seconds}s, target: $conns }]
shards: $conns
params: { url: "$url" }
YAML
done
# A rate no single core reaches: iterations beyond maxInFlight in flight are dropped.
hold_definition "$BENCH_WORK/rate.yaml" throughput-rate 200000 "$seconds" 64 "$url" "$conns"
# A rate one core sustains (RATE_HELD, default 30,000/s): what an arrival-rate run costs per
# request when it is not dropping most of what it decides.
hold_definition "$BENCH_WORK/rate-held.yaml" throughput-rate-held "${RATE_HELD:-30000}" "$seconds" 64 "$url" "$conns"
cat > "$BENCH_WORK/locustfile.py" <<'PY'
from locust import FastHttpUser, constant, task
class Tight(FastHttpUser):
    wait_time = constant(0)
    @task
    def get(self):
        self.client.get("/")
PY

# Runs one tool on core 0; prints "requests cpu_seconds".
measure() {
  local tool=$1 out="$BENCH_WORK/out.txt" t="$BENCH_WORK/time.txt" n
  # A run that fails leaves no summary: it counts 0, not the previous tool's count.
  rm -f "$BENCH_WORK/s.json"
  case $tool in
    j4-vus|j4-rate|j4-rate-held)
      local def=$BENCH_WORK/${tool#j4-}.yaml
      taskset -c 0 /usr/bin/time -o "$t" -f "%U %S" "$J4_BIN" run "$def" --redis "$REDIS_URL" --quiet --summary-json "$BENCH_WORK/s.json" > "$out" 2>&1 || true
      n=$(python3 -c "import json; print(json.load(open('$BENCH_WORK/s.json'))['ok'])") ;;
    j4-https|j4-h2)
      local def=$BENCH_WORK/https-1.1.yaml
      [ "$tool" = j4-h2 ] && def=$BENCH_WORK/https-2.yaml
      taskset -c 0 /usr/bin/time -o "$t" -f "%U %S" "$J4_BIN" run "$def" --redis "$REDIS_URL" --ca-file "$NGINX_CA" --quiet --summary-json "$BENCH_WORK/s.json" > "$out" 2>&1 || true
      n=$(python3 -c "import json; print(json.load(open('$BENCH_WORK/s.json'))['ok'])") ;;
    hey-https)
      taskset -c 0 /usr/bin/time -o "$t" -f "%U %S" hey -z "${seconds}s" -c "$conns" "$NGINX_TLS_URL/" > "$out" 2>&1
      n=$(awk '/\[200\]/ {print $2}' "$out") ;;
    h2load-h2)
      taskset -c 0 /usr/bin/time -o "$t" -f "%U %S" h2load -c "$conns" -m 1 -D "$seconds" "$NGINX_TLS_URL/" > "$out" 2>&1
      n=$(awk '/^status codes:/ {print $3}' "$out") ;;
    j4-scenario|j4-scenario2)
      local def=$BENCH_WORK/fetch.yaml per=1
      [ "$tool" = j4-scenario2 ] && def=$BENCH_WORK/browse.yaml per=2
      taskset -c 0 /usr/bin/time -o "$t" -f "%U %S" "$J4_SCENARIOS_BIN" run "$def" --redis "$REDIS_URL" --quiet --summary-json "$BENCH_WORK/s.json" > "$out" 2>&1 || true
      # Requests, not iterations: each iteration of browse sends two.
      n=$(python3 -c "import json; print(json.load(open('$BENCH_WORK/s.json'))['ok'] * $per)") ;;
    wrk)
      taskset -c 0 /usr/bin/time -o "$t" -f "%U %S" wrk -t1 -c"$conns" -d"${seconds}s" "$url" > "$out" 2>&1
      n=$(awk '/requests in/ {print $1}' "$out") ;;
    hey)
      taskset -c 0 /usr/bin/time -o "$t" -f "%U %S" hey -z "${seconds}s" -c "$conns" "$url" > "$out" 2>&1
      n=$(awk '/\[200\]/ {print $2}' "$out") ;;
    h2load)
      taskset -c 0 /usr/bin/time -o "$t" -f "%U %S" h2load --h1 -c "$conns" -D "$seconds" "$url" > "$out" 2>&1
      n=$(awk '/^status codes:/ {print $3}' "$out") ;;
    ab)
      taskset -c 0 /usr/bin/time -o "$t" -f "%U %S" ab -k -q -c "$conns" -t "$seconds" -n 100000000 "$url" > "$out" 2>&1 || true
      n=$(awk '/^Complete requests:/ {print $3}' "$out") ;;
    locust-fast)
      (cd "$BENCH_WORK" && taskset -c 0 /usr/bin/time -o "$t" -f "%U %S" locust -f locustfile.py --headless -u "$conns" -r "$conns" \
        -t "${seconds}s" --host "$NGINX_URL" --only-summary --csv "$BENCH_WORK/locust" > "$out" 2>&1) || true
      n=$(awk -F, '$2 == "Aggregated" {print $3}' "$BENCH_WORK/locust_stats.csv") ;;
  esac
  echo "${n:-0} $(awk '{print $1 + $2}' "$t")"
}

echo "# throughput: $seconds s per measurement, $reps repetitions, $conns connections, nginx 1 worker on core 1, generator on core 0"
echo "# $(nproc) cores, $(uname -r), j4 $J4_BIN"
bench_rounds "$tools" "$reps" "$seconds" req
