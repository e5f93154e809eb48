"""One thread for the LAPACK calls inside a compiled DMFT sweep on the CPU.

JAX's CPU backend computes SVDs (and other dense factorisations) with LAPACK from SciPy's
bundled OpenBLAS. OpenBLAS parallelises even the small K × K problems of a DMFT sweep, and after
each call its worker threads keep polling for the next one for a while before they sleep. A
sweep makes one SVD per step, so one OpenBLAS worker polls for the whole sweep — on a machine
with few cores, a core taken from XLA's own threads, which do the memory-bound work of the
sweep. With OpenBLAS held at one thread during the sweep, the K = 60, N = 4·10⁴ benchmark ran
15–20 % faster on the 2-core development machine (docs/performance.md, The DMFT forward sweep).

Only the OpenBLAS that SciPy ships (the one whose functions carry the `scipy_openblas_` prefix)
is touched, only while the sweep runs, and its previous thread count is restored afterwards.
Where that library cannot be found (another BLAS, or a system without /proc/self/maps), nothing
changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

_SET = "scipy_openblas_set_num_threads"
_GET = "scipy_openblas_get_num_threads"

_lock = threading.Lock()
_found: tuple[Callable[[int], None], Callable[[], int]] | None = None
_holders = 0  # blocks inside `one_lapack_thread` now (sweeps on several threads)
_before = 1  # the thread count to restore when the last of them ends


def _loaded_openblas() -> tuple[Callable[[int], None], Callable[[], int]] | None:
    """SciPy's OpenBLAS thread-count setter and getter (loading SciPy's LAPACK first, as JAX
    does on its first factorisation), or None."""
    global _found
    if _found is not None:
        return _found
    try:
        import scipy.linalg.cython_lapack  # noqa: F401  (the library JAX's CPU LAPACK uses)
    except ImportError:
        return None
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    paths = sorted({line.split()[-1] for line in maps.splitlines()
                    if line.split()[-1].startswith("/") and "openblas" in line.lower()})
    mode = getattr(os, "RTLD_NOLOAD", 0) | getattr(os, "RTLD_LAZY", 0)
    for path in paths:
        try:
            lib = ctypes.CDLL(path, mode=mode)  # RTLD_NOLOAD: only a library already loaded
        except OSError:
            continue
        setter, getter = getattr(lib, _SET, None), getattr(lib, _GET, None)
        if setter is not None and getter is not None:
            setter.argtypes, setter.restype = [ctypes.c_int], None
            getter.argtypes, getter.restype = [], ctypes.c_int
            _found = (setter, getter)
            return _found
    return None


@contextlib.contextmanager
def one_lapack_thread() -> Iterator[None]:
    """Hold SciPy's OpenBLAS (JAX's CPU LAPACK) at one thread inside the block."""
    found = _loaded_openblas()
    if found is None:
        yield
        return
    setter, getter = found
    global _holders, _before
    with _lock:
        if _holders == 0:
            _before = int(getter())
            setter(1)
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                setter(_before)
