"""Names the expression language knows, shared by validation and the symbolic layer."""

from __future__ import annotations

# Functions usable in activations, targets and losses: name -> accepted argument counts.
SYMBOLIC_FUNCTIONS: dict[str, tuple[int, ...]] = {
    "erf": (1,),
    "erfc": (1,),
    "exp": (1,),
    "log": (1,),
    "sqrt": (1,),
    "tanh": (1,),
    "sinh": (1,),
    "cosh": (1,),
    "sin": (1,),
    "cos": (1,),
    "abs": (1,),
    "sign": (1,),
    "relu": (1,),
    "sigmoid": (1,),
    "softplus": (1,),
    "max": (2,),
    "min": (2,),
    "He": (2,),  # He(n, z): probabilists' Hermite polynomial of degree n
}
CONSTANTS = ("pi",)
# Words with a fixed meaning that a parameter may not take.
RESERVED = {"z", "y", "yhat", "h", "pi", "square", "gaussian", "committee", "fixed", "trained",
            "random", "identity", "zeros", "ones", "diag", *SYMBOLIC_FUNCTIONS}
