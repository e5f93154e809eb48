"""Output paths and numeric options are checked before any work (docs/robustness.md).

An output that names an input (`solve m.eqg -o m.eqg`) or another output (`-o x.png --plot
x.png`), an output that cannot be written (missing folder, a folder, a parent that is a file,
an unwritable folder, a plot extension matplotlib cannot write), a `--seed` outside
0 ≤ seed < 2³², and the numeric options of fixed-points and time-to are usage errors (exit 2)
with a hint. Most tests replace `eqgen.model.load` (or the solver) by a function that fails, so
that they show the error comes before any work, and stay fast.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from eqgen.cli import _parser
from eqgen.output_paths import check_output, written_files

try:  # `tests` is not a package: pytest puts tests/ itself on sys.path
    from helpers import model_path, run_quiet
except ModuleNotFoundError:  # pragma: no cover - run with tests/ as a package
    from tests.helpers import model_path, run_quiet

ERF = model_path("committee_erf")
GMM = model_path("gmm_two_cluster_logistic")  # a DMFT model


class Called(AssertionError):
    """Raised by the stand-ins for heavy work: the test failed if it is seen."""


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any spec loading, solve, simulation or fixed-point search fails the test."""
    import eqgen.analysis.fixed_points as fixed_points
    import eqgen.model as model

    def fail(*args: object, **kwargs: object) -> None:
        raise Called("work started before the usage error")

    monkeypatch.setattr(model, "load", fail)
    monkeypatch.setattr(fixed_points, "find_fixed_points", fail)


@pytest.fixture
def no_solve(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a spec is allowed; solving or simulating it fails the test."""
    from eqgen.dmft_model import DmftModel
    from eqgen.model import Model

    def fail(*args: object, **kwargs: object) -> None:
        raise Called("a solve started before the usage error")

    for cls in (Model, DmftModel):
        for name in ("solve", "simulate", "compare"):
            monkeypatch.setattr(cls, name, fail)
    import eqgen.analysis.fixed_points as fixed_points

    monkeypatch.setattr(fixed_points, "find_fixed_points", fail)


def spec_copy(tmp_path: Path, source: Path = ERF) -> Path:
    path = tmp_path / "same.eqg"
    shutil.copy(source, path)
    return path


def usage_error(r: object, *fragments: str) -> None:
    """Exit 2, `error: ...` with every fragment, a hint line, no internal error."""
    assert r.code == 2, (r.code, r.err)
    assert r.err.startswith("error: "), r.err
    assert "\n  hint: " in r.err, r.err
    assert "internal error" not in r.err and "Traceback" not in r.err
    for fragment in fragments:
        assert fragment in r.err, r.err


# The commands and their output options; `{spec}` is the spec, `{out}` the output.
COMMANDS = {
    "solve -o": ["solve", "{spec}", "--t-max", "0.5", "-o", "{out}"],
    "solve --plot": ["solve", "{spec}", "--t-max", "0.5", "--plot", "{out}"],
    "latex -o": ["latex", "{spec}", "-o", "{out}"],
    "sweep -o": ["sweep", "{spec}", "--grid", "gamma=0.5,1", "--t-max", "0.5", "-o", "{out}"],
    "sweep --plot": ["sweep", "{spec}", "--grid", "gamma=0.5,1", "--t-max", "0.5",
                     "--plot", "{out}"],
    "simulate -o": ["simulate", "{spec}", "--d", "50", "--seeds", "1", "--t-max", "0.5",
                    "-o", "{out}"],
    "simulate --plot": ["simulate", "{spec}", "--d", "50", "--seeds", "1", "--t-max", "0.5",
                        "--plot", "{out}"],
    "compare -o": ["compare", "{spec}", "--d", "50", "--seeds", "1", "--t-max", "0.5",
                   "-o", "{out}"],
    "compare --plot": ["compare", "{spec}", "--d", "50", "--seeds", "1", "--t-max", "0.5",
                       "--plot", "{out}"],
    "fixed-points -o": ["fixed-points", "{spec}", "-o", "{out}"],
    "stability -o": ["stability", "{spec}", "-o", "{out}"],
    "time-to -o": ["time-to", "{spec}", "--t-max", "0.5", "--loss", "0.1", "-o", "{out}"],
}


def command(name: str, spec: Path, out: str | Path) -> list[str]:
    return [a.format(spec=spec, out=out) for a in COMMANDS[name]]


# ------------------------------------------------------------------------------------------
# 1. an output that is an input or another output


@pytest.mark.parametrize("name", [n for n in COMMANDS if not n.endswith("--plot")])
def test_output_naming_the_spec_is_refused_and_the_spec_kept(tmp_path: Path, no_work: None,
                                                             name: str):
    spec = spec_copy(tmp_path)
    before = spec.read_bytes()
    r = run_quiet(*command(name, spec, spec))
    usage_error(r, f"-o {spec} would overwrite the spec {spec}")
    assert spec.read_bytes() == before


def test_output_naming_the_spec_by_another_spelling_is_refused(tmp_path: Path, no_work: None):
    spec = spec_copy(tmp_path)
    (tmp_path / "sub").mkdir()
    os.symlink(spec, tmp_path / "link.eqg")
    for out in (tmp_path / "sub" / ".." / "same.eqg", tmp_path / "link.eqg"):
        usage_error(run_quiet("solve", spec, "-o", out), "would overwrite the spec")


def test_plot_naming_the_spec_is_refused(tmp_path: Path, no_work: None):
    spec = tmp_path / "m.png"  # a spec may have any name
    shutil.copy(ERF, spec)
    usage_error(run_quiet("solve", spec, "--plot", spec), "would overwrite the spec")


def test_output_naming_the_init_file_is_refused(tmp_path: Path, no_work: None):
    for name, option in (("init.json", "-o"), ("init.svg", "--plot")):
        init = tmp_path / name  # an --init file is read as JSON whatever its name
        init.write_text('{"Q": [[1, 0], [0, 1]]}')
        r = run_quiet("solve", ERF, "--init", init, option, init)
        usage_error(r, f"{option} {init} would overwrite the --init file {init}")
        assert init.read_text() == '{"Q": [[1, 0], [0, 1]]}'


def test_csv_metadata_naming_the_init_file_is_refused(tmp_path: Path, no_work: None):
    """`-o x.csv` also writes x.csv.meta.json (`Solution.to_csv`)."""
    init = tmp_path / "x.csv.meta.json"
    init.write_text('{"Q": [[1, 0], [0, 1]]}')
    r = run_quiet("solve", ERF, "--init", init, "-o", tmp_path / "x.csv")
    usage_error(r, f"(writes {init}) would overwrite the --init file")


@pytest.mark.parametrize("cmd", ["solve", "simulate", "compare", "sweep"])
def test_output_and_plot_naming_the_same_file_are_refused(tmp_path: Path, no_work: None,
                                                          cmd: str):
    out = tmp_path / "x.png"
    extra = {"solve": [], "sweep": ["--grid", "gamma=0.5,1"],
             "simulate": ["--d", "50"], "compare": ["--d", "50"]}[cmd]
    r = run_quiet(cmd, ERF, *extra, "-o", out, "--plot", out)
    usage_error(r, f"--plot {out} is the same file as -o {out}")


def test_plot_without_extension_is_its_png(tmp_path: Path, no_work: None):
    """matplotlib appends .png to a name without an extension: `--plot x` writes x.png."""
    r = run_quiet("solve", ERF, "-o", tmp_path / "x.png", "--plot", tmp_path / "x")
    usage_error(r, "is the same file as -o")


def test_distinct_outputs_are_written(tmp_path: Path):
    r = run_quiet("solve", ERF, "--t-max", "0.5", "--save-at", "0,0.5", "-o",
                  tmp_path / "x.csv", "--plot", tmp_path / "x")
    assert r.code == 0, r.err
    assert {p.name for p in tmp_path.iterdir()} == {"x.csv", "x.csv.meta.json", "x.png"}


def test_written_files_name_the_companions():
    assert written_files("a/x.csv", "data") == ["a/x.csv", "a/x.csv.meta.json"]
    assert written_files("a/x.json", "data") == ["a/x.json"]
    assert written_files("a/x.csv", "file") == ["a/x.csv"]
    assert written_files("a/x", "plot") == ["a/x.png"]
    assert written_files("a/x.", "plot") == ["a/x.png"]
    assert written_files("a/x.pdf", "plot") == ["a/x.pdf"]


# ------------------------------------------------------------------------------------------
# 2. an output that cannot be written


BAD_PATHS = {
    "missing folder": ("nodir/x.csv", "the folder {tmp}/nodir does not exist"),
    "existing folder": ("adir", "names a folder, not a file"),
    "folder with a slash": ("adir/", "names a folder, not a file"),
    "missing folder with a slash": ("nodir/", "names a folder, not a file"),
    "parent is a file": ("afile/x.csv", "{tmp}/afile is a file, not a folder"),
    "companion is a folder": ("y.csv", "{tmp}/y.csv.meta.json is a folder"),
}


def _bad_path(tmp_path: Path, key: str) -> tuple[str, str]:
    (tmp_path / "adir").mkdir(exist_ok=True)
    (tmp_path / "afile").write_text("")
    (tmp_path / "y.csv.meta.json").mkdir(exist_ok=True)
    rel, message = BAD_PATHS[key]
    return os.path.join(tmp_path, rel), message.format(tmp=tmp_path)


@pytest.mark.parametrize("key", BAD_PATHS)
def test_solve_output_that_cannot_be_written_is_refused_first(tmp_path: Path, no_work: None,
                                                              key: str):
    out, message = _bad_path(tmp_path, key)
    usage_error(run_quiet("solve", ERF, "-o", out), message)


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize("key", ["missing folder", "existing folder", "parent is a file"])
def test_every_output_option_is_checked_first(tmp_path: Path, no_work: None, name: str,
                                              key: str):
    out, message = _bad_path(tmp_path, key)
    if name.endswith("--plot"):
        out = out.replace(".csv", ".png")
        message = message.replace(".csv", ".png")
    usage_error(run_quiet(*command(name, ERF, out)), message)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
@pytest.mark.parametrize("option", ["-o", "--plot"])
def test_output_in_an_unwritable_folder_is_refused(no_work: None, option: str):
    """/proc refuses new files even to root (for whom os.access says yes): it is probed."""
    r = run_quiet("solve", ERF, option, "/proc/x.png")
    usage_error(r, f"{option} /proc/x.png: cannot write in the folder /proc")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root may write anywhere")
def test_output_in_a_read_only_folder_is_refused(tmp_path: Path, no_work: None):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        usage_error(run_quiet("solve", ERF, "-o", ro / "x.csv"), "cannot write in the folder")
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("cmd", ["solve", "sweep", "simulate", "compare"])
def test_plot_format_matplotlib_cannot_write_is_refused(tmp_path: Path, no_work: None,
                                                        cmd: str):
    extra = {"solve": [], "sweep": ["--grid", "gamma=0.5,1"],
             "simulate": ["--d", "50"], "compare": ["--d", "50"]}[cmd]
    r = run_quiet(cmd, ERF, *extra, "-o", tmp_path / "x.json", "--plot", tmp_path / "x.csv")
    usage_error(r, f"--plot {tmp_path / 'x.csv'}: a plot cannot be written as .csv", "png")
    assert list(tmp_path.iterdir()) == []


def test_plot_formats_come_from_matplotlib(tmp_path: Path):
    for ext in ("png", "pdf", "svg", "PNG"):
        assert check_output(str(tmp_path / f"x.{ext}"), "--plot", kind="plot")


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_generate_out_dir_that_is_a_file_is_refused_first(tmp_path: Path, no_work: None,
                                                          where: str):
    (tmp_path / "afile").write_text("")
    out = tmp_path / "afile" if where == "a file" else tmp_path / "afile" / "sub"
    usage_error(run_quiet("generate", ERF, "--out-dir", out), "is a file, not a folder")


def test_generate_target_that_is_a_folder_is_refused_before_deriving(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from eqgen.model import Model

    def fail(*args: object, **kwargs: object) -> None:
        raise Called("derivation started before the usage error")

    monkeypatch.setattr(Model, "generate", fail)
    (tmp_path / "committee_erf.py").mkdir()
    r = run_quiet("generate", ERF, "--out-dir", tmp_path)
    usage_error(r, f"{tmp_path / 'committee_erf.py'}, the file to write, is a folder")


def test_generate_creates_a_missing_out_dir_as_before(tmp_path: Path):
    """The check keeps a missing --out-dir valid: it is created (here only parsed and
    checked; the generation itself is tested in test_cli.py)."""
    from eqgen.output_paths import check_out_dir

    check_out_dir(str(tmp_path / "new" / "deeper"), ["m.py"])  # no error


# ------------------------------------------------------------------------------------------
# 3. seeds and numeric options


SEED_COMMANDS = {
    "solve dmft": ["solve", GMM, "--samples", "200", "--t-max", "0.5"],
    "simulate dmft": ["simulate", GMM, "--d", "50", "--seeds", "1", "--t-max", "0.5"],
    "simulate committee": ["simulate", ERF, "--d", "50", "--seeds", "1", "--t-max", "0.5"],
    "compare committee": ["compare", ERF, "--d", "50", "--seeds", "1", "--t-max", "0.5"],
    "compare dmft": ["compare", GMM, "--d", "50", "--seeds", "1", "--t-max", "0.5"],
    "time-to": ["time-to", GMM, "--samples", "200", "--t-max", "0.5"],
    "fixed-points": ["fixed-points", ERF, "--random", "2"],
}


@pytest.mark.parametrize("seed", ["-1", "4294967296", "99999999999999999999", "1.5", "x"])
@pytest.mark.parametrize("name", SEED_COMMANDS)
def test_every_bad_seed_is_a_usage_error_before_any_work(no_work: None, name: str, seed: str):
    r = run_quiet(*SEED_COMMANDS[name], "--seed", seed)
    usage_error(r, "--seed", "4294967295", repr(seed))


def test_seeds_up_to_2_to_the_32_are_accepted():
    for argv in (["solve", "m.eqg", "--seed", "4294967295"],
                 ["simulate", "m.eqg", "--d", "50", "--seed", "0"],
                 ["time-to", "m.eqg", "--seed", "1e3"],
                 ["fixed-points", "m.eqg", "--seed", "4294967295"]):
        args = _parser().parse_args(argv)
        assert args.seed == int(float(argv[-1]))


def test_time_to_seeds_past_2_to_the_32_are_refused(no_solve: None):
    r = run_quiet("time-to", GMM, "--seed", "4294967295", "--seeds", "2")
    usage_error(r, "runs past the largest seed")


@pytest.mark.parametrize("args", [["--random", "-1"], ["--tol", "0"], ["--tol", "-1e-10"],
                                  ["--tol", "nan"], ["--tol", "inf"], ["--max-steps", "0"],
                                  ["--max-steps", "-5"]], ids=" ".join)
def test_fixed_points_bad_options_are_usage_errors_first(no_work: None, args: list[str]):
    usage_error(run_quiet("fixed-points", ERF, *args), args[0])


@pytest.mark.parametrize("args", [["--loss", "nan"], ["--loss", "inf"],
                                  ["--loss", "0.1", "--loss", "nan"],
                                  ["--error-tol", "-1"], ["--error-tol", "1"],
                                  ["--error-tol", "2"], ["--error-tol", "nan"]], ids=" ".join)
def test_time_to_bad_levels_are_usage_errors_before_solving(no_solve: None, args: list[str]):
    usage_error(run_quiet("time-to", GMM, "--samples", "200", *args), args[-2])


def test_integral_floats_are_accepted_as_counts():
    args = _parser().parse_args(["simulate", "m.eqg", "--d", "1e3", "--seeds", "2.0",
                                 "--samples", "1E4", "--test-samples", "5e2"])
    assert (args.d, args.seeds, args.samples, args.test_samples) == (1000, 2, 10000, 500)
    assert all(type(v) is int for v in (args.d, args.seeds, args.samples, args.test_samples))
    args = _parser().parse_args(["time-to", "m.eqg", "--samples", "2e2", "--seeds", "3"])
    assert (args.samples, args.seeds) == (200, 3)


@pytest.mark.parametrize("d", ["1.5", "1e400", "nan", "ten"])
def test_non_integral_counts_are_still_refused(no_work: None, d: str):
    r = run_quiet("simulate", ERF, "--d", d)
    assert r.code == 2 and f"argument --d: invalid int value: '{d}'" in r.err, r.err


@pytest.mark.parametrize("name, noted", [("x.txt", True), ("x.DAT", True), ("x.csv", False),
                                         ("x.JSON", True), ("x.json", False),
                                         ("x", False)])
def test_a_data_output_named_neither_csv_nor_json_is_noted(tmp_path: Path, name: str,
                                                           noted: bool):
    r = run_quiet("solve", ERF, "--t-max", "1", "-o", tmp_path / name)
    assert r.code == 0, r.err
    assert ("is written as CSV" in r.err) is noted, r.err
