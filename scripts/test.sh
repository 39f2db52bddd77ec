#!/usr/bin/env bash
# Sets up and runs every test: unit tables, real redis-server, real j4 processes, and the
# examples against their own servers.
#   bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The examples' own manifests must stay valid (their sources are built by the root package).
for example in examples/http-checkout examples/chat; do
  swift package --package-path "$example" dump-package >/dev/null
done
swift build --build-tests
swift test --skip-build
# The definition parser under libFuzzer, for a bounded time: it prints how many inputs it tried.
bash scripts/fuzz-definitions.sh 120
