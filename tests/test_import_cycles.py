"""No module of the package imports, directly or through others, a module that imports it back
(module-level imports and imports inside functions alike, read with ``ast``)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from typing import Dict, List, Set

PACKAGE = "gluon_deeplab"
ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), PACKAGE)
REPO = os.path.dirname(ROOT)


def _modules() -> Dict[str, str]:
    found = {}
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, REPO)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                found[".".join(parts)] = path
    return found


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> Dict[str, Set[str]]:
    """module -> the package modules it imports (an imported name that is a submodule counts
    as that submodule; importing ``a.b.c`` also imports the packages ``a.b`` and ``a``)."""
    modules = _modules()
    graph: Dict[str, Set[str]] = {}
    for module, path in modules.items():
        is_package = path.endswith("__init__.py")
        targets: Set[str] = set()
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node)
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                         for a in node.names]
            else:
                continue
            for name in names:
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                while name:  # the module and the packages it lives in
                    if name != module and name in modules:
                        targets.add(name)
                    name = name.rpartition(".")[0]
        graph[module] = {t for t in targets if not module.startswith(t + ".")}
    return graph


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """One import path per module that reaches itself again."""
    found = []
    for start in sorted(graph):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == start:
                    found.append(path + [start])
                    stack = []
                    break
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
    return found


def test_the_cycle_finder_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
        ["a", "b", "c", "a"], ["b", "c", "a", "b"], ["c", "a", "b", "c"]]


def test_no_module_of_the_package_is_in_an_import_circle():
    found = cycles(import_graph())
    assert not found, "\n".join(" -> ".join(c) for c in found[:10])


def test_the_package_and_its_data_and_evaluation_import_without_gluoncv():
    code = ("import sys, gluon_deeplab, gluon_deeplab.data, gluon_deeplab.evaluation; "
            "sys.exit('gluoncv' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=120,
                            env=dict(os.environ, PYTHONPATH=REPO), capture_output=True)
    assert result.returncode == 0, result.stderr.decode()[-2000:]


def test_importing_the_library_loads_none_of_its_command_lines():
    code = ("import sys, gluon_deeplab.training, gluon_deeplab.deploy, gluon_deeplab.data, "
            "gluon_deeplab.evaluation.run; "
            "print([m for m in sys.modules if m.startswith('gluon_deeplab') "
            "and m.rsplit('.', 1)[-1].endswith('cli')])")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=120,
                            env=dict(os.environ, PYTHONPATH=REPO), capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout
