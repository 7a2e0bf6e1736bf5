#!/usr/bin/env bash
# Cutover pause benchmark: with redis-benchmark load flowing through the proxy, CUTOVER
# switches to the target; reports `last_pause_ms` (first held command to release) and the
# ops/s flowing at the time, over ROUNDS fresh source/target pairs.
#
# Usage: benches/cutover.sh      Environment: ROUNDS=5 CLIENTS=25 KEYS=100000
# Never touches port 6379 or servers it did not start; stops everything on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}; CLIENTS=${CLIENTS:-25}; KEYS=${KEYS:-100000}
cargo build --release -q -p cutover
BIN=target/release/cutover
WORK=$(mktemp -d); PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { local p; while :; do p=$(( (RANDOM % 12000) + 20000 )); if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi; done; }
wait_ping() { for _ in $(seq 1 400); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }
field() { redis-cli -p "$1" STATUS | tr -d '\r' | sed -n "s/^$2://p"; }
pauses=(); rates=()
for r in $(seq 1 "$ROUNDS"); do
  S=$(free_port); T=$(free_port); L=$(free_port); A=$(free_port)
  mkdir -p "$WORK/$r"
  redis-server --port "$S" --bind 127.0.0.1 --save '' --dir "$WORK/$r" --logfile "$WORK/$r/s.log" \
    --repl-diskless-sync-delay 0 --enable-debug-command yes &
  PIDS+=($!)
  redis-server --port "$T" --bind 127.0.0.1 --save '' --dir "$WORK/$r" --dbfilename t.rdb --logfile "$WORK/$r/t.log" &
  PIDS+=($!)
  wait_ping "$S"; wait_ping "$T"
  redis-cli -p "$S" DEBUG POPULATE "$KEYS" key 100 >/dev/null
  "$BIN" run --listen "127.0.0.1:$L" --admin "127.0.0.1:$A" --source "redis://127.0.0.1:$S" \
    --target "redis://127.0.0.1:$T" --log-level warn 2>"$WORK/$r/cutover.log" &
  PIDS+=($!)
  wait_ping "$L"
  until [ "$(field "$A" sync_state)" = streaming ]; do sleep 0.05; done
  redis-benchmark -p "$L" -c "$CLIENTS" -n 100000000 -t set,get -r "$KEYS" -q >/dev/null 2>&1 &
  BPID=$!
  sleep 1
  c0=$(field "$A" commands_total); t0=$(date +%s.%N); sleep 1
  c1=$(field "$A" commands_total); t1=$(date +%s.%N)
  rate=$(echo "($c1 - $c0) / ($t1 - $t0)" | bc)
  res=$(redis-cli -p "$A" CUTOVER TIMEOUT 5000)
  pause=$(field "$A" last_pause_ms)
  kill "$BPID" 2>/dev/null || true; wait "$BPID" 2>/dev/null || true
  echo "round $r: $rate ops/s through the proxy, CUTOVER -> $res, last_pause_ms $pause, held $(field "$A" held_commands_max)"
  pauses+=("$pause"); rates+=("$rate")
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=()
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
max() { printf '%s\n' "$@" | sort -g | tail -1; }
echo
echo "### CUTOVER pause under load ($ROUNDS rounds, redis-benchmark -c $CLIENTS SET/GET through the proxy)"
echo
echo "| ops/s (median) | last_pause_ms median | max |"
echo "|---:|---:|---:|"
echo "| $(med "${rates[@]}") | $(med "${pauses[@]}") | $(max "${pauses[@]}") |"
