"""The docs cannot go stale: every command that README.md and docs/*.md show runs, in document
order, at tiny sizes, in a workspace holding the repository's scripts and a small gluoncv VOC
tree downloaded by the documented ``download_voc.py`` from a 127.0.0.1 mirror; and
docs/design.md lists every module of the package with one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Dict, List

import numpy as np
import pytest
from doc_commands import (
    REPO,
    DocCommand,
    all_commands,
    outside_paths,
    page_commands,
    runnable,
)
from http_server import serve_folder
from PIL import Image

# Commands shown but not run, each with its reason (checked both ways: each entry matches a
# documented command, and nothing else is left out). An entry matches the start of a command.
NOT_RUN = {
    "sh sh/test.sh": "the test suite itself",
    "sh sh/setup_env.sh": "rebuilds .venv, the environment this test runs in "
                          "(tests/test_install.py checks its choices)",
    "pip install": "changes the environment this test runs in",
    "tensorboard --logdir": "a server that runs until stopped",
    "gluon-deeplab-gpu-check": "minutes of ResNet50 training meant for a GPU; "
                               "tests/test_gpu_check.py runs it on 1 and 2 CPU contexts",
    ".venv/bin/python scripts/launch_dist.py --launcher slurm": "a Slurm job's step (srun); "
                                                               "tests/test_dist_launchers.py "
                                                               "runs it with a fake srun",
}
TIMEOUT_S = 300
COMMANDS = all_commands()
RUN = [c for c in COMMANDS if not any(c.text.startswith(skip) for skip in NOT_RUN)]


@dataclass
class Result:
    command: str
    returncode: object  # the exit status, or "timed out"
    output: str
    seconds: float


class Runner:
    """Runs the documented commands once each, in order, on first need; an identical command
    shown again is not run twice (it would find its own outputs)."""

    def __init__(self, workspace: str, env: Dict[str, str], mirror: str):
        self.workspace, self.env, self.mirror = workspace, env, mirror
        self.done: Dict[DocCommand, Result] = {}
        self.by_text: Dict[tuple, Result] = {}

    def result(self, command: DocCommand) -> Result:
        for earlier in RUN[:RUN.index(command) + 1]:
            if earlier not in self.done:
                key = (earlier.kind, earlier.text)
                if key not in self.by_text:
                    self.by_text[key] = self._run(earlier)
                self.done[earlier] = self.by_text[key]
        return self.done[command]

    def _run(self, command: DocCommand) -> Result:
        if command.kind == "sh" and outside_paths(command):
            return Result(command.text, "not run", f"absolute paths {outside_paths(command)}: "
                          "the docs test runs each command in a temporary workspace; show "
                          "relative paths (or add the command to NOT_RUN)", 0.0)
        if command.kind == "python":
            argv, defaults, stdin = [sys.executable, "-"], {}, command.text
        else:
            (argv, defaults), stdin = runnable(command, self.mirror, sys.executable), None
        start = time.perf_counter()
        try:
            done = subprocess.run(argv, cwd=self.workspace, env={**self.env, **defaults},
                                  input=stdin, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT_S)
            status, output = done.returncode, done.stdout
        except subprocess.TimeoutExpired as err:
            status, output = f"timed out after {TIMEOUT_S} s", str(err.output or "")
        shown = command.text if command.kind == "python" else argv[-1]
        return Result(shown, status, output, time.perf_counter() - start)


def _voc_archives(folder) -> str:
    """The VOC 2012 and SBD archives in their real layouts (tests/test_voc_recipe.py's trees),
    written into folder; returns 'voc2012=SHA1,sbd=SHA1'."""
    from test_voc_recipe import _sbd_files, _tar, _voc_files

    voc = _tar(folder / "VOCtrainval_11-May-2012.tar", _voc_files("VOCdevkit/VOC2012"), "w")
    sbd = _tar(folder / "benchmark.tgz", _sbd_files("benchmark_RELEASE/dataset"), "w:gz")
    return f"voc2012={voc},sbd={sbd}"


def _workspace(root) -> None:
    """Links to the repository's code, and the photos the predict examples read (the
    recipe's ``my_photo.jpg`` and a ``runs/photos`` folder)."""
    for name in ("scripts", "sh", "gluon_deeplab", "setup.py", ".venv"):
        if os.path.exists(os.path.join(REPO, name)):
            os.symlink(os.path.join(REPO, name), root / name)
    (root / "runs" / "photos").mkdir(parents=True)
    photo = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    Image.fromarray(photo).save(root / "runs" / "photos" / "street.jpg", quality=90)
    Image.fromarray(photo).save(root / "my_photo.jpg", quality=90)
    (root / "home").mkdir()


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    root = tmp_path_factory.mktemp("docs_workspace")
    served = tmp_path_factory.mktemp("voc_mirror")
    _workspace(root)
    sha1 = _voc_archives(served)
    with serve_folder(str(served)) as (mirror, _):
        env = {**os.environ, "HOME": str(root / "home"), "MXNET_HOME": str(root / "mxnet_home"),
               "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHON": sys.executable,
               "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]),
               # Nothing reaches the internet: a model zoo download fails at once.
               "MXNET_GLUON_REPO": "http://127.0.0.1:9/",
               "GLUON_DEEPLAB_VOC_MIRROR": mirror, "DOCS_TEST_VOC_SHA1": sha1}
        yield Runner(str(root), env, mirror)


@pytest.mark.parametrize("command", RUN, ids=[c.id for c in RUN])
def test_documented_command_runs(runner, command):
    result = runner.result(command)
    tail = "\n".join(result.output.rstrip().splitlines()[-25:])
    assert result.returncode == 0, (
        f"{command.id}: exit status {result.returncode} after {result.seconds:.0f} s\n"
        f"$ {result.command}\n{tail}")


def test_every_command_not_run_is_in_the_table_and_each_entry_is_shown():
    assert any(c.page == "README.md" for c in RUN) and any(c.page != "README.md" for c in RUN)
    unused = [skip for skip in NOT_RUN if not any(c.text.startswith(skip) for c in COMMANDS)]
    assert not unused, f"NOT_RUN entries the docs no longer show: {unused}"


def test_no_command_hides_in_an_untagged_block():
    from doc_commands import doc_pages, fenced_blocks

    looks_run = re.compile(r"\s*(python3? |sh sh/|gluon-deeplab-|pip install|\.venv/bin/)")
    for page in doc_pages():
        with open(os.path.join(REPO, page), encoding="utf-8") as f:
            for tag, start, lines in fenced_blocks(f.read()):
                if tag not in ("sh", "bash", "python"):
                    hidden = [line for line in lines if looks_run.match(line)]
                    assert not hidden, f"{page}:{start}: a command in a ```{tag} block: {hidden}"


def test_extraction_joins_continued_lines_and_drops_comments(tmp_path):
    (tmp_path / "README.md").write_text(
        "Intro\n\n```sh\n# a comment line\npython scripts/eval.py --checkpoint a \\\n"
        "    --flip   # trailing comment\n\nMAX_ITER=5 sh sh/train.sh\n```\n\n"
        "```text\npython not-run.py\n```\n\n```python\nimport os\nprint(os.sep)\n```\n")
    got = [(c.id, c.kind, c.text) for c in page_commands("README.md", str(tmp_path))]
    assert got == [("README.md:5", "sh", "python scripts/eval.py --checkpoint a --flip"),
                   ("README.md:8", "sh", "MAX_ITER=5 sh sh/train.sh"),
                   ("README.md:16", "python", "import os\nprint(os.sep)\n")]


def test_tiny_flags_follow_the_documented_ones_and_inline_variables_win():
    train = DocCommand("p", 1, "sh", "python scripts/train.py --max_iter 30000 --gpus 0,1")
    argv, env = runnable(train, "http://m/", "py")
    assert argv[-1].startswith("python scripts/train.py --max_iter 30000 --gpus 0,1 ")
    assert argv[-1].endswith("--pre_trained_model none") and env == {}
    resumed = DocCommand("p", 1, "sh", "python scripts/train.py --resume auto")
    assert "--pre_trained_model" not in runnable(resumed, "http://m/", "py")[0][-1]
    smoke = DocCommand("p", 1, "sh", "MAX_ITER=20 OUTPUT_DIR='runs/a b' sh sh/train.sh")
    argv, env = runnable(smoke, "http://m/", "py")
    assert argv[-1] == "MAX_ITER=20 OUTPUT_DIR='runs/a b' sh sh/train.sh"
    assert env["MAX_ITER"] == "2" and env["PRETRAINED"] == "none"  # the inline one wins in sh
    anywhere = DocCommand("p", 1, "sh", "DATA_DIR=/data/voc gluon-deeplab-train --out /tmp/x a/b")
    assert outside_paths(anywhere) == ["DATA_DIR=/data/voc", "/tmp/x"]


# -- docs/design.md -------------------------------------------------------------------------------
DESIGN_LINE = re.compile(r"- `(gluon_deeplab/[\w/]+\.py)` — (.*)")


def _package_modules() -> List[str]:
    """Every module of gluon_deeplab/ but the packages' __init__.py (they only re-export)."""
    return sorted(os.path.relpath(os.path.join(folder, name), REPO).replace(os.sep, "/")
                  for folder, _, files in os.walk(os.path.join(REPO, "gluon_deeplab"))
                  for name in files if name.endswith(".py") and name != "__init__.py")


def test_design_lists_every_module_once_with_a_line():
    with open(os.path.join(REPO, "docs", "design.md"), encoding="utf-8") as f:
        listed = [DESIGN_LINE.fullmatch(line.rstrip()) for line in f]
    paths = [m.group(1) for m in listed if m]
    twice = sorted({p for p in paths if paths.count(p) > 1})
    assert not twice, f"listed twice: {twice}"
    modules = set(_package_modules())
    assert not modules - set(paths), f"not in docs/design.md: {sorted(modules - set(paths))}"
    assert not set(paths) - modules, f"no such module: {sorted(set(paths) - modules)}"
    empty = [m.group(1) for m in listed if m and not m.group(2).strip()]
    assert not empty, f"no description: {empty}"
