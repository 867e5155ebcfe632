"""The command line as people expect it, and the packaging behind it.

--version, -v on either side of the subcommand, defaults shown once in every --help, a help text on every option,
missing optional dependencies named with the extra that brings them (in a subprocess where torch cannot be
imported), install hints that name extras, and pyproject.toml's dependencies against what the code imports.
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

import edgeseg
from edgeseg import _optional
from edgeseg.cli import COMMANDS, CommandParser, HelpFormatter, build_parser, main, package_version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SOURCE_FILES = sorted([*(ROOT / "edgeseg").rglob("*.py"), *(ROOT / "export").rglob("*.py")])


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def one_line(text: str) -> str:
    return " ".join(text.split())


# ----- --version and -v ------------------------------------------------------------------------------------------
def test_version_is_the_installed_distributions(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"edgeseg {importlib.metadata.version('edgeseg')}"


def test_version_falls_back_to_the_package_attribute(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    monkeypatch.setattr(edgeseg, "__version__", "9.8.7")
    assert package_version() == "9.8.7"


def test_package_version_matches_pyproject():
    assert edgeseg.__version__ == PYPROJECT["project"]["version"]


@pytest.mark.parametrize("argv, verbose", [
    (["models"], False),
    (["-v", "models"], True),
    (["models", "-v"], True),
    (["models", "--verbose"], True),
    (["-v", "doctor", "--json"], True),
    (["doctor", "--json", "-v"], True),
    (["run", "-v", "m.onnx", "--source", "synthetic:1"], True),
    (["run", "m.onnx", "--source", "synthetic:1"], False),
    (["export", "best.pt", "--out", "x", "-v"], True),
])
def test_verbose_before_or_after_the_subcommand(argv, verbose):
    assert build_parser().parse_args(argv).verbose is verbose


# ----- help texts ------------------------------------------------------------------------------------------------
def test_every_subcommand_uses_the_one_formatter_and_takes_verbose():
    parser = build_parser()
    assert parser.formatter_class is HelpFormatter
    commands = subparsers(parser)
    assert set(commands) == set(COMMANDS)
    for name, sub in commands.items():
        assert sub.formatter_class is HelpFormatter, name
        assert isinstance(sub, CommandParser), name
        assert "-v" in sub._option_string_actions and "--verbose" in sub._option_string_actions, name


def test_every_option_has_a_help_text():
    missing = [
        f"edgeseg {name} {'/'.join(action.option_strings) or action.dest}"
        for name, sub in subparsers(build_parser()).items()
        for action in sub._actions
        if not (action.help or "").strip()
    ]
    assert not missing, f"options without help=: {missing}"


def _shown_default(default) -> str:
    return " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)


def test_defaults_are_shown_once_and_only_when_they_say_something():
    for name, sub in subparsers(build_parser()).items():
        text = one_line(sub.format_help())
        assert "(default: None)" not in text and "(default: False)" not in text, name
        assert "(default: ==SUPPRESS==)" not in text and "(default: [])" not in text, name
        for action in sub._actions:
            if not action.option_strings or action.nargs == 0 or action.default in (None, False, [], ()):
                continue
            if action.default is argparse.SUPPRESS:
                continue
            # the formatter adds the default: the help text itself must not state it again
            assert "default" not in (action.help or "").lower(), f"edgeseg {name} {action.option_strings[0]}"
            shown = f"(default: {_shown_default(action.default)})"
            assert one_line(sub._get_formatter()._expand_help(action)).endswith(shown), (name, action.dest)
            assert text.count(shown) >= 1, (name, action.dest)


def test_formatter_on_a_hand_made_parser():
    parser = CommandParser(prog="p")
    parser.add_argument("--size", type=int, nargs=2, default=(128, 160), help="the size")
    parser.add_argument("--rate", default="50%", help="a rate")
    parser.add_argument("--nothing", default=None, help="no default")
    parser.add_argument("--flag", action="store_true", help="a flag")
    parser.add_argument("--many", nargs="*", default=[], help="none yet")
    parser.add_argument("--own", default=3, help="three unless given (default: %(default)s)")
    parser.add_argument("path", help="a positional")
    parser.epilog = "table:\n  a    1\n  bb   2"
    lines = parser.format_help().splitlines()
    text = one_line("\n".join(lines))
    assert "the size (default: 128 160)" in text
    assert "a rate (default: 50%)" in text
    assert "three unless given (default: 3)" in text and text.count("(default: 3)") == 1
    for bare in ("no default", "a flag", "none yet", "a positional"):
        assert re.search(re.escape(bare) + r"(?! \(default)", text) and f"{bare} (default" not in text
    assert lines[-3:] == ["table:", "  a    1", "  bb   2"]  # the epilog keeps its line breaks


def test_epilogs_keep_their_line_breaks():
    from edgeseg.cli import run_cmd

    helps = {name: sub.format_help() for name, sub in subparsers(build_parser()).items()}
    run_lines = helps["run"].splitlines()
    for line in run_cmd._EPILOG.splitlines():
        assert line.rstrip() in run_lines
    assert "formats (--precision):" in helps["export"].splitlines()


def test_run_and_export_help_show_their_defaults():
    helps = {name: one_line(sub.format_help()) for name, sub in subparsers(build_parser()).items()}
    assert "overlay opacity of the mask colours (default: 0.5)" in helps["run"]
    assert "(default: overlay)" in helps["run"] and "(default: all)" in helps["run"]
    assert "formats to export; see the table below (default: fp32)" in helps["export"]
    assert "calibration method (default: entropy)" in helps["export"]
    assert re.search(r"--image-size H W [^-]*\(default: 128 160\)", helps["train"])


def test_top_level_help_is_for_users(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    order = [text.index(f"edgeseg {name} ") for name in ("train", "export", "run", "bench", "eval")]
    assert order == sorted(order), "the description gives the usual order train -> export -> run/bench/eval"
    assert "edgeseg/" not in text and "cli/" not in text  # about using it, not about the code's layout
    # every command listed on its own line with its one-line help
    for name, sub in subparsers(build_parser()).items():
        assert re.search(rf"^\s+{name}\s+\S", text, re.M), name


# ----- missing optional dependencies -----------------------------------------------------------------------------
_BLOCKED_RUN = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # `import name` now raises ModuleNotFoundError, as when it is not installed
from edgeseg.cli import main
sys.exit(main({argv!r}))
"""


def run_without(blocked: list[str], argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    code = _BLOCKED_RUN.format(blocked=blocked, argv=argv)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """A tiny real .onnx (no torch needed to make it) and a .pt path: the commands get past their own checks."""
    from runtime.onnx_graphs import write_pixel_classifier
    from edgeseg.data import write_synthetic_video

    root = tmp_path_factory.mktemp("no_torch")
    write_pixel_classifier(root / "m.onnx")
    (root / "x.pt").write_bytes(b"not read: torch is missing first")
    write_synthetic_video(root / "clip.mp4", frames=3, size=(48, 64), seed=0)
    return root


@pytest.mark.parametrize("argv, extra", [
    (["models"], "train"),
    (["train", "--epochs", "1", "--out", "tr"], "train"),
    (["export", "x.pt", "--out", "ex"], "export"),
    (["eval", "x.pt", "--data", "synthetic"], "train"),
    (["bench", "m.onnx", "--json", "b.json", "--compare", "x.pt", "--video", "clip.mp4"], "train"),
    (["demo", "--out", "demo"], "train"),
], ids=lambda v: v[0] if isinstance(v, list) else v)
def test_commands_without_torch_name_the_extra(model_files, argv, extra):
    result = run_without(["torch"], argv, model_files)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"edgeseg {argv[0]}: error: ")
    assert "'torch'" in result.stderr and f"pip install 'edgeseg[{extra}]'" in result.stderr
    assert not (model_files / "b.json").exists()  # refused before any timing or output


def test_run_without_onnxruntime_names_the_extra(model_files):
    result = run_without(["onnxruntime"], ["run", "m.onnx", "--source", "synthetic:2", "--out", "o.mp4"],
                         model_files)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "'onnxruntime'" in result.stderr and "pip install 'edgeseg[onnx]'" in result.stderr


def test_help_works_without_torch(tmp_path):
    for argv in (["--help"], ["run", "--help"], ["export", "--help"], ["--version"]):
        result = run_without(["torch", "onnx"], argv, tmp_path)
        assert result.returncode == 0 and "Traceback" not in result.stderr, (argv, result.stderr)


def test_missing_module_caught_in_main(monkeypatch, capsys):
    from edgeseg.cli import models_cmd

    def missing(name):
        def run(args):
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
        return run

    monkeypatch.setattr(models_cmd, "run", missing("torch.nn"))
    assert main(["models"]) == 2
    assert capsys.readouterr().err == ("edgeseg models: error: models needs 'torch', which is not installed; "
                                       "pip install 'edgeseg[train]'\n")
    monkeypatch.setattr(models_cmd, "run", missing("not_a_dependency_of_edgeseg"))
    with pytest.raises(ModuleNotFoundError):  # unknown modules are bugs: their traceback stays
        main(["models"])


# ----- install hints and pyproject.toml --------------------------------------------------------------------------
def _requirement_name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower().replace("_", "-")


EXTRAS = {extra: {_requirement_name(r) for r in reqs}
          for extra, reqs in PYPROJECT["project"]["optional-dependencies"].items()}
CORE = {_requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}

# Distribution -> the module it installs, where the names differ.
MODULE_OF = {
    "opencv-python-headless": "cv2", "pillow": "PIL", "onnxruntime-gpu": "onnxruntime",
    "onnxconverter-common": "onnxconverter_common", "tensorrt-cu12": "tensorrt", "tensorrt-rtx-cu13": "tensorrt_rtx",
    "cuda-python": "cuda", "tritonclient": "tritonclient", "nvidia-pytriton": "pytriton",
}
# Optional backends imported by name at run time (require(flavour), find_spec), with the extra that brings each;
# None: no extra brings it, on purpose (runtime-only TensorRT for version-compatible engines, which the `tensorrt`
# extra runs too; pytriton's tritonserver binary, installed apart with --no-deps, see edgeseg/serve.py).
OPTIONAL_BACKENDS = {
    "tensorrt": "tensorrt", "tensorrt_rtx": "tensorrt-rtx", "cuda": "tensorrt", "pycuda": "pycuda",
    "tensorrt_dispatch": None, "tensorrt_lean": None, "tritonclient": "triton", "pytriton": None,
}
# Modules a declared package brings along (not declared themselves) -> the extra whose package brings them.
TRANSITIVE = {"google": "triton"}  # google.protobuf: a dependency of tritonclient[grpc]
# Modules that only exist inside a host process that loads our code, never pip-installed.
HOST_PROVIDED = {"triton_python_backend_utils"}  # Triton's Python backend, in export/triton_python_model.py
# `pip install X` hints that do not name an extra, on purpose (see OPTIONAL_BACKENDS).
NOT_AN_EXTRA = ("tensorrt-dispatch", "tensorrt-lean", "--no-deps nvidia-pytriton")
# Extras whose packages are imported by the tests only.
TEST_ONLY_EXTRAS = {"dev"}


def module_of(distribution: str) -> str:
    return MODULE_OF.get(distribution, distribution.replace("-", "_"))


def modules_of_extra(extra: str) -> set[str]:
    return {module_of(d) for d in EXTRAS[extra]}


def imported_modules(files: list[Path]) -> dict[str, set[str]]:
    """Top-level third-party module -> files that import it: import statements, the literal first argument of
    require()/is_available()/import_module(), and string constants naming an optional backend."""
    found: dict[str, set[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if func in ("require", "is_available", "import_module", "find_spec", "importorskip"):
                    names = [node.args[0].value]
            elif isinstance(node, ast.Constant) and node.value in OPTIONAL_BACKENDS:
                names = [node.value]
            for name in names:
                top = str(name).split(".")[0]
                if top and top not in sys.stdlib_module_names and top not in ("edgeseg", "_C", "__future__"):
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_is_declared():
    declared = {module_of(d) for d in CORE} | {m for extra in EXTRAS for m in modules_of_extra(extra)}
    for module, files in imported_modules(SOURCE_FILES).items():
        if module in HOST_PROVIDED:
            continue
        if module in TRANSITIVE:
            assert TRANSITIVE[module] in EXTRAS, f"{module} ({sorted(files)}) comes with '{TRANSITIVE[module]}'"
            continue
        if module in OPTIONAL_BACKENDS:
            extra = OPTIONAL_BACKENDS[module]
            assert extra is None or module in modules_of_extra(extra), (
                f"{module} (imported in {sorted(files)}) should come with the '{extra}' extra")
            continue
        assert module in declared, f"{module} is imported in {sorted(files)} but no dependency or extra brings it"


def test_every_declared_package_is_imported():
    used = set(imported_modules(SOURCE_FILES))
    used_by_tests = set(imported_modules(sorted((ROOT / "tests").rglob("*.py"))))
    for extra, distributions in EXTRAS.items():
        for distribution in distributions:
            where = used_by_tests if extra in TEST_ONLY_EXTRAS else used
            assert module_of(distribution) in where, f"extra '{extra}' declares {distribution}; nothing imports it"
    for distribution in CORE:
        assert module_of(distribution) in used, f"dependency {distribution} is not imported"
    assert "psutil" not in used, "psutil is for the tests (dev extra), not the package"


def test_charts_come_with_train_and_bench():
    assert "matplotlib" in EXTRAS["train"] and "matplotlib" in EXTRAS["bench"]
    assert "pillow" in EXTRAS["train"]


def test_the_optional_tables_match_pyproject():
    for extra, modules in _optional.EXTRA_MODULES.items():
        assert set(modules) <= modules_of_extra(extra), f"_optional.EXTRA_MODULES[{extra!r}] vs pyproject.toml"
    assert set(_optional.COMMAND_EXTRAS) <= set(COMMANDS)
    assert set(_optional.COMMAND_EXTRAS.values()) <= set(_optional.EXTRA_MODULES)
    for module, hint in _optional._INSTALL_HINTS.items():
        if OPTIONAL_BACKENDS.get(module, "") is None:
            continue  # no extra brings it; its hint names the extra that runs the same engines
        for extra in re.findall(r"edgeseg\[([\w-]+)\]", hint):
            assert extra in EXTRAS, f"the hint for {module} names an extra pyproject.toml lacks: {extra}"
            assert module in modules_of_extra(extra), f"'edgeseg[{extra}]' does not bring {module}"


def test_every_optional_module_the_code_asks_for_has_a_hint():
    for module, files in imported_modules(SOURCE_FILES).items():
        # numpy: the one dependency every install has (cv2 is left out on aarch64); TRANSITIVE: imported only
        # after the package that brings them (google.protobuf after tritonclient), whose hint applies
        if module != "numpy" and module not in TRANSITIVE and module not in HOST_PROVIDED:
            assert _optional.is_optional(module), f"{module} ({sorted(files)}) has no install hint in _optional"


def test_install_hints_name_extras_not_bare_packages():
    bare = []
    for path in SOURCE_FILES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in re.finditer(r"pip install ([^)\"',;]+|'[^']*')", line):
                target = match.group(1)
                if not (target.startswith(("'edgeseg[", "-e .", "edgeseg ")) or target.startswith(NOT_AN_EXTRA)):
                    bare.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not bare, "install hints should name an extra:\n" + "\n".join(bare)


@pytest.mark.parametrize("module, command, expected", [
    ("torch", "export", "pip install 'edgeseg[export]'"),
    ("torch", "models", "pip install 'edgeseg[train]'"),
    ("torch", "run", _optional._INSTALL_HINTS["torch"]),
    ("onnxruntime.quantization", None, _optional._INSTALL_HINTS["onnxruntime"]),
    ("cuda.bindings.runtime", None, _optional._INSTALL_HINTS["cuda"]),
    ("matplotlib.pyplot", "bench", "pip install 'edgeseg[bench]'"),
])
def test_install_hint(module, command, expected):
    assert _optional.install_hint(module, command=command) == expected
