#!/usr/bin/env bash
# Installs what J4 needs on Debian/Ubuntu, for one purpose:
#   bash scripts/setup.sh demo   hiredis, redis-server and pkg-config (to build and run j4), curl
#   bash scripts/setup.sh test   the above, plus openssl (test certificates for HTTPS and HTTP/2),
#                                a C compiler (a test builds scripts/clockshift.c),
#                                iproute2 (`ip netns`: the split-brain test partitions network
#                                namespaces; it needs root),
#                                chromium (renders the HTML report in a test) and, from PyPI,
#                                kubernetes-validate (the Kubernetes manifests' schema check);
#                                kubectl itself (1.21 or later, for `kubectl kustomize`) must be
#                                on the machine: Debian's own package is older.
# Idempotent: installs only what is missing. Uses sudo only when not root.
set -euo pipefail
purpose="${1:-test}"
case "$purpose" in demo|test) ;; *) echo "setup: unknown purpose '$purpose'; accepted: demo, test" >&2; exit 2 ;; esac

need=()
dpkg -s libhiredis-dev >/dev/null 2>&1 || need+=(libhiredis-dev)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ "$purpose" = test ]; then
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v promtool >/dev/null 2>&1 || need+=(prometheus)  # promtool checks the /metrics exposition
  command -v cc >/dev/null 2>&1 || need+=(gcc)
  command -v ip >/dev/null 2>&1 || need+=(iproute2)
fi

if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "setup: installing ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ "$purpose" = test ]; then
  if ! command -v kubernetes-validate >/dev/null 2>&1; then
    echo "setup: installing kubernetes-validate (pip)" >&2
    python3 -m pip install -q kubernetes-validate >/dev/null 2>&1 || python3 -m pip install -q --break-system-packages kubernetes-validate >/dev/null
  fi
  command -v kubectl >/dev/null 2>&1 || { echo "setup: kubectl (1.21 or later, for kubectl kustomize) is not on PATH; the deploy/k8s tests need it" >&2; exit 3; }
fi
command -v swift >/dev/null 2>&1 || { echo "setup: swift (6.0 or later) is not on PATH; install a Swift toolchain first" >&2; exit 3; }
