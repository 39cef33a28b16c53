import json

import numpy as np
import pytest

from ulmfit.classifier.metrics import (accuracy, average_probabilities, classification_report,
                                       confusion_matrix, error_rate, macro_f1, per_class_scores,
                                       plot_confusion_matrix)

Y_TRUE = np.array([0, 0, 1, 1, 2, 2, 2])
Y_PRED = np.array([0, 1, 1, 1, 2, 0, 2])


def test_against_hand_computation():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]
    assert accuracy(cm) == pytest.approx(5 / 7)
    assert error_rate(cm) == pytest.approx(2 / 7)
    scores = per_class_scores(cm)
    np.testing.assert_allclose(scores["precision"], [1 / 2, 2 / 3, 1])
    np.testing.assert_allclose(scores["recall"], [1 / 2, 1, 2 / 3])
    np.testing.assert_allclose(scores["f1"], [0.5, 0.8, 0.8])
    assert scores["support"].tolist() == [2, 2, 3]
    assert macro_f1(cm) == pytest.approx(0.7)


def test_absent_classes_do_not_count_in_macro_f1_but_wrong_predictions_do():
    assert macro_f1(confusion_matrix(Y_TRUE, Y_PRED, 5)) == pytest.approx(0.7)
    cm = confusion_matrix(np.array([0, 0]), np.array([0, 1]), 2)  # class 1 predicted, never true
    scores = per_class_scores(cm)
    np.testing.assert_allclose(scores["precision"], [1, 0])
    np.testing.assert_allclose(scores["recall"], [0.5, 0])
    assert macro_f1(cm) == pytest.approx((2 / 3 + 0) / 2)


def test_bad_labels_are_rejected():
    with pytest.raises(ValueError):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError):
        confusion_matrix(np.array([0, 1]), np.array([0]), 3)


def test_report_is_json_ready():
    report = json.loads(json.dumps(classification_report(Y_TRUE, Y_PRED, ["A", "B", "C"])))
    assert report["n"] == 7 and report["error_rate"] == pytest.approx(2 / 7)
    assert report["per_class"]["C"] == {"precision": 1.0, "recall": pytest.approx(2 / 3),
                                        "f1": pytest.approx(0.8), "support": 3}
    assert report["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]


def test_plot_writes_a_png_atomically(tmp_path):
    path = tmp_path / "plots" / "confusion.png"
    plot_confusion_matrix(confusion_matrix(Y_TRUE, Y_PRED, 3), ["ABBR", "DESC", "ENTY"], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["confusion.png"]


def test_average_probabilities():
    forward = np.array([[0.9, 0.1], [0.2, 0.8]])
    backward = np.array([[0.5, 0.5], [0.6, 0.4]])
    np.testing.assert_allclose(average_probabilities([forward, backward]), [[0.7, 0.3], [0.4, 0.6]])
    np.testing.assert_allclose(average_probabilities([forward, backward], weights=[3, 1]),
                               [[0.8, 0.2], [0.3, 0.7]])
    np.testing.assert_allclose(average_probabilities([forward]), forward)
    with pytest.raises(ValueError):
        average_probabilities([forward, backward[:1]])
    with pytest.raises(ValueError):
        average_probabilities([forward, backward], weights=[1, -1])
    with pytest.raises(ValueError):
        average_probabilities([])
