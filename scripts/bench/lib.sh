# Shared by the scripts in scripts/bench/: tool installation, nginx, Redis, j4 and CPU time.
# Sourced, not run. Every server listens on 127.0.0.1 only; every load is bounded in time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
J4_ROOT=$PWD

# Installs what the comparison needs (Debian packages and Locust from PyPI), once.
bench_install() {
  bash scripts/setup.sh demo
  local missing=()
  for pair in nginx:nginx wrk:wrk hey:hey h2load:nghttp2-client ab:apache2-utils openssl:openssl; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || missing+=("${pair#*:}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if ! command -v locust >/dev/null 2>&1; then
    python3 -m pip install -q locust >/dev/null
  fi
}

# Builds j4 in release mode unless J4_BIN names one; sets J4_BIN.
bench_build() {
  if [ -z "${J4_BIN:-}" ]; then
    swift build -c release --product j4 >&2
    J4_BIN=$J4_ROOT/.build/release/j4
  fi
}

BENCH_WORK=$(mktemp -d)
bench_cleanup() {
  local pids; pids=$(jobs -p)
  [ -n "$pids" ] && kill $pids 2>/dev/null || true
  [ -f "$BENCH_WORK/nginx.pid" ] && kill "$(cat "$BENCH_WORK/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$BENCH_WORK"
}
trap bench_cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts nginx (one worker process, on core $1, default 1) on a free loopback port; sets
# NGINX_URL. GET / answers "ok" with no logging; GET /count/... is logged, one line per
# request, in $BENCH_WORK/count.log, so a count is taken at the server.
bench_nginx() {
  local core=${1:-1} port tls_port; port=$(free_port); tls_port=$(free_port)
  mkdir -p "$BENCH_WORK/nginx"
  # A certificate for 127.0.0.1, which J4 trusts with --ca-file (hey and h2load do not check).
  [ -f "$BENCH_WORK/tls.pem" ] || openssl req -x509 -newkey rsa:2048 -nodes -keyout "$BENCH_WORK/tls.key" -out "$BENCH_WORK/tls.pem" \
    -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 >/dev/null
  cat > "$BENCH_WORK/nginx.conf" <<NGINX
worker_processes 1;
daemon on;
user root;
pid $BENCH_WORK/nginx.pid;
error_log $BENCH_WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  client_body_temp_path $BENCH_WORK/nginx; proxy_temp_path $BENCH_WORK/nginx;
  fastcgi_temp_path $BENCH_WORK/nginx; uwsgi_temp_path $BENCH_WORK/nginx; scgi_temp_path $BENCH_WORK/nginx;
  server {
    listen 127.0.0.1:$port;
    location / { default_type text/plain; return 200 "ok\n"; }
    location /count/ { access_log $BENCH_WORK/count.log; default_type text/plain; return 200 "ok\n"; }
  }
  # HTTPS, HTTP/1.1 or HTTP/2 by ALPN.
  server {
    listen 127.0.0.1:$tls_port ssl http2;
    ssl_certificate $BENCH_WORK/tls.pem;
    ssl_certificate_key $BENCH_WORK/tls.key;
    ssl_session_cache shared:tls:1m;
    location / { default_type text/plain; return 200 "ok\n"; }
  }
}
NGINX
  taskset -c "$core" /usr/sbin/nginx -c "$BENCH_WORK/nginx.conf" -p "$BENCH_WORK/nginx" 2>"$BENCH_WORK/nginx/start.err"
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/" >/dev/null 2>&1 && break; sleep 0.1; done
  NGINX_URL="http://127.0.0.1:$port"
  NGINX_TLS_URL="https://127.0.0.1:$tls_port"
  NGINX_CA="$BENCH_WORK/tls.pem"
}

# Lines in nginx's count log (requests to /count/...).
nginx_count() { [ -f "$BENCH_WORK/count.log" ] && wc -l < "$BENCH_WORK/count.log" || echo 0; }
nginx_count_reset() { : > "$BENCH_WORK/count.log"; kill -USR1 "$(cat "$BENCH_WORK/nginx.pid")"; }

# Starts redis-server on a unix socket in $BENCH_WORK (on core $1, default 1); sets REDIS_URL, REDIS_PID.
bench_redis() {
  local core=${1:-1}
  taskset -c "$core" redis-server --port 0 --unixsocket "$BENCH_WORK/redis.sock" --save "" --appendonly no >/dev/null &
  REDIS_PID=$!
  for _ in $(seq 50); do [ -S "$BENCH_WORK/redis.sock" ] && break; sleep 0.1; done
  REDIS_URL="unix://$BENCH_WORK/redis.sock"
}

# Stops redis-server started by bench_redis, and its socket, so the next bench_redis starts clean.
bench_redis_stop() {
  kill "$REDIS_PID" 2>/dev/null || true
  wait "$REDIS_PID" 2>/dev/null || true
  rm -f "$BENCH_WORK/redis.sock"
}

# Starts `j4 sink ARGS…` on a free loopback port; sets SINK_URL.
bench_sink() {
  "$J4_BIN" sink --port 0 "$@" > "$BENCH_WORK/sink.out" 2>&1 &
  wait_for_file_text "$BENCH_WORK/sink.out" listening
  SINK_URL=$(grep -o 'http://[0-9.:]*' "$BENCH_WORK/sink.out" | head -1)
}

# Starts `j4 supervisor` on REDIS_URL; sets SUPERVISOR_PID.
bench_supervisor() {
  "$J4_BIN" supervisor --redis "$REDIS_URL" --log-level error &
  SUPERVISOR_PID=$!
}

# Waits until http://127.0.0.1:PORT/metrics answers (a j4 process with --metrics-port).
wait_for_metrics() { for _ in $(seq 100); do curl -sf "http://127.0.0.1:$1/metrics" >/dev/null && return 0; sleep 0.1; done; return 1; }

# Stops j4 processes gracefully (SIGTERM) and waits for them.
stop_processes() {
  kill -TERM "$@" 2>/dev/null || true
  wait "$@" 2>/dev/null || true
}

# Writes to FILE an arrival-rate run of the built-in http scenario: NAME, RATE/s for
# SECONDS, SHARDS shards, against URL (MAX_IN_FLIGHT optional).
hold_definition() {
  local file=$1 name=$2 rate=$3 seconds=$4 shards=$5 url=$6 max=${7:-}
  {
    echo "name: $name"
    echo "scenario: http"
    echo "model: arrival-rate"
    echo "start: $rate"
    echo "stages: [{ duration: ${seconds}s, target: $rate }]"
    echo "shards: $shards"
    [ -n "$max" ] && echo "maxInFlight: $max"
    echo "params: { request: { url: \"$url\" } }"
  } > "$file"
}

# The median of the numbers on standard input.
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# Waits until a j4 process' log names the run start (or 30 s).
wait_for_file_text() { for _ in $(seq 300); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# Runs `measure TOOL` (the calling script's; it prints "count cpu_seconds") for each of
# $1 (tools), $2 rounds interleaved, $3 seconds each; prints every line, then the medians
# per second and per CPU-second under the unit $4 (e.g. req). Lines go to $BENCH_WORK/results.txt.
bench_rounds() {
  local tools=$1 reps=$2 seconds=$3 unit=$4 rep tool n cpu rps per
  echo "# rep tool count ${unit}_per_s cpu_s ${unit}_per_cpu_s"
  for rep in $(seq "$reps"); do
    for tool in $tools; do
      read -r n cpu < <(measure "$tool")
      rps=$(awk -v n="$n" -v s="$seconds" 'BEGIN { printf "%.0f", n / s }')
      per=$(awk -v n="$n" -v c="$cpu" 'BEGIN { printf "%.0f", (c > 0 ? n / c : 0) }')
      echo "$rep $tool $n $rps $cpu $per" | tee -a "$BENCH_WORK/results.txt"
    done
  done
  echo "# medians"
  printf "%-12s %12s %16s\n" tool "$unit/s" "$unit/CPU-second"
  for tool in $tools; do
    rps=$(awk -v t="$tool" '$2 == t {print $4}' "$BENCH_WORK/results.txt" | median)
    per=$(awk -v t="$tool" '$2 == t {print $6}' "$BENCH_WORK/results.txt" | median)
    printf "%-12s %12s %16s\n" "$tool" "$rps" "$per"
  done
}
