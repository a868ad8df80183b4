"""Shared helpers of the pynenc plugin tests (not a conftest: tests/conftest.py is imported as
`conftest` by the main suite, and a second one would make that ambiguous).

pynenc 0.4.0 needs Python 3.12. Under the main suite's interpreter it is usually missing: every
module here then skips, saying why. `make test-python-pynenc` sets BROKK_PYNENC_REQUIRED=1, and a
missing pynenc is then an error instead of a skip.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path

import pytest

SCALE = float(os.environ.get("BROKK_TEST_TIMEOUT_SCALE", "1") or "1")
REPO = Path(__file__).resolve().parents[4]
HERE = Path(__file__).resolve().parent


def require_pynenc() -> None:
    """Skips the calling test module (or fails it, under BROKK_PYNENC_REQUIRED=1) unless pynenc
    0.4.x imports."""
    try:
        import pynenc  # noqa: F401
        from importlib.metadata import version

        found = version("pynenc")
    except Exception as exc:  # noqa: BLE001 - any failure means: no usable pynenc
        why = (
            f"pynenc is not importable under Python {sys.version.split()[0]} ({type(exc).__name__}: {exc}); "
            "pynenc 0.4.0 needs Python >= 3.12: `make test-python-pynenc` runs these tests"
        )
        if os.environ.get("BROKK_PYNENC_REQUIRED"):
            raise RuntimeError(why) from exc
        pytest.skip(why, allow_module_level=True)
    if not found.startswith("0.4."):
        pytest.skip(f"the plugin targets pynenc 0.4.x; {found} is installed", allow_module_level=True)


def T(seconds: float) -> float:
    return seconds * SCALE


# The backends every parametrised test runs on.
BACKENDS = ("memory", "sqlite", "redis")


def backend_url(backend: str, tmp_path: Path) -> str:
    """The brokk URL of `backend` for one test. Redis: the session's redis-server (tests/
    redis_test_server.py: started on first use, stopped at the end of the session by
    tests/conftest.py, which pytest loads for this directory too) under a key prefix of the
    test's own (tmp_path's name is the test's)."""
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite://{(tmp_path / 'brokk.db').resolve()}?lease_ms=1000"
    if backend == "redis":
        import redis_test_server  # tests/, on sys.path through tests/conftest.py

        return redis_test_server.url(tmp_path.name, "lease_ms=1000")
    raise ValueError(f"unknown backend {backend!r}")


def quiet() -> None:
    logging.getLogger("pynenc").setLevel(logging.ERROR)


def build_app(backend: str, tmp_path: Path, url: str | None = None, **config):
    """A pynenc app whose broker is BrokkBroker at `url` (default: the backend's URL), with
    pynenc's own components of the same kind (memory, or SQLite in tmp_path; memory for Redis,
    pynenc having no Redis components of its own in 0.4.0's core), built through PynencBuilder
    and the plugin's builder method."""
    from pynenc import PynencBuilder

    builder = PynencBuilder().app_id(config.pop("app_id", f"brokktest{next(_ids)}"))
    if backend == "sqlite":
        builder = builder.sqlite(sqlite_db_path=str(tmp_path / "pynenc.db"))
    else:
        builder = builder.memory()
    builder = builder.brokk_broker(url or backend_url(backend, tmp_path))
    if config:
        builder = builder.custom_config(**config)
    return builder.build()


_lock = threading.Lock()


def _counter():
    n = 0
    while True:
        with _lock:
            n += 1
            yield n


_ids = _counter()


def close_app(app) -> None:
    """Closes the app's brokk broker (forced: a SQLite file keeps what is queued)."""
    broker = app.__dict__.get("_broker")
    close = getattr(broker, "close", None)
    if close is not None:
        close()


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + T(timeout)
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {T(timeout)} s waiting for {what}")
        time.sleep(0.01)
