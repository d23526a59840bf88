"""Every script is a console command: setup.py's ``gluon-deeplab-*`` entry points, each
``scripts/*.py`` a thin wrapper calling the same function, and a ``--help`` that shows each
default once, never "None", and the same output-stride choices everywhere."""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import os
import re
import runpy
from typing import Dict

import pytest
import setuptools

from gluon_deeplab.models import OUTPUT_STRIDES

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(f for f in os.listdir(os.path.join(REPO, "scripts")) if f.endswith(".py"))
# The commands that choose an output stride (the test must not pass by finding none).
WITH_OUTPUT_STRIDE = {"gluon-deeplab-train", "gluon-deeplab-eval", "gluon-deeplab-predict",
                      "gluon-deeplab-export", "gluon-deeplab-bench"}


def _console_scripts() -> Dict[str, str]:
    """setup.py's console commands: {name: 'module:function'}."""
    seen: dict = {}
    saved, cwd = setuptools.setup, os.getcwd()
    setuptools.setup = lambda **kw: seen.update(kw)
    try:
        os.chdir(REPO)
        runpy.run_path(os.path.join(REPO, "setup.py"))
    finally:
        setuptools.setup = saved
        os.chdir(cwd)
    return dict(line.replace(" ", "").split("=", 1)
                for line in seen["entry_points"]["console_scripts"])


COMMANDS = _console_scripts()


def _function(target: str):
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def _script_target(script: str) -> str:
    """'module:function' that ``scripts/<script>`` imports and calls under ``__main__``; the
    script defines nothing of its own."""
    tree = ast.parse(open(os.path.join(REPO, "scripts", script), encoding="utf-8").read())
    own = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert not own, f"scripts/{script} defines {own}: the code belongs in the package"
    imported = {alias.asname or alias.name: f"{node.module}:{alias.name}"
                for node in tree.body if isinstance(node, ast.ImportFrom)
                and (node.module or "").startswith("gluon_deeplab")
                for alias in node.names}
    main_blocks = [n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.dump(n.test)]
    assert len(main_blocks) == 1, f"scripts/{script}: no if __name__ == '__main__' block"
    called = {imported[call.func.id] for call in ast.walk(main_blocks[0])
              if isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
              and call.func.id in imported}
    assert len(called) == 1, f"scripts/{script} calls {called or 'nothing of the package'}"
    return called.pop()


def test_every_script_is_a_thin_wrapper_of_a_console_command():
    assert len(SCRIPTS) == 10
    targets = {target: name for name, target in COMMANDS.items()}
    for script in SCRIPTS:
        target = _script_target(script)
        assert target in targets, f"scripts/{script} calls {target}, which no command runs"
        assert targets[target].startswith("gluon-deeplab-")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_function_exists_and_returns_an_exit_status(name):
    function = _function(COMMANDS[name])
    # A console script exits with what its function returns: data would be exit status 1.
    assert inspect.signature(function).return_annotation in ("None", "int"), name


def _help_parser(monkeypatch, capsys, name: str) -> argparse.ArgumentParser:
    """Run ``NAME --help`` in-process; return the parser that printed it."""
    printed = []
    print_help = argparse.ArgumentParser.print_help

    def spy(self, file=None):
        printed.append(self)
        print_help(self, file)
    monkeypatch.setattr(argparse.ArgumentParser, "print_help", spy)
    with pytest.raises(SystemExit) as exit_info:
        _function(COMMANDS[name])(["--help"])
    assert exit_info.value.code == 0 and len(printed) == 1
    assert capsys.readouterr().out.startswith("usage:")
    return printed[0]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_shows_each_default_once_and_never_none(monkeypatch, capsys, name):
    parser = _help_parser(monkeypatch, capsys, name)
    formatter = parser._get_formatter()
    strides = []
    for action in parser._actions:
        if action.help is argparse.SUPPRESS:
            continue
        flag = action.option_strings[-1] if action.option_strings else action.dest
        text = " ".join(formatter._expand_help(action).split()) if action.help else ""
        assert "(default: None)" not in text, f"{name} {flag}: {text}"
        assert len(re.findall(r"\bdefault[: ]", text, re.I)) <= 1, f"{name} {flag}: {text}"
        shown = action.default not in (None, False, "", argparse.SUPPRESS)
        if shown and not action.required:
            assert "default" in text, f"{name} {flag} does not show its default: {text}"
        if flag in ("--output_stride", "--output_strides"):
            strides.append(tuple(action.choices))
    assert strides == ([OUTPUT_STRIDES] if name in WITH_OUTPUT_STRIDE else []), name
