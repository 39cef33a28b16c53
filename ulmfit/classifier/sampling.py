"""Batching documents of different lengths: sortish for training, sorted for evaluation.

Batches of similar length waste little compute on padding. Training batches stay random enough
(shuffled before sorting within large chunks, batches shuffled after); the longest batch comes
first so an out-of-memory error shows up at once rather than hours into an epoch. Evaluation
sorts by length and ``unsort`` puts the results back in the documents' original order.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor


def _split(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def _longest_first(lengths: np.ndarray) -> np.ndarray:
    return np.argsort(-lengths, kind="stable")


def sortish_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator,
                    chunk_mult: int = 50, min_size: int = 2) -> list[np.ndarray]:
    """Training batches: every index exactly once, similar lengths within a batch, longest first.

    Indices are shuffled, cut into chunks of ``batch_size * chunk_mult``, each chunk sorted by
    length and cut into batches; the batch holding the longest document goes first and the
    others are shuffled. A trailing batch of fewer than ``min_size`` documents is merged into the
    batch before it, because BatchNorm in the head cannot train on one example (with data
    parallelism each rank's share of a batch needs two).
    """
    lengths = np.asarray(lengths)
    if len(lengths) == 0:
        return []
    chunk = batch_size * chunk_mult
    shuffled = rng.permutation(len(lengths))
    order = np.concatenate([part[_longest_first(lengths[part])]
                            for part in np.split(shuffled, list(range(chunk, len(shuffled), chunk)))])
    batches = _split(order, batch_size)
    if len(batches) > 1 and len(batches[-1]) < min_size:
        batches[-2:] = [np.concatenate(batches[-2:])]
    first = int(np.argmax([lengths[batch].max() for batch in batches]))
    rest = batches[:first] + batches[first + 1:]
    return [batches[first]] + [rest[i] for i in rng.permutation(len(rest))]


def sorted_order(lengths: Sequence[int]) -> np.ndarray:
    """Indices by decreasing length (ties keep their original order), for evaluation."""
    return _longest_first(np.asarray(lengths))


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Evaluation batches: ``sorted_order`` cut into consecutive batches."""
    return _split(sorted_order(lengths), batch_size)


def unsort(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Undo a reordering: ``values[k]`` belongs to document ``order[k]``; returns original order."""
    values, order = np.asarray(values), np.asarray(order)
    if len(values) != len(order) or not np.array_equal(np.sort(order), np.arange(len(order))):
        raise ValueError(f"order must be a permutation of range({len(values)})")
    restored = np.empty_like(values)
    restored[order] = values
    return restored


def pad_batch(docs: Sequence[np.ndarray], pad_id: int, reverse: bool = False) -> tuple[Tensor, Tensor]:
    """Right-pad documents into ``(tokens LongTensor [B, T], lengths LongTensor [B])``.

    With ``reverse`` each document's tokens are reversed (for backward models); the padding stays
    on the right, so every document still starts at position 0 from a zero LSTM state.
    """
    if len(docs) == 0:
        raise ValueError("pad_batch needs at least one document")
    lengths = np.array([len(doc) for doc in docs], dtype=np.int64)
    tokens = np.full((len(docs), lengths.max()), pad_id, dtype=np.int64)
    for row, doc in zip(tokens, docs):
        row[:len(doc)] = doc[::-1] if reverse else doc
    return torch.from_numpy(tokens), torch.from_numpy(lengths)
