"""A real pynenc application runs tasks end to end on BrokkBroker, with pynenc's ThreadRunner,
on every backend; and a C program routes invocation ids into a SQLite file that a pynenc
worker's BrokkBroker retrieves and runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from pynenc_support import BACKENDS, HERE, REPO, T, backend_url, build_app, close_app, quiet, require_pynenc, wait_for

require_pynenc()

from pynenc.runner import ThreadRunner  # noqa: E402
from pynenc.task import Task  # noqa: E402

import brokk  # noqa: E402

quiet()


def add(x: int, y: int) -> int:
    return x + y


def tag(name: str) -> str:
    return f"done:{name}"


def register(app, func, **options) -> Task:
    func.__module__ = __name__  # tasks are looked up by module and name
    return app.task(func, **options)


def results_within(invocations, seconds: float) -> list:
    """Each invocation's result, or a failure after `seconds` (``.result`` alone would wait
    forever if the worker never got the id)."""
    out: list = []
    error: list = []

    def collect() -> None:
        try:
            out.extend(inv.result for inv in invocations)
        except BaseException as exc:  # noqa: BLE001 - reported below
            error.append(exc)

    t = threading.Thread(target=collect, daemon=True)
    t.start()
    t.join(T(seconds))
    if t.is_alive():
        raise AssertionError(f"{len(out)} of {len(invocations)} results after {T(seconds)} s")
    if error:
        raise error[0]
    return out


class RunningWorker:
    """The app's ThreadRunner running on its own thread, as `pynenc runner` would run it."""

    def __init__(self, app) -> None:
        self.app = app
        app.runner = ThreadRunner(app)
        self.thread = threading.Thread(target=app.runner.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.app.runner.stop_runner_loop()
        self.thread.join(T(10))


@pytest.mark.parametrize("backend", BACKENDS)
def test_thread_runner_runs_tasks_end_to_end(backend, tmp_path):
    app = build_app(backend, tmp_path, queues=("default", "fast"))
    try:
        add_task = register(app, add)
        tag_task = register(app, tag, queue="fast", priority=10.0)
        with RunningWorker(app):
            invocations = [add_task(i, i) for i in range(20)]
            # parallelize routes with route_invocations
            batch = list(tag_task.parallelize([(f"n{i}",) for i in range(10)]).invocations)
            assert results_within(invocations, 60) == [2 * i for i in range(20)]
            assert results_within(batch, 60) == [f"done:n{i}" for i in range(10)]
        assert app.broker.count_invocations() == 0
        # Routed through brokk, and only through it: its statistics saw every id. (pynenc's
        # runner threads route too, rerouting what they cannot run yet; a route counts once its
        # publish returns, which may be after the worker ran the id: wait for those to return.)
        wait_for(lambda: app.broker.client.stats().published >= 30, 10, "every route counted")
        stats = app.broker.client.stats()
        assert stats.published >= 30
    finally:
        close_app(app)


# ---- a C producer, a pynenc worker, one SQLite file ------------------------------------------------------


@pytest.fixture(scope="module")
def route_ids(tmp_path_factory) -> Path:
    """tests/pynenc_plugin/route_ids.c, compiled against include/brokk.h and the libbrokk this
    brokk package loads."""
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler ({cc}) to build route_ids.c")
    header = REPO / "include" / "brokk.h"
    if not header.exists():
        pytest.skip(f"{header} not found (not a source checkout)")
    out = tmp_path_factory.mktemp("route_ids") / "route_ids"
    # The program records the library's SONAME (libbrokk.so.<ABI> on Linux), a name the copy
    # inside an installed package does not have: link and run against a folder of links where
    # both names are the library this package loads.
    lib = out.parent / "lib"
    lib.mkdir()
    libname = Path(brokk.LIBRARY_PATH).name
    for name in {libname, f"libbrokk.so.{brokk.abi_version()}"}:
        (lib / name).symlink_to(Path(brokk.LIBRARY_PATH).resolve())
    link = ["-L", str(lib), f"-l:{libname}", f"-Wl,-rpath,{lib}"]
    p = subprocess.run(
        [cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-I", str(header.parent), str(HERE / "route_ids.c"),
         "-o", str(out), *link, "-lm"],
        capture_output=True, text=True, timeout=T(120),
    )
    assert p.returncode == 0, p.stderr
    return out


def _route(route_ids: Path, url: str, app_id: str, queue: str, priority: float, ids: list[str]) -> None:
    p = subprocess.run([str(route_ids), url, app_id, queue, repr(priority), *ids],
                       capture_output=True, text=True, timeout=T(60))
    assert p.returncode == 0, p.stderr
    assert f"routed {len(ids)} ids" in p.stdout


def test_c_routed_ids_are_retrieved_in_pynenc_order(route_ids, tmp_path):
    from pynenc.identifiers.invocation_id import generate_invocation_id

    url = backend_url("sqlite", tmp_path)
    low = [generate_invocation_id() for _ in range(3)]
    high = [generate_invocation_id() for _ in range(3)]
    mid = [generate_invocation_id() for _ in range(3)]
    # Routed by C before any pynenc worker exists; the file keeps them.
    _route(route_ids, url, "capp", "default", -5.0, low)
    _route(route_ids, url, "capp", "default", 50.5, high)
    _route(route_ids, url, "capp", "default", 0.25, mid)
    app = build_app("sqlite", tmp_path, app_id="capp")
    try:
        assert app.broker.count_invocations() == 9
        # Python routes meet C's in one order: 0.25 from Python is the same priority as C's.
        py = generate_invocation_id()
        app.broker.route_invocation(py, "default", 0.25)
        got = [app.broker.retrieve_invocation() for _ in range(10)]
        assert got == high + mid + [py] + low
        assert app.broker.retrieve_invocation() is None
    finally:
        close_app(app)


def test_pynenc_worker_runs_what_a_c_program_routes(route_ids, tmp_path):
    """The app creates invocations (pynenc's SQLite state backend) but its own routes are purged;
    only the C program routes their ids, into the shared SQLite file, and the pynenc worker
    retrieves and runs them."""
    app = build_app("sqlite", tmp_path, app_id="cworker")
    try:
        add_task = register(app, add)
        invocations = [add_task(i, 100) for i in range(8)]
        assert app.broker.count_invocations() == 8
        app.broker.purge()  # forget pynenc's routes: nothing to run now
        assert app.broker.count_invocations() == 0
        ids = [inv.invocation_id for inv in invocations]
        _route(route_ids, app.broker.url, "cworker", "default", 0.0, ids)
        assert app.broker.count_invocations() == 8
        with RunningWorker(app):
            assert results_within(invocations, 60) == [i + 100 for i in range(8)]
        # Each ran once, from the C routes; what may be left is pynenc's own (core tasks).
        ours = {inv.invocation_id for inv in invocations}
        left = []
        while (iid := app.broker.retrieve_invocation()) is not None:
            left.append(iid)
        assert not ours & set(left)
        statuses = {app.orchestrator.get_invocation_status(iid).name for iid in ids}
        assert statuses == {"SUCCESS"}
    finally:
        close_app(app)


def test_c_program_routes_to_an_app_id_that_needs_escapes(route_ids, tmp_path):
    """A C producer computes the plugin's topic with brokk_topic_name_part, whatever the app id."""
    from pynenc.identifiers.invocation_id import generate_invocation_id

    url = backend_url("sqlite", tmp_path)
    app_id = "billing(v2) team/ü_x"
    ids = [generate_invocation_id() for _ in range(3)]
    _route(route_ids, url, app_id, "default", 1.0, ids)
    app = build_app("sqlite", tmp_path, app_id=app_id)
    try:
        assert app.broker.count_invocations() == 3
        assert [app.broker.retrieve_invocation() for _ in range(4)] == [*ids, None]
    finally:
        close_app(app)
