"""Ctrl-C stops a command at once, even inside a compiled computation (eqgen.interrupt).

Before, JAX ran a compiled DMFT sweep to its end before Python saw the signal: the command
below went on for about ten more seconds after Ctrl-C. The process must now end with exit code
130 within a few seconds, say so, and leave an existing output file as it was.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from eqgen.interrupt import EXIT_INTERRUPTED, run_interruptibly
from tests.helpers import ROOT, model_path

# Wraps the compiled sweep so that the test knows when the process is inside it: JAX
# compiles, then dispatches the run and returns at once; the run goes on in XLA's threads while
# Python waits for its result (where a signal used to wait too).
DRIVER = textwrap.dedent("""
    import sys
    import eqgen.runtime.dmft as dmft
    from eqgen.cli import main

    compiled = dmft._sweep_jit

    def announced(*args, **kwargs):
        running = compiled(*args, **kwargs)
        print("SWEEP STARTS", file=sys.stderr, flush=True)
        return running

    dmft._sweep_jit = announced
    sys.exit(main(sys.argv[1:]))
""")


def test_ctrl_c_inside_a_compiled_sweep_stops_at_once(tmp_path: Path) -> None:
    out = tmp_path / "run.csv"
    out.write_text("an earlier run\n")
    # 200 steps of 10⁴ trajectories: about ten seconds of compiled work on two cores
    args = ["solve", str(model_path("gmm_two_cluster_logistic")), "--samples", "10000",
            "--t-max", "20", "-o", str(out)]
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, *args], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:  # wait until the compiled sweep has been entered
        lines.append(line)
        if "SWEEP STARTS" in line:
            break
    else:
        pytest.fail("the sweep never started: " + "".join(lines))
    time.sleep(0.5)
    sent = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    code = proc.wait(timeout=60)
    took = time.perf_counter() - sent
    assert code == EXIT_INTERRUPTED, rest
    assert took < 5.0, f"Ctrl-C took {took:.1f} s to stop the command"
    assert "interrupted" in rest and "Traceback" not in rest, rest
    assert out.read_text() == "an earlier run\n"
    assert not Path(str(out) + ".meta.json").exists()


def test_a_command_on_the_worker_thread_returns_and_raises_as_before() -> None:
    assert run_interruptibly(lambda: 7) == 7

    def fails() -> int:
        raise ValueError("kept")

    with pytest.raises(ValueError, match="kept"):
        run_interruptibly(fails)
