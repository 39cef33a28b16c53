"""Pseudo-labelling (Lee 2013): label unlabelled training documents with the trained classifier's
confident predictions, then train again on labelled + pseudo-labelled documents.

This trick adds no callback: it is a loop around whole training runs. ``ulmfit train``
(:func:`ulmfit.stages.classify.train`) asks :func:`pseudo_label_pool` for the documents to label
before it writes anything, and hands them to :func:`pseudo_label_rounds` after its first training,
with functions that predict with the latest classifier and train again; both do nothing without
the trick, so the stage has no branch of its own for it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from ..classifier.data import ClassificationData
from .. import distributed
from ..errors import UlmfitError
from ..files import write_json
from ..text.corpus import UNLABELLED
from ..training import Callback
from . import trick

NAME = "pseudo_label"


def select_pseudo_labels(probs: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(indices, labels) of the rows of ``probs`` [N, classes] whose top probability is at least
    ``threshold``, each labelled with its most probable class."""
    keep = np.flatnonzero(probs.max(axis=1) >= threshold)
    return keep, probs[keep].argmax(axis=1)


def pseudo_label_accuracy(true_labels: np.ndarray, pseudo_labels: np.ndarray) -> float | None:
    """Share of pseudo-labels equal to the true label, over the documents whose label is known
    (hidden from training, e.g. left out by --max_train); None when none is known."""
    known = true_labels != UNLABELLED
    return float(np.mean(true_labels[known] == pseudo_labels[known])) if known.any() else None


def pseudo_label_pool(tricks: Mapping[str, Mapping], train_data: ClassificationData,
                      valid_data: ClassificationData, resume: bool, data: str) -> np.ndarray | None:
    """The training-split documents to pseudo-label, or None without the pseudo_label trick: those
    neither trained nor validated on, i.e. the unlabelled ones (-1) and, with --max_train, the
    labelled ones left out of the sample (their labels hidden).

    Called before the stage writes its folder, so that a run that cannot pseudo-label fails first.
    """
    if NAME not in tricks:
        return None
    if distributed.world_size() > 1:
        raise UlmfitError("pseudo_label: runs in one process only; start ulmfit train without torchrun")
    if resume:
        raise UlmfitError("--resume: a run with the pseudo_label trick cannot be resumed; start it again")
    used = [train_data.docs]
    if valid_data.split is train_data.split:  # the validation documents were held out of train
        used.append(valid_data.docs)
    pool = np.setdiff1d(np.arange(len(train_data.split)), np.concatenate(used))
    if len(pool) == 0:
        raise UlmfitError(f"{data}: pseudo_label: every training document is labelled and trained on; "
                          f"it needs unlabelled (-1) training documents or --max_train")
    return pool


def pseudo_label_rounds(tricks: Mapping[str, Mapping], pool: np.ndarray | None, train_data: ClassificationData,
                        metrics: dict, predict: Callable[[Sequence[np.ndarray]], np.ndarray],
                        retrain: Callable[[ClassificationData], dict], metrics_file: Path) -> dict:
    """After the first training (its ``metrics``), each round labels ``pool`` with the confident
    probabilities ``predict`` gives (the latest classifier's) and ``retrain``s, from the same starting
    weights, on the labelled and those pseudo-labelled documents (validation unchanged). The last
    round's files are kept; ``metrics_file`` adds a record per round (round 0: the first training).
    Without a pool (no pseudo_label trick) the first training's metrics are the run's."""
    if pool is None:
        return metrics
    params = tricks[NAME]
    true_labels = np.asarray(train_data.split.labels)[pool]
    rounds = [{"round": 0, "pseudo_labelled": 0, "pseudo_accuracy": None, "valid_error": metrics["valid_error"]}]
    for r in range(1, params["rounds"] + 1):
        probs = predict([train_data.split.doc(i) for i in pool])
        chosen, labels = select_pseudo_labels(probs, params["threshold"])
        metrics = retrain(_with_labels(train_data, pool[chosen], labels))
        rounds.append({"round": r, "pseudo_labelled": len(chosen),
                       "pseudo_accuracy": pseudo_label_accuracy(true_labels[chosen], labels),
                       "valid_error": metrics["valid_error"]})
    metrics = {**metrics, "pseudo_label_rounds": rounds}
    write_json(metrics_file, metrics)
    return metrics


def _with_labels(data: ClassificationData, docs: np.ndarray, labels: np.ndarray) -> ClassificationData:
    """``data`` plus ``docs`` of its split trained on as ``labels`` (set in a copy of the split's labels)."""
    split_labels = np.array(data.split.labels, dtype=np.int64)
    split_labels[docs] = labels
    return ClassificationData(dataclasses.replace(data.split, labels=split_labels), np.concatenate([data.docs, docs]),
                              data.bs, data.seed, shuffle=data.shuffle, backwards=data.backwards,
                              max_tokens=data.max_tokens)


@trick(NAME, stages=("classifier",))
@dataclass
class PseudoLabel:
    """Pseudo-labelling: retrain on the unlabelled training documents the classifier is sure of."""

    threshold: float = 0.9  # least top class probability for a document to be pseudo-labelled
    rounds: int = 1         # predict-and-retrain rounds after the first training

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if not isinstance(self.rounds, int) or self.rounds < 1:
            raise ValueError(f"rounds must be a positive integer, got {self.rounds}")

    def callbacks(self) -> list[Callback]:
        return []
