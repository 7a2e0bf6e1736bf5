#!/usr/bin/env bash
# TLS cost on the client listener: redis-benchmark -c 50 -n N -t set,get (-P 1 and -P 16)
# through cutover over plain TCP and over TLS (same binary, same Redis behind), alternating,
# ROUNDS rounds, medians and the TLS/plain ratio.
#
# Usage: benches/tls.sh      Environment: ROUNDS=3 N=200000
# Never touches port 6379 or servers it did not start; stops everything on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}; N=${N:-200000}
if [ -z "${BIN:-}" ]; then cargo build --release -q -p cutover; BIN=target/release/cutover; fi
WORK=$(mktemp -d); PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { local p; while :; do p=$(( (RANDOM % 12000) + 20000 )); if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi; done; }
wait_port() { for _ in $(seq 1 400); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.02; done; return 1; }
# A test CA and a certificate for 127.0.0.1.
(cd "$WORK" && openssl req -x509 -days 2 -subj "/CN=bench CA" -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem 2>/dev/null \
  && openssl req -subj "/CN=127.0.0.1" -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout key.pem -out s.csr 2>/dev/null \
  && printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > s.ext \
  && openssl x509 -req -in s.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile s.ext -out cert.pem 2>/dev/null)
R=$(free_port)
redis-server --port "$R" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" --logfile "$WORK/redis.log" &
PIDS+=($!); wait_port "$R"
PLAIN=$(free_port); TLS=$(free_port)
"$BIN" run --listen "127.0.0.1:$PLAIN" --admin "127.0.0.1:$(free_port)" --source "redis://127.0.0.1:$R" --log-level warn &
PIDS+=($!)
"$BIN" run --listen "127.0.0.1:$TLS" --admin "127.0.0.1:$(free_port)" --source "redis://127.0.0.1:$R" --log-level warn \
  --tls-cert-file "$WORK/cert.pem" --tls-key-file "$WORK/key.pem" &
PIDS+=($!)
wait_port "$PLAIN"; wait_port "$TLS"
declare -A res
for r in $(seq 1 "$ROUNDS"); do
  for P in 1 16; do
    for mode in plain tls; do
      if [ "$mode" = plain ]; then args=(-p "$PLAIN"); else args=(-p "$TLS" --tls --cacert "$WORK/ca.pem"); fi
      while IFS=, read -r test rps _; do
        test=${test//\"/}; rps=${rps//\"/}
        res[$mode,$P,$test]+="$rps "
      done < <(redis-benchmark "${args[@]}" -c 50 -n "$N" -P "$P" -t set,get --csv 2>/dev/null | tail -n +2)
    done
  done
  echo "round $r done"
done
med() { printf '%s\n' $1 | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "### TLS on the client listener: redis-benchmark -c 50 -n $N through cutover, median of $ROUNDS rounds"
echo
echo "| test | -P | plain TCP | TLS | TLS/plain |"
echo "|---|---:|---:|---:|---:|"
for t in SET GET; do for P in 1 16; do
  a=$(med "${res[plain,$P,$t]}"); b=$(med "${res[tls,$P,$t]}")
  printf '| %s | %s | %.0f | %.0f | %.2f |\n' "$t" "$P" "$a" "$b" "$(echo "$b / $a" | bc -l)"
done; done
