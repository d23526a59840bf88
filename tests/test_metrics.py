"""ConfusionMatrix: values against hand-computed matrices, ignore pixels, absent classes."""

from __future__ import annotations

import numpy as np
import pytest

from gluon_deeplab.evaluation import ConfusionMatrix


def test_matrix_counts_rows_ground_truth_columns_prediction_and_skips_ignore():
    label = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [2, 2, 0]])
    cm = ConfusionMatrix(3, ignore_label=255)
    cm.update(pred, label)
    np.testing.assert_array_equal(cm.matrix, [[1, 1, 0], [0, 1, 1], [0, 0, 1]])
    assert cm.matrix.dtype == np.int64


def test_metrics_match_hand_computed_values():
    # Ground truth rows, prediction columns:
    #   [[3, 1, 0],
    #    [0, 2, 2],
    #    [1, 0, 1]]   total 10, diagonal 6
    cm = ConfusionMatrix(3)
    cm.matrix[:] = [[3, 1, 0], [0, 2, 2], [1, 0, 1]]
    m = cm.metrics()
    assert m["pixel_accuracy"] == pytest.approx(6 / 10)
    assert m["mean_accuracy"] == pytest.approx((3 / 4 + 2 / 4 + 1 / 2) / 3)
    iou = [3 / (4 + 4 - 3), 2 / (4 + 3 - 2), 1 / (2 + 3 - 1)]
    assert m["per_class_iou"] == pytest.approx(iou)
    assert m["miou"] == pytest.approx(sum(iou) / 3)
    assert m["fwiou"] == pytest.approx((4 * iou[0] + 4 * iou[1] + 2 * iou[2]) / 10)


def test_class_absent_from_prediction_and_ground_truth_is_none_and_not_averaged():
    label = np.array([0, 0, 1, 1, 255, 255])
    pred = np.array([0, 1, 1, 1, 3, 3])  # class 3 predicted only on ignored pixels
    cm = ConfusionMatrix(4)
    cm.update(pred, label)
    m = cm.metrics()
    assert m["per_class_iou"][2] is None and m["per_class_iou"][3] is None
    assert m["per_class_iou"][:2] == pytest.approx([1 / 2, 2 / 3])
    assert m["miou"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert m["mean_accuracy"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["per_class_accuracy"][2] is None


def test_class_predicted_but_not_in_ground_truth_counts_as_zero_iou():
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 2]), np.array([0, 0]))
    m = cm.metrics()
    assert m["per_class_iou"] == [0.5, None, 0.0]
    assert m["miou"] == pytest.approx(0.25)


def test_split_matrix_is_not_the_mean_of_per_image_scores():
    cm = ConfusionMatrix(2)
    cm.update(np.zeros(100, int), np.zeros(100, int))  # large image, perfect
    cm.update(np.ones(1, int), np.zeros(1, int))  # one-pixel image, wrong
    assert cm.metrics()["pixel_accuracy"] == pytest.approx(100 / 101)


def test_merge_adds_counts_and_reset_clears():
    a, b = ConfusionMatrix(2), ConfusionMatrix(2)
    a.update(np.array([0, 1]), np.array([0, 0]))
    b.update(np.array([1]), np.array([1]))
    a.merge(b)
    np.testing.assert_array_equal(a.matrix, [[1, 1], [0, 1]])
    a.reset()
    assert a.matrix.sum() == 0
    with pytest.raises(ValueError, match="3-class"):
        a.merge(ConfusionMatrix(3))


def test_update_matches_brute_force_on_random_data():
    rng = np.random.RandomState(1)
    label = rng.randint(0, 6, size=(37, 41))
    label[rng.rand(37, 41) < 0.2] = 255
    pred = rng.randint(0, 5, size=(37, 41))
    cm = ConfusionMatrix(5)
    label[label == 5] = 4
    cm.update(pred.astype(np.uint8), label.astype(np.float32))
    expected = np.zeros((5, 5), np.int64)
    for g, p in zip(label.ravel(), pred.ravel()):
        if g != 255:
            expected[g, p] += 1
    np.testing.assert_array_equal(cm.matrix, expected)


def test_empty_matrix_gives_zero_metrics_without_division_errors():
    m = ConfusionMatrix(3).metrics()
    assert m["miou"] == 0.0 and m["pixel_accuracy"] == 0.0
    assert m["per_class_iou"] == [None, None, None]


@pytest.mark.parametrize("pred,label,message", [
    (np.zeros((2, 3), int), np.zeros((3, 2), int), "shape"),
    (np.array([0, 3]), np.array([0, 1]), "prediction value 3"),
    (np.array([0, 1]), np.array([0, 7]), "label value 7"),
    (np.array([0, 1]), np.array([-1, 0]), "label value -1"),
    (np.array([0.5, 1.0]), np.array([0, 1]), "non-integer"),
])
def test_bad_input_is_a_clear_error(pred, label, message):
    with pytest.raises(ValueError, match=message):
        ConfusionMatrix(3).update(pred, label)
