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


def dmft_document(eq: Any) -> str:
    """A standalone document for a DMFT model: data, dynamics, the effective process, the
    kernels ν̂, M_C, M_R, the responses, the m-equation and the observables (THEORY §2)."""
    from eqgen.theories.dmft import H

    spec = eq.spec
    names = {s: sp.Symbol(spec.latex_names.get(n, n)) for n, s in eq.params.items()}

    def tex(e: sp.Expr) -> str:
        return sp.latex(e.xreplace(names))

    out = [PREAMBLE, f"\\section*{{{_escape(spec.name)}: {_escape(spec.title)}}}\n",
           "\\subsection*{Model}\n"]
    if eq.data == "glm":
        out.append("Teacher--student GLM: $x_\\mu \\sim \\mathcal{N}(0, I_d)$, $h^*_\\mu = "
                   "v^*\\cdot x_\\mu/\\sqrt d$, labels $y_\\mu = f(h^*_\\mu)$ with $f(z) = "
                   f"{tex(eq.target)}$ (in the effective process $a = h^*$, $\\Delta = 1$).\n")
    else:
        parts = ", ".join(f"$c = {tex(c.value)}$ with probability ${tex(c.prob)}$ and label "
                          f"${tex(c.label)}$" for c in eq.clusters)
        out.append("Gaussian mixture $x_\\mu = c_\\mu v^*/\\sqrt d + \\sqrt\\Delta\\, z_\\mu$, "
                   f"$|v^*|^2 = d$, $z_\\mu \\sim \\mathcal{{N}}(0, I_d)$: {parts}.\n")
    out.append("$n = \\alpha d$ samples, reused at every step. Perceptron $h_\\mu = w\\cdot "
               "x_\\mu/\\sqrt d$ with\n\\begin{align*}\n"
               f"\\ell(y, h) &= {tex(eq.loss)},\\\\\n"
               f"\\ell'(y, h) &= {tex(eq.dloss)},\\\\\n"
               f"\\ell''(y, h) &= {tex(eq.d2loss)},\\\\\n"
               f"\\hat y(h) &= {tex(eq.label)}\n\\end{{align*}}\n"
               "(the derivatives are derived by sympy; $\\sigma$ is the logistic function).\n")
    out.append("\\paragraph{Dynamics.} With step $\\eta$, ridge $\\lambda$ and normalisation "
               "$\\kappa$, $w(t+\\eta) = w(t) - \\eta\\big[\\lambda w + \\kappa^{-1}\\sum_\\mu "
               "s_\\mu(t)\\, \\ell'(y_\\mu, h_\\mu)\\, x_\\mu/\\sqrt d\\big]$, $t = k\\eta$. "
               "The selection $s_\\mu(t)\\in\\{0,1\\}$ is a Markov chain with $P(0\\to1) = "
               "\\eta/\\tau$, $P(1\\to0) = (1-b)\\eta/(b\\tau)$ and $s(0)\\sim$ Bernoulli$(b)$: "
               "$b = 1$ is gradient descent, $\\tau = \\eta/b$ plain SGD. Write $\\bar s = "
               "s/\\kappa$.")
    if spec.continuous:
        out.append(" This model is the continuous-time limit $\\eta\\to0$ (gradient flow, or "
                   "stochastic gradient flow for $b<1$), solved on the step $\\eta$ with a "
                   "first-order discretisation error.")
    out.append("\n\\subsection*{Effective process}\n"
               "Per sample: $a = c + \\sqrt\\Delta\\,\\xi$, $h(t) = m(t)\\, a + r(t)$, "
               "$r(0)\\sim\\mathcal{N}(0, \\Delta\\, C_\\perp(0,0))$, and\n"
               "\\begin{equation}\n\\frac{dr}{dt} = -\\big[\\lambda + \\hat\\nu(t)\\big] r - "
               "\\Delta\\, \\bar s(t)\\, \\ell'(y, h(t)) + \\int_0^t M_R(t,t')\\, r(t')\\, dt' + "
               "\\Xi(t),\\qquad \\langle \\Xi(t)\\Xi(t')\\rangle = M_C(t,t').\n"
               "\\end{equation}\nThe kernels are averages over the process itself "
               "(self-consistency):\n\\begin{align}\n"
               "\\hat\\nu(t) &= \\alpha\\Delta\\, \\mathbb{E}[\\bar s(t)\\, \\ell''(t)],\\\\\n"
               "M_C(t,t') &= \\alpha\\Delta^2\\, \\mathbb{E}[\\bar s(t)\\ell'(t)\\, \\bar s(t')"
               "\\ell'(t')],\\\\\n"
               "M_R(t,t') &= \\alpha\\Delta^2\\, \\mathbb{E}[\\bar s(t)\\ell''(t)\\, \\chi(t,t')"
               "\\, \\bar s(t')\\ell''(t')] \\quad (t > t'),\\\\\n"
               "\\frac{\\partial\\chi(t,t')}{\\partial t} &= -\\big[\\lambda + \\hat\\nu(t) + "
               "\\Delta\\bar s(t)\\ell''(t)\\big]\\chi(t,t') + \\int_{t'}^t M_R(t,u)\\chi(u,t')"
               "\\, du, \\quad \\chi(t',t') = 1,\\\\\n"
               "\\frac{dm}{dt} &= -\\lambda m - \\alpha\\, \\mathbb{E}[\\bar s(t)\\, \\ell'(t)\\,"
               " a].\n\\end{align}\n"
               "The curvature factor $\\ell''(t')$ at the earlier time in $M_R$ matters for "
               "every loss but the square loss and for every $b < 1$.\n")
    out.append("\\subsection*{Weights}\n\\begin{align}\n"
               "\\frac{\\partial R(t,t')}{\\partial t} &= -\\big[\\lambda + \\hat\\nu(t)\\big] "
               "R(t,t') + \\int_{t'}^t M_R(t,u) R(u,t')\\, du,\\quad R(t',t') = 1,\\\\\n"
               "C_\\perp(t,t') &= R(t,0)R(t',0)C_\\perp(0,0) + \\Delta^{-1}\\int_0^t\\!\\!"
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
            out.append(", i.e. $\\varepsilon_g = \\tfrac12\\operatorname{erfc}\\big(m/\\sqrt{2"
                       "\\Delta Q}\\big)$")
        out.append(".\n")
    bps = eq.label_breakpoints
    if bps:
        out.append(f"\nThe label rule jumps at $h \\in \\{{{', '.join(tex(b) for b in bps)}\\}}$"
                   ", so test errors are sums of Gaussian tail probabilities (exact).\n")
    out.append("\n\\subsection*{Solution}\nOne causal forward sweep over the steps $k = 0, "
               "\\dots, t_{\\max}/\\eta$ with $N$ sampled trajectories; the coloured noise "
               "$\\Xi$ is drawn per trajectory from the regularised row-by-row factor of "
               "$M_C$." + (" For this square-type loss at $b = 1$ the process is Gaussian and "
                           "is propagated exactly, without sampling." if eq.gaussian_exact
                           else "") + "\n")
    out.append("\n\\end{document}\n")
    return "".join(out)
