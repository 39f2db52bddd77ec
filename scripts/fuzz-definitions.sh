#!/usr/bin/env bash
# Fuzzes the run-definition parser and validator with libFuzzer for a bounded time, and
# prints how many inputs it tried. Every input must parse or be rejected with each problem's
# field and what is accepted; an accepted one must survive its canonical JSON unchanged and
# have a computable curve (Sources/J4DefinitionFuzz/Fuzz.swift says exactly what is checked).
#   bash scripts/fuzz-definitions.sh [SECONDS]     (default 60)
# A failure leaves the input in .build-fuzz/crashes/ and says how to replay it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
# Its own scratch path: the instrumented build must not replace the normal one.
J4_FUZZ=1 swift build -c release --scratch-path .build-fuzz --product j4-definition-fuzz
fuzzer=.build-fuzz/release/j4-definition-fuzz
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$work/seeds" .build-fuzz/crashes
# Seeds: the examples and the invalid fixtures (a first byte picks YAML or JSON), and every
# input that once broke a property (kept in Tests/Fixtures/fuzz, replayed first).
for f in examples/*.yaml Tests/Fixtures/invalid/*.yaml docs/*.yaml; do
  [ -f "$f" ] && { printf '\x00'; cat "$f"; } > "$work/seeds/$(basename "$f")"
done
for f in Tests/Fixtures/invalid/*.json; do { printf '\x01'; cat "$f"; } > "$work/seeds/$(basename "$f")"; done
cp Tests/Fixtures/fuzz/* "$work/seeds/"
started=$(date +%s)
set +e
# libFuzzer, not Swift's backtracer, takes the trap, so that it saves the input.
SWIFT_BACKTRACE=enable=no "$fuzzer" -max_total_time="$seconds" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix=.build-fuzz/crashes/ "$work/corpus" "$work/seeds" >"$work/log" 2>&1
code=$?
set -e
elapsed=$(( $(date +%s) - started ))
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
corpus=$(ls "$work/corpus" | wc -l)
if [ "$code" -ne 0 ]; then
  grep -E "Precondition|Fatal|ERROR|Test unit written" "$work/log" | head -20
  echo "fuzz: a property broke after ${runs:-?} inputs in ${elapsed} s; replay with: swift build --product j4-definition-fuzz && .build/debug/j4-definition-fuzz .build-fuzz/crashes/*" >&2
  exit 1
fi
echo "fuzz: ${runs} inputs in ${elapsed} s (about $(( runs / (elapsed > 0 ? elapsed : 1) )) a second), $(ls "$work/seeds" | wc -l) seeds grew to ${corpus} new corpus inputs; every property held"
