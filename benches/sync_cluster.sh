#!/usr/bin/env bash
# Sync into a Redis Cluster target vs into one server: full sync of KEYS keys of 100 bytes
# (DEBUG POPULATE) into a fresh standalone target and into a fresh 3-master cluster,
# alternating, ROUNDS rounds; then the live stream: redis-benchmark -P 16 SET load on the
# source (random keys: every slot) and the time from the end of the load until the target
# has applied everything.
#
# Usage: benches/sync_cluster.sh     Environment: KEYS=1000000 ROUNDS=3 LOAD_N=1000000
# Never touches port 6379 or servers it did not start; stops everything on exit.
set -euo pipefail
KEYS=${KEYS:-1000000}; ROUNDS=${ROUNDS:-3}; LOAD_N=${LOAD_N:-1000000}
# BIN=<path> measures another build of cutover (an A/B); by default this tree's.
# shellcheck source=benches/common.sh
source "$(dirname "$0")/common.sh"
src_offset() { redis-cli -p "$SRC" INFO replication | sed -n 's/^master_repl_offset:\([0-9]*\).*/\1/p'; }
# Waits until cutover (admin port $1) has applied everything the source has; prints the time.
caught_up() {
  while :; do
    st=$(redis-cli -p "$1" STATUS 2>/dev/null || true)
    applied=$(sed -n 's/^applied_offset:\([0-9]*\).*/\1/p' <<<"$st")
    if grep -q "sync_state:streaming" <<<"$st" && [ -n "$applied" ] && [ "$applied" -ge "$(src_offset)" ]; then break; fi
    if grep -q "sync_state:error" <<<"$st"; then echo "sync failed: $st" >&2; exit 1; fi
    sleep 0.01
  done
  now
}
# Starts a target: "single" (one server) or "cluster" (3 masters); prints its URL port and
# appends its pids to TPIDS.
start_target() { # kind round
  TPIDS=()
  if [ "$1" = single ]; then
    local p; p=$(free_port); server "$p" "$WORK/$1$2"; TPIDS+=("${PIDS[-1]}"); TARGET_PORT=$p
    return
  fi
  local addrs=() p i
  for i in 1 2 3; do
    p=$(free_port); server "$p" "$WORK/$1$2-$i" --cluster-enabled yes --cluster-config-file nodes.conf
    TPIDS+=("${PIDS[-1]}"); addrs+=("127.0.0.1:$p")
  done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
  TARGET_PORT=${addrs[0]##*:}
  for a in "${addrs[@]}"; do
    until redis-cli -p "${a##*:}" CLUSTER INFO | grep -q cluster_state:ok; do sleep 0.05; done
  done
  sleep 2 # a new cluster refuses writes for a moment (CLUSTER_WRITABLE_DELAY)
}
SRC=$(free_port); server "$SRC" "$WORK/src"
redis-cli -p "$SRC" DEBUG POPULATE "$KEYS" key 100 >/dev/null
echo "source: $(redis-cli -p "$SRC" DBSIZE) keys"

declare -A full live rss
for r in $(seq 1 "$ROUNDS"); do
  for kind in single cluster; do
    start_target "$kind" "$r"
    L=$(free_port); A=$(free_port)
    t0=$(now)
    "$BIN" run --listen "127.0.0.1:$L" --admin "127.0.0.1:$A" --source "redis://127.0.0.1:$SRC" \
      --target "redis://127.0.0.1:$TARGET_PORT" --log-level warn 2>"$WORK/cutover-$kind$r.log" &
    CPID=$!; PIDS+=($CPID)
    t1=$(caught_up "$A")
    full[$kind]+="$(echo "$t1 - $t0" | bc) "
    redis-benchmark -p "$SRC" -n "$LOAD_N" -P 16 -c 50 -r 10000000 -t set -q >/dev/null
    t0=$(now); t1=$(caught_up "$A")
    live[$kind]+="$(echo "$t1 - $t0" | bc) "
    rss[$kind]+="$(awk '/VmHWM/ {print $2}' /proc/$CPID/status) "
    kill "$CPID" "${TPIDS[@]}"; wait "$CPID" "${TPIDS[@]}" 2>/dev/null || true
    # The same dataset for the next one.
    redis-cli -p "$SRC" FLUSHALL >/dev/null
    redis-cli -p "$SRC" DEBUG POPULATE "$KEYS" key 100 >/dev/null
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-8s %14s %22s %14s\n' target "full sync (s)" "lag after load (s)" "peak RSS (MB)"
for kind in single cluster; do
  printf '%-8s %14s %22s %14.1f\n' "$kind" "$(median <<<"${full[$kind]}")" \
    "$(median <<<"${live[$kind]}")" "$(echo "$(median <<<"${rss[$kind]}") / 1024" | bc -l)"
done
echo "(each: median of $ROUNDS; full: $KEYS keys; load: redis-benchmark -n $LOAD_N -P 16 -c 50 SET on random keys)"
