#!/usr/bin/env bash
# Installs what J4 needs to build and test on Debian/Ubuntu: hiredis, redis-server, pkg-config,
# curl, openssl and chromium (headless, for the HTML report test).
# Idempotent: installs only what is missing. Uses sudo only when not root.
set -euo pipefail

need=()
dpkg -s libhiredis-dev >/dev/null 2>&1 || need+=(libhiredis-dev)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)     # test certificates for HTTPS and HTTP/2
command -v chromium >/dev/null 2>&1 || need+=(chromium)   # renders the HTML report in a test

if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "setup: installing ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

command -v swift >/dev/null 2>&1 || { echo "setup: swift (6.0 or later) is not on PATH; install a Swift toolchain first" >&2; exit 3; }
