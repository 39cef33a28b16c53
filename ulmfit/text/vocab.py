"""Token vocabulary: id <-> token string, special tokens first at their fixed ids."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from ..artefacts import VOCAB
from ..errors import UlmfitError
from ..files import read_json, write_json
from .special import SPECIAL_TOKENS, UNK_ID

DEFAULT_MAX_VOCAB = 60000
DEFAULT_MIN_FREQ = 2


class Vocab:
    """``itos[i]`` is the token of id i; ids ``0..8`` are :data:`SPECIAL_TOKENS` in every vocab."""

    def __init__(self, itos: list[str], source: str = "vocab"):
        if list(itos[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise UlmfitError(f"{source}: the first ids must be the special tokens {SPECIAL_TOKENS}")
        self.itos = list(itos)
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise UlmfitError(f"{source}: vocabulary holds duplicate tokens")

    @classmethod
    def from_counts(
        cls,
        counts: Mapping[str, int],
        max_vocab: int = DEFAULT_MAX_VOCAB,
        min_freq: int = DEFAULT_MIN_FREQ,
    ) -> "Vocab":
        """Specials, then the most frequent tokens seen at least ``min_freq`` times.

        ``max_vocab`` counts the special tokens too, so it is the embedding size. Ties are broken
        by the token text so the same counts always give the same ids.
        """
        if max_vocab < len(SPECIAL_TOKENS):
            raise UlmfitError(f"max_vocab={max_vocab} leaves no room for the {len(SPECIAL_TOKENS)} special tokens")
        specials = set(SPECIAL_TOKENS)
        kept = [(-c, s) for s, c in counts.items() if c >= min_freq and s not in specials]
        kept.sort()
        room = max_vocab - len(SPECIAL_TOKENS)
        return cls(SPECIAL_TOKENS + [s for _, s in kept[:room]])

    def __len__(self) -> int:
        return len(self.itos)

    def numericalize(self, tokens: Iterable[str]) -> np.ndarray:
        """Token strings -> int32 ids; tokens outside the vocabulary become ``xxunk`` (0)."""
        get = self.stoi.get
        return np.fromiter((get(t, UNK_ID) for t in tokens), dtype=np.int32)

    def textify(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]

    def save(self, folder: str | os.PathLike) -> None:
        write_json(Path(folder) / VOCAB, self.itos)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "Vocab":
        """Load ``vocab.json`` from a folder (or the file itself)."""
        path = Path(folder)
        if path.is_dir() or not path.suffix:
            path = path / VOCAB
        itos = read_json(path)
        if not isinstance(itos, list) or not all(isinstance(s, str) for s in itos):
            raise UlmfitError(f"{path}: expected a JSON list of token strings")
        return cls(itos, source=str(path))
