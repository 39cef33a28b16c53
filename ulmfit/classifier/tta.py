"""Test-time augmentation (TTA): a document's class probabilities averaged over the document and
augmented copies of it, made with the EDA operations of :mod:`ulmfit.tricks.eda` (synonyms: the
classifier's own encoder-embedding neighbours).

Copy ``c`` of document ``i`` is augmented by a generator seeded with ``(c, i)``, not with any
training randomness, so a document gets the same copies however the documents are batched or
chunked. The other TTA of ULMFiT, averaging a forward and a backward classifier, is
``ulmfit ensemble``.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from torch import nn

from ..errors import UlmfitError
from ..tricks.eda import EDA, augment, nearest_neighbours
from .metrics import average_probabilities

TTA_ALPHA = EDA.alpha  # fraction of a copy's words changed: the eda trick's default


def augmented_copy(docs: Sequence[np.ndarray], copy: int, neighbours: np.ndarray, first: int = 0,
                   alpha: float = TTA_ALPHA) -> list[np.ndarray]:
    """Copy number ``copy`` of ``docs``, every document changed by one EDA operation; ``first`` is
    the index of ``docs[0]`` in the whole input (it seeds the copies with the copy number)."""
    return [augment(doc, np.random.default_rng([copy, first + i]), alpha, neighbours) for i, doc in enumerate(docs)]


def tta_probs(predict: Callable[[list[np.ndarray]], np.ndarray], docs: Sequence[np.ndarray], copies: int,
              neighbours: np.ndarray | None, first: int = 0, alpha: float = TTA_ALPHA) -> np.ndarray:
    """[N, classes] float32: the mean of ``predict``'s probabilities of ``docs`` and of ``copies``
    augmented copies of them (copies 1..copies), rows in the order of ``docs``."""
    versions = [list(docs)] + [augmented_copy(docs, c, neighbours, first, alpha) for c in range(1, copies + 1)]
    return average_probabilities([predict(v) for v in versions]).astype(np.float32)


def tta_neighbours(model: nn.Module, copies: int) -> np.ndarray | None:
    """The synonym table of ``model``'s encoder embedding for ``copies`` augmented copies (None
    without copies); computed once per run of evaluate or predict."""
    if copies < 0:
        raise UlmfitError(f"--tta: the number of augmented copies must be 0 or more, got {copies}")
    return nearest_neighbours(model.encoder.embedding.weight) if copies else None
