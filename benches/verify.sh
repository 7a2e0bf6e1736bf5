#!/usr/bin/env bash
# Verify benchmark: `cutover verify --full` of KEYS keys of 100 B (DEBUG POPULATE) on one
# server each side, against the time a native replica takes to sync the same data (full
# sync), alternating, ROUNDS rounds; cutover verify's peak RSS. One run, medians and ratio.
#
# Usage: benches/verify.sh     Environment: KEYS=1000000 ROUNDS=3 BIN=<cutover>
# Never touches port 6379 or servers it did not start; stops everything on exit.
KEYS=${KEYS:-1000000}; ROUNDS=${ROUNDS:-3}
# shellcheck source=benches/common.sh
source "$(dirname "$0")/common.sh"
SRC=$(free_port); server "$SRC" "$WORK/src"
TGT=$(free_port); server "$TGT" "$WORK/tgt"
redis-cli -p "$SRC" DEBUG POPULATE "$KEYS" key 100 >/dev/null
redis-cli -p "$TGT" DEBUG POPULATE "$KEYS" key 100 >/dev/null
echo "source and target: $(redis-cli -p "$SRC" DBSIZE) keys of 100 B each"
native=(); verify=(); rss=()
for r in $(seq 1 "$ROUNDS"); do
  native+=("$(native_full_sync "$SRC" "$KEYS" "$r")")
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
