#!/usr/bin/env python3
"""Generate resp/src/command/table.rs from a real Redis server's COMMAND reply.

Usage: python3 scripts/gen-command-table.py [--redis-server PATH] [--out PATH]

Starts a private redis-server on a free port (never 6379, no persistence), asks it for
COMMAND and INFO server, and writes the command table cutover uses for routing, the write
gate and cluster key positions. Only the standard library is used, so the script runs on
any machine that has redis-server; RESP is parsed here rather than with a client library.

Why generate instead of hand-writing: arity, flags and key positions of ~380 commands and
subcommands must match the server exactly, and the server is the only authority on them.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "resp", "src", "command", "table.rs")

# Redis flag name -> constant in resp::command::flags. Flags not listed (e.g. skip_monitor,
# no_async_loading, sort_for_script) are of no use to the proxy and are dropped.
FLAG_MAP = {
    "write": "WRITE",
    "readonly": "READONLY",
    "denyoom": "DENYOOM",
    "admin": "ADMIN",
    "pubsub": "PUBSUB",
    "noscript": "NOSCRIPT",
    "blocking": "BLOCKING",
    "loading": "LOADING",
    "stale": "STALE",
    "fast": "FAST",
    "no_auth": "NO_AUTH",
    "may_replicate": "MAY_REPLICATE",
    "movablekeys": "MOVABLE_KEYS",
    "no_multi": "NO_MULTI",
    "allow_busy": "ALLOW_BUSY",
}

# cutover's own bits.
TRANSACTION = {"multi", "exec", "discard", "watch", "unwatch"}
SCRIPTING = {"eval", "eval_ro", "evalsha", "evalsha_ro", "fcall", "fcall_ro"}
# Redis 7.0 does not flag WAIT as blocking (it only has the @blocking ACL category on the
# list/zset/stream pops), but WAIT does hold the connection until replicas acknowledge or
# the timeout fires, so for the proxy it needs a connection of its own like the pops.
EXTRA_BLOCKING = {"wait", "waitaof"}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    if port == 6379:
        return free_port()
    return port


class Reader:
    """Minimal RESP2 reader over a socket (the server speaks RESP2 until HELLO 3)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise EOFError("server closed the connection")
        self.buf += chunk

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2 :]
                return line
            self._fill()

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError("server error: " + rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError("unexpected RESP type %r" % kind)


def command(sock, reader, *args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    sock.sendall(out)
    return reader.read()


def text(v):
    return v.decode() if isinstance(v, bytes) else v


def fetch(redis_server):
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="gen-command-table-")
    proc = subprocess.Popen(
        [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir, "--logfile", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 10
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("redis-server did not start on port %d" % port)
                time.sleep(0.05)
        with sock:
            reader = Reader(sock)
            info = text(command(sock, reader, "INFO", "server"))
            version = "unknown"
            for line in info.splitlines():
                if line.startswith("redis_version:"):
                    version = line.split(":", 1)[1].strip()
            reply = command(sock, reader, "COMMAND")
        return version, reply
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def entries(reply):
    """Flattens COMMAND's reply into (name, arity, flags, first, last, step) rows."""
    rows = []

    def visit(entry, container):
        name = text(entry[0]).lower()
        arity, raw_flags, first, last, step = entry[1], entry[2], entry[3], entry[4], entry[5]
        subcommands = entry[9] if len(entry) > 9 and entry[9] else []
        bits = []
        for f in raw_flags:
            f = text(f).lower()
            if f in FLAG_MAP and FLAG_MAP[f] not in bits:
                bits.append(FLAG_MAP[f])
        base = name.split("|", 1)[0]
        if container is None:
            if name in TRANSACTION:
                bits.append("TRANSACTION")
            if name in SCRIPTING:
                bits.append("SCRIPTING")
            if name in EXTRA_BLOCKING and "BLOCKING" not in bits:
                bits.append("BLOCKING")
            if subcommands:
                bits.append("CONTAINER")
        elif "|" not in name:
            # Redis 7.0 already reports subcommands as "container|sub"; be safe with
            # servers that would not.
            name = base + "|" + name
        rows.append((name, arity, bits, first, last, step))
        for sub in subcommands:
            visit(sub, name)

    for entry in reply:
        visit(entry, None)
    rows.sort(key=lambda r: r[0].encode())
    names = [r[0] for r in rows]
    if len(set(names)) != len(names):
        raise RuntimeError("duplicate command names in COMMAND reply")
    return rows


def render(version, rows):
    out = []
    out.append("// @generated by scripts/gen-command-table.py from the COMMAND reply of Redis %s." % version)
    out.append("// DO NOT EDIT. Regenerate with: python3 scripts/gen-command-table.py")
    out.append("// (it starts a private redis-server on a free port; redis-server must be on PATH).")
    out.append("//")
    out.append("// Sorted bytewise by name so that lookups can binary-search it; subcommands are named")
    out.append("// `container|sub`. cutover's own bits: TRANSACTION, CONTAINER, SCRIPTING, and BLOCKING")
    out.append("// on WAIT, which Redis 7.0 does not flag but which holds its connection.")
    out.append("")
    out.append("use super::flags::*;")
    out.append("use super::CommandInfo;")
    out.append("")
    out.append("const fn c(")
    out.append("    name: &'static str,")
    out.append("    arity: i32,")
    out.append("    flags: u32,")
    out.append("    first_key: i32,")
    out.append("    last_key: i32,")
    out.append("    step: i32,")
    out.append(") -> CommandInfo {")
    out.append("    CommandInfo {")
    for field in ("name", "arity", "flags", "first_key", "last_key", "step"):
        out.append("        %s," % field)
    out.append("    }")
    out.append("}")
    out.append("")
    out.append("#[rustfmt::skip]")
    out.append("pub(super) static COMMANDS: [CommandInfo; %d] = [" % len(rows))
    for name, arity, bits, first, last, step in rows:
        flags = " | ".join(bits) if bits else "0"
        out.append('    c("%s", %d, %s, %d, %d, %d),' % (name, arity, flags, first, last, step))
    out.append("];")
    out.append("")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()
    version, reply = fetch(args.redis_server)
    rows = entries(reply)
    src = render(version, rows)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(src)
    print("wrote %d commands (Redis %s) to %s" % (len(rows), version, os.path.normpath(args.out)),
          file=sys.stderr)


if __name__ == "__main__":
    main()
