import json

import numpy as np
import pytest

from ulmfit.errors import UlmfitError
from ulmfit.stages.classify import train
from ulmfit.tricks import parse_tricks
from ulmfit.tricks.pseudo_label import pseudo_label_accuracy, select_pseudo_labels


def test_only_rows_at_or_above_the_threshold_are_kept_with_their_argmax_label():
    probs = np.array([[0.95, 0.05, 0.0], [0.4, 0.35, 0.25], [0.1, 0.9, 0.0], [0.0, 0.2, 0.8]])
    indices, labels = select_pseudo_labels(probs, 0.9)
    assert indices.tolist() == [0, 2] and labels.tolist() == [0, 1]
    indices, labels = select_pseudo_labels(probs, 0.0)
    assert indices.tolist() == [0, 1, 2, 3] and labels.tolist() == [0, 0, 1, 2]
    assert len(select_pseudo_labels(probs, 1.0)[0]) == 0


def test_accuracy_counts_only_documents_whose_true_label_is_known():
    assert pseudo_label_accuracy(np.array([0, 1, -1, 2]), np.array([0, 2, 1, 2])) == pytest.approx(2 / 3)
    assert pseudo_label_accuracy(np.array([-1, -1]), np.array([0, 1])) is None


def test_parameters_are_checked():
    assert parse_tricks("pseudo_label", "classifier") == {"pseudo_label": {"threshold": 0.9, "rounds": 1}}
    with pytest.raises(UlmfitError, match="threshold"):
        parse_tricks("pseudo_label(threshold=1.5)", "classifier")
    with pytest.raises(UlmfitError, match="rounds"):
        parse_tricks("pseudo_label(rounds=0)", "classifier")


def test_a_tiny_real_run_pseudo_labels_the_rest_of_train_and_records_each_round(trec_tok, tmp_path):
    out = tmp_path / "pl"
    metrics = train(data=str(trec_tok), out=str(out), from_scratch=True, preset="tiny", max_steps=3, max_train=200,
                    tricks="pseudo_label(threshold=0.0, rounds=2)", device="cpu")
    rest = 5452 - 545 - 200  # train minus the held-out validation minus the labelled sample
    assert metrics["train_docs"] == 200 + rest and metrics["valid_docs"] == 545
    rounds = metrics["pseudo_label_rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert [r["pseudo_labelled"] for r in rounds] == [0, rest, rest]
    assert rounds[0]["pseudo_accuracy"] is None and all(0.0 <= r["pseudo_accuracy"] <= 1.0 for r in rounds[1:])
    assert all(0.0 <= r["valid_error"] <= 1.0 for r in rounds)
    assert rounds[-1]["valid_error"] == metrics["valid_error"] == metrics["final_valid_error"]
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert (out / "model.pt").exists()


def test_a_run_with_nothing_to_pseudo_label_is_refused_before_training(trec_tok, tmp_path):
    with pytest.raises(UlmfitError, match="--max_train"):
        train(data=str(trec_tok), out=str(tmp_path / "x"), from_scratch=True, preset="tiny", max_steps=1,
              tricks="pseudo_label", device="cpu")
    assert not (tmp_path / "x").exists()
