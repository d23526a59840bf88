"""The commands that README.md and docs/*.md show, and how tests/test_docs.py runs them tiny.

A command is a line of a fenced block tagged ``sh`` or ``bash`` (backslash-continued lines
joined, comments dropped), or a whole block tagged ``python``. Shell commands run as their
words (``sh -c`` on the words re-quoted): no variables, globs or pipes. Small sizes come from
flags appended to the command (argparse keeps a flag's last value) and from environment
defaults of the ``sh/`` scripts (a ``VAR=value`` written in the docs wins); never from a special
code path of the product.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# README first, then the docs pages in this order: later commands use earlier outputs.
PAGE_ORDER = ("data", "training", "evaluation", "deployment", "performance", "model", "design")
SHELL_TAGS = ("sh", "bash")
PYTHONS = ("python", "python3", ".venv/bin/python")
CONSOLE = {"gluon-deeplab-" + name.replace("_", "-"): name for name in (
    "train", "eval", "predict", "ensemble", "export", "bench", "download_voc",
    "make_synthetic", "env")}
CONSOLE["gluon-deeplab-launch"] = "launch_dist"

# Validation and checkpoints at the end of a run only (the trainer always does both there).
END_ONLY = "1000"
TRAIN_TINY = ["--max_iter", "2", "--crop_size", "33", "--batch_size", "2",
              "--base_architecture", "resnet18_v2", "--num_workers", "0",
              "--val_interval", END_ONLY, "--checkpoint_interval", END_ONLY, "--progress", "0",
              "--gpus", ""]
TINY_FLAGS = {
    "eval": ["--gpus", ""],
    "predict": ["--gpus", ""],
    "export": ["--calib_size", "33", "33", "--num_calib_images", "2"],
    "bench": ["--quick", "--parts", "forward", "--output_strides", "16", "--heads", "aspp",
              "--no_int8", "--no_bf16", "--repeats", "1", "--gpus", ""],
    "make_synthetic": ["--num_train", "4", "--num_val", "2", "--size", "32", "48"],
}
# Environment defaults of the shell scripts (a VAR=value written before the command wins).
SCRIPT_ENV = {
    "sh/train.sh": {"MAX_ITER": "2", "BACKBONE": "resnet18_v2", "CROP_SIZE": "33",
                    "BATCH_SIZE_1": "2", "BATCH_SIZE_2": "2", "PRETRAINED": "none",
                    "VAL_INTERVAL": END_ONLY, "CHECKPOINT_INTERVAL": END_ONLY, "NUM_WORKERS": "0",
                    "GPUS": ""},
    "sh/quickstart.sh": {"SKIP_SETUP": "1", "ITERS": "4", "NUM_TRAIN": "4", "NUM_VAL": "2",
                         "HEIGHT": "48", "WIDTH": "64", "CROP": "33", "BATCH": "2"},
}
# download_voc.py runs for real against the local mirror; only the archives' SHA-1 values
# (of the real 2 GB files, in VOC_ARCHIVES) are replaced by those of the small test archives.
DOWNLOAD_BOOT = """\
import os, runpy, sys
from dataclasses import replace
import gluon_deeplab.data.download as download
sha1 = dict(item.split("=") for item in os.environ["DOCS_TEST_VOC_SHA1"].split(","))
download.VOC_ARCHIVES = tuple(replace(a, sha1=sha1[a.name]) for a in download.VOC_ARCHIVES)
if sys.argv[1:2] and sys.argv[1].endswith(".py"):
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
else:
    from gluon_deeplab.data.download_cli import main
    main(sys.argv[1:])
"""


@dataclass(frozen=True)
class DocCommand:
    """One documented command: its page, line, kind ('sh' or 'python') and text (the shell
    words re-quoted, comments dropped; or the Python block)."""

    page: str
    line: int
    kind: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def doc_pages(repo: str = REPO) -> List[str]:
    """README.md, then docs/*.md in PAGE_ORDER (pages not named there last, sorted)."""
    docs = os.path.join(repo, "docs")
    names = sorted(f[:-3] for f in os.listdir(docs) if f.endswith(".md")) \
        if os.path.isdir(docs) else []
    ordered = [n for n in PAGE_ORDER if n in names] + [n for n in names if n not in PAGE_ORDER]
    return ["README.md"] + [f"docs/{name}.md" for name in ordered]


def fenced_blocks(text: str) -> Iterator[Tuple[str, int, List[str]]]:
    """(info tag, line number of the block's first line, lines) of each fenced block."""
    tag, start, lines, fence = None, 0, [], ""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if tag is None:
            match = re.match(r"(```+|~~~+)\s*([\w+-]*)", stripped)
            if match:
                fence, tag, start, lines = match.group(1), match.group(2).lower(), number + 1, []
        elif stripped.startswith(fence) and not stripped[len(fence):].strip():
            yield tag, start, lines
            tag = None
        else:
            lines.append(line)


def shell_lines(lines: Sequence[str], first: int) -> Iterator[Tuple[int, List[str]]]:
    """(line number, words) of each logical line: continued lines joined, comments dropped."""
    logical, start = "", first
    for number, line in enumerate(lines, first):
        if not logical:
            start = number
        if line.rstrip().endswith("\\"):
            logical += line.rstrip()[:-1] + " "
            continue
        words = shlex.split(logical + line, comments=True)
        logical = ""
        if words:
            yield start, words
    if logical.strip():
        raise ValueError(f"line {start}: the block ends inside a continued line")


def page_commands(page: str, repo: str = REPO) -> List[DocCommand]:
    with open(os.path.join(repo, page), encoding="utf-8") as f:
        text = f.read()
    commands = []
    for tag, start, lines in fenced_blocks(text):
        if tag in SHELL_TAGS:
            commands += [DocCommand(page, number, "sh", shlex.join(words))
                         for number, words in shell_lines(lines, start)]
        elif tag == "python":
            commands.append(DocCommand(page, start, "python", "\n".join(lines) + "\n"))
    return commands


def all_commands(repo: str = REPO) -> List[DocCommand]:
    return [c for page in doc_pages(repo) for c in page_commands(page, repo)]


def split_assignments(words: Sequence[str]) -> Tuple[Dict[str, str], List[str]]:
    """({VAR: value} written before the command, the command's own words)."""
    env: Dict[str, str] = {}
    for i, word in enumerate(words):
        match = re.fullmatch(r"([A-Za-z_]\w*)=(.*)", word, re.S)
        if not match:
            return env, list(words[i:])
        env[match.group(1)] = match.group(2)
    return env, []


def program(argv: Sequence[str]) -> Optional[str]:
    """'train' for ``python scripts/train.py`` or ``gluon-deeplab-train``; 'sh/train.sh' for
    ``sh sh/train.sh``; None for anything else."""
    if not argv:
        return None
    if argv[0] in PYTHONS and len(argv) > 1 and re.fullmatch(r"scripts/\w+\.py", argv[1]):
        return argv[1][len("scripts/"):-3]
    if argv[0] in ("sh", "bash") and len(argv) > 1 and argv[1] in SCRIPT_ENV:
        return argv[1]
    return CONSOLE.get(argv[0])


def tiny_flags(name: Optional[str], argv: Sequence[str]) -> List[str]:
    """The flags appended to a command of program ``name`` to run it at tiny sizes."""
    if name in ("train", "launch_dist"):
        start = "--init_checkpoint" in argv or "--resume" in argv
        return TRAIN_TINY + ([] if start else ["--pre_trained_model", "none"])
    flags = list(TINY_FLAGS.get(name, []))
    if name == "export" and "--onnx" in argv:
        flags += ["--input_size", "65", "65"]
    return flags


def outside_paths(command: DocCommand) -> List[str]:
    """The absolute paths a shell command names: it would write outside the test's workspace."""
    words = shlex.split(command.text)
    return [w for w in words if re.match(r"(\w+=)?/", w)]


def runnable(command: DocCommand, mirror: str, python: str) -> Tuple[List[str], Dict[str, str]]:
    """(argv, environment defaults) that run a shell command at tiny sizes."""
    inline, argv = split_assignments(shlex.split(command.text))
    name = program(argv)
    prefix = [f"{var}={shlex.quote(value)}" for var, value in inline.items()]
    if name == "download_voc":
        own = argv[2:] if argv[0] in PYTHONS else argv[1:]
        script = [argv[1]] if argv[0] in PYTHONS else []
        argv = [python, "-c", DOWNLOAD_BOOT] + script + own + ["--mirror", mirror,
                                                              "--timeout", "10"]
    else:
        argv = argv + tiny_flags(name, argv)
    return ["sh", "-c", " ".join(prefix + [shlex.join(argv)])], dict(SCRIPT_ENV.get(name, {}))
