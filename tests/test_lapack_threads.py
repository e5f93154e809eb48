"""SciPy's OpenBLAS (JAX's CPU LAPACK) is held at one thread during a DMFT sweep, and only then."""

from __future__ import annotations

import threading

import pytest

from eqgen.runtime import dmft
from eqgen.runtime.lapack_threads import _loaded_openblas, one_lapack_thread

found = _loaded_openblas()
needs_openblas = pytest.mark.skipif(found is None, reason="SciPy's OpenBLAS is not loaded here")


@needs_openblas
def test_one_thread_inside_and_restored_after() -> None:
    setter, getter = found
    setter(2)
    try:
        with one_lapack_thread():
            assert getter() == 1
            with one_lapack_thread():  # nested: still one, and the outer block restores
                assert getter() == 1
            assert getter() == 1
        assert getter() == 2
    finally:
        setter(2)


@needs_openblas
def test_restored_only_when_the_last_of_several_threads_leaves() -> None:
    setter, getter = found
    setter(2)
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with one_lapack_thread():
            inside.set()
            leave.wait(10)

    worker = threading.Thread(target=hold)
    worker.start()
    try:
        assert inside.wait(10)
        with one_lapack_thread():
            assert getter() == 1
        assert getter() == 1  # the worker is still inside
        leave.set()
        worker.join(10)
        assert getter() == 2
    finally:
        leave.set()
        setter(2)


@needs_openblas
def test_restored_after_an_error() -> None:
    setter, getter = found
    setter(2)
    with pytest.raises(RuntimeError), one_lapack_thread():
        raise RuntimeError("inside")
    assert getter() == 2


@needs_openblas
def test_the_sweep_runs_with_one_lapack_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """`dmft.sweep` calls the compiled sweep inside the block (seen from the call itself)."""
    from tests.helpers_dmft import logistic_two_cluster_problem

    setter, getter = found
    setter(2)
    seen: list[int] = []
    compiled = dmft._sweep_jit

    def spy(*args: object) -> object:
        seen.append(getter())
        return compiled(*args)

    monkeypatch.setattr(dmft, "_sweep_jit", spy)
    dmft.sweep(logistic_two_cluster_problem(steps=3), samples=200, seed=0)
    assert seen == [1]
    assert getter() == 2
