"""The C kernel cache heals itself: a cached library that fails to load or reports another ABI
is rebuilt once (atomically, safe with concurrent processes); only a failed rebuild falls back,
with a message that names what went wrong. Each case runs in fresh processes, as a user's next
run would, against a cache directory of its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from adaptim._fused import _ckernel

pytestmark = pytest.mark.skipif(
    not shutil.which(_ckernel.compiler()), reason="no C compiler for the fused kernels")

SRC = str(Path(__file__).resolve().parents[1] / "src")

# One fused step in a fresh process; prints what happened as JSON.
STEP = r"""
import json, warnings, torch, adaptim
from adaptim import _fused
from adaptim._fused import _ckernel
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    p = torch.ones(3, requires_grad=True)
    p.grad = torch.ones(3)
    adaptim.SGD([p], lr=0.5, fused=True).step()
print(json.dumps({"calls": _fused._debug.calls, "builds": _ckernel.stats["builds"],
                  "p": p.tolist(), "path": _ckernel.stats["path"],
                  "warnings": [str(w.message) for w in caught]}))
"""


def _env(cache, cc=None):
    env = dict(os.environ, ADAPTIM_CACHE_DIR=str(cache),
               PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    if cc is not None:
        env["ADAPTIM_CC"] = cc
    return env


def _step(cache, cc=None, processes=1) -> list[dict]:
    procs = [subprocess.Popen([sys.executable, "-c", STEP], env=_env(cache, cc),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(processes)]
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def _cached_library(cache, cc=None) -> Path:
    """Where a process with this cache and compiler looks for the float32 library."""
    env = _env(cache, cc)
    code = "from adaptim._fused import _ckernel; print(_ckernel.library_path(1))"
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    return Path(res.stdout.strip())


def _damage(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(1000))


@pytest.mark.slow  # compiles the kernels (seconds; a minute on a loaded machine)
def test_random_bytes_in_the_cache_are_rebuilt_by_concurrent_processes(tmp_path):
    lib = _cached_library(tmp_path)
    _damage(lib)
    results = _step(tmp_path, processes=2)
    for r in results:
        assert r["warnings"] == [] and r["calls"] == 1 and r["p"] == [0.5] * 3
        assert r["builds"] == 1  # each process rebuilt once, into its own file, then renamed
    assert lib.read_bytes()[:4] == b"\x7fELF"
    assert [p.name for p in tmp_path.iterdir()] == [lib.name]  # no temporary files left
    later = _step(tmp_path)[0]
    assert later["builds"] == 0 and later["calls"] == 1 and later["path"] == str(lib)


@pytest.mark.slow  # compiles the kernels
def test_a_library_with_another_abi_is_rebuilt(tmp_path):
    lib = _cached_library(tmp_path)
    lib.parent.mkdir(parents=True, exist_ok=True)
    source = tmp_path / "old.c"
    source.write_text("int adaptim_abi_version(void) { return 1; }\n"
                      "int adaptim_mode(void) { return 1; }\n")
    subprocess.run([_ckernel.compiler(), "-shared", "-fPIC", "-o", str(lib), str(source)],
                   check=True, timeout=120)
    source.unlink()
    r = _step(tmp_path)[0]
    assert r["warnings"] == [] and r["calls"] == 1 and r["builds"] == 1
    assert _step(tmp_path)[0]["builds"] == 0


def test_a_failed_rebuild_falls_back_naming_both_causes(tmp_path):
    """A compiler that answers --version but cannot compile: the damaged file cannot be
    replaced, so fused=True warns once, naming the load error and the compile error."""
    cc = tmp_path / "broken-cc"
    real = shutil.which(_ckernel.compiler())
    cc.write_text(f'#!/bin/sh\nif [ "$1" = --version ]; then exec {real} --version; fi\n'
                  'echo "broken-cc: cannot compile" >&2\nexit 1\n')
    cc.chmod(0o755)
    cache = tmp_path / "cache"
    lib = _cached_library(cache, str(cc))
    _damage(lib)
    r = _step(cache, str(cc))[0]
    assert r["calls"] == 0 and r["p"] == [0.5] * 3  # the reference path ran
    assert len(r["warnings"]) == 1
    message = r["warnings"][0]
    assert "could not be loaded" in message and "ELF" in message
    assert "rebuilding it failed" in message and "broken-cc: cannot compile" in message
    assert "ADAPTIM_CC" in message  # here the compiler is the problem


def test_an_unloadable_library_that_rebuilds_bad_names_the_load_error(tmp_path, monkeypatch):
    """If even the rebuilt library fails to load, the message names that, not the compiler."""
    cc = tmp_path / "junk-cc"
    real = shutil.which(_ckernel.compiler())
    # "compiles" by writing junk where the library should be
    cc.write_text(f'#!/bin/sh\nif [ "$1" = --version ]; then exec {real} --version; fi\n'
                  'while [ $# -gt 0 ]; do if [ "$1" = -o ]; then shift; out=$1; fi; shift; done\n'
                  'head -c 1000 /dev/urandom > "$out"\n')
    cc.chmod(0o755)
    cache = tmp_path / "cache"
    _damage(_cached_library(cache, str(cc)))
    r = _step(cache, str(cc))[0]
    assert r["calls"] == 0 and len(r["warnings"]) == 1
    message = r["warnings"][0]
    assert "could not be loaded" in message and "rebuilding it failed" in message
    assert "ADAPTIM_CC" not in message
