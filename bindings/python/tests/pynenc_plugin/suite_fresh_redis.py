"""A pytest plugin for `make test-python-pynenc-suite` on Redis (loaded with -p; no pynenc test
is edited): every test of pynenc's suite starts on an empty Redis database, as it starts on a
fresh SQLite file with pynenc's SQLiteBroker. Without it, the apps of successive tests, which
share an app id, would find each other's queues on the one server.

BROKK_SUITE_REDIS_FLUSH=host:port/db names the database to empty before each test."""

from __future__ import annotations

import os
import socket


def _command(sock: socket.socket, *args: str) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    sock.sendall(b"".join(parts))
    reply = sock.recv(4096)
    if not reply.startswith(b"+"):
        raise RuntimeError(f"redis {args[0]}: {reply!r}")
    return reply


def pytest_runtest_setup(item) -> None:
    target = os.environ.get("BROKK_SUITE_REDIS_FLUSH")
    if not target:
        return
    address, _, db = target.partition("/")
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        _command(sock, "SELECT", db or "0")
        _command(sock, "FLUSHDB")
