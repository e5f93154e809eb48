"""Settings read from environment variables (`EQGEN_*`), checked like command-line options."""

from __future__ import annotations

import os

from eqgen.errors import UsageError


def positive_int(name: str) -> int | None:
    """The whole number ≥ 1 in `$name`, or None where it is unset or empty; any other value is
    a `UsageError` (exit 2) that names the variable."""
    env = os.environ.get(name, "")
    if not env:
        return None
    try:
        value = int(env)
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"{name} must be a whole number ≥ 1, got {env!r}")
    return value
