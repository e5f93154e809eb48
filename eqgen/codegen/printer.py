"""sympy → JAX source text, jit-safe.

sympy's own JAX printer prints `erf`, `erfc`, `gamma` and `loggamma` as `math.*` calls, which
break under jit; here they go to `jax.scipy.special` (imported as `jsp` in generated modules).
Exact rationals print as `(p/q)`, which Python evaluates in float64 at import time. `asin` goes
to `eqgen.runtime.special.arcsin`, and the two pieces of the ReLU closed forms that are singular
where a unit meets itself, √(ab − c²) and arcsin(c/(√a √b)), to `gram_sqrt` and `corr_arcsin`
there (exact values and derivatives at a singular covariance block).
"""

from __future__ import annotations

import re

import sympy as sp
from sympy.printing.numpy import JaxPrinter
from sympy.printing.precedence import precedence

SPECIAL = {"erf": "erf", "erfc": "erfc", "gamma": "gamma", "loggamma": "gammaln"}


class JaxCodePrinter(JaxPrinter):
    """Prints expressions as `jnp.*` / `jsp.*` code for generated modules."""

    _module = "jnp"

    def __init__(self) -> None:
        super().__init__({"fully_qualified_modules": True, "inline": True,
                          "allow_unknown_functions": False})

    def _module_format(self, fqn: str, register: bool = True) -> str:  # noqa: ARG002
        for prefix in ("jax.numpy.", "numpy."):
            if fqn.startswith(prefix):
                return "jnp." + fqn[len(prefix):]
        return fqn

    def _special(self, expr: sp.Function) -> str:
        name = SPECIAL[type(expr).__name__]
        return f"jsp.{name}({self._print(expr.args[0])})"

    _print_erf = _special
    _print_erfc = _special
    _print_gamma = _special
    _print_loggamma = _special

    def _print_Sigmoid(self, expr: sp.Function) -> str:
        return f"jax.nn.sigmoid({self._print(expr.args[0])})"

    def _print_Softplus(self, expr: sp.Function) -> str:
        return f"jnp.logaddexp(0.0, {self._print(expr.args[0])})"

    def _print_asin(self, expr: sp.asin) -> str:
        block = correlation_block(expr.args[0])
        if block is not None:  # arcsin(c/√(ab)): exact where the block is singular
            return f"corr_arcsin({', '.join(self._print(s) for s in block)})"
        # eqgen.runtime.special.arcsin: vectorisable, ~3x faster than XLA's on CPU
        return f"arcsin({self._print(expr.args[0])})"

    def _print_Heaviside(self, expr: sp.Heaviside) -> str:
        return f"jnp.heaviside({self._print(expr.args[0])}, 0.5)"

    def _print_DiracDelta(self, expr: sp.Expr) -> str:
        raise ValueError("a Dirac delta cannot be evaluated pointwise; "
                         "this integral needs a closed form")

    def _print_Max(self, expr: sp.Max) -> str:
        args = [self._print(a) for a in sorted(expr.args, key=sp.default_sort_key)]
        out = args[0]
        for a in args[1:]:
            out = f"jnp.maximum({out}, {a})"
        return out

    def _print_Min(self, expr: sp.Min) -> str:
        args = [self._print(a) for a in sorted(expr.args, key=sp.default_sort_key)]
        out = args[0]
        for a in args[1:]:
            out = f"jnp.minimum({out}, {a})"
        return out

    def _print_sign(self, expr: sp.sign) -> str:
        return f"jnp.sign({self._print(expr.args[0])})"

    def _print_Rational(self, expr: sp.Rational) -> str:
        return f"{expr.p}/{expr.q}"

    def _print_Half(self, expr: sp.Rational) -> str:
        return "1/2"

    def _sqrt(self, base: sp.Expr) -> str:
        block = gram_block(base)
        if block is not None:  # √(ab − c²): exact value and derivative where it vanishes
            return f"gram_sqrt({', '.join(self._print(s) for s in block)})"
        # other determinants that can vanish (compiled with fused multiply-adds they can
        # come out as -1e-17): clamp at zero
        if base.is_number or base.is_Symbol or (base.is_Add and all(
                a.is_positive or (a.is_Symbol and a.is_positive) for a in base.args)):
            return f"jnp.sqrt({self._print(base)})"
        return f"jnp.sqrt(jnp.maximum({self._print(base)}, 0))"

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:  # noqa: ARG002
        base, exp = expr.as_base_exp()
        prec = precedence(expr)
        if exp == sp.S.Half:
            return self._sqrt(base)
        if exp == -sp.S.Half:
            return f"1/{self._sqrt(base)}"
        if exp == -1:
            return f"1/{self.parenthesize(base, prec)}"
        if exp.is_Integer and exp < 0:
            return f"1/{self.parenthesize(base, prec)}**{-exp}"
        return f"{self.parenthesize(base, prec)}**{self.parenthesize(exp, prec)}"


_COVARIANCE = re.compile(r"C\d+$")  # the covariance entries integrals are written in


def _entry(x: sp.Expr) -> bool:
    """Whether x is a covariance entry (C12), not a number, an expression or a temporary."""
    return bool(x.is_Symbol and _COVARIANCE.match(x.name))


def gram_block(base: sp.Expr) -> tuple[sp.Symbol, sp.Symbol, sp.Symbol] | None:
    """(a, b, c) if `base` is the 2 × 2 Gram determinant a·b − c² of three covariance
    entries (as in the ReLU closed forms), else None."""
    terms = sp.Add.make_args(base)
    if len(terms) != 2:
        return None
    product = square = None
    for term in terms:
        coeff, rest = term.as_coeff_Mul()
        factors = sp.Mul.make_args(rest)
        if coeff == 1 and len(factors) == 2 and all(_entry(f) for f in factors):
            product = factors
        elif coeff == -1 and rest.is_Pow and rest.exp == 2 and _entry(rest.base):
            square = rest.base
    if product is None or square is None or square in product:
        return None
    return product[0], product[1], square


def correlation_block(arg: sp.Expr) -> tuple[sp.Symbol, sp.Symbol, sp.Symbol] | None:
    """(a, b, c) if `arg` is the correlation c/(√a √b) of three distinct covariance entries,
    else None."""
    powers = arg.as_powers_dict()
    if len(powers) != 3 or not all(_entry(s) for s in powers):
        return None
    roots = sorted((s for s, e in powers.items() if e == -sp.S.Half), key=sp.default_sort_key)
    ones = [s for s, e in powers.items() if e == 1]
    if len(roots) != 2 or len(ones) != 1:
        return None
    return roots[0], roots[1], ones[0]


# runtime helpers (eqgen.runtime.special) that printed code may call
SPECIAL_HELPERS = ("arcsin", "corr_arcsin", "gram_sqrt")


def special_imports(code: str) -> list[str]:
    """The `eqgen.runtime.special` helpers that `code` calls, in a fixed order."""
    return [name for name in SPECIAL_HELPERS if re.search(rf"(?<![\w.]){name}\(", code)]


_PRINTER = JaxCodePrinter()


def jax_code(expr: sp.Expr) -> str:
    """The JAX source of one expression."""
    return _PRINTER.doprint(expr)
