"""The classifier's batches: right-padded labelled documents, sortish for training and sorted
by length for evaluation, over the documents :func:`ulmfit.classifier.selection.labelled_docs`
chooses."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterator, NamedTuple

import numpy as np
import torch
from torch import Tensor

from .. import distributed
from ..errors import UlmfitError
from ..text.corpus import TokenizedSplit
from ..text.special import PAD_ID
from .sampling import pad_batch, sorted_batches, sortish_batches
from .selection import labelled_docs

if TYPE_CHECKING:  # annotation only: the stage's config is built on these blocks, not the reverse
    from ..stages.classify import ClassifierConfig


class ClassBatch(NamedTuple):
    """Right-padded documents, their lengths and labels (the trainer's batch contract)."""

    tokens: Tensor   # [B, T] int64
    lengths: Tensor  # [B] int64
    labels: Tensor   # [B] int64

    @property
    def inputs(self) -> tuple[Tensor, Tensor]:
        return self.tokens, self.lengths

    @property
    def target(self) -> Tensor:
        return self.labels

    @property
    def n_tokens(self) -> int:
        return int(self.lengths.sum())

    def to(self, device: torch.device | str) -> "ClassBatch":
        return ClassBatch(*(t.to(device, non_blocking=True) for t in self))


class ClassificationData:
    """Batches of labelled documents of a split: sortish and reshuffled per epoch for training
    (``shuffle``), sorted by length for evaluation. The batches depend only on (seed, epoch).

    Args:
        split: the tokenized split, with labels.
        docs: indices of the documents to use.
        bs: documents per batch.
        seed: with the epoch, fixes the training order.
        shuffle: training order (sortish) instead of evaluation order (sorted).
        backwards: reverse every document (BOS included), as the backward LM read it.
        max_tokens: keep only the first ``max_tokens`` tokens of every document (None: all).
        part: ``(rank, world_size)``: read only this rank's block of each batch's documents (data
            parallelism, see :mod:`ulmfit.distributed`); every rank has the same number of batches.
    """

    def __init__(self, split: TokenizedSplit, docs: np.ndarray, bs: int, seed: int = 0,
                 shuffle: bool = False, backwards: bool = False, max_tokens: int | None = None,
                 part: tuple[int, int] = (0, 1)):
        if split.labels is None:
            raise ValueError("ClassificationData needs a labelled split")
        self.split, self.docs = split, np.asarray(docs, dtype=np.int64)
        self.lengths = np.minimum(np.diff(split.offsets)[self.docs], max_tokens or np.iinfo(np.int64).max)
        self.bs, self.seed, self.shuffle, self.backwards = bs, seed, shuffle, backwards
        self.max_tokens, self.part = max_tokens, part
        if shuffle and part[1] > 1 and bs < 2 * part[1]:
            raise UlmfitError(f"--bs {bs} gives each of {part[1]} processes fewer than 2 documents per batch, "
                              f"which BatchNorm cannot train on; use a batch size of at least {2 * part[1]}")

    def __len__(self) -> int:
        return len(self.docs)

    def _index_batches(self, epoch: int) -> list[np.ndarray]:
        if self.shuffle:
            return sortish_batches(self.lengths, self.bs, np.random.default_rng([self.seed, epoch]),
                                   min_size=2 * self.part[1])
        return sorted_batches(self.lengths, self.bs)

    def n_batches(self, epoch: int = 0) -> int:
        return len(self._index_batches(epoch))

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[ClassBatch]:
        for index in self._index_batches(epoch)[start:]:
            docs = self.docs[index[distributed.share(len(index), self.part)]]
            if len(docs) == 0:  # this part of a small evaluation batch
                continue
            tokens, lengths = pad_batch([self.split.doc(i)[:self.max_tokens] for i in docs], PAD_ID,
                                        reverse=self.backwards)
            yield ClassBatch(tokens, lengths, torch.from_numpy(np.asarray(self.split.labels[docs], dtype=np.int64)))


def training_data(cfg: ClassifierConfig, data_dir: Path,
                  n_classes: int) -> tuple[ClassificationData, ClassificationData]:
    """Training and validation batches of the documents ``labelled_docs`` chooses."""
    chosen = labelled_docs(data_dir, n_classes, cfg.seed, cfg.max_train, cfg.valid_frac)
    part = distributed.part()
    return (ClassificationData(chosen.train, chosen.train_docs, cfg.bs, cfg.seed, shuffle=True,
                               backwards=cfg.backwards, max_tokens=cfg.max_tokens, part=part),
            ClassificationData(chosen.valid, chosen.valid_docs, cfg.bs, backwards=cfg.backwards,
                               max_tokens=cfg.max_tokens, part=part))
