"""Packages libbrokk inside the wheel.

`pip install ./bindings/python` runs this: the build step copies the library into the built
package's brokk/ directory, from BROKK_LIBRARY if set, else from ../../target/release (build it
first with `make lib`). Without a library the package still builds, and brokk then looks for
the library at import time (BROKK_LIBRARY, or the source tree's target/release).

The wheel contains a native library, so it is marked as platform-specific.
"""

import os
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent

if sys.platform == "darwin":
    LIBRARY_FILE = "libbrokk.dylib"
elif sys.platform == "win32":
    LIBRARY_FILE = "brokk.dll"
else:
    LIBRARY_FILE = "libbrokk.so"


def find_library():
    env = os.environ.get("BROKK_LIBRARY")
    if env:
        return Path(env)
    return HERE.parent.parent / "target" / "release" / LIBRARY_FILE


class BuildPyWithLibrary(build_py):
    def run(self):
        super().run()
        library = find_library()
        target = Path(self.build_lib) / "brokk" / LIBRARY_FILE
        if library.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(library, target)
            print(f"brokk: packaged {library} as {target}")
        else:
            print(f"brokk: {library} not found; the package will look for the library at import time")


class BinaryDistribution(Distribution):
    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildPyWithLibrary}, distclass=BinaryDistribution)
