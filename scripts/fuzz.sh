#!/usr/bin/env bash
# Fuzzes the parsers of untrusted bytes with cargo-fuzz (libFuzzer, nightly toolchain):
# requests (what clients send), replies (what backends send), RDB (files and replication
# payloads), AOF (manifests and the stream front), DUMP payloads (the SCAN copy, verify). SECONDS each (default 60), one after the
# other; seeded from fuzz/seeds/ and ../shared/fixtures/rdb; the corpus grows in
# fuzz/corpus/. A crash stops the run and is left in fuzz/artifacts/<target>/: turn it into
# a regression test.
#
#   scripts/fuzz.sh [seconds]        TARGETS="rdb aof" scripts/fuzz.sh 900
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz
for t in ${TARGETS:-request reply rdb aof dump}; do
  mkdir -p "fuzz/corpus/$t"
  seeds="seeds/$t"
  [ "$t" = rdb ] && seeds="../../shared/fixtures/rdb"
  echo "==> fuzzing $t for ${SECS}s"
  (cd fuzz && cargo +nightly fuzz run "$t" "corpus/$t" "$seeds" -- \
      -max_total_time="$SECS" -rss_limit_mb=2048 -max_len=262144 -print_final_stats=1) 2>&1 \
    | grep -E '^(==>|#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss|INFO: Loaded|.*(ERROR|panicked|SUMMARY))' || true
  if ls "fuzz/artifacts/$t"/crash-* >/dev/null 2>&1; then
    echo "crash found for $t: $(ls fuzz/artifacts/$t/crash-*)"; exit 1
  fi
done
