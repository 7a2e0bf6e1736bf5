#!/usr/bin/env bash
# The README's first command: a local demo of cutover on this machine.
#
# Installs what it needs (Redis server and tools, when missing), builds cutover, starts a
# private Redis (the "source") on a free loopback port, puts cutover in front of it, and
# shows an application's view (redis-cli, a transaction, RESP3, a pipeline), the operator's
# view (admin STATUS, Prometheus metrics) and a quick redis-benchmark: direct vs through
# the proxy. Everything it starts is stopped on exit; it never touches port 6379.
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
SRC=$(free_port); PROXY=$(free_port); ADMIN=$(free_port); METRICS=$(free_port)
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

say "starting a source Redis on 127.0.0.1:$SRC"
redis-server --port "$SRC" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
  --logfile "$WORK/source.log" &
PIDS+=($!)
wait_ping "$SRC"

say "starting cutover: clients on :$PROXY, admin on :$ADMIN, metrics on :$METRICS"
echo "\$ cutover run --listen 127.0.0.1:$PROXY --source redis://127.0.0.1:$SRC --admin 127.0.0.1:$ADMIN --metrics 127.0.0.1:$METRICS"
"$BIN" run --listen "127.0.0.1:$PROXY" --source "redis://127.0.0.1:$SRC" \
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

say "redis-benchmark -c 50 -n 100000 -t set,get (-P 1 and -P 16): direct vs through cutover"
for P in 1 16; do
  for target in direct cutover; do
    port=$SRC; [ "$target" = cutover ] && port=$PROXY
    printf '%-8s -P %-2s ' "$target" "$P"
    redis-benchmark -p "$port" -c 50 -n 100000 -P "$P" -t set,get --csv 2>/dev/null \
      | awk -F, 'NR>1 {gsub(/"/,""); printf "%s %s req/s   ", $1, $2} END {print ""}'
  done
done

say "done: cutover's log is below; everything started here is being stopped"
tail -n 5 "$WORK/cutover.log"
