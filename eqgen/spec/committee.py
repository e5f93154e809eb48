"""The typed spec of a two-layer (committee) model, built from a parsed file with every
problem collected, and its resolution to numbers (parameters, sizes, initial overlaps)."""

from __future__ import annotations

import difflib
import functools
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from eqgen.errors import Diagnostic, SpecError, UsageError
from eqgen.spec import ast
from eqgen.spec.functions import (
    CONSTANTS,
    RESERVED,
    SYMBOLIC_FUNCTIONS,
    degree_problem,
    size_problem,
)
from eqgen.spec.values import EvalError, closest_name, evaluate

STATE_NAMES = ("Q", "M", "P", "a", "a_star")
REGIMES = ("gradient_flow", "high_dimensional", "exponents")
MAX_WIDTH = 4096
MAX_REDUCED_WIDTH = 100_000  # the mean-field state is O(pk): no p×p matrix
# The bound a number written in a spec obeys (eqgen.spec.values: 1e300 or more in size is not
# finite there); a `--set` value obeys it too.
MAX_VALUE = 1e300


@dataclass(frozen=True)
class Param:
    name: str
    value: ast.Expr
    pos: ast.Pos


@dataclass(frozen=True)
class Teacher:
    width: ast.Expr
    activation: ast.Expr
    readout: ast.Expr
    noise: ast.Expr
    pos: ast.Pos


@dataclass(frozen=True)
class Student:
    width: ast.Expr
    activation: ast.Expr
    readout: ast.Expr
    trained: bool
    rate: ast.Expr | None  # trained second layer: γ_a d / γ, the rate in ODE time
    second_layer: ast.Expr | None  # fixed value(s) of a; the default of `init a`
    pos: ast.Pos


@dataclass(frozen=True)
class Regime:
    kind: str  # gradient_flow | high_dimensional | exponents
    kappa: Fraction | None = None
    delta: Fraction | None = None
    pos: ast.Pos = ast.Pos(0, 0)
    reduction: str | None = None  # mean_field: `regime mean_field` (gradient flow, reduced)


@dataclass(frozen=True)
class RandomInit:
    """Overlaps computed from weights drawn at dimension d (teacher rows orthonormal or not)."""

    d: ast.Expr
    seed: ast.Expr
    teacher: str  # orthonormal | gaussian
    scale: ast.Expr | None
    pos: ast.Pos


class SpecMethods:
    """What every family's typed spec offers: parameter names, the text's hash, diagnostics
    pointing into the spec file (needs `params` and `source` fields)."""

    params: tuple[Param, ...]
    source: ast.SourceFile

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def hash(self) -> str:
        """sha256 of the spec text: the freshness key of derived and generated artefacts."""
        return hashlib.sha256(self.source.text.encode()).hexdigest()

    def diagnostic(self, message: str, pos: ast.Pos, hint: str | None = None) -> Diagnostic:
        return Diagnostic(message, self.source.path, pos.line, pos.col, pos.width,
                          self.source.line(pos.line), hint)


@dataclass(frozen=True)
class CommitteeSpec(SpecMethods):
    """Everything a committee model says, still as expressions with source positions."""

    name: str
    title: str
    source: ast.SourceFile
    pos: ast.Pos
    params: tuple[Param, ...]
    teacher: Teacher
    student: Student
    loss: ast.Expr | None  # None: the square loss ½(y − ŷ)²
    learning_rate: ast.Expr
    batch: ast.Expr
    regime: Regime
    init: Mapping[str, ast.Expr]
    random_init: RandomInit | None
    t_max: ast.Expr
    latex_names: Mapping[str, str] = field(default_factory=dict)

    family = "committee"

    def state_names(self) -> frozenset[str]:
        """The parameters that can change more than the vector field's arguments: those used
        by another parameter, a width, the initial state or its random draw, or t_max.
        Changing any other parameter changes only its own value (a sweep resolves such an
        axis once, not once per grid point)."""
        exprs: list[ast.Expr | None] = [p.value for p in self.params]
        exprs += [self.student.width, self.teacher.width, self.student.second_layer,
                  self.t_max, *self.init.values()]
        if self.random_init is not None:
            ri = self.random_init
            exprs += [ri.d, ri.seed, ri.scale]
        return frozenset(n.id for e in exprs if e is not None for n in ast.names_in(e))

    def checked_names(self) -> list[frozenset[str]]:
        """For each range-checked expression (readouts, learning rate, batch, label noise,
        second-layer rate) the parameters it uses, directly or through derived parameters: a
        value out of range can depend on several of them at once."""
        exprs = [self.student.readout, self.teacher.readout, self.learning_rate, self.batch,
                 self.teacher.noise, self.student.rate]
        uses = {p.name: {n.id for n in ast.names_in(p.value)} for p in self.params}

        def closure(names: set[str]) -> frozenset[str]:  # through derived parameters
            todo, seen = list(names), set(names)
            while todo:
                for n in uses.get(todo.pop(), ()):
                    if n not in seen:
                        seen.add(n)
                        todo.append(n)
            return frozenset(seen)

        return [closure({n.id for n in ast.names_in(e)}) for e in exprs if e is not None]


@dataclass(frozen=True)
class Resolved:
    """A committee spec with numbers: parameters (after overrides), sizes and initial state."""

    params: dict[str, float]
    p: int
    k: int
    c_p: float
    c_k: float
    gamma: float
    batch: int
    Delta: float
    rate: float
    t_max: float
    init: dict[str, np.ndarray]


# ---------------------------------------------------------------------------------------------
# building the typed spec


class _Collector:
    def __init__(self, mf: ast.ModelFile):
        self.mf = mf
        self.errors: list[Diagnostic] = list(mf.problems)  # found by the parser

    def error(self, message: str, pos: ast.Pos, hint: str | None = None) -> None:
        src = self.mf.source
        self.errors.append(Diagnostic(message, src.path, pos.line, pos.col, pos.width,
                                      src.line(pos.line), hint))


def _did_you_mean(name: str, options: list[str] | tuple[str, ...]) -> str:
    if (close := closest_name(name, options)) is not None:
        return f"did you mean '{close}'?"
    return "allowed: " + ", ".join(options) if options else "nothing is allowed here"


def _sentence(*parts: str | None) -> str:
    """Hint fragments joined into sentences: 'did you mean 'p'? Parameters are ...'."""
    out = ""
    for part in parts:
        if not part:
            continue
        if out:
            out += ("" if out[-1] in ".?!" else ".") + " " + part[0].upper() + part[1:]
        else:
            out = part
    return out


def _example_call(func: str) -> str:
    return {"He": "He(3, z)", "max": "max(z, 0)", "min": "min(z, 0)"}.get(func, f"{func}(z)")


def _check_expr(c: _Collector, expr: ast.Expr, allowed: set[str], what: str) -> bool:
    """Names must be declared; functions known with the right number of arguments.

    Returns whether the expression is fine (so that checks depending on it can be skipped
    instead of reporting the same mistake again)."""
    before = len(c.errors)
    for n in ast.names_in(expr):
        if n.id not in allowed and n.id not in CONSTANTS:
            if allowed <= {"z", "y", "yhat"}:
                hint = (f"{what} may only use {', '.join(sorted(allowed))}, numbers and pi: "
                        "it is compiled into the generated code")
            else:
                hint = _sentence(_did_you_mean(n.id, sorted(allowed)) if allowed else None,
                                 "parameters are declared with `param NAME = VALUE`")
            c.error(f"unknown name '{n.id}' in {what}", n.pos, hint)
    for call in ast.calls_in(expr):
        if call.func not in SYMBOLIC_FUNCTIONS:
            c.error(f"unknown function '{call.func}' in {what}", call.pos,
                    _did_you_mean(call.func, sorted(SYMBOLIC_FUNCTIONS)))
            continue
        if call.kwargs:
            c.error(f"{call.func}() takes no keyword arguments", call.kwargs[0].pos,
                    f"give the argument without a name, e.g. {_example_call(call.func)}")
        given = len(call.args) + len(call.kwargs)  # keyword arguments are reported above
        if given not in SYMBOLIC_FUNCTIONS[call.func]:
            n = SYMBOLIC_FUNCTIONS[call.func][0]
            c.error(f"{call.func}() takes {n} argument{'s' if n > 1 else ''}, "
                    f"got {given}", call.pos, f"e.g. {_example_call(call.func)}")
        if call.func == "He" and call.args and not (
                isinstance(call.args[0], ast.Number) and call.args[0].value.denominator == 1
                and 0 <= call.args[0].value <= 30):
            c.error("He(n, z) needs a whole-number degree n between 0 and 30 first",
                    call.args[0].pos, "e.g. He(3, z) = z**3 - 3*z")
    if (too_large := size_problem(expr)) is not None:
        message, pos, hint = too_large
        c.error(f"{message} in {what}", pos, hint)
    for lst in ast.lists_in(expr):
        c.error(f"a list is not allowed in {what}", lst.pos,
                "lists are for initial values (`init`) and fixed(...) second layers; "
                f"{what} is a single expression")
    return len(c.errors) == before


def _kwargs(c: _Collector, call: ast.Call, allowed: tuple[str, ...], what: str
            ) -> dict[str, ast.KeywordArg]:
    out: dict[str, ast.KeywordArg] = {}
    if call.args:  # one report for all of them
        c.error(f"{what} takes named arguments only", call.args[0].pos,
                f"name each value, e.g. {call.func}({allowed[0]} = ...); allowed names: "
                + ", ".join(allowed))
    for kw in call.kwargs:
        if kw.name not in allowed:
            c.error(f"unknown argument '{kw.name}' of {what}", kw.pos,
                    _did_you_mean(kw.name, allowed))
        elif kw.name in out:
            first = out[kw.name].pos
            c.error(f"argument '{kw.name}' given twice", kw.pos,
                    f"the first is at column {first.col}"
                    + (f" of line {first.line}" if first.line != kw.pos.line else "")
                    + f": keep one `{kw.name} = ...`")
        else:
            out[kw.name] = kw
    return out


def _single_value(c: _Collector, st: ast.Statement, what: str) -> ast.Expr | None:
    if len(st.items) != 1 or st.items[0].name is not None:
        c.error(f"`{st.keyword}` takes a single {what}", st.pos, _SINGLE_EXAMPLES.get(
            st.keyword, f"write `{st.keyword} VALUE`, without a name and with one value"))
        return None
    return st.items[0].value


_SINGLE_EXAMPLES = {
    "data": "write `data gaussian`",
    "teacher": "one network, e.g. teacher committee(width = k, activation = erf(z / sqrt(2)))",
    "student": "one network, e.g. student committee(width = p, activation = erf(z / sqrt(2)))",
    "loss": "one expression, e.g. `loss square` or `loss (y - yhat)**2 / 2`",
    "regime": "one of: regime gradient_flow, regime high_dimensional, "
              "regime exponents(kappa = 0, delta = 0)",
}


def _at(pos: ast.Pos) -> str:
    return f"line {pos.line}, column {pos.col}"


def _default(e: ast.Expr | None, pos: ast.Pos, value: Fraction | str) -> ast.Expr:
    if e is not None:
        return e
    if isinstance(value, str):
        return ast.Name(value, pos)
    return ast.Number(value, str(value), pos)


# Statements the grammar accepts that belong to another family: (message, hint) for each.
_OTHER_FAMILY = {
    "ridge": ("a committee model has no `ridge` statement",
              "ridge regularisation is a statement of the Gaussian-mixture (DMFT) family; the "
              "committee ODEs have none: remove it, or write a DMFT model with `student "
              "perceptron(...)`"),
}


def _check_family_statements(c: _Collector, by_kw: Mapping[str, list[ast.Statement]]) -> None:
    """Report every statement of another family: silently ignoring it would solve a model
    other than the one written."""
    for keyword, (message, hint) in _OTHER_FAMILY.items():
        for st in by_kw.get(keyword, []):
            c.error(message, st.pos, hint)


def build_committee(mf: ast.ModelFile) -> CommitteeSpec:
    """Check and type a parsed committee model; raises `SpecError` listing every problem."""
    c = _Collector(mf)  # starts with the parser's problems: all are reported together
    seen: dict[str, ast.Statement] = {}
    for st in mf.statements:
        if st.keyword in seen and st.keyword not in ("param", "init", "latex"):
            prev = seen[st.keyword].pos
            c.error(f"second `{st.keyword}` statement", st.pos,
                    f"the first one is on line {prev.line}; a model has one")
        seen.setdefault(st.keyword, st)
    by_kw: dict[str, list[ast.Statement]] = {}
    for st in mf.statements:
        by_kw.setdefault(st.keyword, []).append(st)
    _check_family_statements(c, by_kw)

    # parameters
    params: list[Param] = []
    for st in by_kw.get("param", []):
        if not st.items:
            c.error("`param` needs at least one `name = value`", st.pos,
                    "e.g. param p = 2, gamma = 1.0")
        for it in st.items:
            if it.name is None:
                c.error("a parameter needs a name: `param NAME = VALUE`", it.pos,
                        "e.g. param gamma = 1.0")
                continue
            if it.name in RESERVED:
                c.error(f"'{it.name}' is a reserved word and cannot be a parameter", it.pos,
                        "choose another name")
            elif first := next((p for p in params if p.name == it.name), None):
                c.error(f"parameter '{it.name}' declared twice", it.pos,
                        f"the first declaration is at {_at(first.pos)}: keep one (to try "
                        "other values, use --set NAME=VALUE on the command line)")
            else:
                params.append(Param(it.name, it.value, it.pos))
    declared: set[str] = set()
    for p in params:
        for n in ast.names_in(p.value):
            if n.id not in declared and n.id not in CONSTANTS:
                hint = ("parameters may only use parameters declared before them: move "
                        f"'{n.id}' before '{p.name}'"
                        if n.id in {q.name for q in params} else _sentence(
                            _did_you_mean(n.id, sorted(declared)) if declared else None,
                            "a parameter value may use numbers, pi and parameters declared "
                            "before it"))
                c.error(f"unknown name '{n.id}' in the value of '{p.name}'", n.pos, hint)
        for call in ast.calls_in(p.value):
            if call.func not in ("sqrt", "exp", "log"):
                c.error(f"function '{call.func}' is not allowed in a parameter value", call.pos,
                        "parameter values may use sqrt, exp and log")
        declared.add(p.name)
    pnames = {p.name for p in params}

    # data
    if "data" in seen:
        v = _single_value(c, seen["data"], "data model")
        if v is not None and not (isinstance(v, ast.Name) and v.id == "gaussian"):
            c.error("a committee model takes `data gaussian` (x ~ N(0, I_d))", v.pos,
                    "Gaussian-mixture data belongs to the DMFT family")

    # teacher
    teacher = None
    if "teacher" not in seen:
        c.error("the model has no `teacher` statement", mf.pos,
                "add e.g. `teacher committee(width = k, activation = erf(z / sqrt(2)))`")
    else:
        st = seen["teacher"]
        v = _single_value(c, st, "network, e.g. committee(width = k, activation = ...)")
        if isinstance(v, ast.Call) and v.func == "committee":
            kw = _kwargs(c, v, ("width", "activation", "readout", "noise"), "teacher committee")
            teacher = _network_parts(c, v, kw, pnames, "teacher")
            if teacher is not None:
                w, act, ro = teacher
                noise = kw["noise"].value if "noise" in kw else None
                if noise is not None:
                    _check_expr(c, noise, pnames, "the label noise")
                teacher = Teacher(w, act, ro, _default(noise, v.pos, Fraction(0)), v.pos)
        elif v is not None:
            c.error("the teacher must be `committee(...)`", v.pos,
                    "e.g. teacher committee(width = k, activation = erf(z / sqrt(2)))")

    # student
    student = None
    if "student" not in seen:
        c.error("the model has no `student` statement", mf.pos,
                "add e.g. `student committee(width = p, activation = erf(z / sqrt(2)))`")
    else:
        st = seen["student"]
        v = _single_value(c, st, "network, e.g. committee(width = p, activation = ...)")
        if isinstance(v, ast.Call) and v.func == "committee":
            kw = _kwargs(c, v, ("width", "activation", "readout", "second_layer"),
                         "student committee")
            parts = _network_parts(c, v, kw, pnames, "student")
            trained, rate, fixed = False, None, None
            if "second_layer" in kw:
                sl = kw["second_layer"].value
                if isinstance(sl, ast.Call) and sl.func == "fixed":
                    if sl.kwargs or len(sl.args) > 1:
                        c.error("fixed() takes one value (a number or a list)", sl.pos,
                                "e.g. fixed(1) for a_j = 1, or fixed([1, -1]) for one value "
                                "per unit")
                    fixed = sl.args[0] if sl.args else None
                elif isinstance(sl, ast.Name) and sl.id == "fixed":
                    fixed = None
                elif isinstance(sl, ast.Call) and sl.func == "trained":
                    trained = True
                    k2 = _kwargs(c, sl, ("rate",), "trained()")
                    rate = k2["rate"].value if "rate" in k2 else None
                    if rate is not None:
                        _check_expr(c, rate, pnames, "the second-layer rate")
                elif isinstance(sl, ast.Name) and sl.id == "trained":
                    trained = True
                else:
                    c.error("second_layer must be fixed(VALUE) or trained(rate = R)", sl.pos,
                            "fixed(1) keeps a_j = 1; trained(rate = 1) learns a with "
                            "da/dt = rate · E[𝓔 σ(λ)]")
            if parts is not None:
                w, act, ro = parts
                student = Student(w, act, ro, trained, rate, fixed, v.pos)
        elif v is not None:
            c.error("the student must be `committee(...)`", v.pos,
                    "e.g. student committee(width = p, activation = erf(z / sqrt(2)))")

    # loss
    loss = None
    if "loss" in seen:
        v = _single_value(c, seen["loss"], "loss expression of y and yhat")
        if v is not None and not (isinstance(v, ast.Name) and v.id == "square"):
            if _check_expr(c, v, {"y", "yhat"}, "the loss") and \
                    not any(n.id == "yhat" for n in ast.names_in(v)):
                c.error("the loss does not depend on the prediction 'yhat'", v.pos,
                        "e.g. loss (y - yhat)**2 / 2, or loss log(1 + exp(-y * yhat))")
            loss = v

    # sgd
    lr, batch = None, None
    if "sgd" not in seen:
        c.error("the model has no `sgd` statement", mf.pos,
                "add e.g. `sgd learning_rate = gamma, batch = 1`")
    else:
        st = seen["sgd"]
        got = _items(c, st, ("learning_rate", "batch"))
        lr, batch = got.get("learning_rate"), got.get("batch")
        if lr is None and all(it.name is not None for it in st.items):
            c.error("`sgd` needs a learning_rate", st.pos, "e.g. sgd learning_rate = gamma")
        for e in (lr, batch):
            if e is not None:
                _check_expr(c, e, pnames, "sgd")

    # regime
    regime = Regime("high_dimensional")
    if "regime" in seen:
        v = _single_value(c, seen["regime"], "regime")
        if isinstance(v, ast.Name) and v.id in ("gradient_flow", "high_dimensional"):
            regime = Regime(v.id, pos=v.pos)
        elif isinstance(v, ast.Name) and v.id == "mean_field":  # docs/theory.md, Regimes, p → ∞
            regime = Regime("gradient_flow", pos=v.pos, reduction="mean_field")
        elif isinstance(v, ast.Call) and v.func == "exponents":
            kw = _kwargs(c, v, ("kappa", "delta"), "exponents()")
            nums = {}
            for key in ("kappa", "delta"):
                e = kw[key].value if key in kw else None
                val = _const(e) if e is not None else Fraction(0)
                if val is None:
                    c.error(f"{key} must be a number", e.pos if e else v.pos,
                            "write a plain number or fraction (parameters are not allowed "
                            "here), e.g. exponents(kappa = 0, delta = -1/2)")
                nums[key] = val
            regime = Regime("exponents", nums["kappa"], nums["delta"], v.pos)
        elif v is not None:
            name = v.func if isinstance(v, ast.Call) else getattr(v, "id", "?")
            c.error(f"unknown regime '{name}'", v.pos,
                    "use gradient_flow, high_dimensional, mean_field or "
                    "exponents(kappa = K, delta = D)")

    # init
    init: dict[str, ast.Expr] = {}
    init_pos: dict[str, ast.Pos] = {}
    rinit = None
    for st in by_kw.get("init", []):
        for it in st.items:
            if it.name is None:
                v = it.value
                if isinstance(v, ast.Call) and v.func == "random":
                    if rinit is not None:
                        c.error("init random(...) given twice", v.pos,
                                f"the first is at {_at(rinit.pos)}: keep one")
                        continue
                    kw = _kwargs(c, v, ("d", "seed", "teacher", "scale"), "random()")
                    t = kw["teacher"].value if "teacher" in kw else None
                    tname = "orthonormal"
                    if t is not None:
                        if isinstance(t, ast.Name) and t.id in ("orthonormal", "gaussian"):
                            tname = t.id
                        else:
                            c.error("teacher must be orthonormal or gaussian", t.pos,
                                    "write teacher = orthonormal (rows of norm √d, orthogonal) "
                                    "or teacher = gaussian (i.i.d. N(0, 1))")
                    if "d" not in kw:
                        c.error("random() needs the dimension d", v.pos,
                                "e.g. init random(d = 1000, seed = 0)")
                    for key in ("d", "seed", "scale"):
                        if key in kw:
                            _check_expr(c, kw[key].value, pnames, "random()")
                    rinit = RandomInit(
                        kw["d"].value if "d" in kw else ast.Number(Fraction(1000), "1000", v.pos),
                        kw["seed"].value if "seed" in kw else ast.Number(Fraction(0), "0", v.pos),
                        tname, kw["scale"].value if "scale" in kw else None, v.pos)
                else:
                    c.error("init takes `NAME = VALUE` items or random(d = ..., seed = ...)",
                            it.pos, "e.g. init Q = 0.5 * identity(p), M = zeros(p, k), or "
                            "init random(d = 1000, seed = 0)")
                continue
            if it.name not in STATE_NAMES:
                c.error(f"unknown order parameter '{it.name}'", it.pos,
                        _did_you_mean(it.name, STATE_NAMES))
            elif it.name in init:
                c.error(f"initial value of '{it.name}' given twice", it.pos,
                        f"the first is at {_at(init_pos[it.name])}: keep one")
            else:
                for n in ast.names_in(it.value):
                    if n.id not in pnames and n.id not in CONSTANTS:
                        c.error(f"unknown name '{n.id}' in the initial value of {it.name}",
                                n.pos, _sentence(
                                    _did_you_mean(n.id, sorted(pnames)) if pnames else None,
                                    "initial values may use parameters, numbers, pi and "
                                    "identity, zeros, ones, diag"))
                init[it.name] = it.value
                init_pos[it.name] = it.pos
    if rinit is None and not ({"Q", "M"} <= set(init)):
        missing = [n for n in ("Q", "M") if n not in init]
        c.error(f"no initial value for {' and '.join(missing)}",
                by_kw["init"][0].pos if "init" in by_kw else mf.pos,
                "add e.g. `init Q = 0.5 * identity(p), M = zeros(p, k)` or "
                "`init random(d = 1000, seed = 0)`")
    if rinit is not None and {"Q", "M"} & set(init):
        c.error("init gives both random(...) and explicit overlaps", rinit.pos,
                "keep one of them")

    # time
    t_max: ast.Expr = ast.Number(Fraction(100), "100", mf.pos)
    if "time" in seen:
        got = _items(c, seen["time"], ("t_max",))
        if "t_max" in got:
            _check_expr(c, got["t_max"], pnames, "the time horizon")
            t_max = got["t_max"]
        elif all(it.name is not None for it in seen["time"].items):
            c.error("`time` needs t_max", seen["time"].pos, "e.g. time t_max = 1000")

    # latex names
    latex: dict[str, str] = {}
    latex_pos: dict[str, ast.Pos] = {}
    for st in by_kw.get("latex", []):
        for it in st.items:
            if it.name is None or not isinstance(it.value, ast.String):
                c.error('latex items are NAME = "LaTeX"', it.pos,
                        'e.g. latex gamma = "\\gamma"')
            elif it.name not in pnames:
                c.error(f"latex name for unknown parameter '{it.name}'", it.pos,
                        _did_you_mean(it.name, sorted(pnames)) if pnames else
                        "declare the parameter first with `param NAME = VALUE`")
            elif it.name in latex:
                c.error(f"latex name for '{it.name}' given twice", it.pos,
                        f"the first is at {_at(latex_pos[it.name])}: keep one")
            else:
                latex[it.name] = it.value.value
                latex_pos[it.name] = it.pos

    if c.errors or teacher is None or student is None or lr is None:
        raise SpecError(c.errors or [Diagnostic("incomplete model", mf.source.path,
                                                hint="add the missing statements")])
    return CommitteeSpec(
        name=mf.name, title=mf.title, source=mf.source, pos=mf.pos, params=tuple(params),
        teacher=teacher, student=student, loss=loss, learning_rate=lr,
        batch=_default(batch, mf.pos, Fraction(1)), regime=regime, init=init,
        random_init=rinit, t_max=t_max, latex_names=latex)


def _items(c: _Collector, st: ast.Statement, allowed: tuple[str, ...]) -> dict[str, ast.Expr]:
    out: dict[str, ast.Expr] = {}
    for it in st.items:
        if it.name is None:
            c.error(f"`{st.keyword}` takes `NAME = VALUE` items", it.pos,
                    f"name the value, e.g. `{st.keyword} {allowed[0]} = "
                    f"{ast.to_text(it.value)[:40]}`; allowed names: " + ", ".join(allowed))
        elif it.name not in allowed:
            c.error(f"unknown setting '{it.name}' of `{st.keyword}`", it.pos,
                    _did_you_mean(it.name, allowed))
        elif it.name in out:
            c.error(f"'{it.name}' given twice", it.pos, f"keep one `{it.name} = ...`")
        else:
            out[it.name] = it.value
    return out


def _const(e: ast.Expr) -> Fraction | None:
    """The exact value of a constant expression of numbers and + - * /, else None."""

    def combine(x: ast.Expr, parts: list[Fraction | None]) -> Fraction | None:
        if isinstance(x, ast.Number):
            return x.value
        if None in parts:
            return None
        if isinstance(x, ast.Neg):
            return -parts[0]
        if isinstance(x, ast.BinOp) and x.op in "+-*/":
            a, b = parts
            if x.op == "/" and b == 0:
                return None
            return {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else a}[x.op]
        return None

    return ast.fold(e, combine)


def _network_parts(c: _Collector, call: ast.Call, kw: dict[str, ast.KeywordArg],
                   pnames: set[str], who: str) -> tuple[ast.Expr, ast.Expr, ast.Expr] | None:
    ok = True
    unknown = [k.name for k in call.kwargs if k.name not in kw]
    for key in ("width", "activation"):
        if key not in kw:
            ok = False
            if call.args or difflib.get_close_matches(key, unknown, n=1):
                continue  # already reported: positional or misspelt arguments
            c.error(f"the {who} needs {'an' if key[0] in 'aeiou' else 'a'} {key}", call.pos,
                    f"e.g. {who} committee(width = {'k' if who == 'teacher' else 'p'}, "
                    "activation = erf(z / sqrt(2)))")
    if not ok:
        return None
    width = kw["width"].value
    _check_expr(c, width, pnames, f"the {who} width")
    act = kw["activation"].value
    if not _check_expr(c, act, {"z"}, f"the {who} activation"):
        pass
    elif not any(n.id == "z" for n in ast.names_in(act)):
        c.error(f"the {who} activation does not depend on z", act.pos,
                "write the activation as a function of z, e.g. erf(z / sqrt(2))")
    elif not any(d.line == act.pos.line for d in c.errors) and \
            (too_high := degree_problem(act, who)) is not None:  # one report per activation
        c.error(too_high, act.pos, "the exact Gaussian integrals of high powers take too long "
                "to derive: lower the degree (see docs/robustness.md)")
    ro = kw["readout"].value if "readout" in kw else None
    if ro is not None:
        _check_expr(c, ro, pnames, f"the {who} readout")
    else:
        ro = ast.BinOp("/", ast.Number(Fraction(1), "1", call.pos), width, call.pos)
    return width, act, ro


# ---------------------------------------------------------------------------------------------
# resolution to numbers


def checked_overrides(spec: SpecMethods, overrides: Mapping[str, float] | None
                      ) -> dict[str, float]:
    """`overrides` (from `--set` or the API) as floats, each naming a parameter of `spec` and
    finite and below MAX_VALUE in size, like a number written in the spec; else `UsageError`."""
    out: dict[str, float] = {}
    for name, v in (overrides or {}).items():
        try:
            out[name] = float(v)
        except (TypeError, ValueError):
            raise UsageError(f"--set {name}: {v!r} is not a number") from None
    unknown = [n for n in out if n not in spec.param_names]
    if unknown:
        raise UsageError(f"unknown parameter(s) {', '.join(unknown)} in --set; this model has: "
                         + ", ".join(spec.param_names))
    for name, v in out.items():
        if not (math.isfinite(v) and abs(v) < MAX_VALUE):
            raise UsageError(f"--set {name}={v:g}: a parameter must be finite and less than "
                             f"{MAX_VALUE:g} in size, like a number written in the spec")
    return out


def resolve(spec: CommitteeSpec, overrides: Mapping[str, float] | None = None,
            init_overrides: Mapping[str, np.ndarray] | None = None,
            init_source: str = "--init", use_spec_init: bool = True,
            overlaps: bool = True) -> Resolved:
    """Evaluate parameters (with `overrides`), sizes and the initial state, checking each.

    Raises `UsageError` for unknown override names and `SpecError` (all problems at once)
    for values out of range, wrong shapes and an initial covariance Ω that is not symmetric
    positive semi-definite.
    """
    overrides = checked_overrides(spec, overrides)
    errors: list[Diagnostic] = []

    def err(msg: str, pos: ast.Pos, hint: str | None = None) -> None:
        errors.append(spec.diagnostic(msg, pos, hint))

    from_file = set(init_overrides or {})

    def init_err(msg: str, names: tuple[str, ...], hint: str) -> None:
        """A problem of initial states `names`: at the --init file when one of them came from
        it, else at the spec's `init` value of the last one."""
        mine = [n for n in names if n in from_file]
        if mine:
            which = f" ({', '.join(mine)} from this file)" if len(names) > 1 else ""
            errors.append(Diagnostic(msg + which, init_source, hint=f"{hint}; fix the JSON file"))
        else:
            err(msg, _init_pos(spec, names[-1]), hint)

    # A parameter that cannot be computed is reported once: values that use it are skipped
    # (NaN below always means "already reported", and range checks skip it).
    env: dict[str, float] = {}
    failed: set[str] = set()

    def uses_failed(e: ast.Expr) -> bool:
        return bool(failed) and any(n.id in failed for n in ast.names_in(e))

    for p in spec.params:
        if p.name in overrides:
            env[p.name] = float(overrides[p.name])
            continue
        env[p.name] = float("nan")
        if uses_failed(p.value):
            failed.add(p.name)
            continue
        try:
            v = evaluate(p.value, env)
        except EvalError as e:
            errors.append(e.diagnostic(spec.source))
            failed.add(p.name)
            continue
        if isinstance(v, np.ndarray):
            err(f"parameter '{p.name}' must be a number, not a list", p.value.pos,
                "a parameter is a single number; lists and matrices belong in `init`")
            failed.add(p.name)
            continue
        env[p.name] = float(v)

    def num(e: ast.Expr, what: str, extra: Mapping[str, float] | None = None) -> float:
        if uses_failed(e):
            return float("nan")
        try:
            v = evaluate(e, {**env, **(extra or {})})
        except EvalError as ex:
            errors.append(ex.diagnostic(spec.source))
            return float("nan")
        if isinstance(v, np.ndarray):
            err(f"{what} must be a number", e.pos, "a list is not allowed here: write a number")
            return float("nan")
        return float(v)

    def bad(msg: str, e: ast.Expr, hint: str) -> None:
        """A value out of range: reported here, and not again where its parameters are used."""
        err(msg, e.pos, hint)
        failed.update(n.id for n in ast.names_in(e) if n.id in env)

    def size(e: ast.Expr, what: str, limit: int = MAX_WIDTH) -> int:
        v = num(e, what)
        if v != v:
            return 1
        if not (_whole(v) and 1 <= v <= limit):
            bad(f"{what} must be a whole number between 1 and {limit}, got {v:g}", e,
                "set it with --set or in `param`")
            return 1
        return int(v)

    p = size(spec.student.width, "the student width",
             MAX_WIDTH if overlaps else MAX_REDUCED_WIDTH)
    k = size(spec.teacher.width, "the teacher width")
    c_p = num(spec.student.readout, "the student readout scale")
    c_k = num(spec.teacher.readout, "the teacher readout scale")
    for v, e, who in ((c_p, spec.student.readout, "student"), (c_k, spec.teacher.readout,
                                                               "teacher")):
        if v == v and not v > 0:
            bad(f"the {who} readout scale must be positive, got {v:g}", e,
                "the readout c scales the output f(x) = c Σ_j a_j σ(λ_j): e.g. readout = "
                + ("1/p" if who == "student" else "1/k") + " (the default) or 1")
    gamma = num(spec.learning_rate, "the learning rate")
    if gamma == gamma and not gamma > 0:
        bad(f"the learning rate must be positive, got {gamma:g}", spec.learning_rate,
            "e.g. sgd learning_rate = 0.5, batch = 1")
    b = num(spec.batch, "the batch size")
    if b != b:
        b = 1
    elif not (_whole(b) and b >= 1):
        bad(f"the batch size must be a whole number ≥ 1, got {b:g}", spec.batch,
            "the number of samples per SGD step, e.g. batch = 1")
        b = 1
    Delta = num(spec.teacher.noise, "the label noise")
    if Delta == Delta and not Delta >= 0:
        bad(f"the label noise variance Δ must be ≥ 0, got {Delta:g}", spec.teacher.noise,
            "noise is the variance Δ of Gaussian label noise: 0 for noiseless labels")
    rate = 1.0
    if spec.student.rate is not None:
        rate = num(spec.student.rate, "the second-layer rate")
        if rate == rate and not rate >= 0:
            bad(f"the second-layer rate must be ≥ 0, got {rate:g}", spec.student.rate,
                "e.g. second_layer = trained(rate = 1); rate = 0 keeps the second layer fixed")
    t_max = num(spec.t_max, "t_max")
    if t_max == t_max and not t_max > 0:
        bad(f"t_max must be positive, got {t_max:g}", spec.t_max,
            "the time horizon in ODE time units, e.g. time t_max = 1000")

    shapes = {"Q": (p, p), "M": (p, k), "P": (k, k), "a": (p,), "a_star": (k,)}
    init: dict[str, np.ndarray] = {}
    if errors:
        raise SpecError(errors)
    if not overlaps:  # numbers only; the reduced (mean-field) state is built by its model
        return Resolved(env, p, k, c_p, c_k, gamma, int(b), Delta, rate, t_max, init)
    if not use_spec_init:  # only parameters matter (e.g. a bare vector field): neutral overlaps
        init.update(Q=np.eye(p), M=np.zeros((p, k)), P=np.eye(k))
    elif spec.random_init is not None:
        init.update(_random_overlaps(spec, p, k, num, size, err))
    for name in STATE_NAMES:
        if name in spec.init and use_spec_init:
            try:
                init[name] = np.asarray(evaluate(spec.init[name], env), dtype=float)
            except EvalError as e:
                errors.append(e.diagnostic(spec.source))
    if "P" not in init:
        init["P"] = np.eye(k)
    if "a" not in init:
        base = 1.0
        if spec.student.second_layer is not None:
            try:
                base = evaluate(spec.student.second_layer, env)
            except EvalError as e:
                errors.append(e.diagnostic(spec.source))
        init["a"] = np.asarray(base, dtype=float)
    if "a_star" not in init:
        init["a_star"] = np.asarray(1.0)
    for name, arr in (init_overrides or {}).items():
        init[name] = np.asarray(arr, dtype=float)
    for name, shape in shapes.items():
        if name not in init:
            continue
        arr = init[name]
        if arr.ndim == 0:  # scalars broadcast: 0.5 means 0.5 everywhere (a, a_star) or identity
            arr = np.full(shape, float(arr)) if len(shape) == 1 or name == "M" else \
                float(arr) * np.eye(shape[0])
        init[name] = arr
        if arr.shape != shape:
            from_second_layer = name == "a" and "a" not in spec.init and \
                spec.student.second_layer is not None
            where = spec.student.second_layer.pos if from_second_layer else \
                _init_pos(spec, name)
            msg = (f"{'second_layer = fixed(...)' if from_second_layer else f'initial {name}'} "
                   f"has shape {_shape_text(arr.shape)}, but p = {p} and k = {k} "
                   f"need {_shape_text(shape)}")
            if name in (init_overrides or {}):
                errors.append(Diagnostic(msg, init_source, hint="fix the JSON file"))
            else:
                err(msg, where, _SHAPE_HINTS[name])
        elif not np.all(np.isfinite(arr)):
            init_err(f"initial {name} has non-finite entries", (name,),
                     "check the initial value for overflow or division by zero")
    if errors:
        raise SpecError(errors)
    for name in ("Q", "P"):
        a = init[name]
        if not np.allclose(a, a.T, rtol=1e-10, atol=1e-12):
            init_err(f"initial {name} is not symmetric", (name,),
                     f"{name} is a Gram matrix of weight vectors: make it symmetric")
    if not errors and "Q" in init and "M" in init:
        omega = np.block([[init["Q"], init["M"]], [init["M"].T, init["P"]]])
        tol = 1e-10 * max(1.0, float(np.abs(omega).max()))
        lo = _smallest_eigenvalue_below(omega, -tol)
        if lo is not None:
            init_err(f"the initial covariance Ω = [[Q, M], [Mᵀ, P]] is not positive "
                     f"semi-definite (smallest eigenvalue {lo:.3g})", ("Q", "P", "M"),
                     "overlaps must come from real weight vectors: |M_jr|² ≤ Q_jj P_rr and more")
    if errors:
        raise SpecError(errors)
    return Resolved(env, p, k, c_p, c_k, gamma, int(b), Delta, rate, t_max, init)


def _smallest_eigenvalue_below(omega: np.ndarray, bound: float) -> float | None:
    """The smallest eigenvalue of the symmetric `omega` when it is below `bound` < 0, else
    None. A Cholesky factorisation of Ω − bound·I settles the common case (Ω well inside the
    cone) about five times faster than the eigenvalues at widths in the thousands; the
    eigenvalues decide when it fails, so the criterion is the eigenvalue one."""
    shifted = omega - bound * np.eye(len(omega))
    try:
        np.linalg.cholesky(shifted)
        return None
    except np.linalg.LinAlgError:
        lo = float(np.linalg.eigvalsh(omega).min())
        return lo if lo < bound else None


_SHAPE_HINTS = {
    "Q": "give a p×p matrix as a nested list such as [[1, 0], [0, 1]], or e.g. "
         "0.5 * identity(p)",
    "M": "give a p×k matrix as a nested list such as [[0.1, 0], [0, 0.1]], or e.g. zeros(p, k)",
    "P": "give a k×k matrix as a nested list such as [[1, 0], [0, 1]], or e.g. identity(k)",
    "a": "give a list of p numbers such as [1, 1], or one number for every unit, e.g. ones(p)",
    "a_star": "give a list of k numbers such as [1, 1], or one number for every unit, "
              "e.g. ones(k)",
}


def _whole(v: float) -> bool:
    """A finite whole number (NaN and ±inf are not)."""
    return math.isfinite(v) and v == int(v)


def _shape_text(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape)) if shape else "scalar"


def _init_pos(spec: CommitteeSpec, name: str) -> ast.Pos:
    if name in spec.init:
        return spec.init[name].pos
    if spec.random_init is not None:
        return spec.random_init.pos
    return spec.pos


def _random_overlaps(spec, p, k, num, size, err) -> dict[str, np.ndarray]:  # noqa: ANN001
    """Overlaps of weights drawn at dimension d: W ~ N(0, scale²), W* Gaussian or orthonormal."""
    ri = spec.random_init
    d = num(ri.d, "d")
    if d != d:
        return {}
    if not (_whole(d) and k <= d <= 10**6 and p <= d * 10**3):
        err(f"d must be a whole number with k ≤ d ≤ 10⁶, got {d:g}", ri.d.pos,
            "the input dimension the weights are drawn at, e.g. init random(d = 1000, seed = 0)")
        return {}
    if (p + k) * d > 2**27:  # the drawn weights, (p + k) × d float64: at most 1 GiB
        err(f"random weights of (p + k) × d = {(p + k) * d:.3g} entries need "
            f"{8 * (p + k) * d / 2**30:.3g} GiB (at most 1 GiB)", ri.d.pos,
            "draw them at a smaller d: the overlaps' fluctuations shrink as 1/√d anyway")
        return {}
    seed = num(ri.seed, "seed")
    if seed != seed:
        return {}
    if not (_whole(seed) and seed >= 0):
        err("seed must be a whole number ≥ 0", ri.seed.pos, "e.g. seed = 0")
        return {}
    scale = num(ri.scale, "scale") if ri.scale is not None else 1.0
    if scale != scale:
        return {}
    Q, M, P = _overlaps_of_random_weights(p, k, int(d), int(seed), ri.teacher, scale)
    return {"Q": Q.copy(), "M": M.copy(), "P": P.copy()}


@functools.lru_cache(maxsize=64)
def _overlaps_of_random_weights(p: int, k: int, d: int, seed: int, teacher: str,
                                scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Q, M, P of `random_weights`, kept per arguments: a sweep resolves the same random
    start at every grid point."""
    W, Ws = random_weights(p, k, d, seed, teacher, scale)
    return W @ W.T / d, W @ Ws.T / d, Ws @ Ws.T / d


def random_weights(p: int, k: int, d: int, seed: int, teacher: str = "orthonormal",
                   scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Student W (p×d, i.i.d. N(0, scale²)) and teacher W* (k×d; rows of norm √d, orthogonal,
    when `teacher == "orthonormal"`, else i.i.d. N(0, 1)), from one seeded generator."""
    rng = np.random.default_rng(seed)
    Ws = rng.standard_normal((k, d))
    if teacher == "orthonormal":
        q, _ = np.linalg.qr(Ws.T)
        Ws = q.T * np.sqrt(d)
    W = scale * rng.standard_normal((p, d))
    return W, Ws
