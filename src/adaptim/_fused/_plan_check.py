"""The C++ check of cached plans (``plan_check.cpp``): build, cache and load.

A cached plan (:class:`adaptim._fused._Plan`) is re-validated at every step. In Python that
costs a few hundred nanoseconds per tensor (each ``p.grad`` or ``data_ptr`` is a call into
torch); ``plan_check.cpp`` does the same and more (dtype, size and layout of every tensor, each
step) in one call, about 0.1 µs per tensor (memory latency), reading the tensors through torch's
C++ headers. It is compiled once per machine with ``$ADAPTIM_CXX`` (else ``$CXX``, else ``c++``)
against the installed torch and Python headers and cached beside the kernels (see
:mod:`._ckernel`), in a file named by a hash of the source, flags, compiler, torch and Python
versions. The first build takes 10-30 s, so it runs in a background thread, started by the first
plan of ``BUILD_FROM`` tensors or more (one build per machine at a time: other processes wait
for it; a compile still running when the process exits is ended). Until it is loaded, or where
it cannot be built (no C++ compiler, no Python headers), plans are checked in Python, with the
same guarantees. Nothing is warned: the Python check is exact too.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import hashlib
import os
import platform
import subprocess
import sys
import sysconfig
import tempfile
import threading
from pathlib import Path

import torch

from adaptim._fused import _ckernel

__all__ = ["get", "load", "failed", "reset", "stats"]

SOURCE = Path(__file__).resolve().parent / "plan_check.cpp"
ABI_VERSION = 3
_TORCH_DIR = Path(torch.__file__).resolve().parent

# Counters the tests read: how often this process compiled the library.
stats = {"builds": 0}
_lib = None
_check = None
_error: str | None = None
_thread: threading.Thread | None = None
_lock = threading.Lock()
# Tests set this to check plans in Python even where the C++ check is loaded.
disabled = os.environ.get("ADAPTIM_PLAN_CHECK") == "python"


def compiler() -> str:
    return os.environ.get("ADAPTIM_CXX") or os.environ.get("CXX") or "c++"


def _flags() -> list[str]:
    include = _TORCH_DIR / "include"
    return ["-O2", "-std=c++17", "-fPIC", "-shared", "-w",
            f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
            f"-I{include}", f"-I{include / 'torch' / 'csrc' / 'api' / 'include'}",
            f"-I{sysconfig.get_paths()['include']}", f"-L{_TORCH_DIR / 'lib'}", "-lc10",
            f"-Wl,-rpath,{_TORCH_DIR / 'lib'}",
            # Python's own symbols resolve when the interpreter loads the library
            *(["-undefined", "dynamic_lookup"] if sys.platform == "darwin" else [])]


def library_path(cxx: str | None = None) -> Path:
    cxx = cxx or compiler()
    h = hashlib.sha256(SOURCE.read_bytes())
    h.update(repr((_flags(), cxx, _ckernel._compiler_version(cxx), torch.__version__,
                   str(_TORCH_DIR), sys.version, platform.machine())).encode())
    return _ckernel.cache_dir() / f"adaptim_plan_check_{h.hexdigest()[:16]}.so"


_compiling: tuple[subprocess.Popen, str] | None = None  # the compiler running, its output


def _stop_compiling() -> None:
    """At exit: end a compile still running in the background, so no compiler outlives the
    process (the next process compiles again), and remove its output."""
    if _compiling is not None:
        proc, tmp = _compiling
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if os.path.exists(tmp):
            os.unlink(tmp)


atexit.register(_stop_compiling)


def _build(cxx: str, target: Path) -> None:
    """Compile into a fresh file beside ``target`` and rename it over ``target`` (atomic)."""
    global _compiling
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        proc = subprocess.Popen([cxx, str(SOURCE), "-o", tmp, *_flags()],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _compiling = proc, tmp
        try:
            _, err = proc.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        if proc.returncode != 0:
            raise _ckernel.KernelUnavailable(
                f"compiling the plan check with {cxx!r} failed:\n{err.strip()[:2000]}",
                compiler_problem=True)
        os.replace(tmp, target)
        stats["builds"] += 1
    finally:
        _compiling = None
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def _machine_lock(target: Path):
    """One builder per machine: processes that need the library while another builds it wait
    for that build (in their background thread) instead of compiling too."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): every process may build; the rename is atomic
        yield
        return
    with open(target.with_suffix(".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _open(path: Path):
    lib = ctypes.PyDLL(str(path))  # called with the GIL held: it reads Python objects
    if lib.adaptim_plan_check_abi() != ABI_VERSION:
        raise _ckernel.KernelUnavailable(f"{path} is not plan check ABI {ABI_VERSION}")
    fn = lib.adaptim_plan_check
    obj, ptr = ctypes.py_object, ctypes.c_void_p
    fn.argtypes = [obj, obj, obj, obj, ptr, obj, obj, obj, obj, obj, obj, ptr, ctypes.c_int64,
                   ctypes.c_int64, ctypes.c_int, ctypes.c_int]
    fn.restype = ctypes.c_int
    for name in ("adaptim_plan_dtype", "adaptim_plan_device"):
        getattr(lib, name).argtypes = [obj, obj, obj]
        getattr(lib, name).restype = ctypes.c_int
    return lib


def load() -> ctypes.PyDLL | None:
    """Build (in this thread, if needed) and load the library; None if that fails (the reason
    is kept, see :func:`failed`, and not retried in this process)."""
    global _lib, _error
    with _lock:
        if _lib is not None or _error is not None:
            return _lib
        try:
            cxx = compiler()
            path = library_path(cxx)
            if not path.exists():
                path = _ckernel._writable(path)
                with _machine_lock(path):
                    if not path.exists():  # (another process may have built it meanwhile)
                        _build(cxx, path)
            try:
                lib = _open(path)
            except (OSError, AttributeError, _ckernel.KernelUnavailable):
                _build(cxx, path)  # a damaged or foreign file: rebuilt once
                lib = _open(path)
            _lib = lib
        except (OSError, AttributeError, subprocess.SubprocessError,
                _ckernel.KernelUnavailable) as err:
            _error = str(err)
        return _lib


# A plan of this many tensors or more starts the build where the library is not cached yet:
# below, the Python check costs a few microseconds per step, not worth a compile.
BUILD_FROM = 64
_cached: bool | None = None  # whether the library was in the cache at the first look


def get(tensors: int = BUILD_FROM):
    """The loaded library, or None where it is not loaded (yet). The first call loads it where
    it is cached (milliseconds); otherwise the first call for a plan of ``BUILD_FROM`` tensors
    or more starts the build in a background thread."""
    global _thread, _cached
    if _lib is not None:
        return None if disabled else _lib
    if _error is not None or disabled or _thread is not None:
        return None
    if _cached is None:
        try:
            _cached = library_path().exists()
        except (OSError, _ckernel.KernelUnavailable) as err:
            globals()["_error"] = str(err)
            return None
        if _cached:
            return load()
    if tensors >= BUILD_FROM:
        _thread = threading.Thread(target=load, name="adaptim-plan-check-build", daemon=True)
        _thread.start()
    return None


def failed() -> str | None:
    """Why the library could not be built or loaded in this process, or None."""
    return _error


def reset() -> None:
    """Forget the loaded library and any failure (tests)."""
    global _lib, _error, _thread, _cached
    with _lock:
        _lib, _error, _thread, _cached = None, None, None, None
