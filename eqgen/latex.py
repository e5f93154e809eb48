"""The derived equations as LaTeX a researcher can compile, paste into a paper or read on the web.

Three outputs share one source of truth (the derived equations of `eqgen.theories`):

- `committee_document(eq)` / `dmft_document(eq)`: a standalone article (amsmath, amssymb,
  geometry: nothing else) with the setting, one numbered `align` block per state, the closed
  form (or the stated quadrature) of every Gaussian integral used, the risk, the time unit and
  the regime. Parameters are typeset with the names declared by the spec's `latex` statement.
- `equations_latex(eq)`: only the equations of motion, as `$$\\begin{aligned}...$$` blocks
  (what `Model._repr_latex_` shows in a notebook).
- `to_markdown(document)`: a document turned into Markdown with MathJax-friendly math
  (`aligned` inside `$$ ... $$`), used by the gallery pages of the documentation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import sympy as sp

from eqgen.symbolic import convert

PREAMBLE = r"""\documentclass[11pt]{article}
\usepackage[margin=2cm]{geometry}
\usepackage{amsmath,amssymb}
\allowdisplaybreaks
\begin{document}
"""

UNICODE = {"γ": r"$\gamma$", "Δ": r"$\Delta$", "δ": r"$\delta$", "κ": r"$\kappa$",
           "σ": r"$\sigma$", "ξ": r"$\xi$", "λ": r"$\lambda$", "ν": r"$\nu$", "η": r"$\eta$",
           "→": r"$\to$", "≤": r"$\le$", "≥": r"$\ge$", "²": r"$^2$", "·": r"$\cdot$",
           "−": "-", "–": "--", "—": "---", "𝓔": r"$\mathcal{E}$", "φ": r"$\varphi$",
           "ℓ": r"$\ell$", "ε": r"$\varepsilon$", "√": r"$\surd$", "±": r"$\pm$",
           "₀": r"$_0$", "₃": r"$_3$", "³": r"$^3$", "×": r"$\times$", "ρ": r"$\rho$",
           "α": r"$\alpha$", "τ": r"$\tau$"}


def _escape(text: str) -> str:
    """Plain text for LaTeX: special characters escaped, common Unicode as math."""
    out = text
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"),
                 ("#", r"\#"), ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\~{}"),
                 ("^", r"\^{}")):
        out = out.replace(a, b)
    out = "".join(UNICODE.get(ch, ch) if ord(ch) > 127 else ch for ch in out)
    return "".join(ch if ord(ch) < 128 else "?" for ch in out)


# -- printing expressions -----------------------------------------------------------------------
SQRT2 = sp.sqrt(2)


def _tidy(expr: sp.Expr) -> sp.Expr:
    """Rewrite what sympy's canonical form makes hard to read: `√2 z / 2` becomes `z / √2`
    (the argument of erf(z/√2)), so that the printed formula is the one of the paper."""
    def over_sqrt2(e: sp.Expr) -> bool:
        return e.is_Mul and SQRT2 in e.args and sp.Rational(1, 2) in e.args

    def rewrite(e: sp.Expr) -> sp.Expr:
        rest = [a for a in e.args if a not in (SQRT2, sp.Rational(1, 2))]
        return sp.Mul(sp.Mul(*rest), sp.Pow(SQRT2, -1, evaluate=False), evaluate=False)

    return expr.replace(over_sqrt2, rewrite) if isinstance(expr, sp.Basic) else expr


def tex(expr: sp.Expr, names: dict[sp.Symbol, str] | None = None) -> str:
    """LaTeX of an expression: the spec's symbol names (verbatim), `\\arcsin` rather than
    `\\operatorname{asin}`, fractions as `\\frac`, `z/\\sqrt{2}` kept as written."""
    return sp.latex(_tidy(expr), inv_trig_style="full", symbol_names=names or {})


def _names(spec: Any, symbols: dict[str, sp.Symbol]) -> dict[sp.Symbol, str]:
    """Parameter symbols → their LaTeX: the name declared by the spec's `latex` statement,
    printed exactly as written, or sympy's rendering of the parameter's name."""
    declared = spec.latex_names
    return {s: declared[n] if n in declared else sp.latex(sp.Symbol(n))
            for n, s in symbols.items()}


def _cov_names(n: int) -> dict[sp.Symbol, sp.Symbol]:
    from eqgen.theories.committee import cov_symbols

    _, args = cov_symbols(n)
    return {a: sp.Symbol(f"C_{{{a.name[1:]}}}") for a in args}


LONG_FORMULA = 160  # characters of LaTeX source beyond which a formula is split into parts


def _formula(lhs: str, expr: sp.Expr) -> str:
    """`lhs = expr` as display math; long formulas are split by common subexpressions into
    an aligned list of named parts (x_0, x_1, ...) so that they fit on the page."""
    flat = tex(expr)
    if len(flat) <= LONG_FORMULA:
        return f"\n\\begin{{equation*}}\n{lhs} = {flat}\n\\end{{equation*}}\n"
    temps, (reduced,) = sp.cse(expr, symbols=sp.numbered_symbols("x"), optimizations="basic")
    rows = [f"{lhs} &= {tex(reduced)}"]
    rows += [f"{tex(t)} &= {tex(v)}" for t, v in temps]
    where = " \\\\\n".join(rows)
    return f"\n\\begin{{align*}}\n{where}\n\\end{{align*}}\n"


# -- committee models (docs/theory.md) -------------------------------------------------------------
def _factor_name(eq: Any, f: sp.Expr, i: int) -> str:
    if f == convert.Z:
        return f"h_{i}"
    if f == eq.sigma_prime:
        return f"\\sigma'(h_{i})"
    if f == eq.sigma_second:
        return f"\\sigma''(h_{i})"
    if f == eq.g_prime:
        return f"g'(h_{i})"
    if f == eq.sigma:
        return f"\\sigma(h_{i})"
    return f"g(h_{i})"


def _integral_latex(eq: Any, it: Any) -> str:
    """One Gaussian integral: its definition, how it is computed, and its closed form (or the
    quadrature used when there is none)."""
    cls = f"^{{\\mathrm{{{','.join(it.classes)}}}}}" if it.classes else ""
    if it.parts is not None:
        curvature, slope = it.parts
        head = (f"\\paragraph{{$I_3{cls}$}} by Stein's lemma (the second field enters "
                "linearly): $I_3 = C_{12}\\, \\mathbb{E}[\\sigma''(h_1) \\varphi(h_3)] + "
                "C_{23}\\, \\mathbb{E}[\\sigma'(h_1) \\varphi'(h_3)]$, with the two "
                "two-dimensional integrals below over $(h_1, h_3)$ (written with fields 1, 2).\n")
        return head + _integral_latex(eq, curvature) + _integral_latex(eq, slope)
    fields = r"\,".join(_factor_name(eq, f, i + 1) for i, f in enumerate(it.factors))
    lhs = {"I2": "I_2", "I3": "I_3", "I4": "I_4", "J2": "J_2"}[it.kind]
    if it.name.endswith("_stein_curvature") or it.name.endswith("_stein_slope"):
        lhs = r"S_{\mathrm{" + it.name.rsplit("_", 1)[1] + "}}"
    head = (f"\\paragraph{{${lhs}{cls}$}} $= \\mathbb{{E}}[{fields}]$, "
            f"$h \\sim \\mathcal{{N}}(0, C)$. Method: {_escape(it.method)}.")
    if it.exact:
        return head + _formula(f"{lhs}{cls}", it.expr.xreplace(_cov_names(it.dim)))
    nodes = it.order ** it.dim
    from eqgen.theories.committee import PRODUCT_RULE_NESTING

    nesting = PRODUCT_RULE_NESTING.get(it.dim)
    if nesting is not None:
        outer = ", ".join(f"h_{i + 1}" for i in nesting)
        return head + (f" No closed form is known to eqgen: Gauss--Hermite quadrature nested"
                       f" over a Cholesky factor of $C$ (fields ${outer}$, outermost first),"
                       f" order {it.order} per dimension ({nodes} nodes).\n")
    return head + (f" No closed form is known to eqgen: Gauss--Hermite quadrature on a symmetric"
                   f" square root of $C$, order {it.order} per dimension ({nodes} nodes).\n")


def _align(lines: list[str]) -> str:
    return "\\begin{align}\n" + " \\\\\n".join(lines) + "\n\\end{align}\n"


def _committee_symbols(eq: Any) -> dict[str, str]:
    """The LaTeX of the scalars of the equations, in the spec's own symbols."""
    pn = _names(eq.spec, eq.param_symbols)
    s = eq.scalars
    return {
        "lr": tex(s["gamma"], pn), "c_p": tex(s["c_p"], pn), "c_k": tex(s["c_k"], pn),
        "B": tex(s["batch"], pn), "Delta": tex(s["Delta"], pn), "rate": tex(s["rate"], pn),
        # the prefactor of the variance term, γ c_p / B, and the time step, γ c_p
        "variance": tex(sp.simplify(s["gamma"] * s["c_p"] / s["batch"]), pn),
        "step": tex(sp.simplify(s["gamma"] * s["c_p"]), pn),
        "noise_step": tex(sp.simplify((s["gamma"] * s["c_p"]) ** 2 / s["batch"]), pn),
        "noisy": "0" if s["Delta"] == 0 else "1",
    }


def _state_blocks(eq: Any, sym: dict[str, str]) -> list[tuple[str, str, list[str]]]:
    """(state, description, lines of its `align` block) for every evolving state."""
    r = eq.regime
    noise = sym["noisy"] == "1"
    delta = sym["Delta"]
    blocks: list[tuple[str, str, list[str]]] = []
    if eq.square_loss:
        i4 = r"\sum_{c,e} u_c u_e\, I_4(j, l, c, e)"
        bracket = (rf"\Big[{i4} + {delta}\, J_2(j, l)\Big]" if noise else rf"\Big[{i4}\Big]")
        if r.drift:
            blocks.append(("M", r"student--teacher overlaps, $p \times k$",
                           [r"\frac{dM_{jr}}{dt} &= a_j \sum_{c=1}^{p+k} u_c\, I_3(j, r, c)"]))
            q = [r"\frac{dQ_{jl}}{dt} &= a_j \sum_{c=1}^{p+k} u_c\, I_3(j, l, c) + a_l "
                 r"\sum_{c=1}^{p+k} u_c\, I_3(l, j, c)"]
            if r.variance:
                q[0] += r" \nonumber"
                q.append(rf"&\quad + {sym['variance']}\; a_j a_l {bracket}")
            blocks.append(("Q", r"student--student overlaps, $p \times p$", q))
            if eq.trained:
                blocks.append(("a", "second-layer weights, $p$",
                               [r"\frac{da_j}{dt} &= \rho_a \sum_{c=1}^{p+k} u_c\, I_2(j, c)"]))
        else:
            blocks.append(("M", r"student--teacher overlaps, $p \times k$",
                           [r"\frac{dM_{jr}}{dt} &= 0"]))
            blocks.append(("Q", r"student--student overlaps, $p \times p$",
                           [rf"\frac{{dQ_{{jl}}}}{{dt}} &= a_j a_l {bracket}"]))
        return blocks
    ej = r"\mathcal{E}\, \sigma'(\lambda_j)"
    el = r"\mathcal{E}\, \sigma'(\lambda_l)"
    blocks.append(("M", r"student--teacher overlaps, $p \times k$",
                   [rf"\frac{{dM_{{jr}}}}{{dt}} &= a_j\, \mathbb{{E}}[{ej}\, \nu_r]"]))
    q = [rf"\frac{{dQ_{{jl}}}}{{dt}} &= a_j\, \mathbb{{E}}[{ej}\, \lambda_l] + a_l\, "
         rf"\mathbb{{E}}[{el}\, \lambda_j]"]
    if r.variance:
        q[0] += r" \nonumber"
        q.append(rf"&\quad + {sym['variance']}\; a_j a_l\, \mathbb{{E}}[\mathcal{{E}}^2\, "
                 r"\sigma'(\lambda_j)\, \sigma'(\lambda_l)]")
    blocks.append(("Q", r"student--student overlaps, $p \times p$", q))
    if eq.trained:
        blocks.append(("a", "second-layer weights, $p$",
                       [r"\frac{da_j}{dt} &= \rho_a\, \mathbb{E}[\mathcal{E}\, "
                        r"\sigma(\lambda_j)]"]))
    return blocks


def equations_latex(eq: Any) -> str:
    """The equations of motion alone, one `$$\\begin{aligned}...\\end{aligned}$$` per state
    (committee) or the DMFT kernels and m-equation: what a notebook shows for a model."""
    if hasattr(eq, "scalars"):
        blocks = _state_blocks(eq, _committee_symbols(eq))
        rows = [" \\\\\n".join(line.replace(r" \nonumber", "") for line in lines)
                for _, _, lines in blocks]
    else:
        rows = [r"\frac{dm}{dt} &= -\lambda m - \alpha\, \mathbb{E}[\bar s(t)\, \ell'(t)\, a]",
                r"\frac{dr}{dt} &= -\big[\lambda + \hat\nu(t)\big] r - \Delta\, \bar s(t)\, "
                r"\ell'(y, h(t)) + \int_0^t M_R(t,t')\, r(t')\, dt' + \Xi(t)"]
        rows = [rename_math(r, dmft_renames(eq)) for r in rows]
    return "\n".join(f"$$\\begin{{aligned}}\n{r}\n\\end{{aligned}}$$" for r in rows)


def _regime_text(eq: Any, sym: dict[str, str]) -> str:
    lr = sym["lr"]
    generic = rf"$\frac{{{lr}\, c_p}}{{B}} = {sym['variance']}$"
    name = eq.regime.name
    if name == "gradient_flow":
        return ("gradient flow: the SGD variance term, of order $" + lr + r"\, c_p$, vanishes "
                "and is dropped; the ODE is the population gradient flow.")
    if name == "high_dimensional":
        return ("high-dimensional SGD (Saad and Solla; Goldt et al.): the full ODE, with the "
                "SGD variance term of prefactor " + generic + ".")
    return ("noise-dominated (`bad learning'): only the SGD variance and label-noise terms "
            "act, on the longer time scale below.")


def _time_text(eq: Any, sym: dict[str, str]) -> str:
    if eq.regime.name == "noise_dominated":
        return (rf"$t = \frac{{\nu\, ({sym['lr']}\, c_p)^2}}{{d\, B}} = \frac{{\nu}}{{d}}\, "
                rf"{sym['noise_step']}$")
    return rf"$t = \frac{{\nu\, {sym['lr']}\, c_p}}{{d}} = \frac{{\nu}}{{d}}\, {sym['step']}$"


def committee_document(eq: Any) -> str:
    """A standalone document: setting, one `align` block per state, the Gaussian integrals with
    their closed forms, the risk, the time unit and the regime."""
    from eqgen.theories.committee import JOINT_ORDER

    spec = eq.spec
    sym = _committee_symbols(eq)
    noise = sym["noisy"] == "1"
    out = [PREAMBLE]
    out.append(f"\\section*{{{_escape(spec.name)}: {_escape(spec.title)}}}\n")
    out.append("\\subsection*{Model}\n")
    out.append("Student $f(x) = c_p \\sum_{j=1}^{p} a_j\\, \\sigma(\\lambda_j)$, teacher "
               "$f^*(x) = c_k \\sum_{r=1}^{k} a^*_r\\, g(\\nu_r)$, labels $y = f^*(x) + "
               "\\sqrt{\\Delta}\\,\\xi$, with\n")
    out.append("\\begin{align*}\n"
               f"\\sigma(z) &= {tex(eq.sigma)}, & \\sigma'(z) &= {tex(eq.sigma_prime)},\\\\\n"
               f"g(z) &= {tex(eq.g)}, & \\ell(y, \\hat y) &= {tex(eq.loss)},\\\\\n"
               f"c_p &= {sym['c_p']}, & c_k &= {sym['c_k']}.\n\\end{{align*}}\n")
    roles = [(a, sym[b]) for a, b in ((r"\gamma", "lr"), ("B", "B"), (r"\Delta", "Delta"))
             if a != sym[b]]
    here = (" In this model " + ", ".join(f"${a} = {b}$" for a, b in roles) + ".") if roles \
        else ""
    out.append("The learning rate is $\\gamma$, the batch size $B$, the label-noise variance "
               f"$\\Delta$.{here} Order parameters $Q = \\frac{{1}}{{d}} W W^\\top$, $M = "
               "\\frac{1}{d} "
               "W W^{*\\top}$, $P = \\frac{1}{d} W^* W^{*\\top}$ (constant); the local fields "
               "$(\\lambda, \\nu)$ are Gaussian with covariance $\\Omega = \\begin{pmatrix} Q & "
               "M \\\\ M^\\top & P\\end{pmatrix}$.\n")
    out.append(f"\n\\paragraph{{Regime.}} {_regime_text(eq, sym)}\n")
    out.append(f"\\paragraph{{Time.}} {_time_text(eq, sym)}, with $\\nu$ the number of SGD "
               "steps and $d$ the input dimension.\n")
    out.append("\\subsection*{Equations of motion}\n")
    if eq.square_loss:
        out.append("With the square loss, $\\mathcal{E} = -\\partial_{\\hat y}\\ell = "
                   "\\sum_c u_c\\, \\varphi_c(h_c) + \\sqrt{\\Delta}\\,\\xi$, where the sum runs "
                   "over all $p + k$ units, $u_j = -c_p\\, a_j$ (student), $u_r = c_k\\, a^*_r$ "
                   "(teacher), and $\\varphi$ is $\\sigma$ on student and $g$ on teacher "
                   "units.\n")
    else:
        out.append(f"The loss is not the square loss: $\\mathcal{{E}} = -\\partial_{{\\hat y}}"
                   f"\\ell = {tex(eq.error_signal)}$ is not linear in the unit activations, and "
                   "every expectation is taken over the joint $(p+k+1)$-dimensional Gaussian "
                   "$(\\lambda, \\nu, \\xi)$ by tensor Gauss--Hermite quadrature (order "
                   f"{JOINT_ORDER} per dimension, ${JOINT_ORDER}^{{p+k+1}}$ nodes per "
                   "evaluation).\n")
    for state, what, lines in _state_blocks(eq, sym):
        out.append(f"\n\\paragraph{{${state}$}} ({what}):\n" + _align(lines))
    if eq.trained:
        out.append(f"Second-layer rate $\\rho_a = \\frac{{\\gamma_a d}}{{\\gamma}} = "
                   f"{sym['rate']}$.\n")
    if eq.square_loss and not noise:
        out.append("There is no label noise ($\\Delta = 0$), so the noise term "
                   "$\\Delta\\, J_2(j, l)$ of $dQ/dt$ is absent.\n")
    if eq.square_loss:
        out.append("\\subsection*{Gaussian integrals}\n")
        out.append("Each integral is over fields $h$ with covariance $C$ read off $\\Omega$ in "
                   "the order written: $I_2(\\alpha,\\beta) = \\mathbb{E}[\\varphi_\\alpha"
                   "\\varphi_\\beta]$, $I_3(\\alpha,\\beta,\\gamma) = \\mathbb{E}[\\sigma'"
                   "(h_\\alpha) h_\\beta \\varphi_\\gamma(h_\\gamma)]$, $I_4(\\alpha,\\beta,"
                   "\\gamma,\\delta) = \\mathbb{E}[\\sigma'(h_\\alpha)\\sigma'(h_\\beta)"
                   "\\varphi_\\gamma(h_\\gamma)\\varphi_\\delta(h_\\delta)]$, $J_2(\\alpha,\\beta)"
                   " = \\mathbb{E}[\\sigma'(h_\\alpha)\\sigma'(h_\\beta)]$. A superscript names "
                   "the classes of units (student, teacher) of the $\\varphi$ factors.\n\n")
        for it in eq.integrals:
            out.append(_integral_latex(eq, it) + "\n")
        out.append("\\subsection*{Risk}\n")
        out.append("\\begin{equation}\n\\varepsilon = \\tfrac12 \\mathbb{E}[(f^* - f)^2] = "
                   "\\tfrac12 \\sum_{c,e} u_c u_e\\, I_2(c, e), \\qquad \\mathcal{R} = "
                   "\\varepsilon + \\frac{\\Delta}{2}.\n\\end{equation}\n")
    else:
        out.append("Risk $\\mathcal{R} = \\mathbb{E}[\\ell(y, f)]$ and excess risk "
                   "$\\varepsilon = \\tfrac12\\mathbb{E}[(f^* - f)^2]$.\n")
    out.append("\n\\end{document}\n")
    return "".join(out)


# -- DMFT models (docs/dmft.md, Theory) ------------------------------------------------------------
# The symbols of the DMFT equations, by role (docs/dmft.md, Theory): each stands for the spec
# expression
# given for that role (`_dmft_role_values`).
DMFT_ROLES = (("alpha", r"\alpha"), ("Delta", r"\Delta"), ("rho", r"\rho"),
              ("lambda", r"\lambda"), ("eta", r"\eta"), ("b", "b"), ("tau", r"\tau"),
              ("kappa", r"\kappa"))


def _dmft_role_values(eq: Any) -> dict[str, Any]:
    """Role → the spec expression that fills it (None where the spec gives none: the plain-SGD
    persistence τ = η/b, the three-cluster ρ of two clusters, the variance Δ = 1 of a GLM)."""
    spec = eq.spec
    return {"alpha": spec.alpha, "Delta": spec.variance if eq.data != "glm" else None,
            "rho": spec.rho, "lambda": spec.ridge, "eta": spec.step, "b": spec.batch_fraction,
            "tau": spec.persistence, "kappa": spec.normalisation}


def dmft_renames(eq: Any) -> dict[str, str]:
    """Symbol of the equations → the LaTeX the spec uses for it, for every role filled by a
    single parameter (`ridge lambda`, `step = eta`): the equations are then written in the
    spec's own names, as the committee equations are. Roles filled by numbers or compound
    expressions keep their symbol, whose value `_dmft_roles` states."""
    from eqgen.spec import ast

    names = _names(eq.spec, eq.params)
    values = _dmft_role_values(eq)
    out: dict[str, str] = {}
    for role, symbol in DMFT_ROLES:
        e = values[role]
        if isinstance(e, ast.Name) and e.id in eq.params:
            name = names[eq.params[e.id]]
            if name != symbol:
                out[symbol] = name
    return out


def _dmft_roles(eq: Any, protect: Callable[[str], str] | None = None
                ) -> list[tuple[str, str]]:
    """(symbol of the equations, its value in the spec's own LaTeX names), for every role that
    is not renamed (`dmft_renames`) and whose value is not simply that symbol. `protect` wraps
    each value (see `_Protected`), so that renaming the document leaves it as written."""
    names = _names(eq.spec, eq.params)
    values, renamed = _dmft_role_values(eq), dmft_renames(eq)
    keep = protect or (lambda x: x)
    roles = []
    for role, symbol in DMFT_ROLES:
        e = values[role]
        if symbol in renamed or (e is None and role != "tau"):
            continue
        if e is None:  # plain SGD: stated in the equations' (renamed) symbols
            roles.append((symbol, r"\frac{\eta}{b}"))
            continue
        value = tex(convert.to_sympy(e, eq.params), names)
        if value != symbol:
            roles.append((symbol, keep(value)))
    return roles


_MATH = re.compile(r"(?<!\\)\$[^$]*(?<!\\)\$"  # inline math (not an escaped \$)
                   r"|\\begin\{(align\*?|equation\*?)\}.*?\\end\{\1\}", re.S)


def _symbol_pattern(symbol: str) -> str:
    """A symbol as a whole token: `\\eta` but not `\\etab`; `b` but not the b of `\\bar`,
    `\\mathbb` or `ab`."""
    lead = "" if symbol.startswith("\\") else r"(?<![\\A-Za-z])"
    return lead + re.escape(symbol) + r"(?![A-Za-z])"


def _as_token(latex: str, powered: bool = False) -> str:
    """A name that can stand where a one-token symbol stood (`\\sqrt\\Delta`, `\\Delta^2`):
    a control word as it is, anything else in braces, or in parentheses where it is raised
    to a power (`\\left(\\sigma^2\\right)^2`, not the ambiguous `{\\sigma^2}^2`)."""
    if re.fullmatch(r"\\[A-Za-z]+", latex):
        return latex
    if powered and re.search(r"[_^]", latex):
        return rf"\left({latex}\right)"
    return "{" + latex + "}"


def rename_math(math: str, renames: dict[str, str]) -> str:
    """Math with every symbol of `renames` replaced, in one pass (a new name is never renamed
    again)."""
    if not renames:
        return math
    token = re.compile("|".join(_symbol_pattern(s) for s in
                                sorted(renames, key=len, reverse=True)))
    return token.sub(lambda t: _as_token(renames[t.group(0)], math.startswith("^", t.end())),
                     math)


def rename_symbols(text: str, renames: dict[str, str]) -> str:
    """A document with every symbol of `renames` replaced in its math (`$...$`, `align`,
    `equation`) only: the prose around it is left alone."""
    if not renames:
        return text
    return _MATH.sub(lambda m: rename_math(m.group(0), renames), text)


class _Protected:
    """Pieces of LaTeX (the spec's own expressions) kept out of `rename_symbols`: each is
    replaced by a marker while the template around it is renamed, then put back."""

    MARK = re.compile("\x00(\\d+)\x00")

    def __init__(self) -> None:
        self.pieces: list[str] = []

    def __call__(self, latex: str) -> str:
        self.pieces.append(latex)
        return f"\x00{len(self.pieces) - 1}\x00"

    def restore(self, text: str) -> str:
        return self.MARK.sub(lambda m: self.pieces[int(m.group(1))], text)


def dmft_document(eq: Any) -> str:
    """A standalone document for a DMFT model: data, dynamics, the effective process, the
    kernels ν̂, M_C, M_R, the responses, the m-equation and the observables (docs/dmft.md, Theory),
    one
    `align` block per dynamical quantity."""
    from eqgen.theories.dmft import H

    spec = eq.spec
    names = _names(spec, eq.params)
    protect = _Protected()  # the spec's expressions, printed as written

    def t_(e: sp.Expr) -> str:
        return protect(tex(e, names))

    out = [PREAMBLE, f"\\section*{{{protect(_escape(spec.name))}: "
                     f"{protect(_escape(spec.title))}}}\n", "\\subsection*{Model}\n"]
    if eq.data == "glm":
        out.append("Teacher--student GLM: $x_\\mu \\sim \\mathcal{N}(0, I_d)$, $h^*_\\mu = "
                   "\\frac{v^*\\cdot x_\\mu}{\\sqrt d}$, labels $y_\\mu = f(h^*_\\mu)$ with "
                   f"$f(z) = {t_(eq.target)}$ (in the effective process $a = h^*$, "
                   "$\\Delta = 1$).\n")
    else:
        parts = ", ".join(f"$c = {t_(c.value)}$ with probability ${t_(c.prob)}$ and label "
                          f"${t_(c.label)}$" for c in eq.clusters)
        out.append("Gaussian mixture $x_\\mu = c_\\mu \\frac{v^*}{\\sqrt d} + \\sqrt\\Delta\\, "
                   f"z_\\mu$, $|v^*|^2 = d$, $z_\\mu \\sim \\mathcal{{N}}(0, I_d)$: {parts}.\n")
    out.append("$n = \\alpha d$ samples, reused at every step. Perceptron $h_\\mu = "
               "\\frac{w\\cdot x_\\mu}{\\sqrt d}$ with\n\\begin{align*}\n"
               f"\\ell(y, h) &= {t_(eq.loss)},\\\\\n"
               f"\\ell'(y, h) &= {t_(eq.dloss)},\\\\\n"
               f"\\ell''(y, h) &= {t_(eq.d2loss)},\\\\\n"
               f"\\hat y(h) &= {t_(eq.label)}\n\\end{{align*}}\n"
               "(the derivatives are derived by sympy; $\\sigma$ is the logistic function).\n")
    roles = _dmft_roles(eq, protect)
    if roles:
        rows = ", ".join(f"${a} = {b}$" for a, b in roles)
        out.append(f"\\paragraph{{Parameters.}} In this model {rows}.\n")
    out.append("\\paragraph{Dynamics.} With step $\\eta$, ridge $\\lambda$ and normalisation "
               "$\\kappa$, $w(t+\\eta) = w(t) - \\eta\\big[\\lambda w + \\kappa^{-1}\\sum_\\mu "
               "s_\\mu(t)\\, \\ell'(y_\\mu, h_\\mu)\\, \\frac{x_\\mu}{\\sqrt d}\\big]$, "
               "$t = k\\eta$. The selection $s_\\mu(t)\\in\\{0,1\\}$ is a Markov chain with "
               "$P(0\\to1) = \\frac{\\eta}{\\tau}$, $P(1\\to0) = \\frac{(1-b)\\,\\eta}{b\\tau}$ "
               "and $s(0)\\sim$ Bernoulli$(b)$: $b = 1$ is gradient descent, $\\tau = "
               "\\frac{\\eta}{b}$ plain SGD. Write $\\bar s = \\frac{s}{\\kappa}$.")
    if spec.continuous:
        out.append(" This model is the continuous-time limit $\\eta\\to0$ (gradient flow, or "
                   "stochastic gradient flow for $b<1$), solved on the step $\\eta$ with a "
                   "first-order discretisation error.")
    out.append("\n\\subsection*{Effective process}\n"
               "Per sample: $a = c + \\sqrt\\Delta\\,\\xi$, $h(t) = m(t)\\, a + r(t)$, "
               "$r(0)\\sim\\mathcal{N}(0, \\Delta\\, C_\\perp(0,0))$, and\n"
               "\\begin{align}\n\\frac{dr}{dt} &= -\\big[\\lambda + \\hat\\nu(t)\\big] r - "
               "\\Delta\\, \\bar s(t)\\, \\ell'(y, h(t)) + \\int_0^t M_R(t,t')\\, r(t')\\, dt' + "
               "\\Xi(t),\\qquad \\langle \\Xi(t)\\Xi(t')\\rangle = M_C(t,t').\n"
               "\\end{align}\n"
               "\\paragraph{Kernels} (averages over the process itself: the self-consistency):\n"
               "\\begin{align}\n"
               "\\hat\\nu(t) &= \\alpha\\Delta\\, \\mathbb{E}[\\bar s(t)\\, \\ell''(t)],\\\\\n"
               "M_C(t,t') &= \\alpha\\Delta^2\\, \\mathbb{E}[\\bar s(t)\\ell'(t)\\, \\bar s(t')"
               "\\ell'(t')],\\\\\n"
               "M_R(t,t') &= \\alpha\\Delta^2\\, \\mathbb{E}[\\bar s(t)\\ell''(t)\\, \\chi(t,t')"
               "\\, \\bar s(t')\\ell''(t')] \\quad (t > t').\n\\end{align}\n"
               "The curvature factor $\\ell''(t')$ at the earlier time in $M_R$ matters for "
               "every loss but the square loss and for every $b < 1$.\n"
               "\\paragraph{Response of a sample} $\\chi(t,t')$:\n\\begin{align}\n"
               "\\frac{\\partial\\chi(t,t')}{\\partial t} &= -\\big[\\lambda + \\hat\\nu(t) + "
               "\\Delta\\bar s(t)\\ell''(t)\\big]\\chi(t,t') + \\int_{t'}^t M_R(t,u)\\chi(u,t')"
               "\\, du, \\qquad \\chi(t',t') = 1.\n\\end{align}\n"
               "\\paragraph{Overlap with the teacher} $m(t)$:\n\\begin{align}\n"
               "\\frac{dm}{dt} &= -\\lambda m - \\alpha\\, \\mathbb{E}[\\bar s(t)\\, \\ell'(t)\\,"
               " a].\n\\end{align}\n")
    out.append("\\paragraph{Weights} (response $R$, correlation $C$, norm $Q$):\n"
               "\\begin{align}\n"
               "\\frac{\\partial R(t,t')}{\\partial t} &= -\\big[\\lambda + \\hat\\nu(t)\\big] "
               "R(t,t') + \\int_{t'}^t M_R(t,u) R(u,t')\\, du,\\qquad R(t',t') = 1,\\\\\n"
               "C_\\perp(t,t') &= R(t,0)R(t',0)C_\\perp(0,0) + \\frac{1}{\\Delta}\\int_0^t\\!\\!"
               "\\int_0^{t'} R(t,u)R(t',u')M_C(u,u')\\, du\\, du',\\\\\n"
               "Q(t) &= m(t)^2 + C_\\perp(t,t).\n\\end{align}\n")
    out.append("\\subsection*{Observables}\n"
               "Training loss $\\mathbb{E}[\\ell(y, h)]$ and training error $\\mathbb{E}"
               "[\\mathbf 1\\{\\hat y(h) \\neq y\\}]$ over the effective process; for a fresh "
               "sample ")
    if eq.data == "glm":
        out.append("$h = m\\, h^* + \\sqrt{Q - m^2}\\,\\zeta$, test error $P[\\hat y(h)\\neq "
                   "\\hat y(f(h^*))]$ and test loss $\\mathbb{E}[\\ell(f(h^*), h)]$.\n")
    else:
        out.append("$h = c\\, m + \\sqrt{\\Delta Q}\\,\\zeta$, test error $\\sum_c P(c)\\, "
                   "P_\\zeta[\\hat y(h)\\neq y(c)]$ and test loss $\\sum_c P(c)\\, \\mathbb{E}"
                   "[\\ell(y(c), h)]$")
        if eq.label == sp.sign(H) and len(eq.clusters) == 2:
            out.append(", i.e. $\\varepsilon_g = \\tfrac12\\operatorname{erfc}\\Big(\\frac{m}"
                       "{\\sqrt{2\\Delta Q}}\\Big)$")
        out.append(".\n")
    bps = eq.label_breakpoints
    if bps:
        out.append(f"\nThe label rule jumps at $h \\in \\{{{', '.join(t_(b) for b in bps)}\\}}$"
                   ", so test errors are sums of Gaussian tail probabilities (exact).\n")
    out.append("\n\\subsection*{Solution}\nOne causal forward sweep over the steps $k = 0, "
               "\\dots, \\frac{t_{\\max}}{\\eta}$ with $N$ sampled trajectories; the coloured "
               "noise $\\Xi$ is drawn per trajectory from the regularised row-by-row factor of "
               "$M_C$." + (" For this square-type loss at $b = 1$ the process is Gaussian and "
                           "is propagated exactly, without sampling." if eq.gaussian_exact
                           else "") + "\n")
    out.append("\n\\end{document}\n")
    return protect.restore(rename_symbols("".join(out), dmft_renames(eq)))


# -- Markdown for the documentation (MathJax) ---------------------------------------------------
_ENV = re.compile(r"\\begin\{(align\*?|equation\*?)\}\n(.*?)\n\\end\{\1\}", re.S)
_TEXT = ((r"\&", "&"), (r"\_", "_"), (r"\%", "%"), (r"\#", "#"), ("---", "—"), ("--", "–"),
         ("`", "‘"))


def _display(match: re.Match[str]) -> str:
    """A displayed environment as MathJax-friendly Markdown: `equation` as plain display math,
    `align` as `aligned` (MathJax has no numbered `align` inside `$$`); `\\nonumber` dropped."""
    body = match.group(2).replace(r" \nonumber", "").replace(r"\nonumber", "")
    if match.group(1).startswith("align"):
        body = "\\begin{aligned}\n" + body + "\n\\end{aligned}"
    return "\n\n$$\n" + body + "\n$$\n\n"


_SECTION_SIGN = re.compile(r"\\S(?![A-Za-z])")  # LaTeX's \S (§), not \Sigma or \Sum


def _plain(text: str) -> str:
    """LaTeX text (outside math) as Markdown text."""
    parts = re.split(r"(\$[^$]*\$)", text)
    out = []
    for i, part in enumerate(parts):
        if i % 2:  # inline math stays as it is
            out.append(part)
            continue
        for a, b in _TEXT:
            part = part.replace(a, b)
        part = part.replace("''", "”").replace("`", "‘")
        out.append(_SECTION_SIGN.sub("§", part))
    return "".join(out)


def to_markdown(document: str, heading_level: int = 2) -> str:
    """The body of a standalone document (`committee_document`, `dmft_document`) as Markdown
    for MkDocs with arithmatex: sections become headings (the first at `heading_level`),
    `\\paragraph{X}` bold text, displayed environments `$$ ... $$` blocks."""
    body = document.split("\\begin{document}", 1)[1].rsplit("\\end{document}", 1)[0]
    body = body.replace("\\allowdisplaybreaks", "")
    h = "#" * heading_level
    body = re.sub(r"\\section\*\{(.*?)\}\n", lambda m: f"{h} {m.group(1)}\n\n", body)
    body = re.sub(r"\\subsection\*\{(.*?)\}\n", lambda m: f"\n{h}# {m.group(1)}\n\n", body)
    body = re.sub(r"\\paragraph\{(\$.*?\$|[^{}]*)\}", lambda m: f"\n\n**{m.group(1)}**", body)
    pieces = []
    last = 0
    for m in _ENV.finditer(body):
        pieces.append(_plain(body[last:m.start()]))
        pieces.append(_display(m))
        last = m.end()
    pieces.append(_plain(body[last:]))
    md = "".join(pieces)
    md = re.sub(r"\n{3,}", "\n\n", md)
    return md.strip() + "\n"
