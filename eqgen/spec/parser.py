"""Text → `ModelFile`: lark's LALR parser with positions, and syntax errors a person can act on."""

from __future__ import annotations

import functools
from fractions import Fraction
from importlib import resources
from pathlib import Path

import lark
from lark import Token, Tree

from eqgen.errors import Diagnostic, SpecError
from eqgen.spec import ast

MAX_SOURCE_BYTES = 1_000_000
MAX_NESTING = 200

# How each terminal is called in messages (never lark's internal names).
TERMINAL_NAMES = {
    "MODEL": "'model'",
    "KEYWORD": "a statement keyword (param, data, teacher, student, loss, sgd, regime, init, "
    "time, latex)",
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
    return lark.Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True)


def read_source(path: str | Path) -> ast.SourceFile:
    """Read a spec file as UTF-8, reporting unreadable or undecodable files as `SpecError`."""
    p = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise SpecError(Diagnostic(f"cannot read spec file: {e.strerror or e}", path=p,
                                   hint="check the path")) from None
    if len(data) > MAX_SOURCE_BYTES:
        raise SpecError(Diagnostic(f"spec file is too large ({len(data)} bytes)", path=p,
                                   hint=f"a model spec is at most {MAX_SOURCE_BYTES} bytes"))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        before = data[: e.start]
        line = before.count(b"\n") + 1
        col = e.start - (before.rfind(b"\n") + 1) + 1
        src_line = data.splitlines()[line - 1].decode("utf-8", "replace") if data else ""
        raise SpecError(Diagnostic("the file is not valid UTF-8", path=p, line=line, col=col,
                                   source_line=src_line,
                                   hint="save the spec as UTF-8 text")) from None
    if "\x00" in text:
        i = text.index("\x00")
        line = text.count("\n", 0, i) + 1
        col = i - (text.rfind("\n", 0, i) + 1) + 1
        raise SpecError(Diagnostic("the file contains a NUL byte", path=p, line=line, col=col,
                                   source_line=text.splitlines()[line - 1],
                                   hint="a spec is plain text"))
    return ast.SourceFile(p, text)


def parse_file(path: str | Path) -> ast.ModelFile:
    """Parse a spec file (see `parse_text`)."""
    return parse_text(read_source(path))


def parse_text(source: ast.SourceFile | str, path: str = "<input>") -> ast.ModelFile:
    """Parse spec text into a `ModelFile`, raising `SpecError` with position and hint on failure."""
    if isinstance(source, str):
        source = ast.SourceFile(path, source)
    _check_nesting(source)
    try:
        tree = _parser().parse(source.text)
    except lark.exceptions.UnexpectedInput as e:
        raise SpecError(_syntax_diagnostic(e, source)) from None
    return _Builder(source).model(tree)


def _check_nesting(source: ast.SourceFile) -> None:
    depth = 0
    for lineno, line in enumerate(source.text.splitlines(), 1):
        for col, ch in enumerate(line, 1):
            if ch == "#":
                break
            depth += ch in "(["
            depth -= ch in ")]"
            if depth > MAX_NESTING:
                raise SpecError(Diagnostic(
                    f"brackets nested more than {MAX_NESTING} deep", path=source.path,
                    line=lineno, col=col, source_line=line,
                    hint="simplify the expression"))


def _describe(names: set[str]) -> str:
    shown = sorted({TERMINAL_NAMES.get(n, n.lower()) for n in names})
    if len(shown) > 6:
        shown = shown[:6] + ["..."]
    return ", ".join(shown)


def _syntax_diagnostic(e: lark.exceptions.UnexpectedInput, source: ast.SourceFile) -> Diagnostic:
    line, col = getattr(e, "line", 0) or 0, getattr(e, "column", 0) or 0
    if isinstance(e, lark.exceptions.UnexpectedCharacters):
        ch = source.text[e.pos_in_stream] if e.pos_in_stream < len(source.text) else ""
        msg = f"unexpected character {ch!r}"
        hint = _char_hint(ch)
        return Diagnostic(msg, source.path, line, col, 1, source.line(line), hint)
    if isinstance(e, lark.exceptions.UnexpectedEOF):
        lines = source.text.splitlines() or [""]
        line = len(lines)
        col = len(lines[-1]) + 1
        return Diagnostic("the file ended in the middle of a statement", source.path, line, col, 1,
                          source.line(line), f"expected {_describe(set(e.expected))}")
    assert isinstance(e, lark.exceptions.UnexpectedToken)
    tok = e.token
    expected = set(e.expected) if e.expected else set()
    if tok.type == "$END":
        lines = source.text.splitlines() or [""]
        line, col = len(lines), len(lines[-1]) + 1
        return Diagnostic("the file ended in the middle of a statement", source.path, line, col, 1,
                          source.line(line), f"expected {_describe(expected)}")
    plain = {"NAME": "name", "NUMBER": "number", "KEYWORD": "keyword", "STRING": "string"}
    if tok.type in plain:
        what = f"{plain[tok.type]} {str(tok)!r}"
    else:
        what = TERMINAL_NAMES.get(tok.type, repr(str(tok)))
    msg = f"unexpected {what}"
    hint = f"expected {_describe(expected)}"
    if line == 1 and col == 1 or (tok.type != "MODEL" and "MODEL" in expected):
        hint = "a spec starts with `model NAME \"title\"`"
    elif tok.type == "KEYWORD" and ("RPAR" in expected or "RSQB" in expected):
        hint = "an earlier bracket is not closed"
    elif tok.type == "EQUAL" and "EQUAL" not in expected:
        hint = "`=` only follows a name at the start of an item, e.g. `param gamma = 1`"
    elif tok.type in ("NAME", "NUMBER") and "COMMA" in expected:
        hint = "separate items with ',' (or start a new statement with its keyword); " \
            "a value is given as `name = value`"
    elif tok.type == "NAME" and "KEYWORD" in expected and "MODEL" not in expected:
        hint = f"expected {_describe(expected)}; statements start with a keyword"
    width = max(1, len(str(tok))) if tok.type != "$END" else 1
    return Diagnostic(msg, source.path, line, col, width, source.line(line), hint)


def _char_hint(ch: str) -> str:
    if ch == "'":
        return 'strings use double quotes: "..."'
    if ch == "^":
        return "powers are written with **"
    if ch in "{}":
        return "matrices are written as nested lists: [[1, 0], [0, 1]]"
    if ch == ";":
        return "statements are separated by new lines, items by ','"
    if ch == '"':
        return "a string must close on the same line"
    return "names are letters, digits and '_'; numbers like 1, 0.5 or 1e-3"


class _Builder:
    """Turns lark's parse tree into the `ast` dataclasses."""

    def __init__(self, source: ast.SourceFile):
        self.source = source

    def pos(self, node: Tree | Token) -> ast.Pos:
        if isinstance(node, Token):
            return ast.Pos(node.line or 0, node.column or 0, max(1, len(str(node))))
        meta = node.meta
        if getattr(meta, "empty", True):
            return ast.Pos(0, 0)
        width = meta.end_column - meta.column if meta.end_line == meta.line else 1
        return ast.Pos(meta.line, meta.column, max(1, width))

    def model(self, tree: Tree) -> ast.ModelFile:
        header, *stmts = tree.children
        _, name, title = header.children
        title_text = _unquote(str(title)) if title is not None else ""
        return ast.ModelFile(
            name=str(name), title=title_text, pos=self.pos(name),
            statements=tuple(self.statement(s) for s in stmts), source=self.source)

    def statement(self, tree: Tree) -> ast.Statement:
        kw, *rest = tree.children
        items = tuple(self.item(c) for c in rest if isinstance(c, Tree))
        return ast.Statement(str(kw), items, self.pos(kw))

    def item(self, tree: Tree) -> ast.Item:
        if tree.data == "keyword_item":
            name, _, value = tree.children
            return ast.Item(str(name), self.expr(value), self.pos(name))
        (value,) = tree.children
        e = self.expr(value)
        return ast.Item(None, e, e.pos)

    def expr(self, node: Tree | Token) -> ast.Expr:
        if isinstance(node, Token):  # pragma: no cover - the grammar wraps every token
            raise TypeError(node)
        kind = node.data
        ch = node.children
        if kind == "number":
            text = str(ch[0])
            return ast.Number(Fraction(text), text, self.pos(ch[0]))
        if kind == "name":
            return ast.Name(str(ch[0]), self.pos(ch[0]))
        if kind == "string":
            return ast.String(_unquote(str(ch[0])), self.pos(ch[0]))
        if kind in ("add", "sub", "mul", "div", "pow"):
            left, op, right = ch
            return ast.BinOp(str(op), self.expr(left), self.expr(right), self.pos(op))
        if kind == "neg":
            return ast.Neg(self.expr(ch[1]), self.pos(node))
        if kind == "pos":
            return self.expr(ch[1])
        if kind == "list":
            items = tuple(self.expr(c) for c in ch if isinstance(c, Tree))
            return ast.ListExpr(items, self.pos(node))
        if kind == "call":
            func = ch[0]
            args: list[ast.Expr] = []
            kwargs: list[ast.KeywordArg] = []
            for c in ch[2:-1]:
                if not isinstance(c, Tree):
                    continue
                if c.data == "keyword_arg":
                    kname, _, kval = c.children
                    kwargs.append(ast.KeywordArg(str(kname), self.expr(kval), self.pos(kname)))
                else:
                    args.append(self.expr(c.children[0]))
            return ast.Call(str(func), tuple(args), tuple(kwargs), self.pos(func))
        raise TypeError(f"unknown node {kind}")  # pragma: no cover


def _unquote(s: str) -> str:
    body = s[1:-1]
    return body.replace('\\"', '"')
