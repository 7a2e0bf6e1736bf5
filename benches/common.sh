# Sourced by the benchmark scripts: the release binary (BIN=<path> measures another build),
# a work directory, private redis-servers on free loopback ports (never 6379) stopped on
# exit, and the timing helpers they share.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -z "${BIN:-}" ]; then cargo build --release -q -p cutover; BIN=target/release/cutover; fi
WORK=$(mktemp -d); PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
# A port nothing answers on, nor on the port + 10000 (a cluster node's bus).
free_port() { local p; while :; do p=$(( (RANDOM % 12000) + 20000 )); if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && ! (exec 3<>"/dev/tcp/127.0.0.1/$((p + 10000))") 2>/dev/null; then echo "$p"; return; fi; done; }
wait_ping() { for _ in $(seq 1 400); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }
now() { date +%s.%N; }
server() { # port dir [args...]
  local port=$1 dir=$2; shift 2; mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
    --logfile "$dir/redis.log" --repl-diskless-sync-delay 0 --enable-debug-command yes "$@" </dev/null >/dev/null 2>&1 &
  PIDS+=($!); wait_ping "$port"
}
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# The value of a field:value line on stdin.
field() { sed -n "s/^$1:\([^\r]*\).*/\1/p"; }
# Seconds a fresh native replica takes to sync all KEYS keys of the server on port $1.
native_full_sync() { # source-port keys name
  local p t0 info; p=$(free_port); server "$p" "$WORK/native-$3"; local pid=${PIDS[-1]}
  t0=$(now); redis-cli -p "$p" REPLICAOF 127.0.0.1 "$1" >/dev/null
  while :; do
    info=$(redis-cli -p "$p" INFO replication)
    if grep -q "master_link_status:up" <<<"$info" && grep -q "master_sync_in_progress:0" <<<"$info" \
       && [ "$(redis-cli -p "$p" DBSIZE)" -ge "$2" ]; then break; fi
    sleep 0.01
  done
  echo "$(now) - $t0" | bc
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
