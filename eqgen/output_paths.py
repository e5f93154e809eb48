"""Checks of the files a command will write, made before any work (docs/robustness.md).

Without them a bad output path was found only when the result was written, after the whole
solve or simulation, as an internal error (`FileNotFoundError`, `IsADirectoryError`, matplotlib's
`ValueError` for `--plot x.csv`, ...), and an output naming an input (`solve m.eqg -o m.eqg`) or
another output (`-o x.png --plot x.png`) silently replaced it. Every command calls
`check_outputs` (and `generate` also `check_out_dir`) first; each problem is a `UsageError`
(exit 2) with a hint.

Writability is probed by creating (and at once removing) a temporary file in the folder:
`os.access` answers yes for root everywhere, even in /proc or on a read-only mount.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterable, Sequence

from eqgen.errors import UsageError

META_SUFFIX = ".meta.json"  # `Solution.to_csv` and `SweepResult.to_csv` write FILE + this


def _refuse(message: str, hint: str) -> UsageError:
    return UsageError(f"{message}\n  hint: {hint}")


def plot_formats() -> tuple[dict[str, str], str]:
    """The file formats matplotlib can write (extension → description) and its default one,
    used when a plot's name has no extension (matplotlib then appends it)."""
    import matplotlib
    from matplotlib.figure import Figure

    return (Figure().canvas.get_supported_filetypes(),
            str(matplotlib.rcParams["savefig.format"]).lower())


def written_files(path: str, kind: str) -> list[str]:
    """The files an output option writes: `kind` "data" (a `Solution` or sweep result: CSV,
    with its metadata in FILE.meta.json beside it, or JSON by the extension), "file" (the path
    itself) or "plot" (the path, with matplotlib's default extension appended when it has
    none)."""
    if kind == "data" and not path.endswith(".json"):
        return [path, path + META_SUFFIX]
    if kind == "plot" and not os.path.splitext(path)[1][1:]:
        return [path.rstrip(".") + "." + plot_formats()[1]]
    return [path]


def check_output(path: str, option: str, *, kind: str = "file", example: str = "out.csv"
                 ) -> list[str]:
    """Refuse (`UsageError`, exit 2) an output path that cannot be written: one that names a
    folder (an existing one, or ends with a separator), whose folder does not exist, is not a
    folder or is not writable, an existing file that is not writable, or, for a plot, an
    extension matplotlib cannot write. `example` is a file name for the hints. Returns the
    files that will be written (see `written_files`)."""
    shown = f"{option} {path}"
    if kind == "plot":
        example = os.path.splitext(example)[0] + ".png"
    if path.endswith(("/", os.sep)) or os.path.isdir(path):
        raise _refuse(f"{shown}: names a folder, not a file",
                      f"name a file in it, e.g. {option} {os.path.join(path, example)}")
    if kind == "plot":
        ext = os.path.splitext(path)[1][1:].lower()
        formats, _ = plot_formats()
        if ext and ext not in formats:
            stem = os.path.splitext(path)[0]
            raise _refuse(f"{shown}: a plot cannot be written as .{ext}",
                          f"use one of {', '.join(sorted(formats))}, e.g. {option} {stem}.png")
    files = written_files(path, kind)
    for file in files:
        _check_file(file, shown if file == path else f"{shown} (writes {file})", option,
                    example)
    return files


def _check_file(file: str, shown: str, option: str, example: str) -> None:
    folder = os.path.dirname(file) or os.curdir
    if os.path.isdir(file):
        raise _refuse(f"{shown}: {file} is a folder",
                      f"remove it or choose another name, e.g. {option} "
                      f"{os.path.join(folder, example)}")
    if not os.path.exists(folder):
        raise _refuse(f"{shown}: the folder {folder} does not exist",
                      f"create it first (mkdir -p {folder}) or write elsewhere")
    if not os.path.isdir(folder):
        raise _refuse(f"{shown}: {folder} is a file, not a folder",
                      f"choose a file in a folder, e.g. {option} {example}")
    _check_writable(folder, shown)
    if os.path.exists(file) and not os.access(file, os.W_OK):
        raise _refuse(f"{shown}: the file exists and is not writable",
                      "change its permissions or choose another name")


def _check_writable(folder: str, shown: str) -> None:
    """Refuse a folder in which no file can be created (probed: see the module docstring)."""
    why = "" if os.access(folder, os.W_OK | os.X_OK) else "permission denied"
    if not why:
        try:
            fd, probe = tempfile.mkstemp(dir=folder, prefix=".eqgen-probe-")
        except OSError as e:
            why = e.strerror or type(e).__name__
        else:
            os.close(fd)
            os.unlink(probe)
    if why:
        raise _refuse(f"{shown}: cannot write in the folder {folder} ({why})",
                      "choose a folder you can write to")


def check_out_dir(path: str, names: Sequence[str] = (), option: str = "--out-dir") -> None:
    """Refuse a folder to write into (created with its parents if missing) that is an
    existing file, lies under a file, or cannot be written, or in which one of the files
    `names` to write there is a folder."""
    shown = f"{option} {path}"
    for name in names:
        if os.path.isdir(os.path.join(path, name)):
            raise _refuse(f"{shown}: {os.path.join(path, name)}, the file to write, is a "
                          "folder", f"remove it, or choose another {option}")
    if os.path.exists(path) and not os.path.isdir(path):
        raise _refuse(f"{shown}: is a file, not a folder",
                      f"choose a folder (it is created if missing), e.g. {option} generated")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise _refuse(f"{shown}: {existing} is a file, not a folder",
                      f"choose a folder (it is created if missing), e.g. {option} generated")
    _check_writable(existing, shown)


def _identity(path: str) -> tuple[object, ...]:
    """What tells two paths apart: the inode of an existing file, else the resolved path."""
    try:
        st = os.stat(path)
    except OSError:
        return ("path", os.path.realpath(path))
    return ("inode", st.st_dev, st.st_ino)


def check_outputs(outputs: Iterable[tuple[str, str | None, str]],
                  inputs: Iterable[tuple[str, str | Sequence[str] | None]],
                  example: str = "out.csv") -> None:
    """Check every output of a command (`check_output`) and that none of the files they write
    is an input (the spec, an --init file) or a file another output writes (`-o x.png --plot
    x.png`, or `--plot x.csv.meta.json` beside `-o x.csv`): a `UsageError` before any work.

    `outputs`: (option, path or None when not given, kind as in `written_files`); `inputs`:
    (what it is, e.g. "the spec", a path, several paths or None)."""
    outputs = list(outputs)
    seen: dict[tuple[object, ...], tuple[str, bool]] = {}  # file → (its name, an input?)
    for what, paths in inputs:
        for p in [paths] if isinstance(paths, str) else (paths or []):
            seen.setdefault(_identity(p), (f"{what} {p}", True))
    for option, path, kind in outputs:
        if not path:
            continue
        for file in check_output(path, option, kind=kind, example=example):
            key = _identity(file)
            shown = f"{option} {path}" + ("" if file == path else f" (writes {file})")
            if key in seen:
                other, is_input = seen[key]
                verb = "would overwrite" if is_input else "is the same file as"
                raise _refuse(f"{shown} {verb} {other}",
                              "give each output its own file, distinct from the inputs")
            seen[key] = (shown, False)
    for option, path, kind in outputs:  # once every check has passed
        if path and kind == "data":
            _note_format(path, option)


def _note_format(path: str, option: str) -> None:
    """A data output is CSV unless it ends in .json: say so when the name suggests neither
    (`-o x.txt`, `-o x.dat`), so that the format is not a surprise."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in ("", ".csv") and not path.endswith(".json"):  # .JSON too is written as CSV
        print(f"note: {option} {path} is written as CSV (name it .json for JSON)",
              file=sys.stderr)
