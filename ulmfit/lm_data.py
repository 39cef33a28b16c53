"""The language-model data stream: documents -> one token stream -> ``bs`` rows -> windows.

Training (AWD-LSTM, Merity et al. 2017): each epoch concatenates the documents in a new random
order, cuts the stream into ``bs`` contiguous rows (row ``r`` continues where its previous window
stopped, so the hidden state can be carried across windows) and reads them in windows whose length
varies around ``bptt``: every window start sees a different amount of history. The random choices
depend only on ``(seed, epoch)``, so a resumed run reads exactly the batches an uninterrupted run
would. Validation reads the documents in their stored order with fixed ``bptt`` windows.

Backward models (``backwards=True``) read every document reversed, BOS included: the BOS token
then *ends* each reversed document and still separates documents in the stream. A backward
classifier must reverse documents the same way (``doc[::-1]``).
"""
from __future__ import annotations

from typing import Iterator, NamedTuple

import numpy as np
import torch

from .distributed import share
from .errors import UlmfitError

FULL_BPTT_PROB = 0.95    # otherwise a window is drawn around bptt / 2
SEQ_LEN_STD = 5.0        # spread of the window length around its mean
MIN_SEQ_LEN = 5
MAX_SEQ_LEN_EXTRA = 20   # windows are capped at bptt + 20 (4 std), which bounds memory


class LMBatch(NamedTuple):
    """``bs`` windows of ``seq_len`` tokens; ``y`` is ``x`` shifted by one token."""

    x: torch.Tensor   # [bs, seq_len] int64
    y: torch.Tensor   # [bs, seq_len] int64
    seq_len: int

    @property
    def inputs(self) -> tuple[torch.Tensor]:
        return (self.x,)

    @property
    def target(self) -> torch.Tensor:
        return self.y

    @property
    def n_tokens(self) -> int:
        return self.x.numel()

    def to(self, device: torch.device | str) -> "LMBatch":
        return LMBatch(self.x.to(device, non_blocking=True), self.y.to(device, non_blocking=True),
                       self.seq_len)


def window_lengths(n_positions: int, bptt: int, rng: np.random.Generator | None) -> list[int]:
    """Lengths of consecutive windows covering ``n_positions`` predicted tokens.

    ``rng=None`` gives fixed ``bptt`` windows (validation); otherwise AWD-LSTM's variable lengths:
    mean ``bptt`` with probability 0.95, else ``bptt / 2``; length ~ N(mean, 5), at least 5 and at
    most ``bptt + 20``. The last window takes whatever is left.
    """
    lengths, pos = [], 0
    while pos < n_positions:
        if rng is None:
            length = bptt
        else:
            mean = bptt if rng.random() < FULL_BPTT_PROB else bptt / 2
            length = int(rng.normal(mean, SEQ_LEN_STD))
            length = min(max(MIN_SEQ_LEN, length), bptt + MAX_SEQ_LEN_EXTRA)
        length = min(length, n_positions - pos)
        lengths.append(length)
        pos += length
    return lengths


def concat_documents(ids: np.ndarray, offsets: np.ndarray, order: np.ndarray,
                     backwards: bool = False) -> np.ndarray:
    """One int32 stream of the documents in ``order`` (each reversed if ``backwards``).

    Reads straight from (memory-mapped) ``ids`` into one preallocated array: one copy per epoch.
    """
    starts, ends = offsets[:-1][order], offsets[1:][order]
    stream = np.empty(int((ends - starts).sum()), dtype=np.int32)
    pos = 0
    for start, end in zip(starts.tolist(), ends.tolist()):
        doc = ids[start:end]
        stream[pos:pos + end - start] = doc[::-1] if backwards else doc
        pos += end - start
    return stream


class LMStream:
    """Batches of a tokenized split for language modelling, epoch by epoch.

    Args:
        ids: flat token ids of the split (may be memory-mapped).
        offsets: document boundaries, ``n_docs + 1`` of them.
        bs: number of parallel rows (the batch size).
        bptt: mean window length (backpropagation through time).
        seed: with the epoch, fixes the document order and the window lengths.
        shuffle: training mode (new order, variable windows); False for validation.
        backwards: read every document reversed (see the module docstring).
        docs: indices of the documents to use (default: all), e.g. to hold some out.
        part: ``(rank, world_size)``: read only this rank's block of the ``bs`` rows (data
            parallelism, see :mod:`ulmfit.distributed`); every rank has the same windows.
    """

    def __init__(self, ids: np.ndarray, offsets: np.ndarray, bs: int, bptt: int, seed: int = 0,
                 shuffle: bool = True, backwards: bool = False, docs: np.ndarray | None = None,
                 part: tuple[int, int] = (0, 1)):
        if bs < 1 or bptt < 1:
            raise UlmfitError(f"bs and bptt must be positive, got bs={bs} bptt={bptt}")
        self.ids, self.offsets = ids, np.asarray(offsets, dtype=np.int64)
        self.docs = np.arange(len(self.offsets) - 1) if docs is None else np.asarray(docs, dtype=np.int64)
        self.bs, self.bptt, self.seed = bs, bptt, seed
        self.shuffle, self.backwards = shuffle, backwards
        n_tokens = int((self.offsets[self.docs + 1] - self.offsets[self.docs]).sum())
        self.row_len = n_tokens // bs
        if self.row_len < 2:
            raise UlmfitError(f"{n_tokens} tokens are too few for {bs} rows of at least 2 tokens; "
                              f"use a smaller batch size")
        self.part_rows = share(bs, part)
        if shuffle and self.part_rows.start == self.part_rows.stop:
            raise UlmfitError(f"--bs {bs} leaves process {part[0]} of {part[1]} without rows; "
                              f"use a batch size of at least the number of processes")

    def _rng(self, epoch: int, purpose: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, purpose])

    def _lengths(self, epoch: int) -> list[int]:
        rng = self._rng(epoch, 1) if self.shuffle else None
        return window_lengths(self.row_len - 1, self.bptt, rng)

    def n_batches(self, epoch: int = 0) -> int:
        return len(self._lengths(epoch))

    def rows(self, epoch: int = 0) -> np.ndarray:
        """The epoch's stream as a ``[bs, row_len]`` array (the few leftover tokens are dropped),
        or this part's block of its rows."""
        order = self._rng(epoch, 0).permutation(self.docs) if self.shuffle else self.docs
        stream = concat_documents(self.ids, self.offsets, order, self.backwards)
        return stream[:self.bs * self.row_len].reshape(self.bs, self.row_len)[self.part_rows]

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[LMBatch]:
        """The epoch's batches from batch index ``start`` on (``start > 0`` when resuming)."""
        lengths = self._lengths(epoch)
        rows = self.rows(epoch)
        if len(rows) == 0:  # a part without rows of a small evaluation split
            return
        pos = sum(lengths[:start])
        for length in lengths[start:]:
            window = torch.from_numpy(rows[:, pos:pos + length + 1].astype(np.int64))
            yield LMBatch(window[:, :-1], window[:, 1:], length)
            pos += length
