"""Checkpoints are safe to load: nothing is unpickled, damage is detected by a checksum, files
respect the umask, unreadable files and run folders are reported as such."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import stat

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

import gluon_deeplab as gd
from gluon_deeplab.checkpoint import load_checkpoint, save_checkpoint
from gluon_deeplab.evaluation.cli import eval_main
from gluon_deeplab.files import atomic_write
from gluon_deeplab.models import model_from_checkpoint
from gluon_deeplab.training.cli import main as train_main
from gluon_deeplab.training.optim import make_trainer
from gluon_deeplab.training.trainer_state import restore_trainer_states, trainer_states


class _WritesAFile:
    """Unpickling this object creates ``path`` (a stand-in for an os.system payload)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _rewrite(src, dst, edit):
    """Copy checkpoint ``src`` to ``dst`` with ``edit(arrays, meta)`` applied (raw access)."""
    arrays = mx.nd.load(src)
    meta = json.loads(arrays["__meta__"].asnumpy().tobytes().decode())
    edit(arrays, meta)
    arrays["__meta__"] = mx.nd.array(np.frombuffer(json.dumps(meta).encode(), np.uint8),
                                     dtype=np.uint8)
    mx.nd.save(dst, arrays)
    return dst


def _legacy(src, dst, optimizer_bytes=None):
    """A checkpoint as written before the change: no checksum, optionally pickled optimizer."""
    def edit(arrays, meta):
        for key in [k for k in arrays if k.startswith("optimizer:")]:
            del arrays[key]
        meta.pop("sha256", None)
        meta.pop("optimizer", None)
        if optimizer_bytes is not None:
            arrays["__optimizer__"] = mx.nd.array(np.frombuffer(optimizer_bytes, np.uint8),
                                                  dtype=np.uint8)
    return _rewrite(src, dst, edit)


def _damage(src, dst):
    """Copy ``src`` with 4 KiB in the middle overwritten."""
    data = bytearray(open(src, "rb").read())
    middle = len(data) // 2
    data[middle:middle + 4096] = os.urandom(4096)
    with open(dst, "wb") as f:
        f.write(data)
    return dst


def _train_flags(root, out, **extra):
    flags = {"dataset": "synthetic", "data_dir": root, "output_dir": out,
             "base_architecture": "resnet18_v2", "batch_size": 2, "crop_size": 48,
             "max_iter": 102, "val_interval": 0, "num_workers": 0, "progress": 0, **extra}
    return [item for key, value in flags.items() for item in (f"--{key}", str(value))]


def _one_line_error(capsys):
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


# -- no pickle ----------------------------------------------------------------------------------
def test_optimizer_state_is_stored_as_named_arrays_not_pickle(trained_synthetic):
    _, path = trained_synthetic
    arrays = mx.nd.load(path)
    assert "__optimizer__" not in arrays
    momentum = [k for k in arrays if k.startswith("optimizer:")]
    assert "optimizer:head.project.0.weight" in momentum or len(momentum) > 50
    ckpt = load_checkpoint(path)
    record = ckpt.optimizer_states.record
    assert record["optimizer"] == "sgd" and record["num_update"] == 100
    assert set(record["update_counts"].values()) == {100}


def test_resuming_a_pickled_optimizer_state_runs_nothing_and_says_use_init_checkpoint(
        trained_synthetic, tmp_path, capsys):
    root, path = trained_synthetic
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_WritesAFile(probe)))  # the payload is live: it does write
    assert probe.exists()
    marker = tmp_path / "pwned"
    crafted = _legacy(path, str(tmp_path / "crafted.params"),
                      pickle.dumps((_WritesAFile(marker), None)))

    code = train_main(_train_flags(root, str(tmp_path / "run"), resume=crafted))
    assert code == 1 and not marker.exists()
    err = _one_line_error(capsys)
    assert crafted in err and "pickle" in err and f"--init_checkpoint {crafted}" in err

    net, ckpt = model_from_checkpoint(crafted)  # the weights of an old checkpoint still load
    assert ckpt.optimizer_states.legacy_pickle and not marker.exists()
    code = train_main(_train_flags(root, str(tmp_path / "init"), init_checkpoint=crafted,
                                   max_iter=1))
    assert code == 0 and not marker.exists()


def test_restored_momentum_on_two_devices_continues_like_the_uninterrupted_trainer(tmp_path):
    ctxs = [mx.cpu(0), mx.cpu(1)]
    x = mx.nd.random.uniform(shape=(4, 3, 32, 32))

    def step(net, trainer):
        mx.random.seed(7)  # the same dropout masks in both runs
        with autograd.record():
            losses = [net(part).mean() for part in
                      mx.gluon.utils.split_and_load(x, ctxs)]
        autograd.backward(losses)
        trainer.step(4)

    net = gd.build_model(3, "resnet18_v2", ctx=ctxs)
    trainer = make_trainer(net, 0.05, 1e-4, kvstore="device")
    step(net, trainer)
    step(net, trainer)
    path = save_checkpoint(str(tmp_path / "c.params"), net, 2, trainer_states(trainer, net))
    step(net, trainer)

    ckpt = load_checkpoint(path)
    again, _ = model_from_checkpoint(ckpt, ctx=ctxs)
    again_trainer = make_trainer(again, 0.05, 1e-4, kvstore="device")
    restore_trainer_states(again_trainer, ckpt.optimizer_states, again)
    assert again_trainer._optimizer.num_update == 2
    assert len(again_trainer._updaters) == 2
    step(again, again_trainer)
    want = gd.params.parameter_arrays(net)
    got = gd.params.parameter_arrays(again)
    for name, value in want.items():
        np.testing.assert_allclose(got[name].asnumpy(), value.asnumpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=name)


# -- checksum -----------------------------------------------------------------------------------
def test_a_damaged_checkpoint_is_refused_by_api_eval_and_init_checkpoint(trained_synthetic,
                                                                        tmp_path, capsys):
    root, path = trained_synthetic
    bad = _damage(path, str(tmp_path / "bad.params"))
    with pytest.raises(ValueError, match=f"{bad} is damaged"):
        load_checkpoint(bad)
    with pytest.raises(ValueError, match=f"{bad} is damaged"):
        model_from_checkpoint(bad)

    with pytest.raises(SystemExit) as exit_info:
        eval_main(["--checkpoint", bad, "--data_dir", root, "--dataset", "synthetic",
                   "--no_progress"])
    assert exit_info.value.code == 2
    assert f"{bad} is damaged" in _one_line_error(capsys)

    out = tmp_path / "run"
    code = train_main(_train_flags(root, str(out), init_checkpoint=bad, max_iter=1))
    assert code == 1 and f"{bad} is damaged" in _one_line_error(capsys)
    assert not (out / "final.params").exists()


def test_checkpoints_without_a_checksum_still_load(trained_synthetic, tmp_path):
    _, path = trained_synthetic
    old = _legacy(path, str(tmp_path / "old.params"))
    net, ckpt = model_from_checkpoint(old)
    assert ckpt.iteration == 100 and ckpt.optimizer_states is None
    reference, _ = model_from_checkpoint(path)
    x = mx.nd.random.uniform(shape=(1, 3, 32, 32))
    np.testing.assert_allclose(net(x).asnumpy(), reference(x).asnumpy(), rtol=1e-5, atol=1e-6)


# -- files: mode, permissions, run folders -------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomically_written_files_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        net = gd.build_model(2, "resnet18_v2")
        path = save_checkpoint(str(tmp_path / "c.params"), net)
        atomic_write(str(tmp_path / "x.json"), lambda tmp: open(tmp, "w").write("{}"))
    finally:
        os.umask(old)
    for name in ("c.params", "x.json"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o666 & ~umask, name
    assert load_checkpoint(path).iteration == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file: no permission error")
def test_an_unreadable_checkpoint_is_a_permission_error_naming_it(tmp_path):
    path = save_checkpoint(str(tmp_path / "c.params"), gd.build_model(2, "resnet18_v2"))
    os.chmod(path, 0)
    with pytest.raises(PermissionError, match=f"{path}: permission denied"):
        load_checkpoint(path)


def test_a_run_folder_as_checkpoint_uses_best_else_final_and_says_which(trained_synthetic,
                                                                        tmp_path, capsys):
    root, path = trained_synthetic
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(FileNotFoundError, match="folder without best.params or final.params"):
        load_checkpoint(str(run))
    shutil.copy(path, run / "final.params")
    assert load_checkpoint(str(run)).path == str(run / "final.params")
    assert f"using its final.params ({run / 'final.params'})" in capsys.readouterr().err
    shutil.copy(path, run / "best.params")
    eval_main(["--checkpoint", str(run), "--data_dir", root, "--dataset", "synthetic",
               "--no_progress", "--max_images", "1"])
    assert "using its best.params" in capsys.readouterr().err


def test_model_from_checkpoint_errors_name_the_file(trained_synthetic, tmp_path):
    _, path = trained_synthetic
    ckpt = load_checkpoint(path)
    with pytest.raises(ValueError, match=f"^{path}: array classifier.weight has shape"):
        model_from_checkpoint(ckpt, num_classes=5)
    with pytest.raises(ValueError, match=f"^{path}: cannot rebuild its model"):
        model_from_checkpoint(path, output_stride=7)
