"""Build, cache and load the C kernel libraries (``kernels.c``) with the system C compiler.

There is one library per precision mode (:data:`MODE_DTYPES`: the parameter's and the state's
dtype; 0: float64, 1: float32, 2: float32 parameters with bfloat16 state, 3-7: bfloat16 or
float16 parameters with float32, bfloat16 or float16 state, computed in float32; float16
through the CPU's F16C conversions where ``-march=native`` has them), each compiled on first
use, once per machine, with ``$ADAPTIM_CC`` (else ``$CC``, else ``cc``) and the flags below, and
cached under ``$ADAPTIM_CACHE_DIR`` (else ``$XDG_CACHE_HOME/adaptim``, else
``~/.cache/adaptim``; a private temporary directory, with one warning, where that is not
writable) in a file named by a hash of the sources, flags, compiler version and CPU, so a later
process only loads it (ctypes). Hyperparameters are passed as C doubles at each call: nothing is
recompiled when lr or any other hyperparameter changes.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

from adaptim.algorithms import ALGORITHMS

__all__ = ["KernelUnavailable", "cache_dir", "compiler", "failed", "load", "loaded", "reset",
           "stats"]

SOURCE_DIR = Path(__file__).resolve().parent
SOURCES = ("kernels.c", "kernels_body.h", "hp_fields.h")
# No -ffast-math: float64 must stay exact to 1e-12 and fp32 within an ulp or two of torch;
# -ffp-contract=off forbids FMAs the source does not write; -fno-math-errno lets sqrt vectorise
# (it only drops the errno write, not any rounding).
FLAGS = ("-O3", "-march=native", "-mprefer-vector-width=512", "-fopenmp", "-fno-math-errno",
         "-ffp-contract=off", "-fPIC", "-shared")
RULES = tuple(ALGORITHMS)  # each exported as adaptim_<rule> (ADAPTIM_RULES in hp_fields.h)
# Element conversions each library exports, (n, src, dst): the parameter's and the state's
# rounding store from the arithmetic type and widening load into it, as the rules make them, and
# the parameter's element-wise ones (what vector tails and CPUs without F16C use for float16).
CONVERSIONS = ("adaptim_store_param", "adaptim_load_param", "adaptim_store_state",
               "adaptim_load_state", "adaptim_store_elements", "adaptim_load_elements")
ABI_VERSION = 3

# mode -> (parameter and gradient dtype, state dtype), as kernels.c numbers them
MODE_DTYPES = {
    0: ("float64", "float64"), 1: ("float32", "float32"), 2: ("float32", "bfloat16"),
    3: ("bfloat16", "float32"), 4: ("bfloat16", "bfloat16"), 5: ("float16", "float32"),
    6: ("float16", "bfloat16"), 7: ("float16", "float16"),
}
MODES = tuple(MODE_DTYPES)

# Counters the tests read: how often this process compiled and loaded a library.
stats = {"builds": 0, "loads": 0, "build_seconds": None, "load_seconds": None, "path": None}

_libs: dict[int, ctypes.CDLL] = {}
_error: str | None = None
_error_is_compiler = False


class KernelUnavailable(RuntimeError):
    """The C kernel library could not be built or loaded. ``compiler_problem``: the C compiler
    is missing or failed (so ADAPTIM_CC is the fix), rather than, e.g., an unloadable file."""

    def __init__(self, message: str, compiler_problem: bool = False):
        super().__init__(message)
        self.compiler_problem = compiler_problem


def compiler() -> str:
    return os.environ.get("ADAPTIM_CC") or os.environ.get("CC") or "cc"


def cache_dir() -> Path:
    if os.environ.get("ADAPTIM_CACHE_DIR"):
        return Path(os.environ["ADAPTIM_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "adaptim"


def _cpu_signature() -> str:
    # -march=native: a library built on one CPU may not run on another sharing the cache.
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags"))][:2]
        return "".join(lines)
    except OSError:
        return platform.processor()


def _compiler_version(cc: str) -> str:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as err:
        raise KernelUnavailable(f"C compiler {cc!r} not usable: {err}",
                                compiler_problem=True) from err
    if out.returncode != 0:
        raise KernelUnavailable(f"C compiler {cc!r} failed: {out.stderr.strip()[:300]}",
                                compiler_problem=True)
    return out.stdout


def library_path(mode: int, cc: str | None = None) -> Path:
    """Where the library of ``mode`` for the current sources, flags, compiler and CPU is cached."""
    cc = cc or compiler()
    h = hashlib.sha256()
    for name in SOURCES:
        h.update((SOURCE_DIR / name).read_bytes())
    h.update(repr((FLAGS, cc, _compiler_version(cc), platform.machine(),
                   _cpu_signature())).encode())
    return cache_dir() / f"adaptim_kernels_{h.hexdigest()[:16]}_mode{mode}.so"


def _compile(cc: str, mode: int, out: str) -> None:
    start = time.perf_counter()
    res = subprocess.run([cc, *FLAGS, f"-DADAPTIM_MODE={mode}", "-o", out,
                          str(SOURCE_DIR / "kernels.c")], capture_output=True, text=True,
                         timeout=300)
    if res.returncode != 0:
        raise KernelUnavailable(f"compiling the fused kernels with {cc!r} failed:\n"
                                f"{res.stderr.strip()[:2000]}", compiler_problem=True)
    stats["builds"] += 1
    stats["build_seconds"] = time.perf_counter() - start


def _build(cc: str, mode: int, target: Path, open_first: bool = False) -> ctypes.CDLL | None:
    """Compile into a fresh file beside ``target``, then rename it over ``target``: atomic, so
    concurrent processes never see a half-written library (each builder renames a whole one).
    With ``open_first`` the new file is loaded under its fresh name before the rename (a name
    this process has loaded before would return the old library) and returned."""
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        _compile(cc, mode, tmp)
        lib = _open(Path(tmp), mode) if open_first else None
        os.replace(tmp, target)
        return lib
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _open(path: Path, mode: int) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    try:
        abi, lib_mode = lib.adaptim_abi_version(), lib.adaptim_mode()
        fns = [getattr(lib, f"adaptim_{rule}") for rule in RULES]
    except AttributeError as err:  # a shared library, but not this one
        raise KernelUnavailable(f"{path} is not an adaptim kernel library: {err}") from err
    if abi != ABI_VERSION or lib_mode != mode:
        raise KernelUnavailable(f"{path} reports ABI version {abi} and mode {lib_mode}, "
                                f"expected {ABI_VERSION} and {mode}")
    for fn in fns:
        fn.restype = ctypes.c_int
        # (mode, n, ptrs, sizes, steps, step_dtype, hp, nthreads)
        fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                       ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    for name in CONVERSIONS:  # (n, src, dst): the rules' own loads and rounding stores
        fn = getattr(lib, name)
        fn.restype = None
        fn.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    return lib


def loaded(mode: int) -> ctypes.CDLL | None:
    """The library of ``mode`` if this process has loaded it (and not ``reset()`` since)."""
    return _libs.get(mode)


def load(mode: int = 1) -> ctypes.CDLL:
    """The loaded kernel library of ``mode``, building it on first use; raises KernelUnavailable
    (and remembers why, so a failing compiler is tried once per process).

    A cached library that does not load (a damaged file) or reports another ABI version or mode
    is rebuilt once, atomically; only if the rebuilt one fails too does this raise, naming both
    causes."""
    lib = _libs.get(mode)
    if lib is not None:
        return lib
    if mode not in MODES:
        raise ValueError(f"no kernel mode {mode!r} (valid: {MODES})")
    if _error is not None:
        raise KernelUnavailable(_error, _error_is_compiler)
    try:
        start = time.perf_counter()
        cc = compiler()
        path = library_path(mode, cc)
        if not path.exists():
            path = _writable(path)
            if not path.exists():
                _build(cc, mode, path)
        try:
            lib = _open(path, mode)
        except (OSError, KernelUnavailable) as err:
            lib, path = _rebuild(cc, mode, path, err)
        _libs[mode] = lib
        stats["loads"] += 1
        stats["load_seconds"] = time.perf_counter() - start
        stats["path"] = str(path)
        return lib
    except (KernelUnavailable, OSError, subprocess.SubprocessError) as err:
        _remember(err)
        raise KernelUnavailable(_error, _error_is_compiler) from err


def _remember(err: Exception) -> None:
    global _error, _error_is_compiler
    _error = str(err)
    _error_is_compiler = bool(getattr(err, "compiler_problem", False))


def _writable(path: Path) -> Path:
    """``path``, or the same name in this process's private directory where its directory
    cannot be created or written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        writable = os.access(path.parent, os.W_OK)
    except OSError:
        writable = False
    return path if writable else _private_dir() / path.name


def _rebuild(cc: str, mode: int, path: Path, cause: Exception) -> tuple[ctypes.CDLL, Path]:
    """Replace a cached library that failed to load (``cause``) by a fresh build, once."""
    target = _writable(path)
    try:
        return _build(cc, mode, target, open_first=True), target
    except (KernelUnavailable, OSError, subprocess.SubprocessError) as err:
        raise KernelUnavailable(
            f"the cached kernel library {path} could not be loaded ({cause}), and rebuilding "
            f"it failed: {err}", getattr(err, "compiler_problem", False)) from err


_private: Path | None = None


def _private_dir() -> Path:
    """Where this process builds when the cache directory is not writable (a read-only home):
    a private temporary directory (mode 0700, removed with the system's temp files), so the
    kernels still work, compiled once per process instead of once per machine; warned once."""
    global _private
    if _private is None:
        _private = Path(tempfile.mkdtemp(prefix="adaptim-kernels-"))
        warnings.warn(
            f"adaptim: the kernel cache {cache_dir()} is not writable, so the fused kernels are "
            f"compiled into {_private} for this process only (about 2 s per process). Set "
            "ADAPTIM_CACHE_DIR to a writable directory to compile once per machine.",
            RuntimeWarning, stacklevel=4)
    return _private


def failed() -> bool:
    """Whether building or loading failed earlier in this process (then it is not retried)."""
    return _error is not None


def reset() -> None:
    """Forget the loaded library and any failure (tests; a changed ADAPTIM_CC)."""
    global _error, _error_is_compiler, _private
    _libs.clear()
    _error, _error_is_compiler = None, False
    _private = None
    stats.update(builds=0, loads=0, build_seconds=None, load_seconds=None, path=None)
