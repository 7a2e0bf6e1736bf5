#!/usr/bin/env bash
# Verify benchmark: `cutover verify --full` of KEYS keys of 100 B (DEBUG POPULATE) on one
# server each side, against the time a native replica takes to sync the same data (full
# sync), alternating, ROUNDS rounds; cutover verify's peak RSS. One run, medians and ratio.
#
# Usage: benches/verify.sh     Environment: KEYS=1000000 ROUNDS=3 BIN=<cutover>
# Never touches port 6379 or servers it did not start; stops everything on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${KEYS:-1000000}; ROUNDS=${ROUNDS:-3}
if [ -z "${BIN:-}" ]; then cargo build --release -q -p cutover; BIN=target/release/cutover; fi
WORK=$(mktemp -d); PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { local p; while :; do p=$(( (RANDOM % 12000) + 20000 )); if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi; done; }
wait_ping() { for _ in $(seq 1 400); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }
now() { date +%s.%N; }
server() { # port dir [args...]
  local port=$1 dir=$2; shift 2; mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
    --logfile "$dir/redis.log" --repl-diskless-sync-delay 0 --enable-debug-command yes "$@" &
  PIDS+=($!); wait_ping "$port"
}
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
SRC=$(free_port); server "$SRC" "$WORK/src"
TGT=$(free_port); server "$TGT" "$WORK/tgt"
redis-cli -p "$SRC" DEBUG POPULATE "$KEYS" key 100 >/dev/null
redis-cli -p "$TGT" DEBUG POPULATE "$KEYS" key 100 >/dev/null
echo "source and target: $(redis-cli -p "$SRC" DBSIZE) keys of 100 B each"
native=(); verify=(); rss=()
for r in $(seq 1 "$ROUNDS"); do
  P=$(free_port); server "$P" "$WORK/n$r"; NPID=${PIDS[-1]}
  t0=$(now); redis-cli -p "$P" REPLICAOF 127.0.0.1 "$SRC" >/dev/null
  while :; do
    info=$(redis-cli -p "$P" INFO replication)
    if grep -q "master_link_status:up" <<<"$info" && grep -q "master_sync_in_progress:0" <<<"$info" \
       && [ "$(redis-cli -p "$P" DBSIZE)" -ge "$KEYS" ]; then break; fi
    sleep 0.01
  done
  native+=("$(echo "$(now) - $t0" | bc)")
  kill "$NPID"; wait "$NPID" 2>/dev/null || true
  t0=$(now)
  /usr/bin/time -f "%M" -o "$WORK/rss" "$BIN" verify --source "redis://127.0.0.1:$SRC" --target "redis://127.0.0.1:$TGT" --full >"$WORK/out" 2>&1 \
    || { cat "$WORK/out"; exit 1; }
  verify+=("$(echo "$(now) - $t0" | bc)")
  rss+=("$(tail -1 "$WORK/rss")")
  echo "round $r: native replica ${native[-1]} s, verify ${verify[-1]} s, peak RSS ${rss[-1]} kB: $(head -1 "$WORK/out")"
done
N=$(med "${native[@]}"); V=$(med "${verify[@]}"); R=$(med "${rss[@]}")
echo
echo "### Verify: $KEYS keys of 100 B on each side, median of $ROUNDS rounds"
echo
echo "| native replica full sync (s) | cutover verify --full (s) | verify/native | peak RSS (MB) |"
echo "|---:|---:|---:|---:|"
printf '| %.2f | %.2f | %.2f | %.1f |\n' "$N" "$V" "$(echo "$V / $N" | bc -l)" "$(echo "$R / 1024" | bc -l)"
