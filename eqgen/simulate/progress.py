"""A one-line progress bar for long simulations and solves: on a terminal only, quiet in pipes
and CI.

It follows the style of `eqgen.cli.Progress` (`[  12.3s] message` on stderr) and redraws one
line in place, at most a few times a second, with the fraction done, the rate and the time left.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO


class ProgressBar:
    """Progress of `total` units of work (e.g. SGD steps) on stderr.

    **Arguments:**

    - `label`: what is being done, e.g. `simulating committee_erf (d = 10000, 4 seeds)`.
    - `total`: the amount of work, in `unit`s.
    - `enabled`: `None` draws only when the stream is a terminal (so pipes, files and CI stay
      quiet); `True`/`False` force it.
    - `stream`: where to draw (default `sys.stderr`).
    - `delay`: nothing is drawn before this many seconds, so short runs stay silent.
    - `initial`: units already done when the bar starts (left out of the rate).
    """

    def __init__(self, label: str, total: float, unit: str = "steps",
                 enabled: bool | None = None, stream: TextIO | None = None,
                 min_interval: float = 0.25, delay: float = 1.0, initial: float = 0.0):
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.label = label
        self.total = max(float(total), 1.0)
        self.unit = unit
        self.min_interval = min_interval
        self.delay = delay
        self.initial = initial
        self.t0 = time.perf_counter()
        self._last = -float("inf")
        self._drawn = False

    def update(self, done: float, force: bool = False) -> None:
        """Report `done` units finished (redraws at most every `min_interval` seconds)."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and (now - self._last < self.min_interval or
                          (not self._drawn and now - self.t0 < self.delay)):
            return
        if force and not self._drawn and now - self.t0 < self.delay:
            return  # a short run: finished before the bar would have appeared
        self._last = now
        elapsed = now - self.t0
        frac = min(max(done / self.total, 0.0), 1.0)
        rate = (done - self.initial) / elapsed if elapsed > 0 else 0.0
        left = (self.total - done) / rate if rate > 0 else float("nan")
        width = 24
        filled = int(round(frac * width))
        bar = "#" * filled + "-" * (width - filled)
        text = (f"\r[{elapsed:6.1f}s] {self.label} [{bar}] {100 * frac:5.1f}% "
                f"{rate:.3g} {self.unit}/s, {_duration(left)} left")
        print(text, end="", file=self.stream, flush=True)
        self._drawn = True

    def close(self, done: float | None = None) -> None:
        """Draw the final state and end the line."""
        if not self.enabled:
            return
        self.update(self.total if done is None else done, force=True)
        if self._drawn:
            print(file=self.stream, flush=True)
            self._drawn = False

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled and self._drawn:
            print(file=self.stream, flush=True)
            self._drawn = False


@contextlib.contextmanager
def over_time(label: str, t0: float, t1: float, enabled: bool | None
              ) -> Iterator[Callable[[float], None] | None]:
    """A bar over the time span [t0, t1] of a solve: yields the callback `progress(t)` that
    `eqgen.runtime.ode.solve` takes, or None when the bar is off (then the solve need not
    report). The bar starts at the first report, after compilation, so that its rate and
    time left are those of the integration."""
    bar = ProgressBar(label, t1 - t0, "t", enabled=enabled)
    if not bar.enabled:
        yield None
        return
    started: list[ProgressBar] = []

    def report(t: float) -> None:
        if not started:
            started.append(ProgressBar(label, t1 - t0, "t", enabled=True, stream=bar.stream,
                                       initial=t - t0))
        started[0].update(t - t0)

    try:
        yield report
        if started:
            started[0].close()
    finally:
        if started:
            started[0].__exit__()


def _duration(seconds: float) -> str:
    """`42s`, `3m05s`, `1h02m`; `?` when unknown."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"
