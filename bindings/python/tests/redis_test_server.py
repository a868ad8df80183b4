"""The one redis-server of a pytest session, for the tests that run on Redis (conftest.py's
`redis_server` fixture and pynenc_support.backend_url). core/src/store/redis/test-server.sh starts it on first
use, on a free loopback port, owned by this process's pid (its watchdog kills it within a second
if pytest dies); conftest.py stops it at the end of the session. Without redis-server, start()
raises, saying why: the Redis tests fail, they never skip."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "core" / "src" / "store" / "redis" / "test-server.sh"

_lock = threading.Lock()
_dir: str | None = None
_url: str | None = None
_next = itertools.count(1)


def base_url() -> str:
    """redis://127.0.0.1:PORT/0 of the session's server, starting it on first call."""
    global _dir, _url
    with _lock:
        if _url is None:
            _dir = tempfile.mkdtemp(prefix="brokk-py-redis-")
            done = subprocess.run(
                ["sh", str(SCRIPT), "start", _dir, str(os.getpid())], capture_output=True, text=True
            )
            if done.returncode != 0:
                shutil.rmtree(_dir, ignore_errors=True)
                _dir = None
                raise RuntimeError(
                    "core/src/store/redis/test-server.sh could not start redis-server (apt-get install redis-server): "
                    + done.stderr.strip()
                )
            _url = f"redis://127.0.0.1:{done.stdout.strip()}/0"
        return _url


def url(name: str, query: str = "") -> str:
    """The URL of a fresh store on the session's server: a key prefix nobody else uses
    ("py<pid>-<n>-<name>", at most 64 of letters, digits and `_.-`), then `query` options."""
    prefix = f"py{os.getpid()}-{next(_next)}-" + re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return f"{base_url()}?prefix={prefix[:64]}" + (f"&{query}" if query else "")


def stop() -> None:
    """Stops the server if this session started one (and waits until it is gone)."""
    global _dir, _url
    with _lock:
        if _dir is None:
            return
        subprocess.run(["sh", str(SCRIPT), "stop", _dir], check=True)
        shutil.rmtree(_dir, ignore_errors=True)
        _dir = _url = None
