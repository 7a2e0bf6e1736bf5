#!/usr/bin/env bash
# SCAN copy benchmark (sync.source_mode = "scan", for sources that refuse replication),
# all in one run:
#  1. First pass over KEYS keys of 100 B (DEBUG POPULATE) into one server: a native
#     replica's full sync (REPLICAOF) vs cutover's SCAN copy (start to sync_state
#     scan_rounds with nothing left to apply), alternating, ROUNDS rounds; cutover's peak
#     RSS.
#  2. The same into a 3-master cluster: `redis-cli --cluster import --cluster-copy
#     --cluster-replace` (SCAN + MIGRATE, the copy redis-cli offers) vs cutover's SCAN copy.
#  3. CUTOVER pause against the size of the last dirty set: redis-benchmark -P 16 SET over
#     -r R random keys through the proxy while the copy runs its rounds (throttled with
#     sync.scan_max_ops so the dirty set grows), then CUTOVER under that load.
#  4. Proxy throughput with tracking on (scan mode, target set) vs off (no target):
#     redis-benchmark -t set,get -P 1 and -P 16, alternating, ROUNDS rounds.
#
# Usage: benches/scan.sh      Environment: KEYS=1000000 ROUNDS=3 N=200000 BIN=<cutover>
# Never touches port 6379 or servers it did not start; stops everything on exit.
KEYS=${KEYS:-1000000}; ROUNDS=${ROUNDS:-3}; N=${N:-200000}
# shellcheck source=benches/common.sh
source "$(dirname "$0")/common.sh"
# Starts cutover in scan mode: admin port in $A, client port in $L, pid in $CPID.
start_cutover() { # source-port target-url [config-file]
  L=$(free_port); A=$(free_port)
  local cfg=()
  [ -n "${3:-}" ] && cfg=(--config "$3")
  "$BIN" run "${cfg[@]}" --listen "127.0.0.1:$L" --admin "127.0.0.1:$A" --source "redis://127.0.0.1:$1" \
    --target "$2" --source-mode scan --log-level warn 2>>"$WORK/cutover.log" &
  CPID=$!; PIDS+=($CPID)
  wait_ping "$A"
}
wait_rounds() { # until the first pass is applied
  while :; do
    st=$(redis-cli -p "$A" STATUS 2>/dev/null || true)
    if grep -q "sync_state:scan_rounds" <<<"$st" && [ "$(field lag_bytes <<<"$st")" = 0 ]; then break; fi
    if grep -q "sync_state:error" <<<"$st"; then echo "sync failed: $st"; tail "$WORK/cutover.log"; exit 1; fi
    sleep 0.01
  done
}

SRC=$(free_port); server "$SRC" "$WORK/src"
redis-cli -p "$SRC" DEBUG POPULATE "$KEYS" key 100 >/dev/null
echo "source: $(redis-cli -p "$SRC" DBSIZE) keys of 100 B"

# 1. Into one server.
native=(); scan=(); rss=()
for r in $(seq 1 "$ROUNDS"); do
  native+=("$(native_full_sync "$SRC" "$KEYS" "$r")")
  T=$(free_port); server "$T" "$WORK/t$r"; TPID=${PIDS[-1]}
  t0=$(now); start_cutover "$SRC" "redis://127.0.0.1:$T"; wait_rounds
  scan+=("$(echo "$(now) - $t0" | bc)")
  rss+=("$(awk '/VmHWM/ {print $2}' /proc/$CPID/status)")
  [ "$(redis-cli -p "$T" DBSIZE)" -ge "$KEYS" ] || { echo "target has $(redis-cli -p "$T" DBSIZE) keys"; exit 1; }
  kill "$CPID" "$TPID"; wait "$CPID" "$TPID" 2>/dev/null || true
  echo "round $r: native replica ${native[-1]} s, SCAN copy ${scan[-1]} s, peak RSS ${rss[-1]} kB"
done
NM=$(med "${native[@]}"); SM=$(med "${scan[@]}"); RM=$(med "${rss[@]}")

# 2. Into a 3-master cluster.
# (Not in a $(...): the servers would hold its output open.)
CP=()
for i in 1 2 3; do
  p=$(free_port); server "$p" "$WORK/c$p" --cluster-enabled yes --cluster-config-file "$WORK/c$p/nodes.conf"
  CP+=("$p")
done
redis-cli --cluster create "${CP[@]/#/127.0.0.1:}" --cluster-yes >/dev/null
for p in "${CP[@]}"; do
  until redis-cli -p "$p" CLUSTER INFO | grep -q "cluster_state:ok"; do sleep 0.05; done
done
sleep 1
t0=$(now)
redis-cli --cluster import "127.0.0.1:${CP[0]}" --cluster-from "127.0.0.1:$SRC" --cluster-copy --cluster-replace >/dev/null
IMPORT=$(echo "$(now) - $t0" | bc)
n=0; for p in "${CP[@]}"; do n=$((n + $(redis-cli -p "$p" DBSIZE))); done
echo "redis-cli --cluster import: $IMPORT s ($n keys)"
for p in "${CP[@]}"; do redis-cli -p "$p" FLUSHALL >/dev/null; done
t0=$(now); start_cutover "$SRC" "redis://127.0.0.1:${CP[0]}"; wait_rounds
SCANC=$(echo "$(now) - $t0" | bc)
n=0; for p in "${CP[@]}"; do n=$((n + $(redis-cli -p "$p" DBSIZE))); done
echo "cutover SCAN copy into the cluster: $SCANC s ($n keys, its checkpoints included)"
kill "$CPID"; wait "$CPID" 2>/dev/null || true

# 3. Pause against the last dirty set.
SMALL=$(free_port); server "$SMALL" "$WORK/small"
redis-cli -p "$SMALL" DEBUG POPULATE 100000 key 100 >/dev/null
pauses=()
for spec in "1000 0" "10000 0" "10000 20000" "100000 20000"; do
  read -r range maxops <<<"$spec"
  T=$(free_port); server "$T" "$WORK/p$T"; TPID=${PIDS[-1]}
  printf '[sync]\nscan_max_ops = %s\n' "$maxops" >"$WORK/p.toml"
  start_cutover "$SMALL" "redis://127.0.0.1:$T" "$WORK/p.toml"; wait_rounds
  redis-benchmark -p "$L" -c 50 -n 100000000 -P 16 -t set -r "$range" -q >/dev/null 2>&1 &
  BPID=$!; PIDS+=($BPID)
  sleep 3
  reply=$(redis-cli -p "$A" CUTOVER TIMEOUT 10000)
  st=$(redis-cli -p "$A" STATUS)
  kill "$BPID"; wait "$BPID" 2>/dev/null || true
  pauses+=("| $range | $maxops | $(field last_cutover_dirty_keys <<<"$st") | $(field last_pause_ms <<<"$st") | $reply |")
  echo "pause: -r $range, scan_max_ops $maxops: ${pauses[-1]}"
  kill "$CPID" "$TPID"; wait "$CPID" "$TPID" 2>/dev/null || true
done

# 4. Throughput with tracking on and off.
T=$(free_port); server "$T" "$WORK/tt"
declare -A tput
printf '[sync]\nscan_max_ops = 1000\n' >"$WORK/slow.toml"
for r in $(seq 1 "$ROUNDS"); do
  for mode in off on slow; do
    if [ "$mode" = on ]; then
      start_cutover "$SMALL" "redis://127.0.0.1:$T"; wait_rounds
    elif [ "$mode" = slow ]; then
      # (Tracking is on from the first pass, which at 1000 keys/s lasts the whole run.)
      start_cutover "$SMALL" "redis://127.0.0.1:$T" "$WORK/slow.toml"
      until redis-cli -p "$A" STATUS | grep -q "sync_mode:scan"; do sleep 0.05; done
    else
      L=$(free_port); A=$(free_port)
      "$BIN" run --listen "127.0.0.1:$L" --admin "127.0.0.1:$A" --source "redis://127.0.0.1:$SMALL" --log-level warn 2>>"$WORK/cutover.log" &
      CPID=$!; PIDS+=($CPID); wait_ping "$L"
    fi
    for P in 1 16; do
      out=$(redis-benchmark -p "$L" -c 50 -n "$N" -P "$P" -t set,get -r 100000 --csv 2>/dev/null)
      for t in SET GET; do
        v=$(grep "^\"$t\"" <<<"$out" | cut -d, -f2 | tr -d '"')
        tput["$mode $P $t"]+="$v "
      done
    done
    kill "$CPID"; wait "$CPID" 2>/dev/null || true
    redis-cli -p "$T" FLUSHALL >/dev/null
  done
done

echo
echo "### SCAN copy: $KEYS keys of 100 B, one run"
echo
echo "| native replica full sync (s) | SCAN copy, first pass (s) | SCAN/native | peak RSS (MB) |"
echo "|---:|---:|---:|---:|"
printf '| %.2f | %.2f | %.2f | %.1f |\n' "$NM" "$SM" "$(echo "$SM / $NM" | bc -l)" "$(echo "$RM / 1024" | bc -l)"
echo
echo "| into a 3-master cluster | redis-cli --cluster import --cluster-copy (s) | cutover SCAN copy (s) | cutover/import |"
echo "|---|---:|---:|---:|"
printf '| %s keys | %.2f | %.2f | %.2f |\n' "$KEYS" "$IMPORT" "$SCANC" "$(echo "$SCANC / $IMPORT" | bc -l)"
echo
echo "CUTOVER under redis-benchmark -c 50 -P 16 SET through the proxy (100k-key source):"
echo
echo "| -r (keys written) | scan_max_ops | dirty keys at CUTOVER | pause (ms) | reply |"
echo "|---:|---:|---:|---:|---|"
printf '%s\n' "${pauses[@]}"
echo
echo "Throughput through the proxy (median of $ROUNDS, requests/s, -r 100000): tracking off (no target),"
echo "on (scan mode: the copier re-copies the written keys at full speed on the same cores), and on"
echo "with the copier held to 1000 keys/s (what tracking itself costs):"
echo
echo "| test | -P | off | on | on/off | on, copier slowed | slowed/off |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for P in 1 16; do
  for t in SET GET; do
    # shellcheck disable=SC2086
    off=$(med ${tput["off $P $t"]}); on=$(med ${tput["on $P $t"]}); slow=$(med ${tput["slow $P $t"]})
    printf '| %s | %s | %.0f | %.0f | %.2f | %.0f | %.2f |\n' "$t" "$P" "$off" "$on" "$(echo "$on / $off" | bc -l)" "$slow" "$(echo "$slow / $off" | bc -l)"
  done
done
