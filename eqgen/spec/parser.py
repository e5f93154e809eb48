"""Text → `ModelFile`: lark's LALR parser with positions, and syntax errors a person can act on.

Limits keep every later stage safe (sympy and the evaluators recurse over expressions):
brackets nest at most `MAX_NESTING` deep, an expression is at most `MAX_DEPTH` levels deep and
`MAX_NODES` nodes large, and a number has at most `MAX_DIGITS` digits and an exponent of at most
`MAX_EXPONENT` in size. The tree builder itself is iterative, so any input reaches these checks.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import lark
from lark import Token, Tree

from eqgen.errors import Diagnostic, SpecError
from eqgen.spec import ast

MAX_SOURCE_BYTES = 1_000_000
MAX_NESTING = 50  # brackets: a spec never needs more, and sympy recurses through each level
MAX_DEPTH = 200  # levels of an expression tree (a chain `a + b + ...` adds one per operator)
MAX_NODES = 20_000  # numbers, names and operations in one value
MAX_DIGITS = 100
MAX_EXPONENT = 1000
MAX_MODEL_NAME = 100  # characters: file names are at most 255 bytes
BOM = "\ufeff"

STATEMENT_KEYWORDS = ("param", "data", "teacher", "student", "loss", "sgd", "regime", "ridge",
                      "init", "time", "latex")

# How each terminal is called in messages (never lark's internal names).
TERMINAL_NAMES = {
    "MODEL": "'model'",
    "KEYWORD": "a statement keyword (param, data, teacher, student, loss, sgd, regime, ridge, "
    "init, time, latex)",
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": 'a string in double quotes',
    "COMMA": "','",
    "EQUAL": "'='",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "STAR": "'*'",
    "SLASH": "'/'",
    "POW": "'**'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "$END": "the end of the file",
}


@functools.cache
def _parser() -> lark.Lark:
    grammar = resources.files("eqgen.spec").joinpath("grammar.lark").read_text()
    return lark.Lark(grammar, parser="lalr", maybe_placeholders=True)


def read_source(path: str | Path) -> ast.SourceFile:
    """Read a spec file as UTF-8 (a leading byte-order mark is skipped), reporting unreadable,
    oversized or undecodable files as `SpecError`.

    At most MAX_SOURCE_BYTES + 1 bytes are read, so that an endless input (`/dev/zero`, a
    pipe) or a huge file is refused at once instead of filling the memory.
    """
    p = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SOURCE_BYTES + 1)
    except OSError as e:
        raise SpecError(Diagnostic(f"cannot read spec file: {e.strerror or e}", path=p,
                                   hint="check the path")) from None
    if len(data) > MAX_SOURCE_BYTES:
        raise SpecError(Diagnostic(
            f"spec file is too large (more than {MAX_SOURCE_BYTES} bytes)", path=p, line=1,
            col=1, hint=f"a model spec is at most {MAX_SOURCE_BYTES} bytes of text: is this "
                        "the right file?"))
    data = data.removeprefix(BOM.encode())  # utf-8-sig: columns count from after the mark
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        before = data[: e.start]
        line = before.count(b"\n") + 1
        start = before.rfind(b"\n") + 1
        col = len(data[start : e.start].decode("utf-8", "replace")) + 1  # characters, not bytes
        raw = data[start:].split(b"\n", 1)[0].removesuffix(b"\r")
        raise SpecError(Diagnostic(
            f"the file is not valid UTF-8 (byte 0x{data[e.start]:02x})", path=p, line=line,
            col=col, source_line=raw.decode("utf-8", "replace"),
            hint="save the spec as UTF-8 text")) from None
    source = ast.SourceFile(p, text)
    if "\x00" in text:
        i = text.index("\x00")
        line = text.count("\n", 0, i) + 1
        col = i - (text.rfind("\n", 0, i) + 1) + 1
        raise SpecError(Diagnostic("the file contains a NUL byte", path=p, line=line, col=col,
                                   source_line=source.line(line),
                                   hint="a spec is plain text: remove the NUL character"))
    return source


def parse_file(path: str | Path) -> ast.ModelFile:
    """Parse a spec file (see `parse_text`)."""
    return parse_text(read_source(path))


def parse_text(source: ast.SourceFile | str, path: str = "<input>") -> ast.ModelFile:
    """Parse spec text into a `ModelFile`, raising `SpecError` with position and hint on failure.

    Problems that do not stop the parse (a number out of range, an expression nested too deep
    or too large) are returned in `ModelFile.problems`, so that a family's builder can report
    them together with its own.
    """
    if isinstance(source, str):
        source = ast.SourceFile(path, source.removeprefix(BOM))
    if _is_empty(source.text):
        line, col = _end_of_text(source)
        raise SpecError(Diagnostic(
            'the spec is empty: it must start with `model NAME "title"`', source.path, line,
            col, 1, source.line(line),
            'start with e.g. `model committee_erf "Soft committee machine"`, then statements '
            "such as `param p = 2`"))
    try:
        tree = _parser().parse(source.text)
    except lark.exceptions.UnexpectedInput as e:
        raise SpecError(_syntax_diagnostic(e, source)) from None
    builder = _Builder(source)
    mf = builder.model(tree)
    return dataclasses.replace(mf, problems=tuple(builder.problems))


def _is_empty(text: str) -> bool:
    """True when the text holds nothing but whitespace and comments."""
    return all(not s or s.startswith("#") for s in
               (line.strip(" \t\f\r") for line in text.split("\n")))


def _end_of_text(source: ast.SourceFile) -> tuple[int, int]:
    lines = source.lines
    if len(lines) > 1 and lines[-1] == "":  # the text ends with a newline
        lines = lines[:-1]
    return len(lines), len(lines[-1]) + 1


# ---------------------------------------------------------------------------------------------
# syntax errors


def _describe(names: set[str]) -> str:
    shown = sorted({TERMINAL_NAMES.get(n, n.lower()) for n in names})
    if len(shown) > 6:
        shown = shown[:6] + ["..."]
    return ", ".join(shown)


def _followed_by_equal(source: ast.SourceFile, tok: Token) -> bool:
    end = tok.end_pos if tok.end_pos is not None else 0
    rest = source.text[end : end + 200].lstrip(" \t")
    return rest.startswith("=") and not rest.startswith("==")


def _syntax_diagnostic(e: lark.exceptions.UnexpectedInput, source: ast.SourceFile) -> Diagnostic:
    line, col = getattr(e, "line", 0) or 0, getattr(e, "column", 0) or 0
    if isinstance(e, lark.exceptions.UnexpectedCharacters):
        ch = source.text[e.pos_in_stream] if e.pos_in_stream < len(source.text) else ""
        msg = f"unexpected character {ch!r}"
        hint = _char_hint(ch)
        return Diagnostic(msg, source.path, line, col, 1, source.line(line), hint)
    history = getattr(e, "token_history", None) or []
    prev = history[-1] if history else None
    if isinstance(e, lark.exceptions.UnexpectedEOF):
        tok, expected = None, set(e.expected)
    else:
        assert isinstance(e, lark.exceptions.UnexpectedToken)
        tok, expected = e.token, set(e.expected) if e.expected else set()
        if tok.type == "$END":
            tok = None
    ends_statement = tok is None or tok.type in ("KEYWORD", "MODEL") and not \
        _followed_by_equal(source, tok)
    if prev is not None and prev.type == "COMMA" and (
            ends_statement or tok.type in ("RPAR", "RSQB")):
        where = "at the end of the statement" if ends_statement else f"before '{tok}'"
        return Diagnostic(f"trailing comma {where}", source.path, prev.line, prev.column, 1,
                          source.line(prev.line),
                          "remove the ',', or add the missing item after it")
    if tok is not None and tok.type == "EQUAL" and prev is not None and \
            prev.type in ("KEYWORD", "MODEL"):  # `param time = 3`: `time` began a statement
        return Diagnostic(f"unexpected keyword '{prev}'", source.path, prev.line, prev.column,
                          len(prev), source.line(prev.line), _reserved_hint(prev))
    if tok is None:
        line, col = _end_of_text(source)
        hint = f"expected {_describe(expected)}"
        if "RPAR" in expected or "RSQB" in expected:
            hint = "a bracket is not closed; " + hint
        return Diagnostic("the file ended in the middle of a statement", source.path, line, col,
                          1, source.line(line), hint)
    plain = {"NAME": "name", "NUMBER": "number", "KEYWORD": "keyword", "STRING": "string"}
    if tok.type in plain:
        what = f"{plain[tok.type]} {str(tok)!r}"
    else:
        what = TERMINAL_NAMES.get(tok.type, repr(str(tok)))
    msg = f"unexpected {what}"
    hint = f"expected {_describe(expected)}"
    first_on_line = prev is None or prev.line != tok.line
    typo = difflib.get_close_matches(str(tok), [*STATEMENT_KEYWORDS, "model"], n=1, cutoff=0.7) \
        if tok.type == "NAME" else []
    if line == 1 and col == 1 or (tok.type != "MODEL" and "MODEL" in expected):
        hint = "a spec starts with `model NAME \"title\"`"
        if typo == ["model"]:
            hint = "did you mean `model`? " + hint
    elif tok.type in ("KEYWORD", "MODEL") and _followed_by_equal(source, tok):
        hint = _reserved_hint(tok)
    elif tok.type == "KEYWORD" and ("RPAR" in expected or "RSQB" in expected):
        hint = "an earlier bracket is not closed"
    elif tok.type == "KEYWORD" and "NAME" in expected:
        hint = (f"`{tok}` starts a statement; a value was expected here ({_describe(expected)})")
    elif tok.type == "EQUAL" and "EQUAL" not in expected:
        hint = "`=` only follows a name at the start of an item, e.g. `param gamma = 1`"
    elif typo and first_on_line and "KEYWORD" in expected:
        hint = (f"did you mean `{typo[0]}`? A statement starts with a keyword: "
                + ", ".join(STATEMENT_KEYWORDS))
    elif tok.type in ("NAME", "NUMBER") and "COMMA" in expected:
        hint = "separate items with ',' (or start a new statement with its keyword); " \
            "a value is given as `name = value`"
    elif tok.type == "NAME" and "KEYWORD" in expected and "MODEL" not in expected:
        hint = f"expected {_describe(expected)}; statements start with a keyword"
    width = max(1, len(str(tok)))
    return Diagnostic(msg, source.path, line, col, width, source.line(line), hint)


def _reserved_hint(tok: Token) -> str:
    return (f"`{tok}` is a reserved statement keyword and cannot be used as a name: "
            f"choose another name, e.g. `{tok}_`")


def _char_hint(ch: str) -> str:
    if ch == "'":
        return 'strings use double quotes: "..."'
    if ch == "^":
        return "powers are written with **"
    if ch in "{}":
        return "matrices are written as nested lists: [[1, 0], [0, 1]]"
    if ch == ";":
        return "items are separated by ','; a statement ends where the next keyword begins"
    if ch == '"':
        return "a string must close on the same line"
    if ch == BOM:
        return "remove the byte-order mark (U+FEFF); it is only allowed at the very start"
    return "names are letters, digits and '_'; numbers like 1, 0.5 or 1e-3"


# ---------------------------------------------------------------------------------------------
# the tree builder


class _Built(NamedTuple):
    """An expression with the span of its source (brackets included) and its size."""

    expr: ast.Expr
    start: tuple[int, int]
    end: tuple[int, int]  # line and column just after the last character
    height: int
    size: int


_NUMBER_RE = re.compile(r"(\d*)(?:\.(\d*))?(?:[eE]([+-]?)(\d+))?")
_BRACKETED = ("call", "list", "group")


class _Builder:
    """Turns lark's parse tree into the `ast` dataclasses, iteratively (no recursion limit),
    collecting problems that do not stop the parse in `problems`."""

    def __init__(self, source: ast.SourceFile):
        self.source = source
        self.problems: list[Diagnostic] = []
        self.heights: dict[int, int] = {}

    def problem(self, message: str, pos: ast.Pos, hint: str) -> None:
        self.problems.append(Diagnostic(message, self.source.path, pos.line, pos.col, pos.width,
                                        self.source.line(pos.line), hint))

    def tok_pos(self, tok: Token) -> ast.Pos:
        return ast.Pos(tok.line or 0, tok.column or 0, max(1, len(str(tok))))

    def span(self, start: tuple[int, int], end: tuple[int, int]) -> ast.Pos:
        (line, col), (end_line, end_col) = start, end
        if end_line != line:
            end_col = len(self.source.line(line) or "") + 1
        return ast.Pos(line, col, max(1, end_col - col))

    def model(self, tree: Tree) -> ast.ModelFile:
        header, *stmts = tree.children
        _, name, title = header.children
        title_text = _unquote(str(title)) if title is not None else ""
        if len(name) > MAX_MODEL_NAME:  # it names files: generated/<name>.py and the cache's
            self.problem(f"model name too long: {len(name)} characters (at most "
                         f"{MAX_MODEL_NAME})", self.tok_pos(name),
                         "the name becomes a file name (generated/<name>.py): shorten it")
        return ast.ModelFile(
            name=str(name), title=title_text, pos=self.tok_pos(name),
            statements=tuple(self.statement(s) for s in stmts), source=self.source)

    def statement(self, tree: Tree) -> ast.Statement:
        kw, *rest = tree.children
        items = tuple(self.item(c) for c in rest if isinstance(c, Tree))
        return ast.Statement(str(kw), items, self.tok_pos(kw))

    def item(self, tree: Tree) -> ast.Item:
        if tree.data == "keyword_item":
            name, _, value = tree.children
            return ast.Item(str(name), self.value(value), self.tok_pos(name))
        (value,) = tree.children
        e = self.value(value)
        return ast.Item(None, e, e.pos)

    def value(self, root: Tree) -> ast.Expr:
        """Build one item's value, checking bracket nesting, depth and size."""
        out: list[_Built] = []
        stack: list[tuple[Tree, int]] = [(root, 0)]  # node, brackets around it
        visited: set[int] = set()  # nodes whose subexpressions are built or on the stack
        too_deep: Token | None = None
        self.heights: dict[int, int] = {}  # id(expr) -> levels, for this value
        while stack:
            node, brackets = stack.pop()
            if id(node) in visited:  # second visit: its subexpressions are built
                out.append(self.node(node, out))
                continue
            visited.add(id(node))
            stack.append((node, brackets))
            inner = brackets + (node.data in _BRACKETED)
            if inner > MAX_NESTING and too_deep is None:  # the first bracket too many
                too_deep = next(c for c in node.children if isinstance(c, Token)
                                and c.type in ("LPAR", "LSQB"))
            stack.extend((c, inner) for c in reversed(_subtrees(node)))
        (built,) = out
        if too_deep is not None:
            self.problem(f"brackets nested more than {MAX_NESTING} deep", self.tok_pos(too_deep),
                         "simplify the expression: a model never needs this many levels")
        elif built.height > MAX_DEPTH:
            e = built.expr  # point at the argument (or list entry) that is too deep
            while isinstance(e, (ast.Call, ast.ListExpr)):
                deep = [k for k in ast.children(e) if self.heights[id(k)] > MAX_DEPTH]
                if not deep:
                    break
                e = deep[0]
            self.problem(
                f"expression nested too deep: more than {MAX_DEPTH} levels", e.pos,
                "each operator of a chain such as `z + z + ... + z` or `---z` adds a level: "
                "shorten it (e.g. `3000 * z`, `-z`) or group terms in brackets")
        elif built.size > MAX_NODES:
            self.problem(f"expression too large: {built.size} terms (at most {MAX_NODES})",
                         built.expr.pos,
                         "simplify it; large initial matrices can be given to `eqgen solve` "
                         "with --init FILE.json")
        self.heights = {}
        return built.expr

    def node(self, node: Tree, out: list[_Built]) -> _Built:
        """Build `node` from its subexpressions, which are the last entries of `out`."""
        built = self._node(node, out)
        self.heights[id(built.expr)] = built.height
        return built

    def _node(self, node: Tree, out: list[_Built]) -> _Built:
        n = len(_subtrees(node))
        kids = out[len(out) - n:]
        del out[len(out) - n:]
        kind, ch = node.data, node.children
        height = 1 + max((k.height for k in kids), default=0)
        size = 1 + sum(k.size for k in kids)
        if kind in ("number", "name", "string"):
            tok = ch[0]
            pos = self.tok_pos(tok)
            text = str(tok)
            if kind == "number":
                e: ast.Expr = ast.Number(self.number(text, pos), text, pos)
            elif kind == "name":
                e = ast.Name(text, pos)
            else:
                e = ast.String(_unquote(text), pos)
            return _Built(e, (tok.line, tok.column), (tok.end_line, tok.end_column), 1, 1)
        if kind in ("add", "sub", "mul", "div", "pow"):
            (a, b), op = kids, ch[1]
            e = ast.BinOp(str(op), a.expr, b.expr, self.span(a.start, b.end), self.tok_pos(op))
            return _Built(e, a.start, b.end, height, size)
        if kind in ("neg", "pos"):
            (a,), sign = kids, ch[0]
            start = (sign.line, sign.column)
            if kind == "pos":
                return _Built(a.expr, start, a.end, a.height, a.size)
            return _Built(ast.Neg(a.expr, self.span(start, a.end)), start, a.end, height, size)
        first, last = ch[0], ch[-1]
        start, end = (first.line, first.column), (last.end_line, last.end_column)
        if kind == "group":
            (a,) = kids
            return _Built(a.expr, start, end, a.height, a.size)
        if kind == "list":
            e = ast.ListExpr(tuple(k.expr for k in kids), self.span(start, end))
            return _Built(e, start, end, height, size)
        assert kind == "call", kind
        args: list[ast.Expr] = []
        kwargs: list[ast.KeywordArg] = []
        for arg, k in zip(_args(node), kids, strict=True):
            if arg.data == "keyword_arg":
                kname = arg.children[0]
                kwargs.append(ast.KeywordArg(str(kname), k.expr, self.tok_pos(kname)))
            else:
                args.append(k.expr)
        e = ast.Call(str(first), tuple(args), tuple(kwargs), self.span(start, end))
        return _Built(e, start, end, height, size)

    def number(self, text: str, pos: ast.Pos) -> Fraction:
        """The exact value of a number literal; out-of-range literals are refused here, before
        `Fraction` would build (or hang on) a gigantic integer."""
        m = _NUMBER_RE.fullmatch(text)
        assert m, text
        digits = len(m[1]) + len(m[2] or "")
        exp_digits = (m[4] or "0").lstrip("0") or "0"
        if digits > MAX_DIGITS:
            self.problem(f"number too large: {digits} digits (at most {MAX_DIGITS})", pos,
                         "write it in scientific notation with fewer digits, e.g. 1.2345e300")
            return Fraction(0)
        if len(exp_digits) > 6 or int(exp_digits) > MAX_EXPONENT:
            size = "small" if m[3] == "-" else "large"
            shown = f"exponent {m[3] or ''}{exp_digits}" if len(exp_digits) <= 12 else \
                f"an exponent of {len(exp_digits)} digits"
            self.problem(
                f"number too {size}: {shown} is out of range (at most {MAX_EXPONENT} in size)",
                pos,
                "numbers are read exactly; anything beyond about 1e308 is not a finite float "
                "anyway: use a smaller number" if size == "large" else
                "numbers are read exactly; anything below about 1e-308 is 0 as a float: "
                "write 0 or a larger number")
            return Fraction(0)
        return Fraction(text)


def _subtrees(node: Tree) -> list[Tree]:
    """The subexpressions of an expression node, in source order."""
    if node.data == "call":
        return [a.children[-1] for a in _args(node)]
    return [c for c in node.children if isinstance(c, Tree)]


def _args(call: Tree) -> list[Tree]:
    return [c for c in call.children[2:-1] if isinstance(c, Tree)]


def _unquote(s: str) -> str:
    body = s[1:-1]
    return body.replace('\\"', '"')
