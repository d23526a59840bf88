"""The package runs on Python 3.10, the Python of NVIDIA's MXNet container (24.05, 24.06): no
syntax and none of the standard library's names newer than 3.10 (no 3.10 interpreter here)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from typing import Iterator

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The standard library's additions of 3.11 and 3.12 that code written on 3.11 reaches for.
NEWER_MODULES = {"tomllib", "wsgiref.types"}
NEWER_NAMES = {
    "datetime": {"UTC"}, "enum": {"StrEnum", "ReprEnum", "verify", "EnumCheck", "global_enum"},
    "typing": {"Self", "LiteralString", "Never", "TypeVarTuple", "Unpack", "reveal_type",
               "assert_never", "assert_type", "override", "dataclass_transform", "Required",
               "NotRequired", "TypeAliasType", "get_overloads", "clear_overloads"},
    "asyncio": {"TaskGroup", "timeout", "Runner", "Barrier"}, "contextlib": {"chdir"},
    "hashlib": {"file_digest"}, "itertools": {"batched"}, "operator": {"call"},
    "math": {"cbrt", "exp2", "sumprod"}, "logging": {"getLevelNamesMapping"},
}
NEWER_BUILTINS = {"ExceptionGroup", "BaseExceptionGroup"}


def python_files() -> Iterator[str]:
    yield os.path.join(REPO, "setup.py")
    for top in ("gluon_deeplab", "scripts", "tests"):
        for folder, _, names in os.walk(os.path.join(REPO, top)):
            yield from (os.path.join(folder, n) for n in sorted(names) if n.endswith(".py"))


def _newer_uses(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name in NEWER_MODULES)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module in NEWER_MODULES:
                yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names
                        if a.name in NEWER_NAMES.get(node.module, ()))
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.attr in NEWER_NAMES.get(node.value.id, ()):
                yield f"{node.value.id}.{node.attr}"
        elif isinstance(node, ast.Name) and node.id in NEWER_BUILTINS:
            yield node.id


def test_every_python_file_parses_as_python_3_10():
    for path in python_files():
        with open(path, encoding="utf-8") as f:
            ast.parse(f.read(), filename=path, feature_version=(3, 10))


def test_no_standard_library_name_newer_than_python_3_10():
    found = {}
    for path in python_files():
        with open(path, encoding="utf-8") as f:
            uses = sorted(set(_newer_uses(ast.parse(f.read(), filename=path))))
        if uses:
            found[os.path.relpath(path, REPO)] = uses
    assert found == {}
    sample = "import tomllib\nfrom typing import Self\nprint(datetime.UTC, ExceptionGroup)\n"
    assert sorted(set(_newer_uses(ast.parse(sample)))) == [
        "ExceptionGroup", "datetime.UTC", "tomllib", "typing.Self"]


def test_ruff_finds_no_syntax_newer_than_python_3_10(tmp_path):
    pytest.importorskip("ruff", reason="ruff is in the [test] extra")
    command = [sys.executable, "-m", "ruff", "check", "--isolated", "--select", "E9",
               "--target-version", "py310"]
    done = subprocess.run([*command, "setup.py", "gluon_deeplab", "scripts", "tests"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    (tmp_path / "newer.py").write_text("try:\n    pass\nexcept* ValueError:\n    pass\n")
    caught = subprocess.run([*command, str(tmp_path / "newer.py")], capture_output=True,
                            text=True, timeout=120)
    assert caught.returncode == 1 and "Python 3.11" in caught.stdout
