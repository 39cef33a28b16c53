"""Which labelled documents a classifier trains and validates on.

One function decides it, :func:`labelled_docs`, so that the LM fine-tuning of low-shot
(supervised) ULMFiT can read exactly the text of the documents the classifier of the same seed
trains on: ``ulmfit finetune --max_train N --seed S`` and ``ulmfit train --max_train N --seed S``.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..artefacts import CLASSES
from ..errors import UlmfitError
from ..text.corpus import UNLABELLED, TokenizedSplit, available_splits, labels_path, load_split

VALID_FRAC = 0.1  # held out of train (seeded) when the data has no valid split


class LabelledDocs(NamedTuple):
    """The training documents (indices into ``train``) and the validation ones (into ``valid``)."""

    train: TokenizedSplit
    train_docs: np.ndarray
    valid: TokenizedSplit
    valid_docs: np.ndarray


def labelled_docs(data_dir: Path, n_classes: int, seed: int, max_train: int | None = None,
                  valid_frac: float = VALID_FRAC) -> LabelledDocs:
    """The labelled documents of a tokenized folder to train and validate on.

    Validation is the valid split, else a seeded ``valid_frac`` of train's labelled documents;
    with ``max_train`` (low-shot) a seeded stratified sample of the rest trains.
    """
    train_split = load_split(data_dir, "train")
    train_labels = check_labels(train_split, n_classes, data_dir, "train")
    if "valid" in available_splits(data_dir):
        valid_split = load_split(data_dir, "valid")
        valid_docs = np.flatnonzero(check_labels(valid_split, n_classes, data_dir, "valid") != UNLABELLED)
        train_docs = np.flatnonzero(train_labels != UNLABELLED)
    else:
        valid_split = train_split
        train_docs, valid_docs = hold_out(train_labels, valid_frac, seed)
    if max_train is not None:
        train_docs = stratified_sample(train_docs, train_labels[train_docs], max_train, seed)
    if len(train_docs) < 2 or len(valid_docs) < 1:
        raise UlmfitError(f"{data_dir}: too few labelled documents ({len(train_docs)} to train on, "
                          f"{len(valid_docs)} to validate)")
    if len(np.unique(train_labels[train_docs])) < 2:
        raise UlmfitError(f"{labels_path(data_dir, 'train')}: every training document has the same class; "
                          f"a classifier needs at least two classes to learn anything")
    return LabelledDocs(train_split, train_docs, valid_split, valid_docs)


def hold_out(labels: np.ndarray, valid_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, valid) indices of the labelled documents: a seeded ``valid_frac`` validates."""
    labelled = np.flatnonzero(labels != UNLABELLED)
    shuffled = np.random.default_rng([seed, 0]).permutation(labelled)
    n_valid = max(1, round(valid_frac * len(labelled)))
    return np.sort(shuffled[n_valid:]), np.sort(shuffled[:n_valid])


def stratified_sample(docs: np.ndarray, labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` of ``docs`` (sorted), each class represented in proportion to its frequency.

    Documents are shuffled, then taken by their relative rank within their class, so after
    any prefix every class has had its share.
    """
    if n >= len(docs):
        return np.sort(docs)
    positions = np.random.default_rng([seed, 1]).permutation(len(docs))
    shuffled, classes = docs[positions], labels[positions]
    relative_rank = np.empty(len(shuffled))
    for c in np.unique(classes):
        members = classes == c
        relative_rank[members] = (np.arange(members.sum()) + 0.5) / members.sum()
    return np.sort(shuffled[np.argsort(relative_rank, kind="stable")[:n]])


def check_labels(split: TokenizedSplit, n_classes: int, data_dir: Path, name: str) -> np.ndarray:
    """The split's labels, checked to be class ids of ``classes.json`` (or -1, unlabelled)."""
    if split.labels is None:
        raise UlmfitError(f"{labels_path(data_dir, name)}: file not found; the classifier needs labelled data")
    labels = np.asarray(split.labels)
    bad = (labels < UNLABELLED) | (labels >= n_classes)
    if bad.any():
        raise UlmfitError(f"{labels_path(data_dir, name)}: label {labels[bad][0]} is not a class of "
                          f"{data_dir / CLASSES} ({n_classes} classes)")
    return labels
