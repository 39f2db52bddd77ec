#!/usr/bin/env bash
# Sets up and runs every test: unit tables, real redis-server, real j4 processes.
#   bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build --build-tests
swift test --skip-build
