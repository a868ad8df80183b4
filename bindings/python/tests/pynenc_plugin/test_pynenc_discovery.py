"""The plugin is found through the pynenc.plugins entry point and chosen through pynenc's own
configuration: environment variables, a config file, the builder, config values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from pynenc_support import T, quiet, require_pynenc

require_pynenc()

from pynenc import Pynenc, PynencBuilder  # noqa: E402
from pynenc.exceptions import ConfigError  # noqa: E402

quiet()
PLUGIN = "brokk.pynenc_plugin"


def _entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group="pynenc.plugins")}


@pytest.fixture
def installed():
    """The package must be installed (pip) for its entry points to exist."""
    eps = _entry_points()
    if "brokk_broker" not in eps and not os.environ.get("BROKK_EXPECT_PACKAGED_LIBRARY"):
        pytest.skip(
            "brokk is not pip-installed here, so it has no entry points (make test-python-pynenc installs it)"
        )
    return eps


def test_entry_points_name_the_plugin_module_and_builder(installed):
    assert installed["brokk_broker"] == "brokk.pynenc_plugin"
    assert installed["brokk_builder"] == "brokk.pynenc_plugin:BrokkBuilderPlugin"


def _fresh(code: str, env: dict[str, str], cwd) -> dict:
    """Runs `code` in a fresh interpreter that never imports brokk itself: only pynenc's plugin
    loading can bring BrokkBroker in. The code prints one JSON line."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PYNENC__")}
    full_env.update(env)
    p = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=T(60),
        env=full_env,
        cwd=cwd,
    )
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


PROBE = """
    import json, sys
    from pynenc import Pynenc
    app = Pynenc({args})
    broker = app.broker
    assert "brokk" not in sys.modules or "brokk.pynenc_plugin" in sys.modules
    print(json.dumps({{"cls": type(broker).__name__, "module": type(broker).__module__,
                      "url": broker.url, "prefix": broker.topic("q")}}))
"""


def test_chosen_by_environment_variables(installed, tmp_path):
    url = f"sqlite://{tmp_path / 'env.db'}"
    out = _fresh(
        PROBE.format(args='{"app_id": "envapp"}'),
        {"PYNENC__BROKER_CLS": "BrokkBroker", "PYNENC__BROKK_URL": url},
        tmp_path,
    )
    assert out == {"cls": "BrokkBroker", "module": PLUGIN, "url": url, "prefix": "pynenc.envapp__q"}
    # The class-specific variable (cistell's PYNENC__<CONFIG CLASS>__<FIELD>) works too.
    out = _fresh(
        PROBE.format(args='{"app_id": "envapp"}'),
        {"PYNENC__BROKER_CLS": "BrokkBroker", "PYNENC__CONFIGBROKK__BROKK_URL": url},
        tmp_path,
    )
    assert out["url"] == url


def test_chosen_by_config_file(installed, tmp_path):
    url = f"sqlite://{tmp_path / 'file.db'}"
    config = tmp_path / "pynenc.yaml"
    config.write_text(
        f"app_id: fileapp\nbroker_cls: BrokkBroker\nbrokk:\n  brokk_url: {url}\n"
        "  brokk_topic_prefix: jobs.{app_id}.\n"
    )
    out = _fresh(PROBE.format(args=f"config_filepath={str(config)!r}"), {}, tmp_path)
    assert out == {"cls": "BrokkBroker", "module": PLUGIN, "url": url, "prefix": "jobs.fileapp.q"}
    # The file named by PYNENC__FILEPATH, as pynenc reads its own settings.
    out = _fresh(PROBE.format(args=""), {"PYNENC__FILEPATH": str(config)}, tmp_path)
    assert out["cls"] == "BrokkBroker" and out["url"] == url


def test_default_broker_is_still_pynencs(installed, tmp_path):
    out = _fresh(
        """
        import json
        from pynenc import Pynenc
        print(json.dumps({"cls": type(Pynenc().broker).__name__}))
        """,
        {},
        tmp_path,
    )
    assert out == {"cls": "MemBroker"}


def test_chosen_by_builder(installed, tmp_path):
    url = f"sqlite://{tmp_path / 'builder.db'}"
    app = PynencBuilder().app_id("builderapp").memory().brokk_broker(url, ack_deadline_sec=2.5).build()
    try:
        assert type(app.broker).__name__ == "BrokkBroker"
        assert app.broker.url == url
        assert app.broker.acknowledged and app.broker.conf.brokk_ack_deadline_sec == 2.5
    finally:
        app.broker.close()
    # Default URL: memory.
    app = PynencBuilder().memory().brokk_broker().build()
    assert app.broker.url == "memory://" and not app.broker.acknowledged
    app.broker.close()


def test_chosen_by_config_values_defaults_to_memory():
    import brokk.pynenc_plugin  # noqa: F401  (without the entry point, an import registers it)

    app = Pynenc(config_values={"app_id": "valuesapp", "broker_cls": "BrokkBroker"})
    try:
        assert type(app.broker).__name__ == "BrokkBroker"
        assert app.broker.url == "memory://"
        assert app.broker.topic("default") == "pynenc.valuesapp__default"
    finally:
        app.broker.close()


@pytest.mark.parametrize(
    "url",
    ["nosuch://x", "sqlite:///nonexistent-dir-for-brokk/sub/q.db"],
)
def test_a_bad_url_is_a_config_error(url):
    import brokk.pynenc_plugin  # noqa: F401

    app = Pynenc(config_values={"app_id": "badurl", "broker_cls": "BrokkBroker", "brokk_url": url})
    with pytest.raises(ConfigError, match="brokk_url"):
        app.broker  # noqa: B018
