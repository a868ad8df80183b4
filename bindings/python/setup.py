"""Builds libbrokk with cargo and bundles it inside the wheel.

`pip install ./bindings/python` (or `python -m build --wheel bindings/python`) runs this. The
build step (build_py) runs

    $CARGO build --release --lib --manifest-path <repository>/Cargo.toml

(CARGO defaults to `cargo` on PATH; the repository is the one this file sits in, two folders
up), takes the library cargo reports having built, and copies it into the built package as
brokk/libbrokk.so. BROKK_LIBRARY=/path/to/libbrokk.so bundles that file instead, and cargo is
not run. There is no third way: without cargo (or if the build fails) the install fails, saying
what to install; a package without its library is never built.

Nothing stale can be bundled: every build happens under a fresh temporary build folder (never
bindings/python/build/), the staged library path is removed before the copy, and every file of
a library name that the copy did not just write is removed from the built package.

The bundled copy has its debug info stripped (`strip --strip-debug`; the symbol table stays),
unless BROKK_STRIP=0. The wheel is tagged py3-none-<platform>: the library is loaded with
ctypes, so it is tied to a platform but to no CPython version or ABI; one wheel serves every
CPython >= 3.10. `auditwheel repair` turns linux_x86_64 into manylinux (README: Releasing).
"""

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build import build
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

try:  # setuptools >= 70.1 has its own; pyproject.toml requires >= 77.
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # pragma: no cover: an older setuptools with the wheel package
    try:
        from wheel.bdist_wheel import bdist_wheel
    except ImportError:
        bdist_wheel = None

HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parent.parent
MANIFEST = REPOSITORY / "Cargo.toml"

if sys.platform == "darwin":
    LIBRARY_FILE = "libbrokk.dylib"
elif sys.platform == "win32":
    LIBRARY_FILE = "brokk.dll"
else:
    LIBRARY_FILE = "libbrokk.so"
# Every name brokk/_ffi.py could load: none may reach the wheel except the one staged below.
LIBRARY_NAMES = ("libbrokk.so", "libbrokk.dylib", "brokk.dll")

INSTALL_RUST = (
    "Install the Rust toolchain with rustup (https://rustup.rs: "
    "curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh), make sure `cargo` is on "
    "PATH (or set CARGO to its path), and run pip again; or set BROKK_LIBRARY to a libbrokk "
    "built elsewhere to bundle that one."
)


class BuildError(SystemExit):
    """Ends the build with one message (pip shows it); no traceback."""

    def __init__(self, message):
        super().__init__(f"error: brokk: {message}")


def cargo_build():
    """Runs cargo and returns the path of the shared library it built."""
    cargo = os.environ.get("CARGO") or "cargo"
    cargo_path = shutil.which(cargo)
    if cargo_path is None:
        raise BuildError(
            f"building the brokk Python package needs cargo, and `{cargo}` was not found"
            f"{' (from CARGO)' if os.environ.get('CARGO') else ' on PATH'}. {INSTALL_RUST}"
        )
    if not MANIFEST.is_file():
        raise BuildError(
            f"the Rust sources are not at {REPOSITORY} (no Cargo.toml): build the package from a "
            "checkout of the brokk repository, or set BROKK_LIBRARY to a built libbrokk."
        )
    command = [
        cargo_path, "build", "--release", "--lib", "--manifest-path", str(MANIFEST),
        "--message-format=json-render-diagnostics",
    ]
    print("brokk: " + " ".join(command), file=sys.stderr, flush=True)
    try:
        # Diagnostics and progress go to stderr (shown with pip -v); stdout is JSON.
        proc = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=REPOSITORY)
    except OSError as e:
        raise BuildError(f"could not run {cargo_path}: {e}. {INSTALL_RUST}") from None
    if proc.returncode != 0:
        raise BuildError(
            f"`cargo build --release --lib` failed (exit status {proc.returncode}); its errors "
            "are above (pip install -v shows them all). A Rust toolchain that is too old fails "
            f"too: `rustup update`. {INSTALL_RUST}"
        )
    built = None
    for line in proc.stdout.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if (message.get("reason") == "compiler-artifact"
                and message.get("target", {}).get("name") == "brokk"
                and "cdylib" in message.get("target", {}).get("kind", [])):
            for name in message.get("filenames", []):
                if Path(name).name == LIBRARY_FILE:
                    built = Path(name)
    if built is None or not built.is_file():
        raise BuildError(f"cargo succeeded but reported no {LIBRARY_FILE} (the cdylib of brokk)")
    return built


def find_library():
    env = os.environ.get("BROKK_LIBRARY")
    if env:
        path = Path(env).resolve()
        if not path.is_file():
            raise BuildError(f"BROKK_LIBRARY={env} is not a file")
        print(f"brokk: bundling BROKK_LIBRARY={path}; cargo is not run", file=sys.stderr)
        return path
    return cargo_build()


def strip_debug(path):
    if os.environ.get("BROKK_STRIP", "1") == "0" or sys.platform in ("darwin", "win32"):
        return
    strip = shutil.which(os.environ.get("STRIP") or "strip")
    if strip is None:
        print("brokk: warning: `strip` not found: the bundled library keeps its debug info",
              file=sys.stderr)
        return
    subprocess.run([strip, "--strip-debug", str(path)], check=True)


class BuildPyWithLibrary(build_py):
    def run(self):
        super().run()
        package = Path(self.build_lib) / "brokk"
        package.mkdir(parents=True, exist_ok=True)
        for name in LIBRARY_NAMES:
            (package / name).unlink(missing_ok=True)
        library = find_library()
        target = package / LIBRARY_FILE
        # A copy of the file, not of a symlink: the real library under its bundled name.
        shutil.copyfile(library, target, follow_symlinks=True)
        os.chmod(target, 0o755)
        strip_debug(target)
        print(f"brokk: bundled {library} as {target} ({target.stat().st_size} bytes)",
              file=sys.stderr)

    def get_outputs(self, include_bytecode=True):
        outputs = super().get_outputs(include_bytecode)
        return outputs + [str(Path(self.build_lib) / "brokk" / LIBRARY_FILE)]


class FreshBuild(build):
    """Builds under a new temporary folder every time, unless --build-base says otherwise:
    nothing left in bindings/python/build/ by an earlier build can reach the wheel."""

    def finalize_options(self):
        if self.build_base in (None, "build"):
            self.build_base = tempfile.mkdtemp(prefix="brokk-build-")
            atexit.register(shutil.rmtree, self.build_base, True)
        super().finalize_options()


class BinaryDistribution(Distribution):
    """Has a native library: installed into platlib, and the wheel is not pure."""

    def has_ext_modules(self):
        return True


cmdclass = {"build": FreshBuild, "build_py": BuildPyWithLibrary}

if bdist_wheel is not None:

    class Py3NoneWheel(bdist_wheel):
        """py3-none-<platform>: no CPython ABI (ctypes), one platform (the library)."""

        def finalize_options(self):
            super().finalize_options()
            self.root_is_pure = False

        def get_tag(self):
            _, _, platform = super().get_tag()
            return "py3", "none", platform

    cmdclass["bdist_wheel"] = Py3NoneWheel

setup(cmdclass=cmdclass, distclass=BinaryDistribution)
