#!/usr/bin/env python3
"""Measure the memory cost of idle client connections to a RESP server or proxy.

Usage: idle_clients.py HOST:PORT PID [--count N] [--password PW]

Opens N (default 10,000) connections to HOST:PORT, sends one PING on each and waits for
its +PONG (so every connection is really established at the server), then reports how
much the resident set (VmRSS in /proc/PID/status) of process PID grew. RLIMIT_NOFILE is
raised as far as the hard limit allows. The last line of output is machine-readable:

    rss_before_kb=... rss_after_kb=... growth_kb=... clients=...

Only the standard library is used.
"""

import argparse
import resource
import socket
import sys
import time

BATCH = 500


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def settle_rss(pid, duration=0.5):
    """RSS after it stops moving (or after `duration` seconds)."""
    deadline = time.monotonic() + duration
    last = rss_kb(pid)
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = rss_kb(pid)
        if now == last:
            return now
        last = now
    return last


def raise_nofile(wanted):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def read_exactly(sock, expect):
    buf = b""
    while len(buf) < len(expect):
        chunk = sock.recv(len(expect) - len(buf))
        if not chunk:
            raise RuntimeError(f"connection closed after {buf!r}")
        buf += chunk
    if buf != expect:
        raise RuntimeError(f"unexpected reply {buf!r}, wanted {expect!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("addr", help="HOST:PORT to connect to")
    ap.add_argument("pid", type=int, help="process whose RSS to watch")
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--password")
    args = ap.parse_args()

    host, _, port = args.addr.rpartition(":")
    port = int(port)
    limit = raise_nofile(args.count + 100)
    count = min(args.count, limit - 100)
    if count < args.count:
        print(f"warning: RLIMIT_NOFILE is {limit}: opening only {count} clients",
              file=sys.stderr)

    before = settle_rss(args.pid)
    hello = b""
    expect = b"+PONG\r\n"
    if args.password:
        pw = args.password.encode()
        hello = b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(pw), pw)
        expect = b"+OK\r\n" + expect
    socks = []
    started = time.monotonic()
    try:
        while len(socks) < count:
            batch = []
            for _ in range(min(BATCH, count - len(socks))):
                s = socket.create_connection((host, port), timeout=10)
                s.sendall(hello + b"*1\r\n$4\r\nPING\r\n")
                batch.append(s)
            for s in batch:
                read_exactly(s, expect)
            socks.extend(batch)
        elapsed = time.monotonic() - started
        after = settle_rss(args.pid, duration=1.0)
        growth = after - before
        print(f"{count} idle clients connected in {elapsed:.1f}s: RSS {before / 1024:.1f} MB"
              f" -> {after / 1024:.1f} MB (+{growth / 1024:.1f} MB,"
              f" {growth * 1024 / max(count, 1):.0f} bytes per client)")
        print(f"rss_before_kb={before} rss_after_kb={after} growth_kb={growth} clients={count}")
    finally:
        for s in socks:
            s.close()


if __name__ == "__main__":
    main()
