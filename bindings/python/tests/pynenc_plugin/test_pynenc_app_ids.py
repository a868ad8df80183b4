"""Any app id and queue name pynenc accepts has a brokk topic of its own (brokk.topic_name):
spaces, parentheses, slashes, non-ASCII, 300 characters; and ids that differ only in a character
that is escaped never share a queue, also when their apps share a store."""

from __future__ import annotations

import pytest
from pynenc_support import BACKENDS, backend_url, build_app, close_app, quiet, require_pynenc

require_pynenc()

from pynenc.exceptions import ConfigError, PynencError  # noqa: E402
from pynenc.identifiers.invocation_id import generate_invocation_id  # noqa: E402

import brokk  # noqa: E402

quiet()

ODD_APP_IDS = [
    "my app",
    "billing(v2)",
    "team/app",
    "tests.mod.test_x(SQLite MultiThread JsonPickle)",
    "naïve ☃ app",
    "under_score",
    "a" * 300,
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("app_id", ODD_APP_IDS, ids=lambda a: a[:20])
def test_odd_app_ids_route_retrieve_count_purge(backend, app_id, tmp_path):
    app = build_app(backend, tmp_path, app_id=app_id, queues=("default", "other_q"))
    try:
        broker = app.broker
        topic = broker.topic("default")
        assert topic == "pynenc." + brokk.topic_name(app_id, 100) + "__default"
        assert len(topic) <= brokk.TOPIC_MAX_LEN
        ids = [generate_invocation_id() for _ in range(3)]
        broker.route_invocation(ids[0], "default", 0.0)
        broker.route_invocations(ids[1:], "other_q", 5.0)
        assert broker.count_invocations() == 3
        assert broker.count_invocations(["other_q"]) == 2
        assert broker.retrieve_invocation("other_q") == ids[1]
        assert broker.retrieve_invocation() == ids[0]
        broker.purge()
        assert broker.count_invocations() == 0
        assert broker.retrieve_invocation("other_q") is None
    finally:
        close_app(app)


# Pairs that an encoding without escaping the escape character, or one that cut long names
# without a hash, or joined app and queue with a character names may contain, would merge.
PAIRS = [
    ("team/app", "team app"),
    ("team/app", "team_2fapp"),
    ("a_b", "a b"),
    ("x" * 300 + "1", "x" * 300 + "2"),
    ("app.default", "app"),  # with "pynenc.{app}.{queue}", app's queue "default.default" = the other's
]


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
@pytest.mark.parametrize(("first", "second"), PAIRS, ids=lambda a: a[:12])
def test_app_ids_that_differ_in_an_escaped_character_never_share_a_queue(backend, first, second, tmp_path):
    url = backend_url(backend, tmp_path)
    a = build_app(backend, tmp_path, url=url, app_id=first, queues=("default", "default.default"))
    b = build_app(backend, tmp_path, url=url, app_id=second, queues=("default", "default.default"))
    if backend == "memory":
        # memory:// is one store per broker: give the second app the first one's client.
        b.broker.client.close(force=True)
        b.broker._client = a.broker.client
    try:
        assert {a.broker.topic(q) for q in ("default", "default.default")}.isdisjoint(
            {b.broker.topic(q) for q in ("default", "default.default")}
        )
        ia, ib = generate_invocation_id(), generate_invocation_id()
        a.broker.route_invocation(ia, "default", 0.0)
        b.broker.route_invocation(ib, "default.default", 0.0)
        assert a.broker.count_invocations(["default.default"]) == 0
        assert b.broker.count_invocations(["default"]) == 0
        assert a.broker.retrieve_invocation("default") == ia
        assert b.broker.retrieve_invocation("default.default") == ib
    finally:
        if backend == "memory":
            b.broker._client = None
        close_app(b)
        close_app(a)


def test_every_method_raises_pynencs_errors(tmp_path):
    app = build_app("memory", tmp_path, app_id="errors app")
    try:
        broker = app.broker
        broker.client.close(force=True)  # every later call meets a closed brokk broker
        iid = generate_invocation_id()
        for call in (
            lambda: broker.route_invocation(iid, "default", 0.0),
            lambda: broker.route_invocations([iid], "default", 0.0),
            lambda: broker.retrieve_invocation(),
            lambda: broker.count_invocations(),
            lambda: broker.purge(),
        ):
            with pytest.raises(PynencError) as info:
                call()
            assert isinstance(info.value.__cause__, brokk.BrokkError)
        with pytest.raises(ConfigError):
            broker.route_invocation(iid, "bad queue", 0.0)  # pynenc's own validation
    finally:
        close_app(app)


def test_a_prefix_that_leaves_no_room_for_the_queue_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="brokk_topic_prefix"):
        build_app("memory", tmp_path, app_id="x", brokk_topic_prefix="p" * 240 + "{app_id}__").broker


def test_brokk_url_follows_pynencs_sqlite_db_path(tmp_path):
    """``{sqlite_db_path}`` in brokk_url is pynenc's own SQLite path; without one, memory://."""
    from pynenc import PynencBuilder

    db = tmp_path / "pynenc.db"
    app = (
        PynencBuilder().app_id("follows").sqlite(sqlite_db_path=str(db))
        .brokk_broker("sqlite://{sqlite_db_path}-brokk.db").build()
    )
    mem = PynencBuilder().app_id("follows").memory().brokk_broker("sqlite://{sqlite_db_path}-brokk.db").build()
    try:
        assert app.broker.url == f"sqlite://{db}-brokk.db"
        app.broker.route_invocation(generate_invocation_id(), "default", 0.0)
        assert (tmp_path / "pynenc.db-brokk.db").exists()
        assert mem.broker.url == "memory://"
        assert mem.broker.count_invocations() == 0
    finally:
        close_app(mem)
        close_app(app)
