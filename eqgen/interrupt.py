"""Ctrl-C that stops a command at once, even inside a compiled solve.

Python sees a signal only between two lines of Python, and JAX runs a compiled program to its
end first: a long solve or DMFT sweep ignored Ctrl-C for as long as it had left to run (tens of
seconds). A command therefore runs on a worker thread, and the main thread waits for it where a
signal is seen at once. On Ctrl-C the worker is sent `KeyboardInterrupt`, which stops it at its
next line of Python, so the command's own handling runs as before (it says "interrupted");
a worker still inside compiled code after `GRACE_S` is abandoned. Either way the process then
exits with 130. Outputs are written only when a command has finished
computing (and the CLI's writes are quick), so an interrupted command leaves the files of an
earlier run as they were.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from collections.abc import Callable

GRACE_S = 1.0  # how long a worker sent KeyboardInterrupt may take to stop by itself
EXIT_INTERRUPTED = 130  # the shell's code for a process ended by SIGINT
STACK_BYTES = 64 * 2**20  # the worker's stack: deep specs recurse in the parser and sympy


def run_interruptibly(command: Callable[[], int]) -> int:
    """`command()` on a worker thread, answering Ctrl-C at once (see the module doc). Its
    exit code is returned and its exceptions re-raised here. Outside the main thread, where
    no signal arrives, `command` simply runs."""
    if threading.current_thread() is not threading.main_thread():
        return command()
    outcome: dict[str, object] = {}
    # An Event, not Thread.join: on Python 3.11 a join interrupted by KeyboardInterrupt can
    # leave the thread marked as stopped while it still runs (CPython issue 90882).
    done = threading.Event()

    def work() -> None:
        try:
            outcome["code"] = command()
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            outcome["error"] = e
        finally:
            done.set()

    worker = _start(work)
    try:
        while not done.wait(0.1):
            pass
    except KeyboardInterrupt:
        _stop(worker, done)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return int(outcome.get("code", EXIT_INTERRUPTED))  # type: ignore[call-overload]


def _start(work: Callable[[], None]) -> threading.Thread:
    previous = threading.stack_size()
    try:
        threading.stack_size(STACK_BYTES)
        worker = threading.Thread(target=work, name="eqgen-command", daemon=True)
        worker.start()
    finally:
        threading.stack_size(previous)
    return worker


def _stop(worker: threading.Thread, done: threading.Event) -> None:
    """Interrupt the worker, give it `GRACE_S` to stop by itself, then end the process.

    The end is `os._exit`, never the interpreter's normal shutdown: JAX dispatches work
    asynchronously, and tearing the runtime down while XLA's threads still compute aborts the
    process (SIGABRT) instead of exiting with 130."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(worker.ident or 0),
                                               ctypes.py_object(KeyboardInterrupt))
    with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: no more waiting
        done.wait(GRACE_S)
    if not done.is_set():
        print("interrupted (inside a compiled computation; nothing was written)",
              file=sys.stderr)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(EXIT_INTERRUPTED)
