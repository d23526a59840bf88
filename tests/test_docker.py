"""docker/'s Dockerfiles run the README's own install commands (they cannot be built here: no
Docker and no GPU), one per route: the CPU, cu117 from pip, NVIDIA's MXNet container."""

from __future__ import annotations

import os
import shlex
from typing import Dict, List

from doc_commands import REPO, page_commands

DOCKER = os.path.join(REPO, "docker")


def instructions(path: str) -> List[List[str]]:
    """(instruction, argument) of a Dockerfile: continued lines joined, comments dropped."""
    found, logical = [], ""
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not logical and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if line.endswith("\\"):
                logical += line[:-1] + " "
                continue
            keyword, _, argument = (logical + line).strip().partition(" ")
            found.append([keyword.upper(), argument.strip()])
            logical = ""
    return found


def dockerfiles() -> Dict[str, List[List[str]]]:
    return {name: instructions(os.path.join(DOCKER, name))
            for name in sorted(os.listdir(DOCKER)) if name.endswith(".Dockerfile")}


def test_each_run_line_is_a_command_the_readme_shows():
    shown = [shlex.split(c.text) for c in page_commands("README.md") if c.kind == "sh"]
    for name, lines in dockerfiles().items():
        runs = [shlex.split(argument) for keyword, argument in lines if keyword == "RUN"]
        assert runs, name
        for words in runs:
            assert words in shown, f"docker/{name}: RUN {shlex.join(words)} is not in README.md"


def test_one_dockerfile_per_route_each_built_by_a_documented_command():
    files = dockerfiles()
    assert set(files) == {"cpu.Dockerfile", "cuda11.Dockerfile", "ngc.Dockerfile"}

    def installs(name):
        return [a for k, a in files[name] if k == "RUN" and a.startswith("pip install")]

    assert installs("cpu.Dockerfile") == ["pip install -e '.[cpu]'"]
    assert installs("cuda11.Dockerfile") == ["pip install -e '.[cu117]'"]
    assert installs("ngc.Dockerfile") == ["pip install -e ."]  # the container's MXNet stays
    bases = {name: next(a for k, a in lines if k == "FROM") for name, lines in files.items()}
    assert bases["ngc.Dockerfile"].startswith("nvcr.io/nvidia/mxnet:24.0")
    assert bases["cuda11.Dockerfile"] == bases["cpu.Dockerfile"] == "python:3.11-slim"
    toolkit = dict(w.split("=") for k, a in files["cuda11.Dockerfile"] if k == "ENV"
                   for w in a.split())
    assert toolkit == {"NVIDIA_VISIBLE_DEVICES": "all",
                       "NVIDIA_DRIVER_CAPABILITIES": "compute,utility"}
    for name in files:  # each says how it is built, and the README builds the container's
        with open(os.path.join(DOCKER, name), encoding="utf-8") as f:
            assert f"docker build -f docker/{name} " in f.read()
    assert any(c.text.startswith("docker build -f docker/ngc.Dockerfile")
               for c in page_commands("README.md"))
