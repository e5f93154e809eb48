"""The derived equations as a LaTeX document a researcher can compile or paste into a paper."""

from __future__ import annotations

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
           "ℓ": r"$\ell$", "ε": r"$\varepsilon$", "√": r"$\surd$", "±": r"$\pm$"}


def _escape(text: str) -> str:
    """Plain text for LaTeX: special characters escaped, common Unicode as math."""
    out = text
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"),
                 ("#", r"\#"), ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\~{}"),
                 ("^", r"\^{}")):
        out = out.replace(a, b)
    out = "".join(UNICODE.get(ch, ch) if ord(ch) > 127 else ch for ch in out)
    return "".join(ch if ord(ch) < 128 else "?" for ch in out)


def _cov_names(n: int) -> dict[sp.Symbol, sp.Symbol]:
    from eqgen.theories.committee import cov_symbols

    _, args = cov_symbols(n)
    return {a: sp.Symbol(f"C_{{{a.name[1:]}}}") for a in args}


def _param_names(eq: Any) -> dict[sp.Symbol, sp.Symbol]:
    names = eq.spec.latex_names
    return {s: sp.Symbol(names.get(n, n)) for n, s in eq.param_symbols.items()}


def _integral_latex(eq: Any, it: Any) -> str:
    if it.parts is not None:
        curvature, slope = it.parts
        cls = f"^{{\\mathrm{{{','.join(it.classes)}}}}}" if it.classes else ""
        head = (f"\\paragraph{{$I_3{cls}$}} by Stein's lemma (the second field enters "
                "linearly): $I_3 = C_{12}\\, \\mathbb{E}[\\sigma''(h_1) \\varphi(h_3)] + "
                "C_{23}\\, \\mathbb{E}[\\sigma'(h_1) \\varphi'(h_3)]$, with the two "
                "two-dimensional integrals below over $(h_1, h_3)$ (written with fields 1, 2).\n")
        return head + _integral_latex(eq, curvature) + _integral_latex(eq, slope)
    fields = r"\,".join(_factor_name(eq, f, i + 1) for i, f in enumerate(it.factors))
    lhs = {"I2": "I_2", "I3": "I_3", "I4": "I_4", "J2": "J_2"}[it.kind]
    if it.name.endswith("_stein_curvature") or it.name.endswith("_stein_slope"):
        lhs = r"S_{\mathrm{" + it.name.rsplit("_", 1)[1] + "}}"
    cls = f"^{{\\mathrm{{{','.join(it.classes)}}}}}" if it.classes else ""
    head = (f"\\paragraph{{${lhs}{cls}$}} $= \\mathbb{{E}}[{fields}]$, "
            f"$h \\sim \\mathcal{{N}}(0, C)$. Method: {_escape(it.method)}.")
    if it.exact:
        return head + _formula(f"{lhs}{cls}", it.expr.xreplace(_cov_names(it.dim)))
    nodes = it.order ** it.dim
    return head + (f" No closed form is known to eqgen: Gauss--Hermite quadrature on a symmetric"
                   f" square root of $C$, order {it.order} per dimension ({nodes} nodes).\n")


LONG_FORMULA = 160  # characters of LaTeX source beyond which a formula is split into parts


def _formula(lhs: str, expr: sp.Expr) -> str:
    """`lhs = expr` as display math; long formulas are split by common subexpressions into
    an aligned list of named parts (x_0, x_1, ...) so that they fit on the page."""
    flat = sp.latex(expr)
    if len(flat) <= LONG_FORMULA:
        return f"\n\\begin{{equation*}}\n{lhs} = {flat}\n\\end{{equation*}}\n"
    temps, (reduced,) = sp.cse(expr, symbols=sp.numbered_symbols("x"), optimizations="basic")
    rows = [f"{lhs} &= {sp.latex(reduced)}"]
    rows += [f"{sp.latex(t)} &= {sp.latex(v)}" for t, v in temps]
    where = " \\\\\n".join(rows)
    return f"\n\\begin{{align*}}\n{where}\n\\end{{align*}}\n"


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


def committee_document(eq: Any) -> str:
    """A standalone document: setting, ODEs in index form, integrals, risk, time, regime."""
    from eqgen.theories.committee import JOINT_ORDER
    spec = eq.spec
    z = convert.Z
    pn = _param_names(eq)
    sc = {k: sp.latex(v.xreplace(pn)) for k, v in eq.scalars.items()}
    r = eq.regime
    out = [PREAMBLE]
    out.append(f"\\section*{{{_escape(spec.name)}: {_escape(spec.title)}}}\n")
    out.append("\\subsection*{Model}\n")
    out.append("Student $f(x) = c_p \\sum_{j=1}^{p} a_j \\sigma(\\lambda_j)$, teacher "
               "$f^*(x) = c_k \\sum_{r=1}^{k} a^*_r g(\\nu_r)$, labels $y = f^*(x) + "
               "\\sqrt{\\Delta}\\,\\xi$, with\n")
    out.append("\\begin{align*}\n"
               f"\\sigma(z) &= {sp.latex(eq.sigma)}, & \\sigma'(z) &= "
               f"{sp.latex(eq.sigma_prime)},\\\\\n"
               f"g(z) &= {sp.latex(eq.g)}, & \\ell(y, \\hat y) &= "
               f"{sp.latex(eq.loss)},\\\\\n"
               f"c_p &= {sc['c_p']}, & c_k &= {sc['c_k']},\\\\\n"
               f"\\text{{learning rate}} &= {sc['gamma']}, & B &= {sc['batch']}, \\quad "
               f"\\text{{label noise}} = {sc['Delta']}.\n\\end{{align*}}\n")
    out.append("Order parameters $Q = WW^\\top/d$, $M = WW^{*\\top}/d$, $P = W^*W^{*\\top}/d$; "
               "the local fields $(\\lambda, \\nu)$ are Gaussian with covariance "
               "$\\Omega = \\begin{pmatrix} Q & M \\\\ M^\\top & P\\end{pmatrix}$.\n")
    out.append(f"\n\\paragraph{{Regime.}} {_escape(r.summary)}.\n")
    out.append(f"\\paragraph{{Time.}} ${r.time_unit_latex}$, with $\\nu$ the number of SGD "
               "steps.\n")
    out.append("\\subsection*{Equations of motion}\n")
    if eq.square_loss:
        out.append("With the square loss, $\\mathcal{E} = -\\partial_{\\hat y}\\ell = "
                   "\\sum_c u_c \\varphi_c(h_c) + \\sqrt{\\Delta}\\xi$, where the sum runs over "
                   "all $p + k$ units, $u_j = -c_p a_j$ (student), $u_r = c_k a^*_r$ (teacher), "
                   "and $\\varphi$ is $\\sigma$ on student and $g$ on teacher units.\n")
        out.append("\\begin{align}\n")
        lines = []
        if r.drift:
            lines.append(r"\frac{dM_{jr}}{dt} &= a_j \sum_{c=1}^{p+k} u_c\, I_3(j, r, c)")
            dq = (r"\frac{dQ_{jl}}{dt} &= a_j \sum_{c} u_c\, I_3(j, l, c) + a_l \sum_{c} u_c\, "
                  r"I_3(l, j, c)")
            if r.variance:
                dq += (r"\nonumber\\ &\quad + \frac{\gamma c_p}{B}\, a_j a_l \Big[\sum_{c,e} "
                       r"u_c u_e\, I_4(j, l, c, e) + \Delta\, J_2(j, l)\Big]")
            lines.append(dq)
        else:
            lines.append(r"\frac{dM_{jr}}{dt} &= 0")
            lines.append(r"\frac{dQ_{jl}}{dt} &= a_j a_l \Big[\sum_{c,e} u_c u_e\, "
                         r"I_4(j, l, c, e) + \Delta\, J_2(j, l)\Big]")
        if eq.trained and r.drift:
            lines.append(r"\frac{da_j}{dt} &= \rho_a \sum_c u_c\, I_2(j, c)")
        out.append(" \\\\\n".join(lines) + "\n\\end{align}\n")
        out.append("\\subsection*{Gaussian integrals}\n")
        out.append("Each integral is over fields $h$ with covariance $C$ read off $\\Omega$ in "
                   "the order written: $I_2(\\alpha,\\beta) = \\mathbb{E}[\\varphi_\\alpha"
                   "\\varphi_\\beta]$, $I_3(\\alpha,\\beta,\\gamma) = \\mathbb{E}[\\sigma'"
                   "(h_\\alpha) h_\\beta \\varphi_\\gamma(h_\\gamma)]$, $I_4(\\alpha,\\beta,"
                   "\\gamma,\\delta) = \\mathbb{E}[\\sigma'(h_\\alpha)\\sigma'(h_\\beta)"
                   "\\varphi_\\gamma(h_\\gamma)\\varphi_\\delta(h_\\delta)]$, $J_2(\\alpha,\\beta)"
                   " = \\mathbb{E}[\\sigma'(h_\\alpha)\\sigma'(h_\\beta)]$.\n\n")
        for it in eq.integrals:
            out.append(_integral_latex(eq, it) + "\n")
        out.append("\\subsection*{Risk}\n")
        out.append("\\begin{equation}\n\\varepsilon = \\tfrac12 \\mathbb{E}[(f^* - f)^2] = "
                   "\\tfrac12 \\sum_{c,e} u_c u_e\\, I_2(c, e), \\qquad \\mathcal{R} = "
                   "\\varepsilon + \\frac{\\Delta}{2}.\n\\end{equation}\n")
    else:
        err = sp.latex(eq.error_signal)
        out.append(f"The loss is not the square loss: $\\mathcal{{E}} = -\\partial_{{\\hat y}}"
                   f"\\ell = {err}$ is not linear in the unit activations, and every expectation"
                   " is taken over the joint $(p+k+1)$-dimensional Gaussian $(\\lambda, \\nu, "
                   f"\\xi)$ by tensor Gauss--Hermite quadrature (order {JOINT_ORDER} per "
                   f"dimension, ${JOINT_ORDER}^{{p+k+1}}$ nodes per evaluation).\n")
        out.append("\\begin{align}\n")
        lines = [r"\frac{dM_{jr}}{dt} &= a_j\, \mathbb{E}[\mathcal{E}\, \sigma'(\lambda_j)\, "
                 r"\nu_r]",
                 r"\frac{dQ_{jl}}{dt} &= a_j\, \mathbb{E}[\mathcal{E}\, \sigma'(\lambda_j)\, "
                 r"\lambda_l] + a_l\, \mathbb{E}[\mathcal{E}\, \sigma'(\lambda_l)\, \lambda_j]"
                 + (r" + \frac{\gamma c_p}{B} a_j a_l\, \mathbb{E}[\mathcal{E}^2 \sigma'"
                    r"(\lambda_j)\sigma'(\lambda_l)]" if r.variance else "")]
        if eq.trained:
            lines.append(r"\frac{da_j}{dt} &= \rho_a\, \mathbb{E}[\mathcal{E}\, "
                         r"\sigma(\lambda_j)]")
        out.append(" \\\\\n".join(lines) + "\n\\end{align}\n")
        out.append("Risk $\\mathcal{R} = \\mathbb{E}[\\ell(y, f)]$ and excess risk "
                   "$\\varepsilon = \\tfrac12\\mathbb{E}[(f^* - f)^2]$.\n")
    if eq.trained:
        out.append(f"\nSecond-layer rate $\\rho_a = \\gamma_a d/\\gamma = "
                   f"{sc['rate']}$.\n")
    del z
    out.append("\n\\end{document}\n")
    return "".join(out)
