"""Bad input through the real command lines (eval, predict, export, ensemble) and the API:
a one-line error naming the flag or file and what was expected, exit status 2, checked before
any work, nothing of the user's overwritten; and what --help and the outputs claim is true."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import gluon_deeplab as gd
from gluon_deeplab.data import DataError, get_dataset
from gluon_deeplab.data.io import save_mask
from gluon_deeplab.deploy.cli import build_export_parser, export_main
from gluon_deeplab.evaluation import cli as eval_cli
from gluon_deeplab.evaluation import run as eval_run
from gluon_deeplab.evaluation.ensemble_cli import main as ensemble_main
from gluon_deeplab.evaluation.predict_cli import main as predict_main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT_USER = os.geteuid() == 0


def _fails(capsys, main, argv, code=2):
    """Run a CLI entry point that must fail; return its one-line error."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == code
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def blocker(tmp_path_factory):
    """A regular file: any path under it cannot be created (also for root)."""
    path = tmp_path_factory.mktemp("blocker") / "a_file"
    path.write_text("keep me")
    return str(path)


@pytest.fixture(scope="module")
def exported(trained_synthetic, tmp_path_factory):
    _, checkpoint = trained_synthetic
    prefix = str(tmp_path_factory.mktemp("export") / "deeplab")
    export_main(["--checkpoint", checkpoint, "--output", prefix])
    return prefix


@pytest.fixture
def no_evaluation(monkeypatch):
    """Fail the test if the evaluation starts (errors must come before the work)."""
    def evaluate(*args, **kwargs):
        raise AssertionError("evaluation started before the bad flag was reported")
    monkeypatch.setattr(eval_run, "evaluate", evaluate)


# -- eval -----------------------------------------------------------------------------------------
def _eval_flags(root, checkpoint, *extra):
    return ["--checkpoint", checkpoint, "--data_dir", root, "--dataset", "synthetic",
            "--no_progress", *extra]


def test_eval_output_that_cannot_be_written_fails_before_evaluating(trained_synthetic, blocker,
                                                                    tmp_path, capsys,
                                                                    no_evaluation):
    root, checkpoint = trained_synthetic
    under_file = os.path.join(blocker, "metrics.json")
    err = _fails(capsys, eval_cli.eval_main, _eval_flags(root, checkpoint, "--output", under_file))
    assert f"--output {under_file}: {blocker} is a file, not a folder" in err
    err = _fails(capsys, eval_cli.eval_main, _eval_flags(root, checkpoint,
                                                         "--output", str(tmp_path)))
    assert "is a folder; expected a file path" in err
    err = _fails(capsys, eval_cli.eval_main,
                 _eval_flags(root, checkpoint, "--save_predictions", os.path.join(blocker, "p")))
    assert "--save_predictions" in err and "is a file, not a folder" in err
    assert open(blocker).read() == "keep me"


@pytest.mark.skipif(ROOT_USER, reason="root may write into any folder")
def test_eval_output_in_a_read_only_folder_fails_before_evaluating(trained_synthetic, tmp_path,
                                                                   capsys, no_evaluation):
    root, checkpoint = trained_synthetic
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    err = _fails(capsys, eval_cli.eval_main,
                 _eval_flags(root, checkpoint, "--output", str(locked / "m.json")))
    assert f"folder {locked} is not writable" in err


@pytest.mark.parametrize("flags, expected", [
    (["--max_images", "0"], "--max_images: expected an integer >= 1, got 0"),
    (["--max_images", "-1"], "--max_images: expected an integer >= 1, got -1"),
    (["--num_workers", "-1"], "--num_workers: expected an integer >= 0, got -1"),
])
def test_eval_counts_out_of_range_are_flag_errors(trained_synthetic, capsys, no_evaluation,
                                                  flags, expected):
    root, checkpoint = trained_synthetic
    assert expected in _fails(capsys, eval_cli.eval_main, _eval_flags(root, checkpoint, *flags))


def test_eval_on_the_default_voc_layout_names_the_dataset_the_model_was_trained_on(
        trained_synthetic, capsys):
    root, checkpoint = trained_synthetic  # a synthetic set is in the VOC 2012 layout
    err = _fails(capsys, eval_cli.eval_main, ["--checkpoint", checkpoint, "--data_dir", root])
    assert "predicts 3 classes but --dataset voc" in err and "has 21" in err
    assert "trained on --dataset synthetic: pass --dataset synthetic" in err
    assert "--num_classes" not in err


def test_synthetic_data_is_never_generated_into_a_mistyped_folder(trained_synthetic, tmp_path,
                                                                  capsys):
    _, checkpoint = trained_synthetic
    typo = str(tmp_path / "synthetik")
    err = _fails(capsys, eval_cli.eval_main, _eval_flags(typo, checkpoint))
    assert f"{typo}: no synthetic set (folder not found)" in err
    assert f"make_synthetic.py --output {typo}" in err
    assert not os.path.exists(typo)
    with pytest.raises(DataError, match="folder not found"):
        get_dataset("synthetic", typo, "train")
    assert not os.path.exists(typo)


# -- predict --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56, 3), np.uint8)).save(path)
    return str(path)


def test_predict_output_under_a_file_is_a_one_line_error_from_the_script(exported, image,
                                                                         blocker):
    out = os.path.join(blocker, "predictions")
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "predict.py"), image, "--exported",
         exported, "--output_dir", out], capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=REPO))
    assert result.returncode == 2
    err = result.stderr.strip()
    assert "\n" not in err and f"--output_dir {out}: {blocker} is a file" in err, err


@pytest.mark.parametrize("damaged", ["symbol", "params"])
def test_predict_with_a_damaged_export_names_the_file(exported, image, tmp_path, capsys,
                                                      damaged):
    prefix = str(tmp_path / "copy")
    for suffix in ("-symbol.json", "-0000.params"):
        data = open(exported + suffix, "rb").read()
        if (suffix == "-symbol.json") == (damaged == "symbol"):
            data = data[: len(data) // 2]
        with open(prefix + suffix, "wb") as f:
            f.write(data)
    bad = prefix + ("-symbol.json" if damaged == "symbol" else "-0000.params")
    err = _fails(capsys, predict_main, [image, "--exported", prefix,
                                        "--output_dir", str(tmp_path / "out")])
    assert f"{bad} is damaged" in err


def test_predict_applies_exif_orientation(trained_synthetic, image, tmp_path):
    _, checkpoint = trained_synthetic
    pixels = np.asarray(Image.open(image))
    rotated = Image.fromarray(pixels)
    exif = rotated.getexif()
    exif[0x0112] = 8  # displayed turned 90 degrees counter-clockwise
    path = str(tmp_path / "exif.jpg")
    rotated.save(path, exif=exif.tobytes())
    predict_main([path, "--checkpoint", checkpoint, "--output_dir", str(tmp_path / "out")])
    mask = Image.open(tmp_path / "out" / "masks" / "exif.png")
    assert mask.size == (40, 56)  # W x H as displayed (stored 56 x 40)


# -- export ---------------------------------------------------------------------------------------
def test_export_to_a_folder_or_an_unwritable_place_is_a_one_line_error(trained_synthetic,
                                                                       blocker, tmp_path,
                                                                       capsys):
    _, checkpoint = trained_synthetic
    slash = str(tmp_path / "dir") + "/"
    err = _fails(capsys, export_main, ["--checkpoint", checkpoint, "--output", slash])
    assert f"--output {slash}: expected a file prefix such as {slash}deeplab" in err
    err = _fails(capsys, export_main, ["--checkpoint", checkpoint, "--output", str(tmp_path)])
    assert "not a folder" in err
    under = os.path.join(blocker, "deeplab")
    err = _fails(capsys, export_main, ["--checkpoint", checkpoint, "--output", under])
    assert f"{blocker} is a file, not a folder" in err
    assert not os.path.exists(str(tmp_path / "dir"))


def test_export_meta_names_the_synthetic_classes(trained_synthetic, exported):
    root, _ = trained_synthetic
    meta = json.load(open(exported + "-meta.json"))
    expected = json.load(open(os.path.join(root, "synthetic.json")))["classes"]
    assert meta["classes"] == expected == ["background", "stripes_1", "checker_2"]


def test_int8_export_says_when_the_split_has_fewer_calibration_images(trained_synthetic,
                                                                      tmp_path, capsys):
    root, checkpoint = trained_synthetic  # 6 val images
    prefix = str(tmp_path / "int8")
    export_main(["--checkpoint", checkpoint, "--output", prefix, "--int8", "--calib_data_dir",
                 root, "--calib_dataset", "synthetic", "--calib_split", "val",
                 "--num_calib_images", "20", "--calib_size", "48", "64"])
    assert "--num_calib_images 20: synthetic:val holds 6 images; calibrating on all 6" in \
        capsys.readouterr().err
    assert json.load(open(prefix + "-meta.json"))["num_calib_images"] == 6


def test_export_help_shows_each_default_once():
    text = build_export_parser().format_help()
    for shown in ("(default: 20)", "(default: naive)", "(default: int8)", "(default: voc)",
                  "(default: train)"):
        assert shown in " ".join(text.split()), shown
    assert "(default: the" not in text and text.count("(default") == text.count("(default:")


# -- ensemble -------------------------------------------------------------------------------------
def _prediction_folder(folder, value, probabilities=None):
    os.makedirs(folder)
    save_mask(np.full((4, 5), value, np.uint8), os.path.join(folder, "x.png"))
    if probabilities is not None:
        with open(os.path.join(folder, "x.npy"), "wb") as f:
            f.write(probabilities)


def test_ensemble_names_a_corrupt_probability_file_and_an_unwritable_output(tmp_path, blocker,
                                                                            capsys):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    good = tmp_path / "good.npy"
    np.save(good, np.ones((3, 4, 5), np.float32))
    _prediction_folder(a, 1, good.read_bytes())
    _prediction_folder(b, 2, good.read_bytes()[:100])  # truncated .npy
    err = _fails(capsys, ensemble_main, [a, b, "--output_dir", str(tmp_path / "out")])
    assert f"{os.path.join(b, 'x.npy')}: unreadable probability file" in err
    err = _fails(capsys, ensemble_main, [a, b, "--output_dir", os.path.join(blocker, "out")])
    assert f"{blocker} is a file, not a folder" in err


# -- API ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [2.5, "3", True, None, 0])
def test_build_model_refuses_a_class_count_that_is_not_a_positive_integer(value):
    with pytest.raises(ValueError, match="num_classes must be an integer >= 1"):
        gd.build_model(value, "resnet18_v2")


def test_quoted_errors_say_what_failed_for_empty_and_mxnet_messages(tmp_path):
    from gluon_deeplab.errors import error_line

    assert error_line(KeyError()) == "KeyError"
    assert error_line(OSError("\n  first\nsecond"), with_type=True) == "OSError: first"
    bad = tmp_path / "weights.params"
    bad.write_bytes(b"not a parameter file")
    # MXNet's C++ errors start with a "Traceback" line; the quoted line is the one saying why.
    with pytest.raises(ValueError, match=r"weights.params: not an MXNet parameter file "
                                         r"\(MXNetError: .*Invalid NDArray file format\)$"):
        gd.build_backbone("resnet18_v2", pretrained=str(bad))


@pytest.mark.parametrize("argv", [["--gpus", "0"], ["--batch_size", "1", "--cpu_devices", "2"]])
def test_train_bad_values_are_one_line_without_the_usage(capsys, argv):
    from gluon_deeplab.training.cli import main as train_main

    err = _fails(capsys, train_main, argv)
    assert err.startswith("gluon-deeplab-train: error: ") and "usage:" not in err, err


def test_train_malformed_command_line_still_shows_the_usage(capsys):
    from gluon_deeplab.training.cli import main as train_main

    with pytest.raises(SystemExit) as exit_info:
        train_main(["--no_such_flag"])
    assert exit_info.value.code == 2 and "usage:" in capsys.readouterr().err


def test_buckets_help_claims_no_default_the_parser_does_not_have():
    parser = eval_cli.build_parser()
    assert parser.parse_args(["--checkpoint", "c"]).buckets is None  # chosen by device
    no_buckets = next(a for a in parser._actions if "--no_buckets" in a.option_strings)
    assert "default" not in parser._get_formatter()._expand_help(no_buckets)
