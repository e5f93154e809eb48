"""The Monte Carlo error of a sampled DMFT, from independent replicas.

A sampled DMFT solve (docs/dmft.md, Running it) estimates its kernels from N trajectories, so
its curves carry a Monte Carlo error of order 1/√N — at N = 2·10⁴ about as large as the
finite-size error of a simulation at d = 4000, and correlated in time (one noisy kernel moves
every later value). It is not a per-time average over trajectories, so its size is measured,
not computed: R further sweeps of N/R trajectories each, on independent random streams, scatter
around the same limit with a variance R times that of the N-trajectory sweep, so the standard
error of the reported (N-trajectory) curve is their sample standard deviation divided by √R.
The replicas together cost about one more sweep of N. The finite-N bias of the DMFT, O(1/N),
is far below the error at these sizes and is not included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from eqgen.compare import ROUND_OFF  # a spread below this times the value is round-off
from eqgen.errors import UsageError

DEFAULT_COMPARE_REPLICAS = 8  # `compare` estimates the theory's error unless told not to
MIN_REPLICA_SAMPLES = 100  # trajectories per replica below which the spread means little


def check_replicas(replicas: int, samples: int, exact: bool) -> None:
    """Refuse a replica count that cannot give an error estimate (a `UsageError`, before any
    work): fewer than 2, too few trajectories each, or an exact solve (no Monte Carlo)."""
    if replicas == 0:
        return
    if replicas < 2:
        raise UsageError(f"--replicas must be at least 2 (or 0: no error estimate); got "
                         f"{replicas}")
    if exact:
        raise UsageError("--replicas: this solve uses exact Gaussian propagation, which has no "
                         "Monte Carlo error; give --samples N to sample it instead")
    if samples // replicas < MIN_REPLICA_SAMPLES:
        raise UsageError(f"--replicas {replicas} leaves {samples // replicas} trajectories per "
                         f"replica of the {samples} samples (at least {MIN_REPLICA_SAMPLES} "
                         "are needed): use fewer replicas or more --samples")


def replica_seed(seed: int, index: int) -> int:
    """The random seed of replica `index` of a solve with `seed`: a 32-bit value drawn from
    (seed, index), unrelated to the seed itself and to the seeds of the other replicas."""
    state = np.random.SeedSequence([int(seed) % 2**32, 0x5EED, int(index)]).generate_state(1)
    return int(state[0])


def replica_stderr(replicas: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per observable and time: the standard error of a solve with R times the replicas'
    trajectories, std over the R replicas (ddof 1) / √R."""
    R = len(replicas)
    out = {}
    for name in replicas[0]:
        values = np.stack([np.asarray(r[name], dtype=float) for r in replicas])
        se = np.std(values, axis=0, ddof=1) / np.sqrt(R)
        # a spread at round-off (the given start, shared by every replica) is no error: 0
        out[name] = np.where(se > ROUND_OFF * np.abs(values.mean(axis=0)), se, 0.0)
    return out


def with_stderr(observables: Mapping[str, np.ndarray], errors: Mapping[str, np.ndarray]
                ) -> dict[str, np.ndarray]:
    """The observables with `<name>_stderr` right after each `<name>` (the simulation's
    column order)."""
    out: dict[str, np.ndarray] = {}
    for name, value in observables.items():
        out[name] = value
        if name in errors:
            out[f"{name}_stderr"] = errors[name]
    return out
