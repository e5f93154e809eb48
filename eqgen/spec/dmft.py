"""The typed spec of a DMFT model (a perceptron trained on reused samples, docs/dmft.md, Theory),
built
from a parsed file with every problem collected, and its resolution to numbers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction

from eqgen.errors import Diagnostic, SpecError
from eqgen.spec import ast
from eqgen.spec.committee import REGIMES as _COMMITTEE_REGIMES
from eqgen.spec.committee import STATE_NAMES as COMMITTEE_STATES
from eqgen.spec.committee import (
    Param,
    SpecMethods,
    _at,
    _check_expr,
    _Collector,
    _did_you_mean,
    _items,
    _kwargs,
    _sentence,
    _single_value,
    checked_overrides,
)
from eqgen.spec.functions import CONSTANTS, RESERVED
from eqgen.spec.values import EvalError, evaluate

NAMED_LOSSES = {"logistic": "log(1 + exp(-y * h))", "square": "(y - h)**2 / 2"}
DMFT_DATA = ("gaussian_mixture", "teacher_student")
STATE_NAMES = ("m", "q")
COMMITTEE_REGIMES = (*_COMMITTEE_REGIMES, "mean_field")  # named in a hint when misplaced


@dataclass(frozen=True)
class DmftSpec(SpecMethods):
    """Everything a DMFT model says, still as expressions with source positions."""

    name: str
    title: str
    source: ast.SourceFile
    pos: ast.Pos
    params: tuple[Param, ...]
    data: str  # mixture | glm
    clusters: int  # 2 or 3 (mixtures); 1 for a GLM
    variance: ast.Expr  # Δ (1 for a GLM)
    rho: ast.Expr | None  # three clusters: P(outer)
    alpha: ast.Expr
    target: ast.Expr | None  # GLM: y = f(z), z = h*
    label: ast.Expr  # ŷ(h)
    loss: ast.Expr  # ℓ(y, h)
    loss_name: str | None  # logistic | square | hinge, when named
    ridge: ast.Expr
    step: ast.Expr
    batch_fraction: ast.Expr
    persistence: ast.Expr | None  # None: plain SGD (τ = η/b)
    normalisation: ast.Expr
    continuous: bool  # regime continuous: the η → 0 limit, solved at step η
    init: Mapping[str, ast.Expr]
    t_max: ast.Expr
    latex_names: Mapping[str, str] = field(default_factory=dict)
    # hinge(smoothing = T): the parameter holding the temperature of T·softplus((1 − yh)/T)
    smoothing: str | None = None

    family = "dmft"


@dataclass(frozen=True)
class DmftResolved:
    """A DMFT spec with numbers (after `--set` overrides), all checked."""

    params: dict[str, float]
    alpha: float
    Delta: float
    rho: float
    lam: float
    eta: float
    b: float
    tau: float
    kappa: float
    m0: float
    q0: float
    t_max: float


def is_dmft(mf: ast.ModelFile) -> bool:
    """Whether a parsed file describes a DMFT model. The student decides (a perceptron, or a
    committee); without a readable student, the data or a `ridge` statement do."""
    for st in mf.statements:
        if st.keyword == "student" and st.items:
            v = st.items[0].value
            head = v.func if isinstance(v, ast.Call) else getattr(v, "id", None)
            if head in ("perceptron", "committee"):
                return head == "perceptron"
    for st in mf.statements:
        if st.keyword == "ridge":
            return True
        if st.keyword == "data" and st.items and isinstance(st.items[0].value, ast.Call) \
                and st.items[0].value.func in DMFT_DATA:
            return True
    return False


def _library_expr(text: str) -> ast.Expr:
    """An expression from eqgen's own text (a named loss), parsed like a spec value."""
    from eqgen.spec.parser import parse_text

    return parse_text(f"model x\nparam v = {text}\n").statements[0].items[0].value


def _init_hint(it: ast.Item) -> str:
    """The hint for an init item that is not m or q: committee overlaps and random draws are
    named as such, since a DMFT model starts from the two scalars m and q alone."""
    v = it.value
    if it.name in COMMITTEE_STATES:
        return (f"{it.name} is an order parameter of the committee ODEs; a DMFT model starts "
                "from m and q, e.g. init m = m0, q = q0")
    if it.name is None and isinstance(v, ast.Call) and v.func == "random":
        return ("init random(...) draws committee weights; a DMFT model starts from m and q, "
                "e.g. init m = m0, q = q0")
    return _sentence(_did_you_mean(it.name, STATE_NAMES) if it.name else None,
                     "e.g. init m = m0, q = q0")


def _num(value: int | str, pos: ast.Pos) -> ast.Expr:
    return ast.Number(Fraction(value), str(value), pos)


def build_dmft(mf: ast.ModelFile) -> DmftSpec:
    """Check and type a parsed DMFT model; raises `SpecError` listing every problem."""
    c = _Collector(mf)
    seen: dict[str, ast.Statement] = {}
    for st in mf.statements:
        if st.keyword in seen and st.keyword not in ("param", "init", "latex"):
            c.error(f"second `{st.keyword}` statement", st.pos,
                    f"the first one is on line {seen[st.keyword].pos.line}; a model has one")
        seen.setdefault(st.keyword, st)
    for kw in ("teacher",):
        if kw in seen:
            c.error("a DMFT model has no `teacher` statement", seen[kw].pos,
                    "the target is part of the data: data teacher_student(target = z, "
                    "samples_per_dimension = alpha)")

    params: list[Param] = []
    for st in mf.statements:
        if st.keyword != "param":
            continue
        for it in st.items:
            if it.name is None:
                c.error("a parameter needs a name: `param NAME = VALUE`", it.pos,
                        "e.g. param alpha = 3")
            elif it.name in RESERVED:
                c.error(f"'{it.name}' is a reserved word and cannot be a parameter", it.pos,
                        "choose another name")
            elif first := next((p for p in params if p.name == it.name), None):
                c.error(f"parameter '{it.name}' declared twice", it.pos,
                        f"the first declaration is at {_at(first.pos)}: keep one")
            else:
                declared = {p.name for p in params}
                for n in ast.names_in(it.value):
                    if n.id not in declared and n.id not in CONSTANTS:
                        c.error(f"unknown name '{n.id}' in the value of '{it.name}'", n.pos,
                                "a parameter value may use numbers, pi and parameters "
                                "declared before it")
                params.append(Param(it.name, it.value, it.pos))
    pnames = {p.name for p in params}

    # data
    data, clusters, variance, rho, alpha, target = "mixture", 2, None, None, None, None
    if "data" not in seen:
        c.error("the model has no `data` statement", mf.pos,
                "add e.g. `data gaussian_mixture(clusters = two, variance = Delta, "
                "samples_per_dimension = alpha)`")
    else:
        v = _single_value(c, seen["data"], "data model")
        if isinstance(v, ast.Call) and v.func == "gaussian_mixture":
            kw = _kwargs(c, v, ("clusters", "variance", "samples_per_dimension", "rho"),
                         "gaussian_mixture()")
            cl = kw["clusters"].value if "clusters" in kw else None
            if isinstance(cl, ast.Name) and cl.id in ("two", "three"):
                clusters = 2 if cl.id == "two" else 3
            elif cl is not None:
                c.error("clusters must be two or three", cl.pos,
                        "two: c = ±1 with labels y = c; three: c ∈ {-1, 0, +1} with label +1 "
                        "outside and -1 in the centre")
            variance = kw["variance"].value if "variance" in kw else None
            alpha = kw["samples_per_dimension"].value if "samples_per_dimension" in kw else None
            rho = kw["rho"].value if "rho" in kw else None
            if clusters == 3 and rho is None:
                c.error("three clusters need rho, the probability of the outer clusters",
                        v.pos, "e.g. gaussian_mixture(clusters = three, rho = rho, ...)")
            if clusters == 2 and rho is not None:
                c.error("rho only applies to three clusters", kw["rho"].pos,
                        "two clusters are equally likely: remove rho")
            if variance is None:
                c.error("gaussian_mixture() needs the cluster variance", v.pos,
                        "e.g. variance = Delta")
        elif isinstance(v, ast.Call) and v.func == "teacher_student":
            data, clusters = "glm", 1
            kw = _kwargs(c, v, ("target", "samples_per_dimension"), "teacher_student()")
            target = kw["target"].value if "target" in kw else ast.Name("z", v.pos)
            _check_expr(c, target, {"z"}, "the target")
            alpha = kw["samples_per_dimension"].value if "samples_per_dimension" in kw else None
        elif v is not None:
            c.error("DMFT data must be gaussian_mixture(...) or teacher_student(...)", v.pos,
                    "e.g. data gaussian_mixture(clusters = two, variance = Delta, "
                    "samples_per_dimension = alpha)")
        if v is not None and isinstance(v, ast.Call) and v.func in DMFT_DATA and alpha is None:
            c.error(f"{v.func}() needs samples_per_dimension (α = n/d)", v.pos,
                    "e.g. samples_per_dimension = alpha")
    for e, what in ((variance, "the cluster variance"), (rho, "rho"), (alpha, "α")):
        if e is not None:
            _check_expr(c, e, pnames, what)

    # student
    label: ast.Expr = ast.Call("sign", (ast.Name("h", mf.pos),), (), mf.pos)
    if "student" not in seen:
        c.error("the model has no `student` statement", mf.pos,
                "add `student perceptron(label = sign(h))`")
    else:
        v = _single_value(c, seen["student"], "network: perceptron(label = ...)")
        if isinstance(v, ast.Call) and v.func == "perceptron":
            kw = _kwargs(c, v, ("label",), "perceptron()")
            if "label" in kw:
                label = kw["label"].value
                _check_expr(c, label, {"h"}, "the label rule")
        elif isinstance(v, ast.Name) and v.id == "perceptron":
            pass
        elif v is not None:
            c.error("a DMFT student is a perceptron", v.pos,
                    "write `student perceptron(label = sign(h))`")

    # loss
    loss, loss_name, smoothing = None, None, None
    if "loss" not in seen:
        c.error("the model has no `loss` statement", mf.pos,
                "add e.g. `loss logistic` or `loss log(1 + exp(-y * h))`")
    else:
        v = _single_value(c, seen["loss"], "loss expression of y and h")
        if isinstance(v, ast.Name) and v.id in NAMED_LOSSES:
            loss_name = v.id
            loss = _library_expr(NAMED_LOSSES[v.id])
        elif isinstance(v, ast.Name) and v.id == "hinge":
            c.error("the hinge loss is not smooth: its ℓ'' is a delta at the kink, which the "
                    "sampled DMFT cannot average", v.pos,
                    "give it a smoothing temperature: `loss hinge(smoothing = T)` with "
                    "`param T = 0.0125` (about ηΔ/4; the error of T is stated, and "
                    "--extrapolate takes T → 0), or use the squared hinge "
                    "max(0, 1 - y * h)**2 / 2, which needs no smoothing")
        elif isinstance(v, ast.Call) and v.func == "hinge":
            kw = _kwargs(c, v, ("smoothing",), "hinge()")
            t = kw.get("smoothing")
            if t is None:
                c.error("hinge() needs its smoothing temperature", v.pos,
                        "write `loss hinge(smoothing = T)` with `param T = 0.05`")
            elif not (isinstance(t.value, ast.Name) and t.value.id in pnames):
                c.error("the hinge's smoothing must be a declared parameter", t.value.pos,
                        "declare `param T = 0.05` and write `loss hinge(smoothing = T)`, so "
                        "that eqgen can halve it to extrapolate to the hinge itself")
            else:
                smoothing = t.value.id
                loss_name = "hinge"
                loss = _library_expr(f"{smoothing} * softplus((1 - y * h) / {smoothing})")
        elif v is not None:
            if _check_expr(c, v, {"y", "h"} | pnames, "the loss") and \
                    not any(n.id == "h" for n in ast.names_in(v)):
                c.error("the loss does not depend on the pre-activation 'h'", v.pos,
                        "e.g. loss log(1 + exp(-y * h))")
            loss = v

    # ridge
    ridge = _num(0, mf.pos)
    if "ridge" in seen:
        v = _single_value(c, seen["ridge"], "ridge strength λ")
        if v is not None:
            _check_expr(c, v, pnames, "the ridge strength")
            ridge = v

    # sgd
    step = batch = persistence = None
    normalisation: ast.Expr = _num(1, mf.pos)
    if "sgd" not in seen:
        c.error("the model has no `sgd` statement", mf.pos,
                "add e.g. `sgd step = eta, batch_fraction = b, persistence = tau`")
    else:
        st = seen["sgd"]
        got = _items(c, st, ("step", "batch_fraction", "persistence", "normalisation"))
        step, batch, persistence = got.get("step"), got.get("batch_fraction"), \
            got.get("persistence")
        if "normalisation" in got:
            normalisation = got["normalisation"]
        if step is None and all(it.name is not None for it in st.items):
            c.error("`sgd` needs a step", st.pos, "e.g. sgd step = eta, batch_fraction = b")
        for e in got.values():
            _check_expr(c, e, pnames, "sgd")

    # regime
    continuous = False
    if "regime" in seen:
        v = _single_value(c, seen["regime"], "regime")
        if isinstance(v, ast.Name) and v.id in ("discrete", "continuous"):
            continuous = v.id == "continuous"
        elif v is not None:
            head = v.func if isinstance(v, ast.Call) else getattr(v, "id", None)
            c.error("a DMFT regime is `discrete` (SGD with step η, the default) or "
                    "`continuous` (gradient flow / stochastic gradient flow)", v.pos,
                    f"`{head}` is a regime of the committee ODEs, not of the DMFT: write "
                    "`regime discrete` or `regime continuous`" if head in COMMITTEE_REGIMES
                    else "continuous models are solved on the step η, which you can set with "
                    "--set; add --extrapolate for Richardson extrapolation in η")

    # init
    init: dict[str, ast.Expr] = {}
    for st in mf.statements:
        if st.keyword != "init":
            continue
        for it in st.items:
            if it.name is None or it.name not in STATE_NAMES:
                c.error("a DMFT init gives m (overlap with the signal) and q (orthogonal "
                        "norm |w⊥|²/d)", it.pos, _init_hint(it))
            elif it.name in init:
                c.error(f"initial value of '{it.name}' given twice", it.pos, "keep one")
            else:
                _check_expr(c, it.value, pnames, f"the initial {it.name}")
                init[it.name] = it.value

    # time
    t_max: ast.Expr = _num(10, mf.pos)
    if "time" in seen:
        got = _items(c, seen["time"], ("t_max",))
        if "t_max" in got:
            _check_expr(c, got["t_max"], pnames, "the time horizon")
            t_max = got["t_max"]

    latex: dict[str, str] = {}
    latex_pos: dict[str, ast.Pos] = {}
    for st in mf.statements:
        if st.keyword != "latex":
            continue
        for it in st.items:
            if it.name is None or not isinstance(it.value, ast.String):
                c.error('latex items are NAME = "LaTeX"', it.pos, 'e.g. latex eta = "\\eta"')
            elif it.name not in pnames:
                c.error(f"latex name for unknown parameter '{it.name}'", it.pos,
                        _did_you_mean(it.name, sorted(pnames)) if pnames else
                        "declare the parameter first")
            elif it.name in latex:
                c.error(f"latex name for '{it.name}' given twice", it.pos,
                        f"the first is at {_at(latex_pos[it.name])}: keep one")
            else:
                latex[it.name] = it.value.value
                latex_pos[it.name] = it.pos

    if c.errors or loss is None or step is None or alpha is None:
        raise SpecError(c.errors or [Diagnostic("incomplete model", mf.source.path,
                                                hint="add the missing statements")])
    return DmftSpec(
        name=mf.name, title=mf.title, source=mf.source, pos=mf.pos, params=tuple(params),
        data=data, clusters=clusters, variance=variance or _num(1, mf.pos), rho=rho,
        alpha=alpha, target=target, label=label, loss=loss, loss_name=loss_name, ridge=ridge,
        step=step, batch_fraction=batch or _num(1, mf.pos), persistence=persistence,
        normalisation=normalisation, continuous=continuous, init=init, t_max=t_max,
        latex_names=latex, smoothing=smoothing)


# The largest parameter value in size a DMFT solve accepts: the sweep squares Δ and η (and
# multiplies several such factors) in float64, which overflows near 1e308.
MAX_DMFT_VALUE = 1e100


def _sized(spec: DmftSpec, **values: float) -> list[tuple[str, float, ast.Expr]]:
    """(name, value, expression) of the resolved numbers that are subject to MAX_DMFT_VALUE
    (those the spec gives: the persistence τ and the initial m, q may be absent)."""
    exprs = {"alpha": ("α", spec.alpha), "Delta": ("Δ", spec.variance),
             "lam": ("the ridge λ", spec.ridge), "eta": ("the step η", spec.step),
             "tau": ("the persistence τ", spec.persistence),
             "m0": ("the initial m", spec.init.get("m")),
             "q0": ("the initial q", spec.init.get("q")), "t_max": ("t_max", spec.t_max)}
    return [(what, values[key], e) for key, (what, e) in exprs.items()
            if e is not None and values[key] == values[key]]


def resolve_dmft(spec: DmftSpec, overrides: Mapping[str, float] | None = None) -> DmftResolved:
    """Evaluate the parameters (with `overrides`) and check every range; raises `UsageError`
    for unknown override names and `SpecError` listing every value out of range."""
    overrides = checked_overrides(spec, overrides)
    errors: list[Diagnostic] = []
    env: dict[str, float] = {}
    for p in spec.params:
        if p.name in overrides:
            env[p.name] = float(overrides[p.name])
            continue
        try:
            env[p.name] = float(evaluate(p.value, env))
        except (EvalError, TypeError) as e:
            if isinstance(e, EvalError):
                errors.append(e.diagnostic(spec.source))
            env[p.name] = float("nan")
    if errors:
        raise SpecError(errors)

    def num(e: ast.Expr) -> float:
        try:
            return float(evaluate(e, env))
        except (EvalError, TypeError) as ex:
            if isinstance(ex, EvalError):
                errors.append(ex.diagnostic(spec.source))
            return float("nan")

    def need(ok: bool, msg: str, e: ast.Expr, hint: str) -> None:
        if not ok:
            errors.append(spec.diagnostic(msg, e.pos, hint))

    alpha, Delta, lam, eta = num(spec.alpha), num(spec.variance), num(spec.ridge), num(spec.step)
    b, kappa = num(spec.batch_fraction), num(spec.normalisation)
    rho = num(spec.rho) if spec.rho is not None else 1.0
    m0 = num(spec.init["m"]) if "m" in spec.init else 0.0
    q0 = num(spec.init["q"]) if "q" in spec.init else 1.0
    t_max = num(spec.t_max)
    need(alpha > 0, f"α (samples per dimension) must be positive, got {alpha:g}", spec.alpha,
         "α = n/d, e.g. samples_per_dimension = 3")
    need(Delta > 0, f"the cluster variance Δ must be positive, got {Delta:g}", spec.variance,
         "e.g. variance = 0.5")
    need(0 < rho <= 1, f"rho must be in (0, 1], got {rho:g}",
         spec.rho or spec.variance, "rho is the probability of the two outer clusters")
    need(lam >= 0, f"the ridge λ must be ≥ 0, got {lam:g}", spec.ridge, "e.g. ridge 0.1")
    need(eta > 0, f"the step η must be positive, got {eta:g}", spec.step, "e.g. step = 0.1")
    need(0 < b <= 1, f"the batch fraction b must be in (0, 1], got {b:g}",
         spec.batch_fraction, "b = 1 is full-batch gradient descent")
    need(kappa > 0, f"the normalisation κ must be positive, got {kappa:g}",
         spec.normalisation, "κ = 1 (no batch normalisation) or κ = b")
    if "q" in spec.init:
        need(q0 >= 0, f"the initial orthogonal norm q must be ≥ 0, got {q0:g}",
             spec.init["q"], "q = |w⊥|²/d at t = 0, e.g. init q = 1")
    need(t_max > 0, f"t_max must be positive, got {t_max:g}", spec.t_max, "e.g. time t_max = 6")
    tau = num(spec.persistence) if spec.persistence is not None else (eta / b if b > 0 else 1.0)
    if spec.persistence is not None:
        need(tau > 0, f"the persistence time τ must be positive, got {tau:g}", spec.persistence,
             "τ = η/b is plain SGD")
    for what, value, e in _sized(spec, alpha=alpha, Delta=Delta, lam=lam, eta=eta, tau=tau,
                                 m0=m0, q0=q0, t_max=t_max):
        need(abs(value) <= MAX_DMFT_VALUE, f"{what} = {value:g} is too large for the DMFT",
             e, f"its kernels hold squares such as Δ² and η², which overflow: keep every value "
                f"below {MAX_DMFT_VALUE:g} in size")
    if not errors and b < 1:
        limit = tau * min(1.0, b / (1 - b))
        need(eta <= limit * (1 + 1e-12),
             f"the step η = {eta:g} is too large for persistent SGD with b = {b:g}, "
             f"τ = {tau:g}: the selection probabilities exceed 1", spec.persistence or spec.step,
             f"persistent SGD needs η ≤ τ·min(1, b/(1−b)) = {limit:g}")
    if spec.smoothing is not None:
        temperature = env.get(spec.smoothing, 0.0)
        need(temperature > 0, f"the hinge's smoothing {spec.smoothing} must be positive, got "
             f"{temperature:g}", spec.loss, f"e.g. param {spec.smoothing} = 0.05")
    if not errors and t_max / eta > 5000:
        errors.append(spec.diagnostic(
            f"t_max/η = {t_max / eta:.0f} steps: the DMFT's cost grows as K³", spec.t_max.pos,
            "use at most 5000 steps (raise η or lower t_max)"))
    if errors:
        raise SpecError(errors)
    return DmftResolved(env, alpha, Delta if spec.data == "mixture" else 1.0, rho, lam, eta, b,
                        tau, kappa, m0, q0, t_max)
