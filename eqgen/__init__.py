"""eqgen: a symbolic-to-numeric equation compiler for the theory of learning dynamics.

`eqgen.load("models/x.eqg")` gives a `Model`; `model.solve(...)` a `Solution`. Heavy
dependencies (sympy, JAX) are imported only when first needed, so `eqgen check` stays quick.
"""

from typing import Any

__version__ = "0.1.0"

from eqgen.errors import (  # noqa: E402
    EqgenError,
    Interrupted,
    NumericalError,
    SpecError,
    UsageError,
)

__all__ = [
    "EqgenError",
    "Interrupted",
    "Model",
    "NumericalError",
    "Solution",
    "SpecError",
    "UsageError",
    "__version__",
    "load",
]


def __getattr__(name: str) -> Any:
    if name in ("Model", "load"):
        from eqgen import model

        return getattr(model, name)
    if name == "Solution":
        from eqgen.runtime.solution import Solution

        return Solution
    raise AttributeError(f"module 'eqgen' has no attribute {name!r}")
