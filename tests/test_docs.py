"""The docs cannot go stale: every command that README.md and docs/*.md show runs, in document
order, at tiny sizes, in a workspace holding the repository's scripts and a small gluoncv VOC
tree downloaded by the documented ``download_voc.py`` from a 127.0.0.1 mirror; and
docs/design.md lists every module of the package with one line."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Tuple

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

RECIPE_RUN = "runs/deeplabv3/phase2_os8"
# Commands shown but not run, each with its reason (checked both ways: each entry matches a
# documented command, and nothing else is left out). An entry matches the start of a command.
NOT_RUN = {
    "sh sh/test.sh": "the test suite itself",
    "sh sh/setup_env.sh": "rebuilds .venv, the environment this test runs in "
                          "(tests/test_install.py checks its choices)",
    "pip install": "changes the environment this test runs in",
    "tensorboard --logdir": "a server that runs until stopped",
    "gluon-deeplab-serve": "a server that runs until stopped; tests/test_serve.py starts it on "
                           "127.0.0.1 and sends these requests",
    "curl -s --data-binary": "needs the server above running (tests/test_serve.py)",
    "gluon-deeplab-demo": "a server that runs until stopped; tests/test_demo.py starts it on "
                          "127.0.0.1 and drives its page in Chromium",
    "python scripts/loadtest.py": "minutes of load on VOC-sized images; tests/test_loadtest.py "
                                  "runs it at a tiny size",
    "apt-get update": "installs system packages (as root; the docker/ images run it)",
    "docker build": "no Docker here; tests/test_docker.py checks docker/'s commands",
    "docker run": "needs an image built with Docker and a GPU",
    "gluon-deeplab-gpu-check": "minutes of ResNet50 training meant for a GPU; "
                               "tests/test_gpu_check.py runs it on 1 and 2 CPU contexts",
    ".venv/bin/python scripts/launch_dist.py --launcher slurm": "a Slurm job's step (srun); "
                                                               "tests/test_dist_launchers.py "
                                                               "runs it with a fake srun",
    # Run as written, and checked more closely, by their own tests; the workspace starts from
    # the outputs of those runs (runs/quickstart, runs/deeplabv3 and the recipe's data).
    "sh sh/quickstart.sh": "tests/test_quickstart.py",
    "sh sh/train.sh": "tests/test_voc_recipe.py (the recipe's phases 1 and 2)",
    f"python scripts/eval.py --checkpoint {RECIPE_RUN}/final.params": "tests/test_voc_recipe.py",
    f"python scripts/predict.py --checkpoint {RECIPE_RUN}/final.params": "tests/test_voc_recipe.py",
    f"python scripts/export.py --checkpoint {RECIPE_RUN}/final.params": "tests/test_voc_recipe.py",
}


@dataclass(frozen=True)
class Promise:
    """What a command promises: files it writes (globs in the workspace, each matching at least
    ``count`` files) and what its output says (regular expressions)."""

    files: Tuple[str, ...] = ()
    output: Tuple[str, ...] = ()
    count: int = 1


VOC_HOME = "mxnet_home/datasets/voc"
TRAIN_MIOU = r"mIoU\s+0\.\d{4}"  # the trainer's validation line
EVAL_REPORT = (r"\nmIoU\s+\d{1,3}\.\d\d\n", r"\(\d+ images, ")  # eval.py's table (in %)
# Each documented command that runs (matched by the longest entry that starts its text), and
# what it promises.
PROMISES = {
    "gluon-deeplab-env": Promise(output=(r"version:\s+1\.9\.1", r"logical_cpus:\s+\d")),
    "python scripts/download_voc.py": Promise(
        (f"{VOC_HOME}/VOC2012/JPEGImages/*.jpg", f"{VOC_HOME}/VOC2012/SegmentationClass/*.png",
         f"{VOC_HOME}/VOCaug/dataset/cls/*.mat", f"{VOC_HOME}/VOCaug/dataset/train.txt")),
    "python scripts/make_synthetic.py --output runs/mydata": Promise(
        ("runs/mydata/JPEGImages/*.jpg", "runs/mydata/SegmentationClass/*.png",
         "runs/mydata/ImageSets/Segmentation/*.txt"), count=2),
    "python scripts/make_synthetic.py --output runs/shapes": Promise(
        ("runs/shapes/JPEGImages/*.jpg", "runs/shapes/ImageSets/Segmentation/*.txt"), count=2),
    "python scripts/train.py --dataset folder": Promise(
        ("runs/mymodel/final.params", "runs/mymodel/log.jsonl"), (TRAIN_MIOU,)),
    "python scripts/predict.py --checkpoint runs/mymodel": Promise(
        ("runs/mypredictions/masks/*.png", "runs/mypredictions/overlays/*.png",
         "runs/mypredictions/panels/*.png"), (r"wrote [1-9]\d* masks",), count=6),
    "python scripts/export.py --checkpoint runs/mymodel": Promise(
        ("runs/myexport/deeplab-symbol.json", "runs/myexport/deeplab-0000.params",
         "runs/myexport/deeplab-meta.json")),
    "python scripts/eval.py --exported runs/myexport/deeplab": Promise(output=EVAL_REPORT),
    "import mxnet as mx\nnet = mx.gluon.SymbolBlock.imports(\"runs/myexport": Promise(),
    "python scripts/train.py --dataset voc_sbd": Promise(
        ("runs/phase1_by_hand/final.params",), (TRAIN_MIOU,)),
    "MAX_ITER=4 DATASET=synthetic": Promise(
        ("runs/smoke/phase1_os16/final.params", "runs/smoke/phase2_os8/final.params")),
    "python scripts/launch_dist.py -n 2 -s 1": Promise(
        ("runs/dist/final.params", "runs/dist/final-rank1.params")),
    "python scripts/eval.py --checkpoint runs/deeplabv3/phase2_os8 --output_stride 8": Promise(
        ("runs/eval/val.json", "runs/eval/val_masks/*.png"), EVAL_REPORT),
    "python scripts/predict.py --checkpoint runs/deeplabv3/phase2_os8 runs/photos": Promise(
        ("runs/predictions/masks/street.png", "runs/predictions/panels/street.png")),
    "python scripts/ensemble.py": Promise(("runs/voted/street.png",), (r"wrote 1 voted masks",)),
    "python scripts/export.py --checkpoint runs/quickstart/train/final.params --output "
    "runs/export/deeplab": Promise(("runs/export/deeplab-symbol.json",
                                     "runs/export/deeplab-meta.json")),
    "import mxnet as mx\nnet = mx.gluon.SymbolBlock.imports(\"runs/export": Promise(),
    "import gluon_deeplab as gd\n\nsegmenter = gd.load_segmenter(": Promise(
        output=(r"\(40, 56\) uint8 \['background', ", r"\[\(\d+, 40, 56\), \(\d+, 40, 56\)\]")),
    "python scripts/export.py --checkpoint runs/quickstart/train/final.params --output "
    "runs/export/deeplab_int8": Promise(("runs/export/deeplab_int8-symbol.json",
                                         "runs/export/deeplab_int8-meta.json")),
    "python scripts/export.py --checkpoint runs/quickstart/train/final.params --output "
    "runs/export/deeplab_onnx": Promise(("runs/export/deeplab_onnx.onnx",)),
    "python scripts/bench.py --quick": Promise(output=(r"forward",)),
    "import mxnet as mx\nimport gluon_deeplab as gd": Promise(),
    "import mxnet as mx\nfrom mxnet.gluon import nn\n\nimport gluon_deeplab as gd": Promise(
        ("runs/oneconv/final.params", "runs/oneconv_export/deeplab-symbol.json"), (r"\(4,\)",)),
    # docs/add-a-dataset-layout.md: a layout registered from outside the package
    "import os\n\nimport numpy as np\nfrom PIL import Image\n\nfrom gluon_deeplab.data import "
    "LayoutSpec": Promise(("runs/toy/final.params", "runs/toy_export/deeplab-meta.json"),
                          (r"mIoU [\d.]+ per class \{'ground'",)),
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


def _outputs_of_the_runs_not_repeated(root, quickstart_run, voc_recipe_run) -> None:
    """runs/quickstart and runs/deeplabv3, as the quick start and the VOC recipe left them in
    their own tests (see NOT_RUN)."""
    out, done = quickstart_run
    assert done.returncode == 0, "sh/quickstart.sh failed (tests/test_quickstart.py)"
    work, _, steps = voc_recipe_run
    failed = [command for command, result in steps if result.returncode != 0]
    assert not failed, f"the VOC recipe failed at {failed} (tests/test_voc_recipe.py)"
    shutil.copytree(out, root / "runs" / "quickstart", symlinks=True)
    shutil.copytree(work / "runs" / "deeplabv3", root / "runs" / "deeplabv3", symlinks=True)


@pytest.fixture(scope="module")
def runner(tmp_path_factory, quickstart_run, voc_recipe_run):
    root = tmp_path_factory.mktemp("docs_workspace")
    served = tmp_path_factory.mktemp("voc_mirror")
    _workspace(root)
    _outputs_of_the_runs_not_repeated(root, quickstart_run, voc_recipe_run)
    sha1 = _voc_archives(served)
    with serve_folder(str(served)) as (mirror, _):
        env = {**os.environ, "HOME": str(root / "home"), "MXNET_HOME": str(root / "mxnet_home"),
               "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHON": sys.executable,
               "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]),
               # Nothing reaches the internet: a model zoo download fails at once.
               "MXNET_GLUON_REPO": "http://127.0.0.1:9/",
               "GLUON_DEEPLAB_VOC_MIRROR": mirror, "DOCS_TEST_VOC_SHA1": sha1}
        yield Runner(str(root), env, mirror)


def _promise(command: DocCommand) -> Promise:
    """The promise of the longest PROMISES entry that starts the command."""
    found = [start for start in PROMISES if command.text.startswith(start)]
    assert found, f"{command.id}: no entry of PROMISES starts {command.text!r}"
    return PROMISES[max(found, key=len)]


@pytest.mark.parametrize("command", RUN, ids=[c.id for c in RUN])
def test_documented_command_runs_and_does_what_it_promises(runner, command):
    result = runner.result(command)
    tail = "\n".join(result.output.rstrip().splitlines()[-25:])
    where = f"{command.id}: after {result.seconds:.0f} s\n$ {result.command}\n{tail}"
    assert result.returncode == 0, f"exit status {result.returncode}: {where}"
    promise = _promise(command)
    for pattern in promise.files:
        found = glob.glob(os.path.join(runner.workspace, pattern))
        assert len(found) >= promise.count, f"{pattern}: {len(found)} files, {where}"
        assert all(os.path.getsize(f) > 0 for f in found), f"{pattern}: an empty file, {where}"
    for pattern in promise.output:
        assert re.search(pattern, result.output), f"no {pattern!r} in the output: {where}"


def test_every_command_that_runs_has_a_promise_and_each_promise_a_command():
    for command in RUN:
        _promise(command)
    unused = [start for start in PROMISES if not any(c.text.startswith(start) for c in RUN)]
    assert not unused, f"PROMISES entries no documented command starts with: {unused}"


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
