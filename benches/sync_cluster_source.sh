#!/usr/bin/env bash
# Sync from a Redis Cluster source vs from one server, into one server: the same load
# (redis-benchmark SET of 100-byte values on KEYS random keys out of 3*KEYS; with
# --cluster for the 3-master cluster) fills a fresh source, then the full sync is timed
# (start of cutover until every link streams and has applied its master's offset); then
# the live stream: another LOAD_N SETs on the source and the time from the end of that
# load until the target has applied everything. Alternating, ROUNDS rounds, medians.
#
# Usage: benches/sync_cluster_source.sh     Environment: KEYS=1500000 ROUNDS=3 LOAD_N=1000000
#   CUTOVER_BIN=...  use this binary instead of building target/release/cutover
# Never touches port 6379 or servers it did not start; stops everything on exit.
set -euo pipefail
KEYS=${KEYS:-1500000}; ROUNDS=${ROUNDS:-3}; LOAD_N=${LOAD_N:-1000000}
BIN=${CUTOVER_BIN:-${BIN:-}}
# shellcheck source=benches/common.sh
source "$(dirname "$0")/common.sh"
CUTOVER_BIN=$BIN
# The sum of the source's masters' offsets (SRC_PORTS).
src_offset() {
  local sum=0 p o
  for p in "${SRC_PORTS[@]}"; do
    o=$(redis-cli -p "$p" INFO replication | sed -n 's/^master_repl_offset:\([0-9]*\).*/\1/p')
    sum=$((sum + o))
  done
  echo "$sum"
}
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
# A fresh source: "single" (one server) or "cluster" (3 masters), filled; sets SRC_PORTS,
# SRC_ARGS (redis-benchmark's way to it) and SPIDS.
start_source() { # kind round
  SPIDS=(); SRC_PORTS=()
  if [ "$1" = single ]; then
    local p; p=$(free_port); server "$p" "$WORK/$1$2"; SPIDS+=("${PIDS[-1]}"); SRC_PORTS=("$p")
    SRC_ARGS=(-p "$p")
  else
    local addrs=() p i
    for i in 1 2 3; do
      p=$(free_port); server "$p" "$WORK/$1$2-$i" --cluster-enabled yes --cluster-config-file nodes.conf
      SPIDS+=("${PIDS[-1]}"); addrs+=("127.0.0.1:$p"); SRC_PORTS+=("$p")
    done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
    for a in "${addrs[@]}"; do
      until redis-cli -p "${a##*:}" CLUSTER INFO | grep -q cluster_state:ok; do sleep 0.05; done
    done
    sleep 2 # a new cluster refuses writes for a moment (CLUSTER_WRITABLE_DELAY)
    SRC_ARGS=(-p "${SRC_PORTS[0]}" --cluster)
  fi
  load "$KEYS"
}
load() { # n
  redis-benchmark "${SRC_ARGS[@]}" -n "$1" -r $((3 * KEYS)) -d 100 -P 16 -c 50 -t set -q >/dev/null 2>&1
}
keys_on() { local n=0 p; for p in "$@"; do n=$((n + $(redis-cli -p "$p" DBSIZE))); done; echo "$n"; }

declare -A full live rss nkeys
for r in $(seq 1 "$ROUNDS"); do
  order=(single cluster); ((r % 2 == 0)) && order=(cluster single)
  for kind in "${order[@]}"; do
    start_source "$kind" "$r"
    T=$(free_port); server "$T" "$WORK/target-$kind$r"; TPID=${PIDS[-1]}
    nkeys[$kind]=$(keys_on "${SRC_PORTS[@]}")
    L=$(free_port); A=$(free_port)
    t0=$(now)
    "$CUTOVER_BIN" run --listen "127.0.0.1:$L" --admin "127.0.0.1:$A" \
      --source "redis://127.0.0.1:${SRC_PORTS[0]}" --target "redis://127.0.0.1:$T" \
      --log-level warn 2>"$WORK/cutover-$kind$r.log" &
    CPID=$!; PIDS+=($CPID)
    t1=$(caught_up "$A")
    full[$kind]+="$(echo "$t1 - $t0" | bc) "
    load "$LOAD_N"
    t0=$(now); t1=$(caught_up "$A")
    live[$kind]+="$(echo "$t1 - $t0" | bc) "
    rss[$kind]+="$(awk '/VmHWM/ {print $2}' /proc/$CPID/status) "
    src=$(keys_on "${SRC_PORTS[@]}"); tgt=$(redis-cli -p "$T" DBSIZE)
    # The target also holds cutover's own __cutover:* keys (1 or 1 + one per link).
    if [ "$tgt" -lt "$src" ] || [ "$tgt" -gt $((src + 4)) ]; then
      echo "error: $kind round $r: source has $src keys, target $tgt" >&2; exit 1
    fi
    kill "$CPID" "$TPID" "${SPIDS[@]}"; wait "$CPID" "$TPID" "${SPIDS[@]}" 2>/dev/null || true
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "| source | keys | full sync (s) | applied everything after the load ended (s) | peak RSS (MB) |"
echo "|---|---:|---:|---:|---:|"
for kind in single cluster; do
  printf '| %s | %s | %s | %s | %.1f |\n' "$kind" "${nkeys[$kind]}" "$(median <<<"${full[$kind]}")" \
    "$(median <<<"${live[$kind]}")" "$(echo "$(median <<<"${rss[$kind]}") / 1024" | bc -l)"
done
echo "(median of $ROUNDS, $(nproc) cores, $(redis-server --version | awk '{print $3}'); load: redis-benchmark -n $LOAD_N -P 16 -c 50 SET, 100-byte values)"
