#!/usr/bin/env bash
# The README's first command: a local demo of cutover on this machine.
#
# Installs what it needs (Redis server and tools, when missing), builds cutover, starts two
# private Redis servers on free loopback ports (the "source" with data in it, and an empty
# "target"), puts cutover in front of the source with --target, and shows: the
# application's view (redis-cli, a transaction, RESP3, a pipeline, an ACL user of its own
# checked by the source and copied to the target at the switch), the syncer copying the
# source into the target (full load, then live writes, with exact offsets), verify (the
# CLI, and VERIFY inside cutover, then CUTOVER VERIFIED), a resume after
# the replication link is cut (no second full sync), backups (an RDB of the live source
# with `cutover dump`, restored with `cutover restore`, and the source's multi-part AOF
# restored), the cutover under load (CUTOVER on the
# admin port: the pause it cost, every acknowledged write on the target, no client error),
# the operator's view (admin STATUS, Prometheus metrics), FINISH, a source that refuses
# replication (a managed service) copied by SCAN and switched, and a quick redis-benchmark:
# directly vs through the proxy. Everything it starts is stopped on exit; it never touches
# port 6379.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  say "installing redis-server and redis-tools"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
fi
if ! command -v cargo >/dev/null; then
  say "installing the Rust toolchain (rustup)"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi

say "building cutover (release)"
cargo build --release -q -p cutover
BIN=target/release/cutover

# A free loopback port: nothing answers on it. Below the kernel's ephemeral range
# (32768+), where an outgoing connection may hold a port nothing listens on.
free_port() {
  local p
  while :; do
    p=$(( (RANDOM % 12000) + 20000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
}
SRC=$(free_port); TGT=$(free_port); PROXY=$(free_port); ADMIN=$(free_port); METRICS=$(free_port)
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_ping() { # port
  for _ in $(seq 1 200); do
    redis-cli -p "$1" ping >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "nothing answers on port $1" >&2; return 1
}

say "starting a source Redis on 127.0.0.1:$SRC (with 200,000 keys) and an empty target on 127.0.0.1:$TGT"
mkdir -p "$WORK/source" "$WORK/target"
redis-server --port "$SRC" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/source" \
  --logfile "$WORK/source.log" --repl-diskless-sync-delay 0 --enable-debug-command yes &
PIDS+=($!)
redis-server --port "$TGT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/target" \
  --logfile "$WORK/target.log" --enable-debug-command yes &
PIDS+=($!)
wait_ping "$SRC"; wait_ping "$TGT"
redis-cli -p "$SRC" DEBUG POPULATE 200000 demo 100 >/dev/null
redis-cli -p "$SRC" HSET user:1 name ada lang rust >/dev/null
redis-cli -p "$SRC" ZADD board 0.30000000000000004 a inf b >/dev/null

say "starting cutover: clients on :$PROXY, admin on :$ADMIN, metrics on :$METRICS"
echo "\$ cutover run --listen 127.0.0.1:$PROXY --source redis://127.0.0.1:$SRC --target redis://127.0.0.1:$TGT --admin 127.0.0.1:$ADMIN --metrics 127.0.0.1:$METRICS"
"$BIN" run --listen "127.0.0.1:$PROXY" --source "redis://127.0.0.1:$SRC" --target "redis://127.0.0.1:$TGT" \
  --admin "127.0.0.1:$ADMIN" --metrics "127.0.0.1:$METRICS" 2>"$WORK/cutover.log" &
PIDS+=($!)
wait_ping "$PROXY" || { cat "$WORK/cutover.log" >&2; exit 1; }

run() { echo "\$ $*"; "$@"; }

say "the application's view: it is Redis"
run redis-cli -p "$PROXY" SET greeting "hello from behind cutover"
run redis-cli -p "$PROXY" GET greeting
echo "\$ redis-cli -p $SRC GET greeting   # the data is in the source"
redis-cli -p "$SRC" GET greeting
echo "\$ printf 'MULTI\\nINCR visits\\nINCR visits\\nEXEC\\n' | redis-cli -p $PROXY"
printf 'MULTI\nINCR visits\nINCR visits\nEXEC\n' | redis-cli -p "$PROXY"
run redis-cli -3 -p "$PROXY" HELLO 3
echo "\$ (20,000 SETs in one pipeline) | redis-cli -p $PROXY --pipe"
for i in $(seq 1 20000); do printf 'SET key:%d %d\r\n' "$i" "$i"; done | redis-cli -p "$PROXY" --pipe
run redis-cli -p "$PROXY" DBSIZE

say "the application's own users: checked by the source, each running as itself"
redis-cli -p "$SRC" ACL SETUSER shop on '>shop-secret' '~shop:*' '+@all' >/dev/null
echo "\$ redis-cli -p $SRC ACL SETUSER shop on '>shop-secret' '~shop:*' '+@all'   # on the source only"
shop() { echo "\$ redis-cli -p $PROXY --user shop --pass *** $*"; redis-cli -p "$PROXY" --no-auth-warning --user shop --pass shop-secret "$@"; }
shop ACL WHOAMI
shop SET shop:cart 3
shop GET greeting   # outside shop:*: Redis itself says no
echo "\$ redis-cli -p $PROXY --user shop --pass wrong PING"
redis-cli -p "$PROXY" --no-auth-warning --user shop --pass wrong PING

field() { redis-cli -p "$ADMIN" STATUS | tr -d '\r' | sed -n "s/^$1://p"; }
src_offset() { redis-cli -p "$SRC" INFO replication | tr -d '\r' | sed -n 's/^master_repl_offset://p'; }
caught_up() {
  for _ in $(seq 1 600); do
    if [ "$(field sync_state)" = streaming ] && [ "$(field applied_offset)" = "$(src_offset)" ]; then return 0; fi
    sleep 0.05
  done
  echo "the syncer did not catch up" >&2; redis-cli -p "$ADMIN" STATUS >&2; return 1
}

say "the syncer: the target becomes a copy of the source, then follows every write"
caught_up
echo "source: $(redis-cli -p "$SRC" DBSIZE) keys   target: $(redis-cli -p "$TGT" DBSIZE) keys (one of them cutover's checkpoint)"
echo "\$ redis-cli -p $TGT GET greeting   # written through the proxy, now on the target too"
redis-cli -p "$TGT" GET greeting
echo "\$ redis-cli -p $TGT ZRANGE board 0 -1 WITHSCORES"
redis-cli -p "$TGT" ZRANGE board 0 -1 WITHSCORES
echo "same values? source and target hash every key alike:"
for k in user:1 board demo:12345 greeting visits; do
  a=$(redis-cli -p "$SRC" DEBUG DIGEST-VALUE "$k"); b=$(redis-cli -p "$TGT" DEBUG DIGEST-VALUE "$k")
  printf '  %-12s %s %s\n' "$k" "$a" "$([ "$a" = "$b" ] && echo same || echo DIFFERENT)"
done
redis-cli -p "$ADMIN" STATUS | tr -d '\r' | grep -E '^(sync_state|source_offset|applied_offset|lag_bytes|lag_ms|keys_loaded|full_syncs|partial_syncs):'

say "cutting the replication link: the syncer resumes where the target is (PSYNC +CONTINUE)"
echo "\$ redis-cli -p $SRC CLIENT KILL TYPE replica"
redis-cli -p "$SRC" CLIENT KILL TYPE replica
for i in $(seq 1 50); do redis-cli -p "$PROXY" INCR after-cut >/dev/null; done
caught_up
echo "source sync_full=$(redis-cli -p "$SRC" INFO stats | tr -d '\r' | sed -n 's/^sync_full://p') sync_partial_ok=$(redis-cli -p "$SRC" INFO stats | tr -d '\r' | sed -n 's/^sync_partial_ok://p')   target after-cut=$(redis-cli -p "$TGT" GET after-cut)"

say "backups: an RDB of the live source (cutover dump), restored into a fresh server (cutover restore)"
BAK=$(free_port); AOFT=$(free_port); mkdir -p "$WORK/backup" "$WORK/aoft"
redis-server --port "$BAK" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/backup" \
  --logfile "$WORK/backup.log" --enable-debug-command yes &
PIDS+=($!)
redis-server --port "$AOFT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/aoft" \
  --logfile "$WORK/aoft.log" --enable-debug-command yes &
PIDS+=($!)
wait_ping "$BAK"; wait_ping "$AOFT"
run "$BIN" dump --source "redis://127.0.0.1:$SRC" "$WORK/backup.rdb" --log-level warn
run "$BIN" restore "$WORK/backup.rdb" --target "redis://127.0.0.1:$BAK" --log-level warn
echo "source: $(redis-cli -p "$SRC" DBSIZE) keys   restored: $(redis-cli -p "$BAK" DBSIZE) keys (one of them cutover's checkpoint)"
for k in user:1 board demo:12345; do
  a=$(redis-cli -p "$SRC" DEBUG DIGEST-VALUE "$k"); b=$(redis-cli -p "$BAK" DEBUG DIGEST-VALUE "$k")
  printf '  %-12s %s %s\n' "$k" "$a" "$([ "$a" = "$b" ] && echo same || echo DIFFERENT)"
done
echo "run again: it continues from the target's checkpoint, nothing is loaded twice"
"$BIN" restore "$WORK/backup.rdb" --target "redis://127.0.0.1:$BAK" --log-level warn
echo "the source's AOF (Redis 7 multi-part directory): turned on, written through the proxy, restored"
redis-cli -p "$SRC" CONFIG SET appendonly yes >/dev/null
for _ in $(seq 1 200); do
  [ "$(redis-cli -p "$SRC" INFO persistence | tr -d '\r' | sed -n 's/^aof_rewrite_in_progress://p')" = 0 ] \
    && [ "$(redis-cli -p "$SRC" INFO persistence | tr -d '\r' | sed -n 's/^aof_rewrite_scheduled://p')" = 0 ] && break
  sleep 0.05
done
for i in $(seq 1 100); do redis-cli -p "$PROXY" INCR aof-counter >/dev/null; done
echo "\$ ls $WORK/source/appendonlydir"; ls "$WORK/source/appendonlydir"
run "$BIN" restore "$WORK/source/appendonlydir" --target "redis://127.0.0.1:$AOFT" --log-level warn
echo "aof-counter: source $(redis-cli -p "$SRC" GET aof-counter), restored $(redis-cli -p "$AOFT" GET aof-counter)"
redis-cli -p "$SRC" CONFIG SET appendonly no >/dev/null

say "verify: the target holds what the source holds (every key, by content and TTL, both ways)"
run "$BIN" verify --source "redis://127.0.0.1:$SRC" --target "redis://127.0.0.1:$TGT" || true
echo "\$ redis-cli -p $ADMIN VERIFY FULL     # the same inside cutover, while writes flow; then CUTOVER VERIFIED"
redis-cli -p "$ADMIN" VERIFY FULL
until redis-cli -p "$ADMIN" STATUS | tr -d '\r' | grep -qE '^verify_state:(done|error)'; do sleep 0.1; done
redis-cli -p "$ADMIN" STATUS | tr -d '\r' | grep -E '^verify_(state|keys_checked|differences):'

say "the cutover: under load, one admin command moves every client to the target"
# Load through the proxy while it switches: redis-benchmark, and a client counting its
# acknowledged INCRs.
redis-benchmark -p "$PROXY" -c 20 -n 100000000 -t set,get -r 100000 -q >/dev/null 2>&1 &
BENCH=$!; PIDS+=($BENCH)
( n=0; while [ ! -e "$WORK/stop" ]; do
    r=$(redis-cli -p "$PROXY" INCR acked-writes) || { echo "client error" >&2; exit 1; }
    n=$((n+1)); [ "$r" = "$n" ] || { echo "client saw $r, expected $n" >&2; exit 1; }
  done; echo "$n" > "$WORK/acked" ) &
COUNTER=$!
sleep 1
echo "\$ redis-cli -p $ADMIN CUTOVER VERIFIED     # while ~$(redis-cli -p "$ADMIN" STATUS | tr -d '\r' | sed -n 's/^clients://p') clients are busy"
redis-cli -p "$ADMIN" CUTOVER VERIFIED
sleep 0.5
touch "$WORK/stop"; wait "$COUNTER"; kill "$BENCH" 2>/dev/null || true
redis-cli -p "$ADMIN" STATUS | tr -d '\r' | grep -E '^(route|route_epoch|cutover_state|last_pause_ms|held_commands_max|source_writes_after_fence):'
echo "acknowledged INCRs: $(cat "$WORK/acked")   on the target: $(redis-cli -p "$TGT" GET acked-writes)   (no error seen by any client)"
echo "\$ redis-cli -p $PROXY SET where-am-i target   # new writes go to the target"
redis-cli -p "$PROXY" SET where-am-i target
echo "target: $(redis-cli -p "$TGT" GET where-am-i)   source: '$(redis-cli -p "$SRC" GET where-am-i)' (and the source stays paused for writes)"
echo "the user shop was copied to the target before the switch (ACL GETUSER/SETUSER), and runs as itself there:"
shop ACL WHOAMI
shop GET shop:cart
echo "\$ redis-cli -p $TGT ACL LIST | grep shop"
redis-cli -p "$TGT" ACL LIST | grep shop

say "the operator's view"
run redis-cli -p "$ADMIN" STATUS
echo "\$ curl -s http://127.0.0.1:$METRICS/metrics | grep cutover_commands_total"
if command -v curl >/dev/null; then
  curl -s "http://127.0.0.1:$METRICS/metrics" | grep '^cutover_commands_total' || true
else
  exec 3<>"/dev/tcp/127.0.0.1/$METRICS"
  printf 'GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
  grep '^cutover_commands_total' <&3 || true
  exec 3>&-
fi

say "FINISH: the migration ends; cutover's own keys leave the target, the old source is marked"
run redis-cli -p "$ADMIN" FINISH
echo "__cutover:* keys left on the target: $(redis-cli -p "$TGT" --scan --pattern '__cutover:*' | wc -l)"

say "a managed Redis that refuses replication (SYNC/PSYNC/CONFIG renamed away): the SCAN copy, then CUTOVER"
MSRC=$(free_port); MTGT=$(free_port); MPROXY=$(free_port); MADMIN=$(free_port)
mkdir -p "$WORK/managed" "$WORK/mtarget"
redis-server --port "$MSRC" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/managed" \
  --logfile "$WORK/managed.log" --enable-debug-command yes \
  --rename-command SYNC '' --rename-command PSYNC '' --rename-command CONFIG '' &
PIDS+=($!)
redis-server --port "$MTGT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/mtarget" \
  --logfile "$WORK/mtarget.log" --enable-debug-command yes &
PIDS+=($!)
wait_ping "$MSRC"; wait_ping "$MTGT"
redis-cli -p "$MSRC" DEBUG POPULATE 200000 managed 100 >/dev/null
echo "\$ redis-cli -p $MSRC PSYNC ? -1      # what a managed service answers a replica"
redis-cli -p "$MSRC" PSYNC '?' -1 2>&1 | head -1 || true
echo "\$ cutover run --listen 127.0.0.1:$MPROXY --source redis://127.0.0.1:$MSRC --target redis://127.0.0.1:$MTGT --admin 127.0.0.1:$MADMIN   # sync.source_mode = auto"
"$BIN" run --listen "127.0.0.1:$MPROXY" --source "redis://127.0.0.1:$MSRC" --target "redis://127.0.0.1:$MTGT" \
  --admin "127.0.0.1:$MADMIN" 2>"$WORK/managed-cutover.log" &
PIDS+=($!)
wait_ping "$MPROXY" || { cat "$WORK/managed-cutover.log" >&2; exit 1; }
# An application writing through the proxy all along: it counts its acknowledged INCRs,
# and deletes keys of the dataset as the copy runs.
rm -f "$WORK/stop2"
( n=0; while [ ! -e "$WORK/stop2" ]; do
    r=$(redis-cli -p "$MPROXY" INCR managed-acked) || { echo "client error" >&2; exit 1; }
    n=$((n+1)); [ "$r" = "$n" ] || { echo "client saw $r, expected $n" >&2; exit 1; }
    redis-cli -p "$MPROXY" DEL "managed:$n" >/dev/null
  done; echo "$n" > "$WORK/acked2" ) &
COUNTER2=$!
until redis-cli -p "$MADMIN" STATUS | tr -d '\r' | grep -q '^sync_state:scan_rounds'; do sleep 0.1; done
grep -q 'the source refuses replication' "$WORK/managed-cutover.log" \
  && echo "cutover's log: the source refuses replication: syncing with the SCAN copy instead"
redis-cli -p "$MADMIN" STATUS | tr -d '\r' | grep -E '^(sync_mode|sync_state|scan_keys_total|scan_keys_copied|scan_keys_recopied|scan_rounds|dirty_keys|untracked_writes):'
sleep 1
echo "\$ redis-cli -p $MADMIN CUTOVER MAXDIRTY 10000"
redis-cli -p "$MADMIN" CUTOVER MAXDIRTY 10000
sleep 0.3
touch "$WORK/stop2"; wait "$COUNTER2"
redis-cli -p "$MADMIN" STATUS | tr -d '\r' | grep -E '^(route|last_pause_ms|last_cutover_dirty_keys):'
echo "acknowledged INCRs: $(cat "$WORK/acked2")   on the target: $(redis-cli -p "$MTGT" GET managed-acked)   (no error seen by the client)"

say "redis-benchmark -c 50 -n 100000 -t set,get (-P 1 and -P 16): the target directly vs through cutover"
for P in 1 16; do
  for target in direct cutover; do
    port=$TGT; [ "$target" = cutover ] && port=$PROXY
    printf '%-8s -P %-2s ' "$target" "$P"
    redis-benchmark -p "$port" -c 50 -n 100000 -P "$P" -t set,get --csv 2>/dev/null \
      | awk -F, 'NR>1 {gsub(/"/,""); printf "%s %s req/s   ", $1, $2} END {print ""}'
  done
done

say "done: cutover's log is below; everything started here is being stopped"
tail -n 5 "$WORK/cutover.log"
