"""Ctrl-C stops a command at once, even inside a compiled computation (eqgen.interrupt), and a
solve stopped between its pieces writes what it has computed (eqgen.runtime.ode).

Before, JAX ran a compiled DMFT sweep to its end before Python saw the signal: the command
below went on for about ten more seconds after Ctrl-C. The process must now end with exit code
130 within a few seconds, say so, and leave an existing output file as it was.
"""

from __future__ import annotations

import json
import math
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


def _ctrl_c_after(proc: subprocess.Popen, marker: str, times: int, wait: float = 0.0
                  ) -> tuple[int, str, float]:
    """Send SIGINT once `marker` has appeared `times` times on the process's stderr (and
    `wait` seconds more); returns its exit code, the rest of its stderr and the seconds it
    took to exit after the signal."""
    assert proc.stderr is not None
    lines: list[str] = []
    for line in proc.stderr:
        lines.append(line)
        if sum(marker in x for x in lines) == times:
            break
    else:
        pytest.fail(f"never saw {marker!r}: " + "".join(lines))
    time.sleep(wait)
    sent = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    code = proc.wait(timeout=60)
    return code, rest, time.perf_counter() - sent


def test_ctrl_c_inside_a_compiled_sweep_stops_at_once(tmp_path: Path) -> None:
    out = tmp_path / "run.csv"
    out.write_text("an earlier run\n")
    # 200 steps of 10⁴ trajectories: about ten seconds of compiled work on two cores
    args = ["solve", str(model_path("gmm_two_cluster_logistic")), "--samples", "10000",
            "--t-max", "20", "-o", str(out)]
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, *args], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True)
    code, rest, took = _ctrl_c_after(proc, "SWEEP STARTS", 1, wait=0.5)
    assert code == EXIT_INTERRUPTED, rest
    assert took < 5.0, f"Ctrl-C took {took:.1f} s to stop the command"
    assert "interrupted" in rest and "Traceback" not in rest, rest
    assert out.read_text() == "an earlier run\n"
    assert not Path(str(out) + ".meta.json").exists()


# Announces the first piece of a Tsit5 solve (eqgen.runtime.ode.Pieces), so that the test
# knows the integration is under way.
PIECES_DRIVER = textwrap.dedent("""
    import sys
    import eqgen.runtime.ode as ode
    from eqgen.cli import main

    compiled = ode._compiled

    def announced(*args, **kwargs):
        pieces = compiled(*args, **kwargs)
        advance = pieces.advance

        def announce(*a):
            carry = advance(*a)
            print("PIECE DONE", file=sys.stderr, flush=True)
            return carry

        return ode.Pieces(announce, pieces.finish)

    ode._compiled = announced
    sys.exit(main(sys.argv[1:]))
""")

# tanh has no closed form: the ODE integrates by quadrature, about 0.15 s per step here, so
# the solve to t = 1000 runs for half a minute
TANH = (model_path("committee_erf").read_text()
        .replace("model committee_erf", "model committee_tanh")
        .replace("activation = erf(z / sqrt(2)), readout = 1/p",
                 "activation = tanh(z), readout = 1/p"))


def test_ctrl_c_during_a_long_solve_writes_the_solution_so_far(tmp_path: Path) -> None:
    spec = tmp_path / "committee_tanh.eqg"
    spec.write_text(TANH)
    out = tmp_path / "run.csv"
    proc = subprocess.Popen([sys.executable, "-c", PIECES_DRIVER, "solve", str(spec),
                             "-o", str(out)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    code, rest, took = _ctrl_c_after(proc, "PIECE DONE", 3)
    assert code == EXIT_INTERRUPTED, rest
    assert took < 3.0, f"Ctrl-C took {took:.1f} s to stop the solve"
    assert "Traceback" not in rest and "nothing was written" not in rest, rest
    assert "before the interruption) written to" in rest and "interrupted at t = " in rest
    meta = json.loads(Path(str(out) + ".meta.json").read_text())
    assert meta["partial"] is True and meta["failure"]["message"].startswith("interrupted")
    rows = out.read_text().splitlines()
    assert rows[0].startswith("t,") and len(rows) >= 2
    last = [float(x) for x in rows[-1].split(",")]
    assert all(math.isfinite(x) for x in last) and 0 < last[0] <= meta["failure"]["t"] < 1000


def test_a_command_on_the_worker_thread_returns_and_raises_as_before() -> None:
    assert run_interruptibly(lambda: 7) == 7

    def fails() -> int:
        raise ValueError("kept")

    with pytest.raises(ValueError, match="kept"):
        run_interruptibly(fails)
