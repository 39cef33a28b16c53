"""Classification metrics on integer labels (pure numpy, no sklearn) and ensemble averaging."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ..files import atomic_path


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """[n_classes, n_classes] int64 counts; rows are true labels, columns predicted labels."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"labels must be two 1-D arrays of one length, got {y_true.shape} and {y_pred.shape}")
    for name, labels in (("y_true", y_true), ("y_pred", y_pred)):
        if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
            raise ValueError(f"{name} has labels outside [0, {n_classes})")
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def accuracy(cm: np.ndarray) -> float:
    total = cm.sum()
    return float(np.trace(cm) / total) if total else 0.0


def error_rate(cm: np.ndarray) -> float:
    return 1.0 - accuracy(cm)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise ratio with 0 where the denominator is 0 (no prediction / no example)."""
    out = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def per_class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 (0 where undefined) and support (true count)."""
    true_pos = np.diag(cm).astype(np.float64)
    predicted, support = cm.sum(axis=0), cm.sum(axis=1)
    precision, recall = _ratio(true_pos, predicted), _ratio(true_pos, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def macro_f1(cm: np.ndarray) -> float:
    """Mean F1 over the classes that occur as a true or a predicted label.

    Classes absent from both (e.g. a rare class missing from a small test split) are left out
    rather than counted as F1 = 0.
    """
    present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
    if not present.any():
        return 0.0
    return float(per_class_scores(cm)["f1"][present].mean())


def classification_report(y_true: np.ndarray, y_pred: np.ndarray,
                          class_names: Sequence[str]) -> dict:
    """Everything ``evaluate`` reports, as a JSON-ready dict."""
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    scores = per_class_scores(cm)
    return {
        "n": int(cm.sum()),
        "accuracy": accuracy(cm),
        "error_rate": error_rate(cm),
        "macro_f1": macro_f1(cm),
        "per_class": {name: {"precision": float(scores["precision"][i]),
                             "recall": float(scores["recall"][i]),
                             "f1": float(scores["f1"][i]),
                             "support": int(scores["support"][i])}
                      for i, name in enumerate(class_names)},
        "confusion_matrix": cm.tolist(),
    }


def plot_confusion_matrix(cm: np.ndarray, class_names: Sequence[str],
                          path: str | os.PathLike) -> None:
    """Write the confusion matrix as a PNG heat map with counts in the cells."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    size = 2.0 + 0.6 * len(class_names)
    fig = Figure(figsize=(size, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(cm, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, labels=class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = cm.max() / 2 if cm.size else 0
    for (row, col), count in np.ndenumerate(cm):
        ax.text(col, row, str(count), ha="center", va="center",
                color="white" if count > threshold else "black")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def average_probabilities(probabilities: Sequence[np.ndarray],
                          weights: Sequence[float] | None = None) -> np.ndarray:
    """Weighted mean of several models' [N, C] class probabilities (equal weights by default)."""
    if len(probabilities) == 0:
        raise ValueError("need at least one probability array to average")
    shapes = {np.shape(p) for p in probabilities}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"probability arrays must all be [N, C] of one shape, got {sorted(shapes)}")
    stacked = np.stack([np.asarray(p, dtype=np.float64) for p in probabilities])
    w = np.ones(len(probabilities)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(probabilities),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"need one non-negative weight per model with a positive sum, got {weights}")
    return np.tensordot(w / w.sum(), stacked, axes=1)
