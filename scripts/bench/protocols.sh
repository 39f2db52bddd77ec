#!/usr/bin/env bash
# gRPC unary calls and WebSocket echoes through J4 next to bare client loops on the same
# servers: what J4's scenario machinery (VUs, steps, metrics, the gRPC interceptor, the
# reconnecting WebSocket) costs per message.
#
#   bash scripts/bench/protocols.sh [SECONDS=5] [REPETITIONS=3] [CONNECTIONS=50]
#   J4_PROTOCOLS_BIN=.build/release/j4-bench-protocols bash scripts/bench/protocols.sh   # a build of your own
#
# The echo servers (examples/bench-protocols) run on core 1, every client on core 0, each
# for SECONDS; CPU is the client process' user + system time. j4-grpc runs CONNECTIONS VUs
# of the grpc-unary scenario (one J4GRPCInterceptor client shared by the process, as the
# bare loop shares one client among CONNECTIONS callers); j4-ws runs CONNECTIONS VUs of
# ws-echo (a socket per VU, each iteration a step that sends and waits for the echo),
# bare-ws as many sockets each sending and waiting the same way.
source "$(dirname "$0")/lib.sh"
seconds=${1:-5}
reps=${2:-3}
conns=${3:-50}
tools=${TOOLS:-"j4-grpc bare-grpc j4-ws bare-ws"}
bench_install
if [ -z "${J4_PROTOCOLS_BIN:-}" ]; then
  swift build -c release --product j4-bench-protocols >&2
  J4_PROTOCOLS_BIN=$J4_ROOT/.build/release/j4-bench-protocols
fi
bench_redis 1
grpc_port=$(free_port)
ws_port=$(free_port)
taskset -c 1 "$J4_PROTOCOLS_BIN" grpc-server "$grpc_port" > "$BENCH_WORK/grpc-server.log" 2>&1 &
taskset -c 1 "$J4_PROTOCOLS_BIN" ws-server "$ws_port" > "$BENCH_WORK/ws-server.log" 2>&1 &
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$grpc_port") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$ws_port") 2>/dev/null && break
  sleep 0.1
done

for scenario in grpc-unary ws-echo; do
  cat > "$BENCH_WORK/$scenario.yaml" <<YAML
name: protocols-$scenario
scenario: $scenario
model: vus
start: $conns
stages: [{ duration: ${seconds}s, target: $conns }]
shards: $conns
params: { port: $grpc_port, url: "ws://127.0.0.1:$ws_port/" }
YAML
done

# Runs one tool on core 0; prints "messages cpu_seconds".
measure() {
  local tool=$1 out="$BENCH_WORK/out.txt" t="$BENCH_WORK/time.txt" n
  # A run that fails leaves no summary: it counts 0, not the previous tool's count.
  rm -f "$BENCH_WORK/s.json"
  case $tool in
    j4-grpc|j4-ws)
      local def=$BENCH_WORK/grpc-unary.yaml
      [ "$tool" = j4-ws ] && def=$BENCH_WORK/ws-echo.yaml
      taskset -c 0 /usr/bin/time -o "$t" -f "%U %S" "$J4_PROTOCOLS_BIN" run "$def" --redis "$REDIS_URL" --quiet --summary-json "$BENCH_WORK/s.json" > "$out" 2>&1 || true
      n=$(python3 -c "import json; print(json.load(open('$BENCH_WORK/s.json'))['ok'])") ;;
    bare-grpc)
      taskset -c 0 /usr/bin/time -o "$t" -f "%U %S" "$J4_PROTOCOLS_BIN" grpc-bare "$grpc_port" "$conns" "$seconds" > "$out" 2>&1
      n=$(awk '/^calls/ {print $2}' "$out") ;;
    bare-ws)
      taskset -c 0 /usr/bin/time -o "$t" -f "%U %S" "$J4_PROTOCOLS_BIN" ws-bare "ws://127.0.0.1:$ws_port/" "$conns" "$seconds" > "$out" 2>&1
      n=$(awk '/^echoes/ {print $2}' "$out") ;;
  esac
  echo "${n:-0} $(awk '{print $1 + $2}' "$t")"
}

echo "# protocols: $seconds s per measurement, $reps repetitions, $conns callers or sockets, servers on core 1, clients on core 0"
echo "# $(nproc) cores, $(uname -r), $J4_PROTOCOLS_BIN"
bench_rounds "$tools" "$reps" "$seconds" msg
for pair in grpc ws; do
  j=$(awk -v t="j4-$pair" '$2 == t {print $6}' "$BENCH_WORK/results.txt" | median)
  b=$(awk -v t="bare-$pair" '$2 == t {print $6}' "$BENCH_WORK/results.txt" | median)
  [ "$j" = nan ] || [ "$b" = nan ] && continue
  awk -v j="$j" -v b="$b" -v p="$pair" 'BEGIN { if (j > 0 && b > 0) printf "# %s: J4 costs %.0f %% more CPU per message than the bare loop\n", p, (b / j - 1) * 100 }'
done
