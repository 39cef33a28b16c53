"""A tokenized folder on disk: flat int32 ids + int64 offsets (+ int64 labels) per split.

Document ``i`` of a split is ``ids[offsets[i]:offsets[i+1]]``; every document starts with
``xxbos``. Labels index ``classes.json``; -1 marks an unlabelled document in a split that mixes
labelled and unlabelled ones (e.g. aclImdb ``train`` with ``unsup`` included).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..artefacts import CLASSES, VOCAB
from ..errors import UlmfitError
from ..files import load_npy, read_json, save_npy, write_json

SPLITS = ("train", "valid", "test")
UNLABELLED = -1
_WRITE_BLOCK = 1 << 24  # tokens remapped per step when finishing a split


def ids_path(folder: str | os.PathLike, split: str) -> Path:
    return Path(folder) / f"{split}_ids.npy"


def offsets_path(folder: str | os.PathLike, split: str) -> Path:
    return Path(folder) / f"{split}_offsets.npy"


def labels_path(folder: str | os.PathLike, split: str) -> Path:
    return Path(folder) / f"{split}_labels.npy"


@dataclass
class TokenizedSplit:
    ids: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def doc(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.doc(i) for i in range(len(self)))

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])


def load_split(folder: str | os.PathLike, split: str, mmap: bool = True) -> TokenizedSplit:
    """Load one split of a tokenized folder; ``mmap`` keeps the ids on disk until they are read."""
    if not ids_path(folder, split).exists():
        have = available_splits(folder)
        raise UlmfitError(f"{folder}: no '{split}' split (has: {', '.join(have) or 'none'})")
    ids = _integer_vector(ids_path(folder, split), mmap)
    offsets = _integer_vector(offsets_path(folder, split))
    labels = _integer_vector(labels_path(folder, split)) if labels_path(folder, split).exists() else None
    if len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(ids) or (np.diff(offsets) < 0).any():
        raise UlmfitError(f"{offsets_path(folder, split)}: offsets do not match {ids_path(folder, split).name}")
    if labels is not None and len(labels) != len(offsets) - 1:
        raise UlmfitError(f"{labels_path(folder, split)}: {len(labels)} labels for {len(offsets) - 1} documents")
    check_ids(ids, folder, split)
    return TokenizedSplit(ids, offsets, labels)


def _integer_vector(path: Path, mmap: bool = False) -> np.ndarray:
    """A one-dimensional integer array from ``path``, or an error naming the file."""
    array = load_npy(path, mmap=mmap)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise UlmfitError(f"{path}: expected a one-dimensional integer array, got {array.dtype} of shape "
                          f"{array.shape}")
    return array


def check_ids(ids: np.ndarray, folder: str | os.PathLike, split: str) -> None:
    """Refuse token ids outside the folder's vocabulary (when it has one): an embedding lookup
    would fail deep inside training instead."""
    vocab = Path(folder) / VOCAB
    if not len(ids) or not vocab.exists():
        return
    size = len(read_json(vocab))
    low, high = _min_max(ids)
    if low < 0 or high >= size:
        raise UlmfitError(f"{ids_path(folder, split)}: token id {low if low < 0 else high} is outside the "
                          f"vocabulary of {vocab} ({size} tokens)")


def _min_max(ids: np.ndarray) -> tuple[int, int]:
    """The smallest and largest id, read in blocks so a memory-mapped corpus is not loaded at once."""
    blocks = range(0, len(ids), _WRITE_BLOCK)
    return (min(int(ids[i:i + _WRITE_BLOCK].min()) for i in blocks),
            max(int(ids[i:i + _WRITE_BLOCK].max()) for i in blocks))


def available_splits(folder: str | os.PathLike) -> list[str]:
    return [s for s in SPLITS if ids_path(folder, s).exists()]


def load_classes(folder: str | os.PathLike) -> list[str] | None:
    """The class names of ``folder`` (None without classes.json), checked to be distinct strings."""
    path = Path(folder) / CLASSES
    if not path.exists():
        return None
    classes = read_json(path)
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise UlmfitError(f"{path}: expected a JSON list of class names")
    if len(set(classes)) != len(classes):
        raise UlmfitError(f"{path}: class names repeat")
    return classes


def require_classes(folder: str | os.PathLike, why: str) -> list[str]:
    """The class names of a tokenized folder; without any, an error that says ``why`` they are needed."""
    classes = load_classes(folder)
    if not classes:
        raise UlmfitError(f"{Path(folder) / CLASSES}: file not found; {why}")
    return classes


def save_classes(folder: str | os.PathLike, classes: list[str]) -> None:
    write_json(Path(folder) / CLASSES, list(classes))


def save_split(folder: str | os.PathLike, split: str, docs: list[np.ndarray], labels=None) -> TokenizedSplit:
    """Write a small split from in-memory documents (each already starting with ``xxbos``)."""
    lengths = np.array([len(d) for d in docs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = np.concatenate(docs).astype(np.int32) if docs else np.zeros(0, np.int32)
    save_npy(ids_path(folder, split), ids)
    save_npy(offsets_path(folder, split), offsets)
    label_array = None if labels is None else np.asarray(labels, dtype=np.int64)
    if label_array is not None:
        save_npy(labels_path(folder, split), label_array)
    return TokenizedSplit(ids, offsets, label_array)


class SplitWriter:
    """Streams one split to disk in ids of a temporary numbering, remapped once at the end.

    The tokenizer assigns ids before the vocabulary exists; ``finish(lookup)`` rewrites
    them through ``lookup[temporary_id] -> final_id`` in blocks, so memory stays bounded.
    Call it inside a staging folder: the temporary file is deleted when done.
    """

    def __init__(self, folder: str | os.PathLike, split: str):
        self.folder, self.split = Path(folder), split
        self._tmp_path = self.folder / f".{split}_ids.tmp"
        self._tmp = open(self._tmp_path, "wb")
        self._lengths: list[np.ndarray] = []
        self.n_tokens = 0

    def add(self, ids: np.ndarray, lengths: np.ndarray) -> None:
        """Append the documents of one chunk: their ids back to back and each one's length."""
        self._tmp.write(np.ascontiguousarray(ids, dtype=np.int32).tobytes())
        self._lengths.append(np.asarray(lengths, dtype=np.int64))
        self.n_tokens += len(ids)

    def finish(self, lookup: np.ndarray | None, labels: np.ndarray | None) -> TokenizedSplit:
        """Write ``{split}_ids.npy`` (through ``lookup`` if given), offsets and labels."""
        self._tmp.close()
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, np.int64)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        temp = np.memmap(self._tmp_path, dtype=np.int32, mode="r") if self.n_tokens else np.zeros(0, np.int32)
        out = np.lib.format.open_memmap(ids_path(self.folder, self.split), mode="w+", dtype=np.int32, shape=(self.n_tokens,))
        for start in range(0, self.n_tokens, _WRITE_BLOCK):
            block = temp[start : start + _WRITE_BLOCK]
            out[start : start + len(block)] = block if lookup is None else lookup[block]
        out.flush()
        del out, temp
        self._tmp_path.unlink()
        save_npy(offsets_path(self.folder, self.split), offsets)
        if labels is not None:
            save_npy(labels_path(self.folder, self.split), np.asarray(labels, dtype=np.int64))
        return load_split(self.folder, self.split, mmap=True)
