#!/usr/bin/env bash
# Backup benchmark, alternating, ROUNDS rounds, medians:
#  1. An RDB of KEYS keys of 100 bytes (DEBUG POPULATE): `cutover restore` of the file vs
#     the replication path's full sync of the same data (`cutover run --target`) vs the
#     target loading that file itself at start-up; cutover restore's peak RSS.
#  2. An AOF of AOF_N SETs (redis-benchmark into a server with appendonly yes):
#     `cutover restore` of its directory vs `redis-cli --pipe` fed its incr file.
#  3. `cutover dump` vs `redis-cli --rdb` of the source.
#
# Usage: benches/backup.sh      Environment: KEYS=1000000 AOF_N=1000000 ROUNDS=3
# Never touches port 6379 or servers it did not start; stops everything on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${KEYS:-1000000}; AOF_N=${AOF_N:-1000000}; ROUNDS=${ROUNDS:-3}
cargo build --release -q -p cutover
BIN=target/release/cutover
WORK=$(mktemp -d); PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { local p; while :; do p=$(( (RANDOM % 12000) + 20000 )); if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi; done; }
wait_ping() { for _ in $(seq 1 2000); do redis-cli -p "$1" ping 2>/dev/null | grep -q PONG && return 0; sleep 0.005; done; return 1; }
now() { date +%s.%N; }
server() { # port dir [args...]
  local port=$1 dir=$2; shift 2; mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
    --logfile "$dir/redis.log" --repl-diskless-sync-delay 0 --enable-debug-command yes "$@" &
  PIDS+=($!); wait_ping "$port"
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
# Runs a command in the background; prints "<seconds> <peak RSS kB>" when it ends.
timed_rss() {
  local t0 t1 pid hwm=0 h
  t0=$(now); "$@" >/dev/null 2>"$WORK/last.err" & pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    h=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0); [ -n "$h" ] && [ "$h" -gt "$hwm" ] && hwm=$h
    sleep 0.01
  done
  wait "$pid" || { echo "failed: $*" >&2; cat "$WORK/last.err" >&2; exit 1; }
  t1=$(now); echo "$(echo "$t1 - $t0" | bc) $hwm"
}
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

SRC=$(free_port); server "$SRC" "$WORK/src"
redis-cli -p "$SRC" DEBUG POPULATE "$KEYS" key 100 >/dev/null
redis-cli -p "$SRC" SAVE >/dev/null
RDB="$WORK/src/dump.rdb"
echo "source: $(redis-cli -p "$SRC" DBSIZE) keys, RDB $(stat -c %s "$RDB") bytes"

sync_t=(); restore_t=(); startup_t=(); rss=()
for r in $(seq 1 "$ROUNDS"); do
  # The replication path: cutover run --target, until it streams with everything applied.
  T=$(free_port); server "$T" "$WORK/s$r"; TPID=${PIDS[-1]}
  L=$(free_port); A=$(free_port)
  t0=$(now)
  "$BIN" run --listen "127.0.0.1:$L" --admin "127.0.0.1:$A" --source "redis://127.0.0.1:$SRC" \
    --target "redis://127.0.0.1:$T" --log-level warn 2>"$WORK/run$r.log" &
  CPID=$!; PIDS+=($CPID)
  while :; do
    st=$(redis-cli -p "$A" STATUS 2>/dev/null || true)
    applied=$(sed -n 's/^applied_offset:\([0-9]*\).*/\1/p' <<<"$st")
    src_off=$(redis-cli -p "$SRC" INFO replication | sed -n 's/^master_repl_offset:\([0-9]*\).*/\1/p')
    if grep -q "sync_state:streaming" <<<"$st" && [ -n "$applied" ] && [ "$applied" -ge "$src_off" ]; then break; fi
    if grep -q "sync_state:error" <<<"$st"; then echo "sync failed: $st"; exit 1; fi
    sleep 0.01
  done
  t1=$(now); sync_t+=("$(echo "$t1 - $t0" | bc)")
  stop "$CPID"; stop "$TPID"; rm -rf "$WORK/s$r"

  # cutover restore of the file.
  T=$(free_port); server "$T" "$WORK/r$r"; TPID=${PIDS[-1]}
  read -r secs hwm < <(timed_rss "$BIN" restore "$RDB" --target "redis://127.0.0.1:$T" --log-level warn)
  restore_t+=("$secs"); rss+=("$hwm")
  [ "$(redis-cli -p "$T" DBSIZE)" -eq $((KEYS + 1)) ] || { echo "restore left $(redis-cli -p "$T" DBSIZE) keys"; exit 1; }
  stop "$TPID"; rm -rf "$WORK/r$r"

  # The target loading the file itself at start-up (until it answers with the data).
  P=$(free_port); mkdir -p "$WORK/l$r"; cp "$RDB" "$WORK/l$r/dump.rdb"
  t0=$(now)
  redis-server --port "$P" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/l$r" --logfile "$WORK/l$r/redis.log" &
  LPID=$!; PIDS+=($LPID)
  while ! redis-cli -p "$P" DBSIZE 2>/dev/null | grep -qx "$KEYS"; do sleep 0.005; done
  t1=$(now); startup_t+=("$(echo "$t1 - $t0" | bc)")
  stop "$LPID"; rm -rf "$WORK/l$r"
  echo "round $r: full sync ${sync_t[-1]} s, restore ${restore_t[-1]} s (peak RSS ${rss[-1]} kB), start-up load ${startup_t[-1]} s"
done
S=$(med "${sync_t[@]}"); R=$(med "${restore_t[@]}"); U=$(med "${startup_t[@]}"); M=$(med "${rss[@]}")

# 2. An AOF of AOF_N SETs.
# No automatic rewrite: the incr file holds every SET.
AP=$(free_port); server "$AP" "$WORK/aof" --appendonly yes --appendfsync no --appenddirname aofdir --auto-aof-rewrite-percentage 0
redis-benchmark -p "$AP" -c 50 -n "$AOF_N" -P 16 -t set -r 1000000 -d 100 -q >/dev/null 2>&1
stop "${PIDS[-1]}"
AOFDIR="$WORK/aof/aofdir"
INCR=$(ls "$AOFDIR"/*.incr.aof | head -1)
AOF_KEYS=""
pipe_t=(); aof_t=()
for r in $(seq 1 "$ROUNDS"); do
  T=$(free_port); server "$T" "$WORK/p$r"; TPID=${PIDS[-1]}
  t0=$(now); redis-cli -p "$T" --pipe < "$INCR" >/dev/null; t1=$(now)
  pipe_t+=("$(echo "$t1 - $t0" | bc)"); AOF_KEYS=$(redis-cli -p "$T" DBSIZE)
  stop "$TPID"; rm -rf "$WORK/p$r"
  T=$(free_port); server "$T" "$WORK/a$r"; TPID=${PIDS[-1]}
  read -r secs _ < <(timed_rss "$BIN" restore "$AOFDIR" --target "redis://127.0.0.1:$T" --log-level warn)
  aof_t+=("$secs")
  [ "$(redis-cli -p "$T" DBSIZE)" -eq $((AOF_KEYS + 1)) ] || { echo "AOF restore: $(redis-cli -p "$T" DBSIZE) keys, --pipe $AOF_KEYS"; exit 1; }
  stop "$TPID"; rm -rf "$WORK/a$r"
  echo "round $r: redis-cli --pipe ${pipe_t[-1]} s, cutover restore ${aof_t[-1]} s"
done
PI=$(med "${pipe_t[@]}"); AO=$(med "${aof_t[@]}")

# 3. Dumps of the source.
cli_t=(); dump_t=()
for r in $(seq 1 "$ROUNDS"); do
  read -r secs _ < <(timed_rss redis-cli -p "$SRC" --rdb "$WORK/cli$r.rdb"); cli_t+=("$secs")
  read -r secs _ < <(timed_rss "$BIN" dump --source "redis://127.0.0.1:$SRC" "$WORK/dump$r.rdb" --log-level warn); dump_t+=("$secs")
  rm -f "$WORK/cli$r.rdb" "$WORK/dump$r.rdb"
  echo "round $r: redis-cli --rdb ${cli_t[-1]} s, cutover dump ${dump_t[-1]} s"
done
CL=$(med "${cli_t[@]}"); DU=$(med "${dump_t[@]}")

echo
echo "### Restore of an RDB of $KEYS keys x 100 B, median of $ROUNDS rounds"
echo
echo "| full sync (s) | restore (s) | start-up load (s) | restore/full sync | restore/start-up | restore peak RSS (MB) |"
echo "|---:|---:|---:|---:|---:|---:|"
printf '| %.2f | %.2f | %.2f | %.2f | %.2f | %.1f |\n' "$S" "$R" "$U" "$(echo "$R / $S" | bc -l)" "$(echo "$R / $U" | bc -l)" "$(echo "$M / 1024" | bc -l)"
echo
echo "### Import of an AOF of $AOF_N SETs ($AOF_KEYS keys), median of $ROUNDS rounds"
echo
echo "| redis-cli --pipe (s) | cutover restore (s) | restore/--pipe |"
echo "|---:|---:|---:|"
printf '| %.2f | %.2f | %.2f |\n' "$PI" "$AO" "$(echo "$AO / $PI" | bc -l)"
echo
echo "### Dump of the $KEYS-key source, median of $ROUNDS rounds"
echo
echo "| redis-cli --rdb (s) | cutover dump (s) | dump/--rdb |"
echo "|---:|---:|---:|"
printf '| %.2f | %.2f | %.2f |\n' "$CL" "$DU" "$(echo "$DU / $CL" | bc -l)"
