"""Pseudo-labelling (Lee 2013): label unlabelled training documents with the trained classifier's
confident predictions, then train again on labelled + pseudo-labelled documents.

This trick adds no callback: it is a loop around whole training runs, run by ``ulmfit train``
(:func:`ulmfit.stages.classify.train`) when the trick is given. The pure parts live here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..text.corpus import UNLABELLED
from ..training import Callback
from . import trick


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


@trick("pseudo_label", stages=("classifier",))
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
