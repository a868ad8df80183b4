"""BrokkBroker against pynenc's broker semantics, on every backend: pynenc's own broker contract
tests, a side-by-side run against pynenc's MemBroker, queue-name validation, priorities, each id
retrieved once under concurrent retrievers, and acknowledged retrieval."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from pynenc_support import BACKENDS, T, backend_url, build_app, close_app, quiet, require_pynenc

require_pynenc()

from pynenc import Pynenc  # noqa: E402
from pynenc.broker.mem_broker import MemBroker  # noqa: E402
from pynenc.exceptions import ConfigError  # noqa: E402
from pynenc.identifiers.invocation_id import generate_invocation_id  # noqa: E402

from brokk.pynenc_plugin import PRIORITY_SCALE, BrokkBroker, brokk_priority  # noqa: E402

quiet()


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def app(backend, tmp_path):
    app = build_app(backend, tmp_path, queues=("default", "payments", "reports"))
    yield app
    close_app(app)


@pytest.fixture
def broker(app) -> BrokkBroker:
    assert type(app.broker) is BrokkBroker
    return app.broker


# ---- pynenc's own broker contract (pynenc_tests, shipped with pynenc 0.4.0) ------------------------

try:
    from pynenc_tests.unit.broker import test_broker_all_instances as contract
except ImportError as exc:  # pragma: no cover - pynenc without its tests
    contract = None
    CONTRACT_MISSING = f"pynenc_tests is not installed with pynenc: {exc}"

CONTRACT_TESTS = [
    "test_route_and_retrieve_invocation",
    "test_route_and_retrieve_multiple_invocations",
    "test_route_invocations_validates_batch_before_queueing",
    "test_priority_boundaries_and_equal_priority_fifo",
    "test_count_invocations",
    "test_purge_invocations",
]


@pytest.mark.parametrize("name", CONTRACT_TESTS)
def test_pynenc_broker_contract(name, app):
    """pynenc's tests for every broker (the ones plugins import from all_tests.py that take an
    app), run on an app whose broker is BrokkBroker."""
    if contract is None:
        pytest.skip(CONTRACT_MISSING)
    from pynenc.task import Task

    task = Task.clone_for_app(app, contract.dummy_task)
    app.tasks[task.task_id] = task
    getattr(contract, name)(task)


# ---- side by side with pynenc's MemBroker ------------------------------------------------------------


def test_same_answers_as_membroker_on_a_random_workload(broker, app):
    """Random routes (single and batch, several queues, priorities with fractions), retrieves,
    counts and purges, applied to BrokkBroker and to a MemBroker of the same configuration:
    every answer must be the same."""
    queues_conf = ("default", "payments", "reports")
    mem = MemBroker(Pynenc(config_values={"app_id": app.app_id + "mem", "queues": queues_conf}))
    rng = random.Random(1234)
    queues = ["default", "payments", "reports", "extra"]  # "extra" is not configured: warned, allowed
    priorities = [-100.0, -2.5, 0.0, 0.0, 0.25, 0.5, 1.0, 99.999999, 100.0]
    ids = [generate_invocation_id() for _ in range(40)]
    for step in range(600):
        op = rng.random()
        queue = rng.choice(queues)
        if op < 0.35:
            args = (rng.choice(ids), queue, rng.choice(priorities))
            broker.route_invocation(*args)
            mem.route_invocation(*args)
        elif op < 0.45:
            args = ([rng.choice(ids) for _ in range(rng.randrange(0, 6))], queue, rng.choice(priorities))
            broker.route_invocations(*args)
            mem.route_invocations(*args)
        elif op < 0.85:
            q = None if rng.random() < 0.2 else queue
            assert broker.retrieve_invocation(q) == mem.retrieve_invocation(q), f"step {step}"
        elif op < 0.97:
            names = None if rng.random() < 0.3 else tuple(rng.sample(queues, rng.randrange(1, 4)))
            assert broker.count_invocations(names) == mem.count_invocations(names), f"step {step}"
        else:
            broker.purge()
            mem.purge()
    for queue in queues:
        while (expected := mem.retrieve_invocation(queue)) is not None:
            assert broker.retrieve_invocation(queue) == expected
        assert broker.retrieve_invocation(queue) is None


# ---- retrieve, priorities -------------------------------------------------------------------------------


def test_two_brokers_pynenc_made_for_one_app_share_its_queues(app):
    """pynenc makes ``app.broker`` lazily without a lock: a runner thread and the routing thread
    touching it first at once each make a BrokkBroker, and the app keeps the last one. What was
    routed through the other must still be retrieved (on memory:// too, where two brokk brokers
    would have queues of their own: ``test_thread_runner_runs_tasks_end_to_end`` lost every task
    about one run in ten that way)."""
    first, second = BrokkBroker(app), BrokkBroker(app)
    try:
        invocation_id = generate_invocation_id()
        first.route_invocation(invocation_id, "default", 0.0)
        assert second.retrieve_invocation("default") == invocation_id
        assert first.count_invocations() == 0
    finally:
        first.close()
        second.close()


def test_retrieve_on_an_empty_queue_returns_none_at_once(broker):
    t0 = time.monotonic()
    for _ in range(20):
        assert broker.retrieve_invocation() is None
        assert broker.retrieve_invocation("payments") is None
    # 40 retrieves; waiting even pynenc's queue_timeout_sec (0.1 s) once each would take 4 s.
    assert time.monotonic() - t0 < T(2.0)


def test_highest_priority_first_fifo_within_a_priority(broker):
    routed = []
    for priority in [0.0, 5.0, -1.0, 5.0, 0.5, 0.5, 100.0, -100.0, 0.0, 0.000001]:
        for _ in range(3):
            iid = generate_invocation_id()
            broker.route_invocation(iid, "default", priority)
            routed.append((priority, iid))
    batch = [generate_invocation_id() for _ in range(5)]
    broker.route_invocations(batch, "default", 0.5)
    routed += [(0.5, iid) for iid in batch]
    # sorted is stable: FIFO within one priority.
    expected = [iid for _, iid in sorted(routed, key=lambda r: -r[0])]
    got = [broker.retrieve_invocation("default") for _ in expected]
    assert got == expected
    assert broker.retrieve_invocation("default") is None


def test_priority_mapping_is_the_documented_one():
    assert brokk_priority(1.5) == 1_500_000 == round(1.5 * PRIORITY_SCALE)
    assert brokk_priority(-100) == -100_000_000
    assert brokk_priority("2") == 2_000_000  # pynenc accepts what float() accepts
    for bad in (100.0001, float("nan"), float("inf"), "high", None):
        with pytest.raises(ConfigError):
            brokk_priority(bad)


def test_topics_are_prefix_and_queue(broker, app):
    iid = generate_invocation_id()
    broker.route_invocation(iid, "payments", 0.0)
    assert broker.client.count([f"pynenc.{app.app_id}__payments"]) == 1
    assert broker.retrieve_invocation("payments") == iid


# ---- queue names, as pynenc validates them ----------------------------------------------------------


@pytest.mark.parametrize("name", ["", "*", "a b", "queue/1", "naïve", "x:y", 7])
def test_invalid_queue_names_are_config_errors(broker, name):
    iid = generate_invocation_id()
    with pytest.raises(ConfigError, match="Invalid queue name"):
        broker.route_invocation(iid, name, 0.0)
    with pytest.raises(ConfigError, match="Invalid queue name"):
        broker.route_invocations([iid], name, 0.0)
    with pytest.raises(ConfigError, match="Invalid queue name"):
        broker.retrieve_invocation(name)
    with pytest.raises(ConfigError, match="Invalid queue name"):
        broker.count_invocations(["default", name])
    assert broker.count_invocations() == 0


def test_invalid_priority_routes_nothing(broker):
    for priority in (101.0, float("nan"), "x"):
        with pytest.raises(ConfigError, match="between -100.0 and 100.0"):
            broker.route_invocation(generate_invocation_id(), "default", priority)
        with pytest.raises(ConfigError, match="between -100.0 and 100.0"):
            broker.route_invocations([generate_invocation_id()], "default", priority)
    assert broker.count_invocations() == 0


def test_unconfigured_queue_warns_once_and_routes(broker, app, caplog):
    caplog.set_level("WARNING")
    app.logger.propagate = True
    iid = generate_invocation_id()
    with caplog.at_level("WARNING", logger=app.logger.name):
        broker.route_invocation(iid, "missing", 0.0)
        broker.route_invocation(iid, "missing", 0.0)
    warnings = [r for r in caplog.records if "not configured in broker.queues: missing" in r.getMessage()]
    assert len(warnings) == 1
    assert broker.count_invocations() == 0  # None counts the configured queues only
    assert broker.count_invocations(["missing"]) == 2
    broker.purge()  # a queue this broker used is purged too
    assert broker.count_invocations(["missing"]) == 0


def test_strict_queue_policy_rejects_unconfigured_queues(backend, tmp_path):
    app = build_app(backend, tmp_path, queues=("default",), raise_on_queue_mismatch=True)
    try:
        for _ in range(2):  # the second time too: nothing is cached for a rejected name
            with pytest.raises(ConfigError, match="not configured in broker.queues"):
                app.broker.route_invocation(generate_invocation_id(), "missing", 0.0)
        assert app.broker.count_invocations() == 0
    finally:
        close_app(app)


def test_a_300_character_queue_name_has_a_topic_of_its_own(broker):
    """pynenc accepts queue names of any length: longer ones are cut and hashed (brokk.topic_name),
    two that differ only at the end keep apart."""
    ids = [generate_invocation_id(), generate_invocation_id()]
    names = ["q" * 299 + "a", "q" * 299 + "b"]
    for iid, name in zip(ids, names, strict=True):
        broker.route_invocation(iid, name, 0.0)
    topics = {broker.topic(name) for name in names}
    assert len(topics) == 2 and all(len(t) <= 255 for t in topics)
    assert [broker.retrieve_invocation(name) for name in names] == ids
    assert [broker.count_invocations([name]) for name in names] == [0, 0]


def test_ids_that_need_json_escapes_round_trip(broker):
    """Ids are quoted as they are when they need no escape (pynenc's UUIDs), else encoded as
    JSON; either way a retrieve returns them as routed, also one routed raw by another program."""
    odd = ['with "quotes"', "back\\slash", "ünïcödé", "tab\there", "\u2028", "plain-3f2a"]
    for iid in odd:
        broker.route_invocation(iid, "default", 0.0)
    broker.route_invocations(odd, "default", 0.0)
    broker.client.publish(broker.topic("default"), raw=b'"esc\\u0041ped \\"id\\""')
    got = [broker.retrieve_invocation() for _ in range(len(odd) * 2 + 1)]
    assert got == odd + odd + ['escAped "id"']
    assert broker.retrieve_invocation() is None


def test_non_invocation_payloads_are_dropped_not_returned(broker):
    broker.client.publish(broker.topic("default"), {"not": "an id"}, priority=1)
    broker.client.publish(broker.topic("default"), 12, priority=1)
    iid = generate_invocation_id()
    broker.route_invocation(iid, "default", 0.0)
    assert broker.retrieve_invocation() == iid
    assert broker.retrieve_invocation() is None


# ---- each id once, under concurrent retrievers ----------------------------------------------------------


def test_each_routed_id_is_retrieved_once_by_concurrent_retrievers(backend, tmp_path, app, broker):
    ids = [generate_invocation_id() for _ in range(1500)]
    broker.route_invocations(ids[:1000], "default", 0.0)
    # Retrievers: 3 threads on this broker plus, on a shared store, 2 on other brokers (other
    # apps of the same app id, as other worker processes would be).
    brokers = [broker] * 3
    others = []
    if backend != "memory":
        for _ in range(2):
            other = build_app(backend, tmp_path, url=broker.url, app_id=app.app_id)
            others.append(other)
            brokers.append(other.broker)
    got: list[list[str]] = [[] for _ in brokers]
    stop = threading.Event()

    def retrieve(k: int) -> None:
        while not stop.is_set():
            iid = brokers[k].retrieve_invocation("default")
            if iid is not None:
                got[k].append(iid)

    threads = [threading.Thread(target=retrieve, args=(k,), daemon=True) for k in range(len(brokers))]
    for t in threads:
        t.start()
    for iid in ids[1000:]:  # routed while they retrieve
        broker.route_invocation(iid, "default", 0.0)
    deadline = time.monotonic() + T(60)
    while sum(map(len, got)) < len(ids) and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    for t in threads:
        t.join(T(10))
    everything = [iid for g in got for iid in g]
    assert len(everything) == len(ids), f"{len(everything)} of {len(ids)} retrieved"
    assert sorted(everything) == sorted(ids)  # each exactly once
    assert broker.count_invocations() == 0
    for other in others:
        close_app(other)


# ---- acknowledged retrieval (the option) ------------------------------------------------------------------


def test_acknowledged_retrieval_redelivers_an_unacked_id(backend, tmp_path):
    app = build_app(backend, tmp_path, brokk_ack_deadline_sec=0.3)
    broker = app.broker
    try:
        a, b = generate_invocation_id(), generate_invocation_id()
        broker.route_invocations([a, b], "default", 0.0)
        assert broker.retrieve_invocation() == a
        assert broker.retrieve_invocation() == b
        assert broker.count_invocations() == 0  # held, not waiting
        assert broker.ack_invocation(b) == 1
        assert broker.ack_invocation(b) == 0  # nothing held any more
        # `a` is never acked: past the deadline it is delivered again.
        deadline = time.monotonic() + T(10)
        again = None
        while again is None and time.monotonic() < deadline:
            again = broker.retrieve_invocation()
            time.sleep(0.02)
        assert again == a
        assert broker.ack_invocation(a) >= 1
        time.sleep(0.6)
        assert broker.retrieve_invocation() is None  # acked ids never come back; b never did
        # nack_invocation gives an id back at once.
        broker.route_invocation(b, "default", 0.0)
        assert broker.retrieve_invocation() == b
        assert broker.nack_invocation(b) == 1
        assert broker.retrieve_invocation() == b
        broker.ack_invocation(b)
    finally:
        close_app(app)


def test_default_retrieval_never_redelivers(broker):
    iid = generate_invocation_id()
    broker.route_invocation(iid, "default", 0.0)
    assert broker.retrieve_invocation() == iid
    time.sleep(0.3)
    assert broker.retrieve_invocation() is None
    assert broker.count_invocations() == 0


DYING_WORKER = """
    import os, sys
    import brokk.pynenc_plugin
    from pynenc import Pynenc
    app = Pynenc(config_values={{"app_id": "acked", "broker_cls": "BrokkBroker", "brokk_url": {url!r},
                                "brokk_ack_deadline_sec": 1.0}})
    iid = app.broker.retrieve_invocation()
    print(iid, flush=True)
    os._exit(3)  # the worker dies holding it: no ack, no close
"""


def test_acknowledged_retrieval_redelivers_after_a_worker_dies(tmp_path):
    """SQLite: a worker process retrieves an id with acknowledged retrieval and dies; another
    worker gets the id once the deadline passes. Without the option the id would be lost."""
    url = backend_url("sqlite", tmp_path)
    import brokk.pynenc_plugin  # noqa: F401

    app = Pynenc(config_values={"app_id": "acked", "broker_cls": "BrokkBroker", "brokk_url": url,
                                "brokk_ack_deadline_sec": 1.0})
    try:
        iid = generate_invocation_id()
        app.broker.route_invocation(iid, "default", 0.0)
        p = subprocess.run([sys.executable, "-c", textwrap.dedent(DYING_WORKER.format(url=url))],
                           capture_output=True, text=True, timeout=T(60))
        assert p.returncode == 3, p.stderr
        assert p.stdout.strip() == iid
        assert app.broker.retrieve_invocation() is None  # still leased to the dead worker
        deadline = time.monotonic() + T(15)
        again = None
        while again is None and time.monotonic() < deadline:
            again = app.broker.retrieve_invocation()
            time.sleep(0.05)
        assert again == iid
        assert app.broker.ack_invocation(iid) == 1
    finally:
        close_app(app)
