"""The quick start script, end to end at tiny settings: data, train, eval, export, predict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_script_runs_every_step_and_says_where_outputs_went(tmp_path):
    out = tmp_path / "qs"
    env = dict(os.environ, SKIP_SETUP="1", PYTHON=sys.executable, OUT=str(out), ITERS="4",
               BATCH="4", CROP="48", NUM_TRAIN="8", NUM_VAL="4", HEIGHT="48", WIDTH="64",
               PYTHONPATH=str(ROOT))
    done = subprocess.run(["sh", str(ROOT / "sh" / "quickstart.sh")], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "data" / "synthetic.json").is_file()
    assert (out / "train" / "final.params").is_file()
    metrics = json.loads((out / "eval.json").read_text())
    assert 0.0 <= metrics["miou"] <= 1.0 and metrics["num_images"] == 4
    assert (out / "export" / "deeplab-symbol.json").is_file()
    assert (out / "export" / "deeplab-0000.params").is_file()
    masks = sorted((out / "predictions" / "masks").glob("*.png"))
    panels = sorted((out / "predictions" / "panels").glob("*.png"))
    assert len(masks) == len(panels) == 4
    assert Image.open(masks[0]).mode == "P" and Image.open(masks[0]).size == (64, 48)
    assert f"predictions   {out}/predictions" in done.stdout
