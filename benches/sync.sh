#!/usr/bin/env bash
# Sync benchmark: full sync of KEYS keys of 100 bytes (DEBUG POPULATE), a native replica
# (REPLICAOF) vs cutover's syncer, alternating, ROUNDS rounds; cutover's peak RSS during
# the sync; then the live stream: redis-benchmark -P 16 SET load on the source and the time
# from the end of the load until the target has applied everything.
#
# Usage: benches/sync.sh        Environment: KEYS=1000000 ROUNDS=3 LOAD_N=1000000
# Never touches port 6379 or servers it did not start; stops everything on exit.
KEYS=${KEYS:-1000000}; ROUNDS=${ROUNDS:-3}; LOAD_N=${LOAD_N:-1000000}
# shellcheck source=benches/common.sh
source "$(dirname "$0")/common.sh"
SRC=$(free_port); server "$SRC" "$WORK/src"
redis-cli -p "$SRC" DEBUG POPULATE "$KEYS" key 100 >/dev/null
echo "source: $(redis-cli -p "$SRC" DBSIZE) keys"

native_times=(); cutover_times=(); rss=()
for r in $(seq 1 "$ROUNDS"); do
  native_times+=("$(native_full_sync "$SRC" "$KEYS" "$r")")
  # cutover.
  T=$(free_port); server "$T" "$WORK/t$r"; TPID=${PIDS[-1]}
  L=$(free_port); A=$(free_port)
  t0=$(now)
  "$BIN" run --listen "127.0.0.1:$L" --admin "127.0.0.1:$A" --source "redis://127.0.0.1:$SRC" \
    --target "redis://127.0.0.1:$T" --log-level warn 2>"$WORK/cutover$r.log" &
  CPID=$!; PIDS+=($CPID)
  while :; do
    st=$(redis-cli -p "$A" STATUS 2>/dev/null || true)
    applied=$(sed -n 's/^applied_offset:\([0-9]*\).*/\1/p' <<<"$st")
    src_off=$(redis-cli -p "$SRC" INFO replication | sed -n 's/^master_repl_offset:\([0-9]*\).*/\1/p')
    if grep -q "sync_state:streaming" <<<"$st" && [ -n "$applied" ] && [ "$applied" -ge "$src_off" ]; then break; fi
    if grep -q "sync_state:error" <<<"$st"; then echo "sync failed: $st"; exit 1; fi
    sleep 0.01
  done
  t1=$(now); cutover_times+=("$(echo "$t1 - $t0" | bc)")
  rss+=("$(awk '/VmHWM/ {print $2}' /proc/$CPID/status)")
  if [ "$r" -lt "$ROUNDS" ]; then kill "$CPID"; kill "$TPID"; wait "$CPID" "$TPID" 2>/dev/null || true; fi
  echo "round $r: native ${native_times[-1]} s, cutover ${cutover_times[-1]} s, cutover peak RSS ${rss[-1]} kB"
done
N=$(med "${native_times[@]}"); C=$(med "${cutover_times[@]}"); R=$(med "${rss[@]}")
echo
echo "### Full sync: $KEYS keys of 100 B, median of $ROUNDS rounds"
echo
echo "| native replica (s) | cutover (s) | cutover/native | cutover peak RSS (MB) |"
echo "|---:|---:|---:|---:|"
printf '| %.2f | %.2f | %.2f | %.1f |\n' "$N" "$C" "$(echo "$C / $N" | bc -l)" "$(echo "$R / 1024" | bc -l)"

# Live stream: the last cutover is still streaming into its target.
redis-benchmark -p "$SRC" -c 50 -n "$LOAD_N" -P 16 -t set -r 100000 -q >/dev/null 2>&1
t0=$(now)
while :; do
  st=$(redis-cli -p "$A" STATUS)
  applied=$(sed -n 's/^applied_offset:\([0-9]*\).*/\1/p' <<<"$st")
  src_off=$(redis-cli -p "$SRC" INFO replication | sed -n 's/^master_repl_offset:\([0-9]*\).*/\1/p')
  [ "$applied" -ge "$src_off" ] && break
  sleep 0.005
done
t1=$(now)
echo
printf 'Live stream: after redis-benchmark -c 50 -n %s -P 16 SET on the source, the target caught up %.3f s after the load ended\n' "$LOAD_N" "$(echo "$t1 - $t0" | bc)"
echo "cutover peak RSS over the whole run: $(awk '/VmHWM/ {printf "%.1f MB", $2/1024}' /proc/$CPID/status)"
