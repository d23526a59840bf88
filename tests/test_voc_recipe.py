"""The paper's VOC recipe on gluoncv's root: train_aug from SBD + VOC, validation on another
dataset, no train/val overlap, default data root, and scripts/download_voc.py against a local
HTTP server serving small archives in the real layouts."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile

import mxnet as mx
import numpy as np
import pytest
import scipy.io
import scipy.sparse
from PIL import Image

from gluon_deeplab.data import (
    DataError,
    default_data_dir,
    get_dataset,
    gluoncv_voc_root,
    train_val_datasets,
)
from gluon_deeplab.data.download import VOC_ARCHIVES, Archive, DownloadError, download_voc
from gluon_deeplab.data.voc import VOC_CLASSES
from gluon_deeplab.evaluation import save_mask

H, W = 24, 32
# A gluoncv tree: SBD train/val and VOC 2012 train/val, with ids in several of them.
SBD_TRAIN = ["2008_000001", "2008_000002", "2008_000003", "2007_000010", "2007_000020"]
SBD_VAL = ["2008_000004", "2007_000021", "2007_000011"]
VOC_TRAIN = ["2007_000010", "2007_000011", "2007_000012"]
VOC_VAL = ["2007_000020", "2007_000021", "2007_000022"]
# (SBD train + SBD val + VOC train) - VOC val
TRAIN_AUG = sorted(["2008_000001", "2008_000002", "2008_000003", "2008_000004", "2007_000010",
                    "2007_000011", "2007_000012"])


def _image(seed):
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _label(value, border):
    label = np.zeros((H, W), np.uint8)
    label[4:16, 6:20] = value
    if border:  # VOC's fine annotation: a 255 band around objects
        label[3, 6:20] = label[16, 6:20] = 255
    return label


def _lines(ids):
    return ("\n".join(ids) + "\n").encode()


def _voc_files(prefix="VOC2012"):
    """{archive path: bytes} of a VOC 2012 tree (JPEG, palette PNG with borders, lists)."""
    files = {}
    for i, sid in enumerate(sorted(set(VOC_TRAIN + VOC_VAL))):
        buf = io.BytesIO()
        Image.fromarray(_image(i)).save(buf, "JPEG", quality=95)
        files[f"{prefix}/JPEGImages/{sid}.jpg"] = buf.getvalue()
        files[f"{prefix}/SegmentationClass/{sid}.png"] = _palette_png(_label(1, True))
    sets = f"{prefix}/ImageSets/Segmentation"
    files[f"{sets}/train.txt"] = _lines(VOC_TRAIN)
    files[f"{sets}/val.txt"] = _lines(VOC_VAL)
    files[f"{sets}/trainval.txt"] = _lines(VOC_TRAIN + VOC_VAL)
    return files


def _palette_png(label):
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "l.png")
        save_mask(label, path)
        with open(path, "rb") as f:
            return f.read()


def _sbd_files(prefix="VOCaug/dataset"):
    """{archive path: bytes} of SBD (img/*.jpg, cls/*.mat with GTcls.Segmentation, lists)."""
    files = {}
    for i, sid in enumerate(sorted(set(SBD_TRAIN + SBD_VAL))):
        buf = io.BytesIO()
        Image.fromarray(_image(100 + i)).save(buf, "JPEG", quality=95)
        files[f"{prefix}/img/{sid}.jpg"] = buf.getvalue()
        boundaries = np.empty((20, 1), dtype=object)
        for k in range(20):
            boundaries[k, 0] = scipy.sparse.csc_matrix((H, W), dtype=np.uint8)
        mat = io.BytesIO()
        scipy.io.savemat(mat, {"GTcls": {"Boundaries": boundaries,
                                         "Segmentation": _label(2, False),
                                         "CategoriesPresent": np.array([2], np.uint8)}})
        files[f"{prefix}/cls/{sid}.mat"] = mat.getvalue()
    files[f"{prefix}/train.txt"] = _lines(SBD_TRAIN)
    files[f"{prefix}/val.txt"] = _lines(SBD_VAL)
    return files


def _write_tree(root, files):
    for name, data in files.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    return str(root)


@pytest.fixture
def gluoncv_root(tmp_path):
    root = tmp_path / "voc"
    _write_tree(root, _voc_files())
    return _write_tree(root, _sbd_files())


# -- train_aug ----------------------------------------------------------------------------------
def test_train_aug_is_sbd_train_val_and_voc_train_minus_voc_val(gluoncv_root):
    ds = get_dataset("vocaug", gluoncv_root, "train_aug")
    print(f"train_aug on the test tree: {len(ds)} images")
    assert ds.ids == TRAIN_AUG and len(ds) == 7
    assert not set(ds.ids) & set(VOC_VAL)
    by_id = {sid: i for i, sid in enumerate(ds.ids)}
    # In VOC train and SBD: VOC's image and fine PNG label with its 255 border band win.
    both = by_id["2007_000010"]
    assert ds.image_path(both).endswith(os.path.join("VOC2012", "JPEGImages", "2007_000010.jpg"))
    _, label = ds.load(both)
    np.testing.assert_array_equal(label, _label(1, True))
    # Only in SBD (here its val list): SBD's image and .mat label.
    sbd_only = by_id["2008_000004"]
    assert ds.image_path(sbd_only).endswith(os.path.join("dataset", "img", "2008_000004.jpg"))
    np.testing.assert_array_equal(ds.load(sbd_only)[1], _label(2, False))
    assert ds.load(by_id["2007_000012"])[0].shape == (H, W, 3)  # VOC train only


def test_train_aug_without_voc2012_is_a_clear_error(tmp_path):
    root = _write_tree(tmp_path / "voc", _sbd_files())
    with pytest.raises(DataError, match="train_aug needs VOC 2012"):
        get_dataset("vocaug", root, "train_aug")


# -- validation set and overlap -----------------------------------------------------------------
def test_train_aug_validates_on_voc_val_and_refuses_sbd_val_that_overlaps(gluoncv_root):
    train, val = train_val_datasets("vocaug", gluoncv_root, "train_aug", "val",
                                    val_dataset="voc")
    assert val.name == "voc:val" and val.ids == VOC_VAL and len(train) == 7
    with pytest.raises(DataError, match=r"share 2 image\(s\) \(2007_000011, 2008_000004\)"):
        train_val_datasets("vocaug", gluoncv_root, "train_aug", "val")


def test_overlapping_splits_are_refused_for_every_dataset(gluoncv_root, tmp_path):
    with pytest.raises(DataError, match=r"voc:trainval and validation split voc:val share 3 "
                                        r"image\(s\) \(2007_000020, 2007_000021, 2007_000022\)"):
        train_val_datasets("voc", gluoncv_root, "trainval", "val")
    from gluon_deeplab.data import make_synthetic_dataset
    synth = make_synthetic_dataset(str(tmp_path / "s"), num_train=3, num_val=2, size=(16, 16),
                                   num_classes=3, seed=0)
    with pytest.raises(DataError, match="synth_000003, synth_000004"):
        train_val_datasets("synthetic", synth, "trainval", "val")
    assert train_val_datasets("synthetic", synth, "train", "val")[1].ids == \
        ["synth_000003", "synth_000004"]


def test_trainer_chooses_best_on_the_validation_dataset_and_refuses_overlap(
        gluoncv_root, tmp_path, capsys):
    from gluon_deeplab.evaluation import evaluate
    from gluon_deeplab.models import model_from_checkpoint
    from gluon_deeplab.training.cli import main as train_main

    common = ["--dataset", "vocaug", "--data_dir", gluoncv_root, "--train_split", "train_aug",
              "--base_architecture", "resnet18_v2", "--pre_trained_model", "none",
              "--batch_size", "2", "--crop_size", "32", "--num_workers", "0", "--progress", "0"]
    # SBD's own val (by default training validates voc_sbd on VOC 2012 val instead)
    assert train_main(common + ["--output_dir", str(tmp_path / "bad"), "--max_iter", "1",
                                "--val_dataset", "vocaug"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "share 2 image(s)" in err[0] and "--val_dataset" in err[0]
    out = tmp_path / "run"
    assert train_main(common + ["--output_dir", str(out), "--max_iter", "2", "--val_interval",
                                "1", "--val_dataset", "voc"]) == 0
    with open(out / "log.jsonl") as f:
        records = [json.loads(line) for line in f]
    best = max(r["miou"] for r in records if r["kind"] == "val")
    net, ckpt = model_from_checkpoint(str(out / "best.params"))
    assert ckpt.best_miou == best and ckpt.args["val_dataset"] == "voc"
    metrics, _ = evaluate(net, get_dataset("voc", gluoncv_root, "val", mode="val"),
                          [mx.cpu()], progress=False)
    assert metrics["miou"] == pytest.approx(best, abs=1e-6)


def test_data_dir_defaults_to_gluoncv_root_under_mxnet_home(monkeypatch, tmp_path):
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "mx"))
    assert gluoncv_voc_root() == str(tmp_path / "mx" / "datasets" / "voc")
    assert default_data_dir("voc") == default_data_dir("vocaug") == gluoncv_voc_root()
    monkeypatch.delenv("MXNET_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir("vocaug") == str(tmp_path / "home" / ".mxnet" / "datasets" / "voc")
    assert default_data_dir("voc_aug") == "./VOCdevkit_aug"


# -- download -----------------------------------------------------------------------------------
def _tar(path, files, mode):
    with tarfile.open(path, mode) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


def _archives(served):
    """The two archives as the real sites ship them, written into ``served``; their records
    (the real ones with these files' SHA-1)."""
    voc_sha1 = _tar(served / "VOCtrainval_11-May-2012.tar", _voc_files("VOCdevkit/VOC2012"), "w")
    sbd_sha1 = _tar(served / "benchmark.tgz", _sbd_files("benchmark_RELEASE/dataset"), "w:gz")
    real = {a.name: a for a in VOC_ARCHIVES}
    return [Archive(**{**real["voc2012"].__dict__, "sha1": voc_sha1}),
            Archive(**{**real["sbd"].__dict__, "sha1": sbd_sha1})]


@pytest.fixture
def voc_mirror(local_http_server):
    """The two archives served on 127.0.0.1; (base, archives, server)."""
    base, served, server = local_http_server
    return base, _archives(served), server


def _tree(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, files in os.walk(root) for f in files)


def test_download_unpacks_voc_and_sbd_into_gluoncv_layout(voc_mirror, tmp_path, capsys):
    base, archives, server = voc_mirror
    root = str(tmp_path / "voc")
    done = download_voc(root, mirror=base, archives=archives)
    assert done == {"voc2012": os.path.join(root, "VOC2012"),
                    "sbd": os.path.join(root, "VOCaug")}
    assert server.requests == ["/VOCtrainval_11-May-2012.tar", "/benchmark.tgz"]
    assert "unpacking" in capsys.readouterr().err  # tqdm progress bars
    with open(os.path.join(root, "VOCaug", "dataset", "trainval.txt")) as f:
        assert f.read().split() == SBD_TRAIN + SBD_VAL
    assert len(get_dataset("vocaug", root, "train_aug")) == len(TRAIN_AUG)
    assert get_dataset("voc", root, "val").ids == VOC_VAL
    assert not [n for n in os.listdir(root) if n.startswith(".")]  # no scratch left
    # Run again: targets are there, nothing is fetched or touched.
    before = _tree(root)
    download_voc(root, mirror=base, archives=archives)
    assert len(server.requests) == 2 and _tree(root) == before


def test_wrong_checksum_changes_nothing_and_existing_target_is_kept(voc_mirror, tmp_path):
    base, archives, server = voc_mirror
    root = tmp_path / "voc"
    (root / "VOC2012").mkdir(parents=True)
    (root / "VOC2012" / "mine.txt").write_text("my own files")
    bad_sbd = Archive(**{**archives[1].__dict__, "sha1": "0" * 40})
    with pytest.raises(DownloadError, match=r"benchmark\.tgz: SHA-1 [0-9a-f]{40} is not the "
                                            r"expected 0{40}"):
        download_voc(str(root), mirror=base, archives=[archives[0], bad_sbd])
    assert server.requests == ["/benchmark.tgz"]  # VOC2012 exists and is not empty: not fetched
    assert _tree(root) == ["VOC2012/mine.txt"]  # no archive, no partial file, no VOCaug


def test_download_script_checks_the_real_checksums(voc_mirror, tmp_path):
    from importlib import util

    spec = util.spec_from_file_location("download_voc", os.path.join(
        os.path.dirname(__file__), "..", "scripts", "download_voc.py"))
    script = util.module_from_spec(spec)
    spec.loader.exec_module(script)
    base, _, server = voc_mirror
    root = tmp_path / "voc"
    with pytest.raises(SystemExit, match="error: .*VOCtrainval_11-May-2012.tar: SHA-1 .* not "
                                         "the expected 4e443f8a2eca6b1dac8a6c57641b67dd40621a49"):
        script.main(["--root", str(root), "--mirror", base, "--timeout", "10"])
    assert server.requests == ["/VOCtrainval_11-May-2012.tar"]
    assert _tree(root) == []


def test_download_from_an_unresolvable_host_is_one_line_and_writes_nothing(tmp_path, capfd):
    root = tmp_path / "voc"
    with pytest.raises(DownloadError, match=r"^http://nonexistent\.invalid/VOCtrainval_11-May-"
                                            r"2012\.tar: download failed \(OSError: host "
                                            r"nonexistent\.invalid does not resolve"):
        download_voc(str(root), mirror="http://nonexistent.invalid/")
    assert _tree(root) == []
    assert "Downloading" not in capfd.readouterr().out


# -- names and the errors of defaults -----------------------------------------------------------
def test_voc_sbd_is_the_sbd_layout_and_vocaug_its_old_name(gluoncv_root):
    from gluon_deeplab.data import layout_choices, layout_names

    assert "voc_sbd" in layout_names() and "vocaug" not in layout_names()
    assert "vocaug" in layout_choices()
    sbd, alias = (get_dataset(n, gluoncv_root, "train_aug") for n in ("voc_sbd", "vocaug"))
    assert sbd.name == alias.name == "voc_sbd:train_aug" and sbd.ids == alias.ids == TRAIN_AUG


def _one_error_line(capsys):
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def empty_home(tmp_path, monkeypatch):
    """MXNET_HOME without data or weights, and a model store that cannot be reached."""
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MXNET_GLUON_REPO", "http://nonexistent.invalid/")
    return gluoncv_voc_root()


def test_train_and_eval_without_data_name_their_defaults_before_any_download(
        empty_home, tmp_path, capsys):
    from gluon_deeplab.checkpoint import save_checkpoint
    from gluon_deeplab.evaluation.cli import eval_main
    from gluon_deeplab.models import build_model
    from gluon_deeplab.training.cli import main as train_main

    assert train_main(["--output_dir", str(tmp_path / "run"), "--progress", "0"]) == 1
    line = _one_error_line(capsys)
    assert line.startswith(f"gluon-deeplab-train: error: {empty_home}: dataset root folder "
                           "not found; --dataset voc_sbd and --data_dir")
    assert line.endswith("are train.py's defaults; scripts/download_voc.py downloads VOC 2012 "
                         "and SBD there")
    checkpoint = save_checkpoint(str(tmp_path / "m.params"), build_model(21, "resnet18_v2"),
                                 extra={"classes": list(VOC_CLASSES)})  # as training records
    with pytest.raises(SystemExit):
        eval_main(["--checkpoint", checkpoint])
    assert f"--dataset voc and --data_dir {empty_home} are eval.py's defaults" in \
        _one_error_line(capsys)


def test_data_of_another_layout_is_named_with_the_flag_that_reads_it(
        gluoncv_root, empty_home, tmp_path, capsys):
    from gluon_deeplab.checkpoint import save_checkpoint
    from gluon_deeplab.data import make_synthetic_dataset
    from gluon_deeplab.deploy.cli import export_main
    from gluon_deeplab.models import build_model
    from gluon_deeplab.training.cli import main as train_main

    synth = make_synthetic_dataset(str(tmp_path / "quickstart_data"), num_train=2, num_val=1,
                                   size=(16, 16), num_classes=3)
    assert train_main(["--data_dir", synth, "--output_dir", str(tmp_path / "run")]) == 1
    line = _one_error_line(capsys)
    assert "no SBD folder" in line
    assert "--dataset voc_sbd and --val_dataset voc are train.py's defaults" in line
    assert line.endswith(f"{synth} holds a synthetic set: pass --dataset synthetic")
    sbd_only = _write_tree(tmp_path / "sbd", _sbd_files())
    checkpoint = save_checkpoint(str(tmp_path / "m.params"), build_model(21, "resnet18_v2"))
    with pytest.raises(SystemExit):
        export_main(["--checkpoint", checkpoint, "--output", str(tmp_path / "out" / "int8"),
                     "--int8", "--calib_data_dir", sbd_only])
    line = _one_error_line(capsys)
    assert "no VOC 2012 folder" in line and "--calib_dataset voc is export.py's default" in line
    assert line.endswith("holds a voc_sbd set: pass --calib_dataset voc_sbd")
    assert not (tmp_path / "out").exists()


# -- the recipe, as the README writes it --------------------------------------------------------
RECIPE = [
    "python scripts/download_voc.py",
    "sh sh/train.sh",
    "python scripts/eval.py --checkpoint runs/deeplabv3/phase2_os8/final.params "
    "--scales 0.5,0.75,1.0,1.25,1.5,1.75 --flip",
    "python scripts/predict.py --checkpoint runs/deeplabv3/phase2_os8/final.params "
    "my_photo.jpg --output_dir predictions",
    "python scripts/export.py --checkpoint runs/deeplabv3/phase2_os8/final.params "
    "--output export/deeplab",
]
# Tiny sizes; everything else is the recipe's default (PRETRAINED: no download in tests).
TINY = {"MAX_ITER": "2", "BACKBONE": "resnet18_v2", "CROP_SIZE": "32", "BATCH_SIZE_1": "2",
        "BATCH_SIZE_2": "2", "NUM_WORKERS": "0", "PRETRAINED": "none"}


def _documented_commands():
    """Command lines of the shell blocks of README.md and docs/*.md (continuations joined)."""
    import glob
    import re

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    text = ""
    for path in [os.path.join(repo, "README.md")] + sorted(glob.glob(f"{repo}/docs/*.md")):
        with open(path, encoding="utf-8") as f:
            text += f.read()
    blocks = re.findall(r"```(?:sh|bash)\n(.*?)```", text, re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return repo, {" ".join(line.split("#")[0].split()) for line in lines}


def run_recipe(tmp_path):
    """RECIPE's commands in order in a checkout of the repository (``tmp_path/checkout``), on
    the archives downloaded from a 127.0.0.1 mirror into ``tmp_path/mxnet``: (checkout, VOC
    root, [(command, finished process)]); the commands after a failing one are not run."""
    import shlex
    import subprocess
    import sys

    from http_server import serve_folder

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    work = tmp_path / "checkout"  # the repository, as a user has it, without the runs of others
    work.mkdir()
    for name in ("sh", "scripts", "gluon_deeplab"):
        os.symlink(os.path.join(repo, name), work / name)
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATASET", "DATA_DIR", "VAL_DATASET", "OUTPUT_DIR", "TRAIN_SPLIT")}
    env.update(TINY, MXNET_HOME=str(tmp_path / "mxnet"), PYTHON=sys.executable,
               OMP_NUM_THREADS="1")
    root = os.path.join(env["MXNET_HOME"], "datasets", "voc")
    served = tmp_path / "served"
    served.mkdir()
    with serve_folder(str(served)) as (base, _):
        download_voc(root, mirror=base, archives=_archives(served))  # what a download brings
    Image.fromarray(_image(7)[:, :29]).save(work / "my_photo.jpg")
    done = []
    for command in RECIPE:
        argv = shlex.split(command)
        argv[0] = sys.executable if argv[0] == "python" else argv[0]
        done.append((command, subprocess.run(argv, cwd=work, env=env, capture_output=True,
                                             text=True, timeout=600)))
        if done[-1][1].returncode != 0:
            break
    return work, root, done


def test_the_documented_voc_recipe_runs_as_written(voc_recipe_run):
    _, documented = _documented_commands()
    assert [c for c in RECIPE if c not in documented] == []
    work, root, done = voc_recipe_run
    for command, result in done:
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
    assert len(done) == len(RECIPE)
    outputs = [result.stdout for _, result in done]
    assert "(voc2012 not downloaded)" in outputs[0] and "(sbd not downloaded)" in outputs[0]
    from gluon_deeplab.checkpoint import load_checkpoint

    phase1 = load_checkpoint(str(work / "runs/deeplabv3/phase1_os16/best.params"))
    recorded = [phase1.args[k] for k in ("dataset", "train_split", "val_dataset", "data_dir")]
    assert recorded == ["voc_sbd", "train_aug", "voc", root]
    phase2 = load_checkpoint(str(work / "runs/deeplabv3/phase2_os8/final.params"))
    assert phase2.model_config["output_stride"] == 8
    assert "mIoU" in outputs[2] and "(3 images," in outputs[2]  # VOC 2012 val of the tree
    assert (work / "predictions" / "masks" / "my_photo.png").is_file()
    # The export, reloaded bare, gives predict.py's probabilities (own-size padding).
    from gluon_deeplab.data import normalize, read_image
    from gluon_deeplab.evaluation import predict_probabilities
    from gluon_deeplab.models import model_from_checkpoint

    bare = mx.gluon.SymbolBlock.imports(str(work / "export/deeplab-symbol.json"), ["data"],
                                        str(work / "export/deeplab-0000.params"))
    image = normalize(read_image(str(work / "my_photo.jpg")))
    net, _ = model_from_checkpoint(str(work / "runs/deeplabv3/phase2_os8/final.params"))
    expected = predict_probabilities(net, image, mx.cpu(), buckets=False)
    got = mx.nd.softmax(bare(image.expand_dims(0)), axis=1)[0].asnumpy()
    assert np.abs(got - expected).max() < 1e-5
