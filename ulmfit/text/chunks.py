"""What encoders hand on: chunks of encoded documents in an encoder's own numbering, and the
translation of that numbering into another (a vocabulary, the tokenize stage's global numbering).

spaCy encoders number tokens as they first see them, in worker processes, before a vocabulary
exists; each chunk lists the tokens it numbered first, so a reader elsewhere can follow the
numbering (:class:`IdTranslator`) without the encoder's state.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .special import SPECIAL_TOKENS


@dataclass
class EncodedChunk:
    """Documents of one chunk, back to back; each starts with ``xxbos``.

    ``new_tokens`` is None when ``ids`` are final vocabulary ids (SentencePiece). Otherwise ``ids``
    are local to the encoder identified by ``source`` and ``new_tokens`` lists the token strings
    that this chunk numbered for the first time, continuing that encoder's numbering.
    """

    ids: np.ndarray
    lengths: np.ndarray
    n_bytes: int
    source: int
    new_tokens: list[str] | None


def fit_array(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` grown (doubling) to hold at least ``size`` items."""
    if size <= len(array):
        return array
    grown = np.zeros(max(size, 2 * len(array)), dtype=array.dtype)
    grown[: len(array)] = array
    return grown


class TokenNumbering:
    """Numbers distinct token strings in the order they are first seen, special tokens first."""

    def __init__(self) -> None:
        self.tokens: list[str] = list(SPECIAL_TOKENS)
        self._ids = {t: i for i, t in enumerate(self.tokens)}

    def id(self, token: str) -> int:
        """The token's number, giving it the next one if it is new."""
        number = self._ids.get(token)
        if number is None:
            number = self._ids[token] = len(self.tokens)
            self.tokens.append(token)
        return number


class IdTranslator:
    """Follows one encoder's local numbering and maps it into another one (a vocab, a table)."""

    def __init__(self, target_id: Callable[[str], int]):
        self._target_id = target_id
        self._lookup = np.arange(len(SPECIAL_TOKENS), dtype=np.int32)
        self._size = len(SPECIAL_TOKENS)

    def __call__(self, chunk: EncodedChunk) -> np.ndarray:
        if chunk.new_tokens is None:
            return chunk.ids
        need = self._size + len(chunk.new_tokens)
        self._lookup = fit_array(self._lookup, need)
        self._lookup[self._size : need] = [self._target_id(t) for t in chunk.new_tokens]
        self._size = need
        return self._lookup[chunk.ids]
