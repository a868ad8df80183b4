"""brokk/_ffi.py against include/brokk.h: every declared function is bound, with the same
number of arguments and compatible types; every struct has the same fields in the same order;
every callback typedef, constant and status matches (STYLE.md §11: wasmtime-py generates its
bindings from the headers; we write ours by hand and check them here)."""

from __future__ import annotations

import ctypes
import re
from ctypes import POINTER, c_char, c_char_p, c_void_p

import pytest
from conftest import HEADER

import brokk
from brokk import _errors, _ffi

INTEGER_TYPES = {
    "uint64_t": ctypes.c_uint64,
    "uint32_t": ctypes.c_uint32,
    "int32_t": ctypes.c_int32,
    "size_t": ctypes.c_size_t,
    "bool": ctypes.c_bool,
}


def _header_text() -> str:
    if not HEADER.is_file():
        pytest.skip(f"header not found at {HEADER} (set BROKK_HEADER)")
    text = HEADER.read_text()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


@pytest.fixture(scope="module")
def header() -> dict:
    text = _header_text()
    flat = re.sub(r"\s+", " ", re.sub(r"(?m)^\s*#.*$", " ", text))
    h: dict = {}
    h["int_typedefs"] = set(re.findall(r"typedef uint32_t (brokk_\w+);", flat))
    h["opaque"] = set(re.findall(r"typedef struct (brokk_\w+) \1;", flat))
    h["structs"] = {
        name: [f.strip() for f in body.split(";") if f.strip()]
        for name, body in re.findall(r"typedef struct (brokk_\w+) \{(.*?)\} \1;", flat)
    }
    h["callbacks"] = {
        name: (ret.strip(), args)
        for ret, name, args in re.findall(r"typedef ([\w\s\*]+?)\s*\(\*(brokk_\w+)\)\s*\(([^)]*)\);", flat)
    }
    extern = text.split('extern "C" {', 1)[1]
    extern = re.sub(r"\s+", " ", re.sub(r"(?m)^\s*#.*$", " ", extern)).rsplit("}", 1)[0]
    h["functions"] = {}
    for decl in extern.split(";"):
        m = re.fullmatch(r"\s*([\w\s\*]+?)\s*\b(brokk_\w+)\s*\(([^)]*)\)\s*", decl)
        if m:
            h["functions"][m.group(2)] = (m.group(1).strip(), m.group(3))
    h["defines"] = dict(re.findall(r"#define (\w+) (\S+)", text))
    h["enum_values"] = dict(re.findall(r"\b(BROKK_STATUS\w*) = (\d+)", flat))
    return h


def split_decl(decl: str) -> tuple[str, str]:
    """'const struct brokk_str *topics' -> ('const struct brokk_str *', 'topics')."""
    decl = decl.strip()
    m = re.match(r"(.*?)(\w+)$", decl)
    assert m, decl
    return m.group(1).strip(), m.group(2)


def expected(ctype: str, header: dict, in_callback: bool = False) -> set:
    """The ctypes types compatible with C type `ctype` (a set: const char * has two)."""
    const = "const" in ctype.split()
    depth = ctype.count("*")
    base = " ".join(w for w in ctype.replace("*", " ").split() if w not in ("const", "struct"))
    if base == "void":
        return {None} if depth == 0 else {c_void_p}
    if base == "char":
        if depth == 1:
            return {c_char_p, POINTER(c_char)} if const else {POINTER(c_char)}
        return {POINTER(POINTER(c_char))}
    if base in INTEGER_TYPES:
        t = INTEGER_TYPES[base]
    elif base in header["int_typedefs"] or base in ("brokk_status", "brokk_status_class"):
        t = ctypes.c_uint32
    else:
        t = getattr(_ffi, base, None)
        assert t is not None, f"_ffi has no {base}"
    for _ in range(depth):
        t = POINTER(t)
    return {t}


def test_every_header_function_is_bound_with_matching_types(header):
    functions = header["functions"]
    assert len(functions) >= 38, sorted(functions)
    assert set(functions) == set(_ffi.FUNCTIONS), (
        f"in the header only: {set(functions) - set(_ffi.FUNCTIONS)}; "
        f"in _ffi only: {set(_ffi.FUNCTIONS) - set(functions)}"
    )
    for name, (ret, args) in functions.items():
        restype, argtypes = _ffi.FUNCTIONS[name]
        fn = getattr(_ffi.lib, name)
        assert fn.restype is restype and list(fn.argtypes) == list(argtypes), (
            f"{name} is not bound as declared"
        )
        params = [] if args.strip() in ("", "void") else [split_decl(a)[0] for a in args.split(",")]
        assert len(params) == len(argtypes), f"{name}: {len(params)} parameters, {len(argtypes)} argtypes"
        for i, (param, bound) in enumerate(zip(params, argtypes, strict=True)):
            assert bound in expected(param, header), f"{name} argument {i}: C {param!r}, bound {bound}"
        assert restype in expected(ret, header), f"{name} returns C {ret!r}, bound {restype}"


@pytest.mark.parametrize("table", ["GIL_HELD_FUNCTIONS", "ADDRESS_FUNCTIONS"])
def test_second_bindings_match_the_header_bindings(table):
    """The hot-path functions bound a second time (by address, or keeping the GIL) take the same
    arguments as in FUNCTIONS, with plain addresses (c_void_p) where those have pointers."""
    library = {"GIL_HELD_FUNCTIONS": _ffi.lib_gil, "ADDRESS_FUNCTIONS": _ffi.lib_address}[table]
    assert isinstance(library, ctypes.PyDLL) == (table == "GIL_HELD_FUNCTIONS")
    for name, (restype, argtypes) in getattr(_ffi, table).items():
        header_restype, header_argtypes = _ffi.FUNCTIONS[name]
        fn = getattr(library, name)
        assert fn.restype is restype and list(fn.argtypes) == list(argtypes), name
        assert len(argtypes) == len(header_argtypes), name
        for i, (fast, declared) in enumerate(zip(argtypes, header_argtypes, strict=True)):
            if fast is not declared:
                # A pointer as a plain address; or, where pointers are 64-bit, a 64-bit integer
                # (size_t, uint64_t) passed as one (see _ffi.ADDRESS_FUNCTIONS).
                wide = ctypes.sizeof(c_void_p) == 8 and declared in (ctypes.c_size_t, ctypes.c_uint64)
                assert fast is c_void_p and (
                    issubclass(declared, ctypes._Pointer) or declared in (c_char_p, c_void_p) or wide
                ), f"{name} argument {i}: {fast} for {declared}"
        if restype is not header_restype:
            assert restype is c_void_p and issubclass(header_restype, ctypes._Pointer), name


def test_structs_have_the_same_fields_in_the_same_order(header):
    structs = header["structs"]
    assert set(structs) >= {
        "brokk_broker_options",
        "brokk_close_report",
        "brokk_fetch_options",
        "brokk_str",
        "brokk_listener",
        "brokk_publish_options",
        "brokk_batch_message",
        "brokk_stats",
        "brokk_subscription_options",
    }
    for name, fields in structs.items():
        cls = getattr(_ffi, name)
        bound = cls._fields_
        declared = [split_decl(f) for f in fields]
        assert [n for _, n in declared] == [n for n, _ in bound], f"{name}: field names or order differ"
        for (ctype, fname), (_, btype) in zip(declared, bound, strict=True):
            assert btype in expected(ctype, header), f"{name}.{fname}: C {ctype!r}, bound {btype}"


def test_opaque_types_and_callback_typedefs(header):
    for name in header["opaque"]:
        assert issubclass(getattr(_ffi, name), ctypes.Structure)
        assert not hasattr(getattr(_ffi, name), "_fields_"), f"{name} must stay opaque"
    assert set(header["callbacks"]) == {
        "brokk_message_event_cb",
        "brokk_failed_event_cb",
        "brokk_subscription_event_cb",
        "brokk_topic_event_cb",
        "brokk_free_cb",
        "brokk_handler_cb",
        "brokk_cancel_check_cb",
        "brokk_ready_cb",
        "brokk_log_cb",
    }
    for name, (ret, args) in header["callbacks"].items():
        cb = getattr(_ffi, name)
        params = [split_decl(a)[0] for a in args.split(",")]
        assert len(params) == len(cb._argtypes_), name
        for param, bound in zip(params, cb._argtypes_, strict=True):
            allowed = expected(param, header)
            if param.startswith("const char"):
                allowed = {POINTER(c_char)}  # never c_char_p: not NUL-terminated
            assert bound in allowed, f"{name}: C {param!r}, bound {bound}"
        assert cb._restype_ in expected(ret, header) | ({type(None)} if ret == "void" else set()), name


def test_constants_match(header):
    checked = 0
    for name, value in header["defines"].items():
        if name in ("BROKK_H",):
            continue
        number = 2**64 - 1 if value == "UINT64_MAX" else int(value)
        assert getattr(_ffi, name) == number, name
        checked += 1
    assert checked >= 25
    # ... and _ffi keeps no constant the header no longer has.
    known = set(header["defines"]) | set(header["enum_values"])
    stale = {n for n in vars(_ffi) if n.startswith("BROKK_") and isinstance(getattr(_ffi, n), int)} - known
    assert not stale, f"_ffi has constants the header does not: {stale}"
    for name, value in header["enum_values"].items():
        assert getattr(_ffi, name) == int(value), name


def test_status_enum_and_classes_match_the_library(header):
    statuses = {
        n[len("BROKK_STATUS_") :]: int(v) for n, v in header["enum_values"].items() if "_CLASS_" not in n
    }
    assert {s.name: s.value for s in brokk.Status} == statuses
    classes = {
        brokk.StatusClass.CALLER: brokk.CallerError,
        brokk.StatusClass.TRANSIENT: brokk.TransientError,
        brokk.StatusClass.TERMINAL: brokk.TerminalError,
        brokk.StatusClass.BUG: brokk.BrokkPanic,
    }
    for status in brokk.Status:
        assert status.description and status.description != "unknown status", status
        cls = brokk.classify(status)
        if status == brokk.Status.OK:
            assert cls == brokk.StatusClass.OK
            continue
        error = _errors.error_for(status, "detail")
        assert isinstance(error, classes[cls]), f"{status.name} is {cls.name} but maps to {type(error)}"
        assert error.status == status and error.message == "detail"
    # Unknown numbers are bugs (class BUG), whatever their value.
    unknown = _errors.error_for(555, "?")
    assert isinstance(unknown, brokk.BrokkPanic) and unknown.status == 555


def test_versions_agree():
    assert brokk.abi_version() == _ffi.BROKK_ABI_VERSION
    assert brokk.version_number() == _ffi.BROKK_VERSION_NUMBER
    assert (
        brokk.version() == f"{_ffi.BROKK_VERSION_MAJOR}.{_ffi.BROKK_VERSION_MINOR}.{_ffi.BROKK_VERSION_PATCH}"
    )
    assert brokk.__version__ == brokk.version()


def test_the_library_is_a_cdll_so_calls_release_the_gil():
    assert isinstance(_ffi.lib, ctypes.CDLL) and not isinstance(_ffi.lib, ctypes.PyDLL)


def test_the_installed_package_carries_its_library():
    """Under `make test-python` the package is pip-installed and must have found the copy of
    libbrokk packaged inside it (not the source tree's, nor BROKK_LIBRARY)."""
    import os
    from pathlib import Path

    if not os.environ.get("BROKK_EXPECT_PACKAGED_LIBRARY"):
        pytest.skip("only checked under make test-python (BROKK_EXPECT_PACKAGED_LIBRARY=1)")
    assert "BROKK_LIBRARY" not in os.environ
    package_dir = Path(brokk.__file__).resolve().parent
    assert brokk.LIBRARY_PATH == package_dir / _ffi.LIBRARY_FILE
    assert "site-packages" in str(package_dir)
