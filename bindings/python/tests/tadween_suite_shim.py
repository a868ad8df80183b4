"""Runs Tadween's own test suite and examples with brokk's facade in place of Tadween's broker,
with no file of Tadween's edited (bindings/python/tadween-suite.mk).

Importing this module installs an import hook: the first import of ``tadween_core.broker`` (or
of its submodules base, memory, listeners), wherever ``tadween_core`` itself comes from, gets
``brokk.compat.tadween`` (through ``install()``). Used as a pytest plugin
(``-p tadween_suite_shim``) it also says so in the report header and fails the run if the
facade was not the broker the tests used; ``python -m tadween_suite_shim SCRIPT`` runs a script
with it."""

from __future__ import annotations

import importlib.abc
import importlib.util
import runpy
import sys

_BROKER = "tadween_core.broker"


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name == _BROKER or name.startswith(_BROKER + "."):
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        from brokk.compat import tadween

        tadween.install()  # every broker module name is the facade from now on
        return tadween

    def exec_module(self, module):
        pass  # the facade is imported already


def _installed() -> bool:
    from brokk.compat import tadween

    return sys.modules.get(_BROKER) is tadween


if _BROKER in sys.modules and not _installed():
    raise RuntimeError("tadween_suite_shim: tadween_core.broker was imported before the shim")
sys.meta_path.insert(0, _Finder())


# ---- as a pytest plugin -------------------------------------------------------------------------


def pytest_report_header(config):
    import brokk

    return [f"tadween_core.broker is brokk.compat.tadween (brokk {brokk.version()})"]


def pytest_sessionfinish(session, exitstatus):
    if "tadween_core" in sys.modules and not _installed():
        print("\ntadween_suite_shim: the tests did not use brokk's facade", file=sys.stderr)
        session.exitstatus = 1


# ---- as a script runner -------------------------------------------------------------------------

if __name__ == "__main__":
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    runpy.run_path(script, run_name="__main__")
    if not _installed():
        sys.exit(f"tadween_suite_shim: {script} did not use brokk's facade")
