#!/usr/bin/env bash
# End-to-end load benchmark: redis-benchmark against Redis directly, through cutover and
# through twemproxy (nutcracker), all in front of the same private redis-server, in
# alternating order for several rounds. Prints a markdown table of median requests/s and
# the ratios cutover/direct and cutover/twemproxy (ratios are what to compare across runs:
# absolute numbers drift on shared machines), then cutover's idle RSS and what 10k idle
# clients add to it.
#
# Usage: benches/load.sh
# Environment:
#   N=200000          requests per redis-benchmark run
#   ROUNDS=3          rounds (each round runs every target once per pipeline depth)
#   CLIENTS=50        redis-benchmark -c
#   TESTS=set,get     redis-benchmark -t
#   PIPELINES="1 16"  redis-benchmark -P values
#   IDLE_CLIENTS=10000  idle connections for the memory measurement (0 to skip)
#   CUTOVER_BIN=...   use this binary instead of building target/release/cutover
#   SKIP_TWEMPROXY=1  leave twemproxy out
#   USERS=1           also run every test as an ACL user (redis-benchmark --user bench -a ...),
#                     directly and through cutover (whose clients then run on that user's
#                     own connections, checked by the source): two more columns
#
# Needs redis-server, redis-benchmark, redis-cli, nutcracker and python3. Never touches
# port 6379 or any server it did not start; everything it starts is stopped on exit.
set -euo pipefail

N=${N:-200000}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-50}
TESTS=${TESTS:-set,get}
PIPELINES=${PIPELINES:-"1 16"}
IDLE_CLIENTS=${IDLE_CLIENTS:-10000}
SKIP_TWEMPROXY=${SKIP_TWEMPROXY:-0}
USERS=${USERS:-0}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

for tool in redis-server redis-cli redis-benchmark python3; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found (scripts/test.sh installs it)" >&2; exit 1; }
done
if [ "$SKIP_TWEMPROXY" != 1 ] && ! command -v nutcracker >/dev/null; then
    echo "warning: nutcracker not found: twemproxy left out" >&2
    SKIP_TWEMPROXY=1
fi

# Many idle clients need many descriptors (inherited by cutover).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ -z "${CUTOVER_BIN:-}" ]; then
    echo "==> cargo build --release -p cutover" >&2
    cargo build --release -p cutover >&2
    CUTOVER_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/cutover"
fi
[ -x "$CUTOVER_BIN" ] || { echo "error: $CUTOVER_BIN is not executable" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cutover-load.XXXXXX")
PIDS=()

cleanup() {
    local code=$?
    trap - EXIT INT TERM
    if [ -n "${BENCH_PID:-}" ]; then
        kill "$BENCH_PID" 2>/dev/null || true
    fi
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "$code" -ne 0 ]; then
        for log in "$WORK"/*.log; do
            [ -f "$log" ] || continue
            echo "---- tail of $(basename "$log") ----" >&2
            tail -n 20 "$log" >&2 || true
        done
    fi
    rm -rf "$WORK"
    exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A free loopback port below 55536, never 6379, not handed out before by this script.
USED_PORTS=" "
free_port() {
    local port
    while :; do
        port=$(python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        if [ "$port" -lt 55536 ] && [ "$port" -ne 6379 ] && [[ "$USED_PORTS" != *" $port "* ]]; then
            USED_PORTS+="$port "
            echo "$port"
            return
        fi
    done
}

# wait_ping PORT NAME: poll PING until +PONG (10 s).
wait_ping() {
    local port=$1 name=$2 i
    for ((i = 0; i < 1000; i++)); do
        if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ]; then
            return 0
        fi
        sleep 0.01
    done
    echo "error: $name on port $port did not answer PING" >&2
    return 1
}

rss_kb() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

median() {
    sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "nan"; exit }
        if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ---- servers -------------------------------------------------------------------------

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$WORK" --daemonize no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
wait_ping "$REDIS_PORT" redis-server

CUTOVER_PORT=$(free_port)
ADMIN_PORT=$(free_port)
RUST_LOG=${RUST_LOG:-warn} "$CUTOVER_BIN" run \
    --listen "127.0.0.1:$CUTOVER_PORT" \
    --source "redis://127.0.0.1:$REDIS_PORT" \
    --admin "127.0.0.1:$ADMIN_PORT" >"$WORK/cutover.log" 2>&1 &
CUTOVER_PID=$!
PIDS+=("$CUTOVER_PID")
wait_ping "$ADMIN_PORT" "cutover admin"
wait_ping "$CUTOVER_PORT" cutover

TARGETS="direct cutover"
declare -A PORT_OF=([direct]=$REDIS_PORT [cutover]=$CUTOVER_PORT)
declare -A AUTH_OF=()
if [ "$USERS" = 1 ]; then
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ACL SETUSER bench on '>benchpw' '~*' '&*' '+@all' >/dev/null
    TARGETS="$TARGETS direct+user cutover+user"
    PORT_OF[direct+user]=$REDIS_PORT
    PORT_OF[cutover+user]=$CUTOVER_PORT
    AUTH_OF[direct+user]="--user bench -a benchpw"
    AUTH_OF[cutover+user]="--user bench -a benchpw"
fi
if [ "$SKIP_TWEMPROXY" != 1 ]; then
    TWEM_PORT=$(free_port)
    TWEM_STATS=$(free_port)
    cat >"$WORK/nutcracker.yml" <<EOF
bench:
  listen: 127.0.0.1:$TWEM_PORT
  hash: fnv1a_64
  distribution: ketama
  redis: true
  auto_eject_hosts: false
  server_connections: 1
  servers:
   - 127.0.0.1:$REDIS_PORT:1
EOF
    nutcracker -c "$WORK/nutcracker.yml" -s "$TWEM_STATS" -a 127.0.0.1 \
        -o "$WORK/nutcracker.log" -p "$WORK/nutcracker.pid" &
    PIDS+=($!)
    wait_ping "$TWEM_PORT" twemproxy
    TARGETS="$TARGETS twemproxy"
    PORT_OF[twemproxy]=$TWEM_PORT
fi

IDLE_RSS_START=$(rss_kb "$CUTOVER_PID")

# ---- benchmark -----------------------------------------------------------------------

echo "==> redis-benchmark -c $CLIENTS -n $N -t $TESTS, -P in ($PIPELINES), $ROUNDS rounds," \
    "targets: $TARGETS" >&2
mkdir -p "$WORK/results"
for ((round = 1; round <= ROUNDS; round++)); do
    for pipeline in $PIPELINES; do
        # Rotate the order every round so no target always runs first.
        set -- $TARGETS
        order=()
        for ((i = 0; i < $#; i++)); do
            idx=$(( (i + round - 1) % $# + 1 ))
            order+=("${!idx}")
        done
        for target in "${order[@]}"; do
            out="$WORK/bench-$target-$pipeline-$round.csv"
            # In the background so that a signal interrupts `wait` and cleans up at once.
            # shellcheck disable=SC2086
            redis-benchmark -h 127.0.0.1 -p "${PORT_OF[$target]}" ${AUTH_OF[$target]:-} \
                -c "$CLIENTS" -n "$N" -t "$TESTS" -P "$pipeline" --csv \
                >"$out" 2>"$WORK/bench.err" &
            BENCH_PID=$!
            if ! wait "$BENCH_PID"; then
                echo "error: redis-benchmark against $target (-P $pipeline) failed:" >&2
                cat "$out" "$WORK/bench.err" >&2
                exit 1
            fi
            # "SET","71428.57",...
            while IFS=, read -r name rps _; do
                name=${name//\"/}
                rps=${rps//\"/}
                [ "$name" = test ] && continue
                echo "$rps" >>"$WORK/results/$name.$pipeline.$target"
            done <"$out"
            printf '  round %d  -P %-3s %-10s %s\n' "$round" "$pipeline" "$target" \
                "$(tail -n +2 "$out" | cut -d, -f1,2 | tr -d '"' | tr '\n' ' ')" >&2
        done
    done
done

IDLE_RSS_AFTER=$(rss_kb "$CUTOVER_PID")

# ---- report --------------------------------------------------------------------------

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'
}

echo
echo "### Load: redis-benchmark -c $CLIENTS -n $N, median of $ROUNDS rounds (requests/s)"
echo
echo "$(nproc) cores, $(redis-server --version | awk '{ print $3 }' | tr -d 'v='), $(date -u +%Y-%m-%dT%H:%MZ)"
echo
if [ "$SKIP_TWEMPROXY" != 1 ]; then
    echo "| test | -P | direct | cutover | twemproxy | cutover/direct | cutover/twemproxy |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
else
    echo "| test | -P | direct | cutover | cutover/direct |"
    echo "|---|---:|---:|---:|---:|"
fi
for test in ${TESTS//,/ }; do
    name=${test^^}
    for pipeline in $PIPELINES; do
        [ -f "$WORK/results/$name.$pipeline.direct" ] || continue
        d=$(median <"$WORK/results/$name.$pipeline.direct")
        c=$(median <"$WORK/results/$name.$pipeline.cutover")
        if [ "$SKIP_TWEMPROXY" != 1 ]; then
            t=$(median <"$WORK/results/$name.$pipeline.twemproxy")
            printf '| %s | %s | %.0f | %.0f | %.0f | %s | %s |\n' "$name" "$pipeline" "$d" "$c" "$t" \
                "$(ratio "$c" "$d")" "$(ratio "$c" "$t")"
        else
            printf '| %s | %s | %.0f | %.0f | %s |\n' "$name" "$pipeline" "$d" "$c" \
                "$(ratio "$c" "$d")"
        fi
    done
done
if [ "$USERS" = 1 ]; then
    echo
    echo "As the ACL user \`bench\` (its own connections through cutover):"
    echo
    echo "| test | -P | direct | cutover | cutover/direct |"
    echo "|---|---:|---:|---:|---:|"
    for test in ${TESTS//,/ }; do
        name=${test^^}
        for pipeline in $PIPELINES; do
            [ -f "$WORK/results/$name.$pipeline.direct+user" ] || continue
            d=$(median <"$WORK/results/$name.$pipeline.direct+user")
            c=$(median <"$WORK/results/$name.$pipeline.cutover+user")
            printf '| %s | %s | %.0f | %.0f | %s |\n' "$name" "$pipeline" "$d" "$c" "$(ratio "$c" "$d")"
        done
    done
fi
echo
printf 'cutover idle RSS: %.1f MB at start, %.1f MB after the load\n' \
    "$(awk -v k="$IDLE_RSS_START" 'BEGIN { print k / 1024 }')" \
    "$(awk -v k="$IDLE_RSS_AFTER" 'BEGIN { print k / 1024 }')"

if [ "$IDLE_CLIENTS" -gt 0 ]; then
    line=$(python3 "$ROOT/benches/idle_clients.py" "127.0.0.1:$CUTOVER_PORT" "$CUTOVER_PID" \
        --count "$IDLE_CLIENTS" | tail -n 1)
    growth_kb=$(sed -n 's/.*growth_kb=\(-\{0,1\}[0-9]*\).*/\1/p' <<<"$line")
    clients=$(sed -n 's/.*clients=\([0-9]*\).*/\1/p' <<<"$line")
    printf '%s idle clients add %.1f MB to cutover (%.0f bytes per client)\n' "$clients" \
        "$(awk -v k="$growth_kb" 'BEGIN { print k / 1024 }')" \
        "$(awk -v k="$growth_kb" -v n="$clients" 'BEGIN { print k * 1024 / n }')"
fi
