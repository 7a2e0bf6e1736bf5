#!/usr/bin/env bash
# Cluster load benchmark: redis-benchmark --cluster straight at a private 3-master Redis
# Cluster, against redis-benchmark through cutover in front of the same cluster, with the
# same number of threads, alternating for several rounds. Prints median requests/s and
# the ratio cutover/direct (the issue's target: >= 0.6 at -P 16).
#
# Usage: benches/cluster.sh
# Environment:
#   N=2000000       requests per run
#   ROUNDS=3        rounds
#   CLIENTS=50      redis-benchmark -c
#   THREADS=3       redis-benchmark --threads (--cluster starts one per master anyway)
#   TESTS=set,get   redis-benchmark -t
#   PIPELINES=16    redis-benchmark -P values
#   PROXY_THREADS=0 cutover's [proxy] threads (0 = its default, half the CPUs)
#   CUTOVER_BIN=... use this binary instead of building target/release/cutover
#
# Needs redis-server, redis-cli, redis-benchmark and python3. Never touches 6379 or a
# server it did not start; everything it starts is stopped on exit.
set -euo pipefail

N=${N:-2000000}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-50}
THREADS=${THREADS:-3}
TESTS=${TESTS:-set,get}
PIPELINES=${PIPELINES:-16}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
for tool in redis-server redis-cli redis-benchmark python3; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found (scripts/test.sh installs it)" >&2; exit 1; }
done
if [ -z "${CUTOVER_BIN:-}" ]; then
    echo "==> cargo build --release -p cutover" >&2
    cargo build --release -p cutover >&2
    CUTOVER_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/cutover"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cutover-cluster.XXXXXX")
PIDS=()
cleanup() {
    local code=$?
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ "$code" -ne 0 ]; then
        for log in "$WORK"/*.log "$WORK"/*/*.log; do
            [ -f "$log" ] && { echo "---- $log ----" >&2; tail -n 20 "$log" >&2; }
        done
    fi
    rm -rf "$WORK"
    exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

USED_PORTS=" "
free_port() {
    local port
    while :; do
        port=$(python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        if [ "$port" -lt 55536 ] && [ "$port" -ge 1024 ] && [ "$port" -ne 6379 ] \
            && [[ "$USED_PORTS" != *" $port "* ]] && [[ "$USED_PORTS" != *" $((port - 10000)) "* ]] \
            && [[ "$USED_PORTS" != *" $((port + 10000)) "* ]]; then
            USED_PORTS+="$port "
            echo "$port"
            return
        fi
    done
}
wait_ping() {
    local port=$1 i
    for ((i = 0; i < 1000; i++)); do
        [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && return 0
        sleep 0.01
    done
    echo "error: port $port did not answer PING" >&2
    return 1
}
median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

NODES=()
for i in 1 2 3; do
    port=$(free_port)
    mkdir -p "$WORK/$port"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/$port" \
        --cluster-enabled yes --cluster-config-file nodes.conf >"$WORK/$port/redis.log" 2>&1 &
    PIDS+=($!)
    NODES+=("127.0.0.1:$port")
    wait_ping "$port"
done
redis-cli --cluster create "${NODES[@]}" --cluster-replicas 0 --cluster-yes >"$WORK/create.log" 2>&1
FIRST=${NODES[0]#127.0.0.1:}
for ((i = 0; i < 500; i++)); do
    redis-cli -p "$FIRST" cluster info | grep -q cluster_state:ok && break
    sleep 0.02
done
# Writable on every master (a new cluster refuses writes for a moment).
for ((i = 0; i < 500; i++)); do
    redis-cli -c -p "$FIRST" set warmup 1 >/dev/null 2>&1 && break
    sleep 0.02
done

CUTOVER_PORT=$(free_port)
ADMIN_PORT=$(free_port)
printf '[proxy]\nthreads = %s\n' "${PROXY_THREADS:-0}" >"$WORK/cutover.toml"
RUST_LOG=${RUST_LOG:-warn} "$CUTOVER_BIN" run --config "$WORK/cutover.toml" --listen "127.0.0.1:$CUTOVER_PORT" \
    --source "redis://127.0.0.1:$FIRST" --admin "127.0.0.1:$ADMIN_PORT" >"$WORK/cutover.log" 2>&1 &
PIDS+=($!)
wait_ping "$CUTOVER_PORT"

echo "==> redis-benchmark -c $CLIENTS -n $N -t $TESTS --threads $THREADS, -P in ($PIPELINES), $ROUNDS rounds" >&2
mkdir -p "$WORK/results"
for ((round = 1; round <= ROUNDS; round++)); do
    for pipeline in $PIPELINES; do
        order=(direct cutover)
        ((round % 2 == 0)) && order=(cutover direct)
        for target in "${order[@]}"; do
            # The same 1M random keys both ways: --cluster gives each of its clients one
            # master and a hash tag of that master (the random part stays outside the
            # tag, so no redirections); through cutover the keys land on every master.
            if [ "$target" = direct ]; then
                args=(-p "$FIRST" --cluster -r 1000000)
            else
                args=(-p "$CUTOVER_PORT" -r 1000000)
            fi
            out="$WORK/bench-$target-$pipeline-$round.csv"
            redis-benchmark -h 127.0.0.1 "${args[@]}" --threads "$THREADS" -c "$CLIENTS" -n "$N" \
                -t "$TESTS" -P "$pipeline" --csv >"$out" 2>"$WORK/bench.err" || {
                echo "error: redis-benchmark ($target) failed" >&2; cat "$out" "$WORK/bench.err" >&2; exit 1; }
            while IFS=, read -r name rps _; do
                name=${name//\"/}; rps=${rps//\"/}
                # (--cluster prints its masters first: not results)
                [[ "$name" = test || "$name" == *" "* || -z "$rps" ]] && continue
                echo "$rps" >>"$WORK/results/$name.$pipeline.$target"
            done <"$out"
            printf '  round %d  -P %-3s %-8s %s\n' "$round" "$pipeline" "$target" \
                "$(grep '^"' "$out" | tail -n +2 | cut -d, -f1,2 | tr -d '"' | tr '\n' ' ')" >&2
        done
    done
done

echo
echo "### Cluster load: 3 masters, redis-benchmark -c $CLIENTS -n $N -r 1000000 --threads $THREADS, median of $ROUNDS rounds (requests/s)"
echo
echo "$(nproc) cores, $(redis-server --version | awk '{ print $3 }' | tr -d 'v='), $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "| test | -P | direct (--cluster) | cutover | cutover/direct |"
echo "|---|---:|---:|---:|---:|"
for test in ${TESTS//,/ }; do
    name=${test^^}
    for pipeline in $PIPELINES; do
        d=$(median <"$WORK/results/$name.$pipeline.direct")
        c=$(median <"$WORK/results/$name.$pipeline.cutover")
        printf '| %s | %s | %.0f | %.0f | %s |\n' "$name" "$pipeline" "$d" "$c" \
            "$(awk -v a="$c" -v b="$d" 'BEGIN { printf "%.2f", a / b }')"
    done
done
