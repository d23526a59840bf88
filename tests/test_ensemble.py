"""Majority-vote ensembles over prediction folders, ties included, and their errors."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from gluon_deeplab.evaluation import save_mask, voc_colormap
from gluon_deeplab.evaluation.ensemble import ensemble_folders, majority_vote
from gluon_deeplab.evaluation.ensemble_cli import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _folder(root, name, masks, grayscale=False):
    folder = root / name
    folder.mkdir()
    for stem, mask in masks.items():
        if grayscale:
            Image.fromarray(np.asarray(mask, np.uint8), mode="L").save(folder / f"{stem}.png")
        else:
            save_mask(np.asarray(mask, np.uint8), str(folder / f"{stem}.png"))
    return str(folder)


def _read(path):
    with Image.open(path) as img:
        return img.mode, np.asarray(img), img.getpalette()


def test_majority_wins_per_pixel():
    a = np.array([[1, 2, 3]])
    b = np.array([[1, 2, 0]])
    c = np.array([[0, 2, 0]])
    np.testing.assert_array_equal(majority_vote([a, b, c]), [[1, 2, 0]])


def test_tie_without_probabilities_goes_to_earliest_folder_among_tied_classes():
    # Pixel 0: votes 4, 1, 1, 2, 2 -> classes 1 and 2 tie; folder 0's class 4 is not tied, so
    # folder 1's vote (1) decides. Pixel 1: a 1-1 tie -> folder 0's vote.
    masks = [np.array([[4, 3]]), np.array([[1, 0]]), np.array([[1, 5]]),
             np.array([[2, 6]]), np.array([[2, 7]])]
    np.testing.assert_array_equal(majority_vote(masks), [[1, 3]])


def test_tie_with_probabilities_goes_to_highest_summed_probability():
    a, b = np.array([[1, 1]]), np.array([[2, 2]])
    pa = np.zeros((3, 1, 2))
    pb = np.zeros((3, 1, 2))
    pa[1, 0, 0], pb[2, 0, 0] = 0.6, 0.9  # pixel 0: class 2 more confident
    pa[1, 0, 1], pb[2, 0, 1] = 0.8, 0.5  # pixel 1: class 1 more confident
    np.testing.assert_array_equal(majority_vote([a, b], [pa, pb]), [[2, 1]])
    np.testing.assert_array_equal(majority_vote([a, b]), [[1, 1]])


def test_folders_vote_into_palette_pngs_and_mixed_palette_grayscale_inputs(tmp_path):
    f1 = _folder(tmp_path, "m1", {"x": [[1, 1], [0, 3]], "y": [[5]]})
    f2 = _folder(tmp_path, "m2", {"x": [[1, 2], [0, 3]], "y": [[6]]}, grayscale=True)
    f3 = _folder(tmp_path, "m3", {"x": [[2, 2], [4, 0]], "y": [[7]]})
    out = tmp_path / "voted"
    stats = ensemble_folders([f1, f2, f3], str(out))
    assert stats == {"images": 2, "probability_ties": 0}
    mode, arr, palette = _read(out / "x.png")
    assert mode == "P" and len(palette) == 256 * 3
    assert palette == voc_colormap().ravel().tolist()
    np.testing.assert_array_equal(arr, [[1, 2], [0, 3]])
    np.testing.assert_array_equal(_read(out / "y.png")[1], [[5]])


def test_probability_files_beside_every_mask_break_ties(tmp_path, capsys):
    f1 = _folder(tmp_path, "m1", {"x": [[1]]})
    f2 = _folder(tmp_path, "m2", {"x": [[2]]})
    np.save(os.path.join(f1, "x.npy"), np.array([[[0.2]], [[0.5]], [[0.3]]], np.float16))
    np.save(os.path.join(f2, "x.npy"), np.array([[[0.1]], [[0.2]], [[0.7]]], np.float16))
    main([f1, f2, "--output_dir", str(tmp_path / "out")])
    assert "(1 with probability tie-breaking)" in capsys.readouterr().out
    np.testing.assert_array_equal(_read(tmp_path / "out" / "x.png")[1], [[2]])


def test_different_file_sets_are_an_error_naming_the_files(tmp_path):
    f1 = _folder(tmp_path, "m1", {"a": [[1]], "b": [[1]]})
    f2 = _folder(tmp_path, "m2", {"a": [[1]], "c": [[1]]})
    with pytest.raises(ValueError, match=r"missing b\.png; extra c\.png"):
        ensemble_folders([f1, f2], str(tmp_path / "out"))


def test_different_image_sizes_are_an_error_naming_the_files(tmp_path):
    f1 = _folder(tmp_path, "m1", {"a": np.zeros((2, 3))})
    f2 = _folder(tmp_path, "m2", {"a": np.zeros((3, 2))})
    with pytest.raises(ValueError, match=r"differ in size: .*m1/a\.png 2x3, .*m2/a\.png 3x2"):
        ensemble_folders([f1, f2], str(tmp_path / "out"))


def test_never_writes_into_an_input_folder_or_over_existing_masks(tmp_path):
    f1 = _folder(tmp_path, "m1", {"a": [[1]]})
    f2 = _folder(tmp_path, "m2", {"a": [[2]]})
    with pytest.raises(ValueError, match="is one of the input folders"):
        ensemble_folders([f1, f2], f1)
    out = _folder(tmp_path, "out", {"a": [[9]]})
    with pytest.raises(FileExistsError, match="a.png exists"):
        ensemble_folders([f1, f2], out)
    assert _read(os.path.join(out, "a.png"))[1][0, 0] == 9
    ensemble_folders([f1, f2], out, overwrite=True)
    assert _read(os.path.join(out, "a.png"))[1][0, 0] == 1


def test_colour_coded_mask_is_rejected_with_its_name(tmp_path):
    f1 = _folder(tmp_path, "m1", {"a": [[1]]})
    f2 = tmp_path / "m2"
    f2.mkdir()
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(f2 / "a.png")
    with pytest.raises(ValueError, match=r"m2/a\.png: label image has mode RGB"):
        ensemble_folders([f1, str(f2)], str(tmp_path / "out"))


def test_script_runs_as_a_thin_wrapper(tmp_path):
    f1 = _folder(tmp_path, "m1", {"a": [[3]]})
    f2 = _folder(tmp_path, "m2", {"a": [[3]]})
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "ensemble.py"), f1, f2,
         "--output_dir", str(tmp_path / "out")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "wrote 1 voted masks" in result.stdout
    assert _read(tmp_path / "out" / "a.png")[1][0, 0] == 3
