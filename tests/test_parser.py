"""The spec front end directly: grammar, tree builder, positions, limits and error rendering."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import pytest

from eqgen.errors import Diagnostic, SpecError
from eqgen.spec import ast
from eqgen.spec.committee import build_committee, resolve
from eqgen.spec.parser import (
    MAX_DEPTH,
    MAX_DIGITS,
    MAX_NESTING,
    parse_file,
    parse_text,
    read_source,
)
from eqgen.spec.values import evaluate

BASE = """\
model committee_erf "Soft committee machine"
param p = 2, k = 2, gamma = 1.0, Delta = 0.0
data gaussian
teacher committee(width = k, activation = erf(z / sqrt(2)), readout = 1/k, noise = Delta)
student committee(width = p, activation = erf(z / sqrt(2)), readout = 1/p, second_layer = fixed(1))
loss square
sgd learning_rate = gamma, batch = 1
init P = identity(k), Q = 0.5 * identity(p), M = [[0.1, 0.05], [0.02, 0.08]]
time t_max = 1000
"""


def spec_text(old: str = "", new: str = "") -> str:
    assert old in BASE
    return BASE.replace(old, new, 1)


def items(text: str, keyword: str) -> dict[str | None, ast.Item]:
    mf = parse_text(text)
    st = next(s for s in mf.statements if s.keyword == keyword)
    return {it.name: it for it in st.items}


def problems(text: str) -> list[Diagnostic]:
    """Everything `build_committee` reports for `text` (parser problems included)."""
    with pytest.raises(SpecError) as e:
        build_committee(parse_text(text, "spec.eqg"))
    return e.value.diagnostics


def only(text: str) -> Diagnostic:
    (d,) = problems(text)
    return d


# ---------------------------------------------------------------------------------------------
# parenthesised groups


def test_parenthesised_expressions_parse_and_evaluate():
    text = spec_text("gamma = 1.0", "gamma = (1 + 2) * (3 - (4 - 2)) / (2)")
    value = items(text, "param")["gamma"].value
    assert isinstance(value, ast.BinOp) and value.op == "/"
    assert evaluate(value, {}) == pytest.approx(1.5)


def test_parenthesised_loss_and_init_build():
    text = spec_text("loss square", "loss (y - yhat)**2 / 2")
    text = text.replace("Q = 0.5 * identity(p)", "Q = 0.5 * (identity(p))")
    spec = build_committee(parse_text(text))
    assert isinstance(spec.loss, ast.BinOp) and spec.loss.op == "/"
    assert spec.loss.left.op == "**" and spec.loss.left.left.op == "-"
    assert resolve(spec).init["Q"].tolist() == [[0.5, 0.0], [0.0, 0.5]]


def test_unary_plus_and_group_are_transparent():
    value = items(spec_text("gamma = 1.0", "gamma = +(((2)))"), "param")["gamma"].value
    assert value == ast.Number(Fraction(2), "2", value.pos)


# ---------------------------------------------------------------------------------------------
# positions


def test_whole_expression_positions():
    line = "init P = identity(k), Q = 0.5 * identity(3), M = [[0.1, 0.05], [0.02, 0.08]]"
    got = items(spec_text("init P = identity(k), Q = 0.5 * identity(p), M = [[0.1, 0.05], "
                          "[0.02, 0.08]]", line), "init")
    q = got["Q"].value
    assert isinstance(q, ast.BinOp)
    assert (q.pos.line, q.pos.col) == (8, line.index("0.5") + 1)
    assert q.pos.width == len("0.5 * identity(3)")
    assert q.op_pos == ast.Pos(8, line.index("*") + 1, 1)
    call = q.right
    assert isinstance(call, ast.Call)
    assert (call.pos.col, call.pos.width) == (line.index("identity(3)") + 1, len("identity(3)"))
    m = got["M"].value
    assert isinstance(m, ast.ListExpr) and m.pos.col == line.index("[[") + 1
    assert m.pos.width == len("[[0.1, 0.05], [0.02, 0.08]]")


def test_group_position_starts_at_the_bracket():
    loss = items(spec_text("loss square", "loss (y - yhat)**2 / 2"), "loss")[None].value
    assert (loss.pos.col, loss.pos.width) == (6, len("(y - yhat)**2 / 2"))
    assert loss.left.left.pos.col == 7  # the group itself: `y - yhat`
    neg = items(spec_text("gamma = 1.0", "gamma = -(1 + 2)"), "param")["gamma"].value
    assert isinstance(neg, ast.Neg) and neg.pos.width == len("-(1 + 2)")


def test_expression_over_several_lines_is_underlined_to_the_end_of_its_first_line():
    text = spec_text("gamma = 1.0", "gamma = 3 * (1 +\n  2)")
    value = items(text, "param")["gamma"].value
    line = text.split("\n")[1]
    assert value.pos.col == line.index("3 *") + 1
    assert value.pos.col + value.pos.width - 1 == len(line)


def test_wrong_shape_points_at_the_whole_value():
    text = spec_text("Q = 0.5 * identity(p)", "Q = 0.5 * identity(3)")
    with pytest.raises(SpecError) as e:
        resolve(build_committee(parse_text(text)))
    (d,) = e.value.diagnostics
    assert (d.line, d.col, d.width) == (8, 27, len("0.5 * identity(3)"))
    assert "matrix" in d.hint


def test_vector_shape_hint_says_list():
    text = spec_text("init P", "init a = [1, 1, 1], P")
    with pytest.raises(SpecError) as e:
        resolve(build_committee(parse_text(text)))
    (d,) = e.value.diagnostics
    assert "initial a has shape 3" in d.message and "list" in d.hint and "matrix" not in d.hint


# ---------------------------------------------------------------------------------------------
# source text: byte-order mark, encodings, line splitting


def test_byte_order_mark_is_accepted(tmp_path: Path):
    path = tmp_path / "bom.eqg"
    path.write_bytes(b"\xef\xbb\xbf" + BASE.encode())
    source = read_source(path)
    assert not source.text.startswith("\ufeff")
    spec = build_committee(parse_file(path))
    assert spec.pos == ast.Pos(1, 7, len("committee_erf"))
    assert build_committee(parse_text("\ufeff" + BASE)).pos.col == 7


def test_byte_order_mark_keeps_columns_of_errors(tmp_path: Path):
    path = tmp_path / "bom.eqg"
    path.write_bytes(b"\xef\xbb\xbf" + spec_text("param p = 2", "param q = 2").encode())
    with pytest.raises(SpecError) as e:
        build_committee(parse_file(path))
    assert any(d.line == 5 and d.col == 27 for d in e.value.diagnostics)  # `width = p`


def test_invalid_utf8_column_counts_characters(tmp_path: Path):
    path = tmp_path / "bad.eqg"
    path.write_bytes('model m "é–é" \xff'.encode()[:-2] + b"\xff rest\n")
    with pytest.raises(SpecError) as e:
        read_source(path)
    (d,) = e.value.diagnostics
    assert (d.line, d.col) == (1, len('model m "é–é" ') + 1)
    assert "not valid UTF-8" in d.message


@pytest.mark.parametrize("separator", ["\f", "\u2028", "\x0b", "\x1c", "\x85"])
def test_source_lines_are_split_at_newlines_only(separator: str):
    source = ast.SourceFile("x.eqg", f"a {separator} b\r\nc\n")
    assert source.line(1) == f"a {separator} b"
    assert source.line(2) == "c"
    assert source.line(3) == ""
    assert source.line(4) is None


def test_empty_spec():
    for text in ("", "\n\n", "# only a comment\n   # and another\n"):
        with pytest.raises(SpecError) as e:
            parse_text(text)
        (d,) = e.value.diagnostics
        assert "the spec is empty" in d.message and "model NAME" in d.message and d.hint


# ---------------------------------------------------------------------------------------------
# rendering


def test_caret_after_tabs():
    d = Diagnostic("unexpected character '@'", "x.eqg", 1, 9, 1, "\tsgd\tx, @ y", "hint")
    shown, caret = d.format().split("\n")[1:3]
    assert "\t" not in shown
    assert shown[caret.index("^")] == "@"


def test_caret_width_covers_tabs_inside_the_span():
    d = Diagnostic("m", "x.eqg", 1, 2, 3, "a\tb c", "hint")
    caret = d.format().split("\n")[2]
    assert caret.strip() == "^" * len("\tb".expandtabs(4))


def test_control_characters_are_shown_visibly_keeping_columns():
    d = Diagnostic("the file contains a NUL byte", "x.eqg", 1, 5, 1, "ab\x00c@", "hint")
    shown, caret = d.format().split("\n")[1:3]
    assert "\x00" not in d.format()
    assert shown[caret.index("^")] == "@"
    assert "\u2400" in shown


def test_errors_are_sorted_and_unique():
    a = Diagnostic("late", "x.eqg", 9, 1, hint="h")
    b = Diagnostic("early", "x.eqg", 2, 5, hint="h")
    c = Diagnostic("file level", "x.eqg", hint="h")
    e = SpecError([a, c, b, a])
    assert [d.message for d in e.diagnostics] == ["early", "late", "file level"]
    assert e.format().endswith("3 problems found")


# ---------------------------------------------------------------------------------------------
# limits: numbers, nesting, depth


def test_number_limits():
    ok = "9" * MAX_DIGITS
    assert items(spec_text("gamma = 1.0", f"gamma = {ok}"), "param")["gamma"].value.value == int(ok)
    d = only(spec_text("gamma = 1.0", f"gamma = {'1' * 5000}"))
    assert (d.line, d.col) == (2, 29) and "number too large" in d.message and d.hint
    for text in ("1e1001", "1e-1001", "0.5e999999999", "1e" + "9" * 5000):
        d = only(spec_text("gamma = 1.0", f"gamma = {text}"))
        assert (d.line, d.col) == (2, 29) and "number too" in d.message


def test_huge_exponent_is_refused_quickly():
    t0 = time.perf_counter()
    d = only(spec_text("gamma = 1.0", "gamma = 1e999999999"))
    assert time.perf_counter() - t0 < 2
    assert "number too large" in d.message


def test_bracket_nesting_limit():
    deep = "erf(" * (MAX_NESTING - 1) + "z" + ")" * (MAX_NESTING - 1)
    build_committee(parse_text(spec_text("activation = erf(z / sqrt(2)), readout = 1/p",
                                         f"activation = {deep}, readout = 1/p")))
    deeper = "erf(" * MAX_NESTING + "z" + ")" * MAX_NESTING
    d = only(spec_text("activation = erf(z / sqrt(2)), readout = 1/p",
                       f"activation = {deeper}, readout = 1/p"))
    prefix = "student committee(width = p, activation = "
    assert (d.line, d.col) == (5, len(prefix) + 4 * (MAX_NESTING - 1) + 4)
    assert f"more than {MAX_NESTING} deep" in d.message


@pytest.mark.parametrize("chain", ["z + " * 3000 + "z", "-" * 3000 + "z", "z" + " * z" * 3000])
def test_long_chains_are_refused_cleanly(chain: str):
    text = spec_text("param p = 2", "param p = 2, p = 3")
    text = text.replace("activation = erf(z / sqrt(2)), readout = 1/p",
                        f"activation = {chain}, readout = 1/p")
    found = problems(text)
    assert [d.line for d in found] == [2, 5]  # in source order, both reported
    assert "declared twice" in found[0].message
    assert "nested too deep" in found[1].message and found[1].col == 43 and found[1].hint


def test_depth_limit_is_exact():
    act = "-" * (MAX_DEPTH - 2) + "z"  # the committee call adds a level
    build_committee(parse_text(spec_text("activation = erf(z / sqrt(2))", f"activation = {act}")))
    d = only(spec_text("activation = erf(z / sqrt(2))", f"activation = -{act}"))
    assert "nested too deep" in d.message


# ---------------------------------------------------------------------------------------------
# syntax errors


def test_trailing_comma_is_reported_at_the_comma():
    d = only(spec_text("Delta = 0.0\n", "Delta = 0.0,\n"))
    assert (d.line, d.col) == (2, len("param p = 2, k = 2, gamma = 1.0, Delta = 0.0,"))
    assert "trailing comma" in d.message
    d = only(spec_text("identity(k)", "identity(k, )"))
    assert "trailing comma before ')'" in d.message


def test_misspelt_statement_keyword():
    d = only(spec_text("teacher committee", "teachr committee"))
    assert (d.line, d.col) == (4, 1) and "did you mean `teacher`?" in d.hint


def test_statement_keyword_as_a_name():
    d = only(spec_text("Delta = 0.0", "Delta = 0.0, time = 3"))
    assert "unexpected keyword 'time'" in d.message
    assert "reserved statement keyword" in d.hint
    d = only(spec_text("param p = 2", "param time = 3, p = 2"))  # `time` would start a statement
    assert (d.line, d.col, d.width) == (2, 7, 4) and "unexpected keyword 'time'" in d.message
    assert "reserved statement keyword" in d.hint


# ---------------------------------------------------------------------------------------------
# semantic checks fixed with the parser


def test_duplicate_latex_and_random_init():
    d = only(BASE + 'latex gamma = "\\gamma", gamma = "g"\n')
    assert "latex name for 'gamma' given twice" in d.message and d.hint
    text = spec_text("init P = identity(k), Q = 0.5 * identity(p), M = [[0.1, 0.05], "
                     "[0.02, 0.08]]", "init random(d = 100), random(d = 200)")
    d = only(text)
    assert "random(...) given twice" in d.message and d.col == len("init random(d = 100), ") + 1


@pytest.mark.parametrize("value", ["1e400", "exp(1000)", "[1, 2]", "2 ** 100000", "1/0"])
def test_a_bad_parameter_is_reported_once(value: str):
    spec = build_committee(parse_text(spec_text("gamma = 1.0", f"gamma = {value}")))
    with pytest.raises(SpecError) as e:
        resolve(spec)
    (d,) = e.value.diagnostics
    assert d.line == 2 and d.hint


@pytest.mark.parametrize("value", ["1e300", "-1e400"])
def test_a_huge_number_literal_is_called_too_large_not_infinite(value: str):
    spec = build_committee(parse_text(spec_text("gamma = 1.0", f"gamma = {value}")))
    with pytest.raises(SpecError) as e:
        resolve(spec)
    (d,) = e.value.diagnostics
    assert "too large" in d.message and "below 1e+300" in d.message and d.hint


def test_hints_read_well():
    d = only(spec_text("learning_rate = gamma", "learning_rate = gama"))
    assert d.hint.startswith("did you mean 'gamma'? Parameters are declared")
    d = only(spec_text("activation = erf(z / sqrt(2)), readout = 1/k",
                       "activaton = erf(z / sqrt(2)), readout = 1/k"))
    assert "activaton" in d.message  # no second report "needs an activation"
