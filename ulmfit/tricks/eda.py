"""EDA, "easy data augmentation" (Wei & Zou 2019), on the token ids of training batches.

Each document of a training batch is, with probability ``p``, changed by one of four operations
chosen at random: swap two words (repeatedly), delete words, insert synonyms of its words at
random places, replace words by synonyms; about ``max(1, alpha x words)`` words each time.
Special tokens (``xxbos``, ``xxmaj``, padding...) are never moved, deleted, replaced or
inserted, and a document keeps at least one word. No thesaurus is available offline, so a
word's synonyms are its nearest neighbours by cosine similarity in the model's own embedding.

The operations are pure functions of (tokens, number of changes, generator, ``protected``: ids
below it are special), reused by test-time augmentation (:mod:`ulmfit.classifier.tta`).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import Tensor

from ..classifier.sampling import pad_batch
from ..text.special import PAD_ID, SPECIAL_TOKENS
from ..training import Callback, Trainer
from . import trick

N_SPECIAL = len(SPECIAL_TOKENS)  # ids below this are special tokens
N_NEIGHBOURS = 5                 # synonyms kept per token
NEIGHBOUR_CHUNK = 512            # rows of the similarity matrix computed at a time


def word_positions(tokens: np.ndarray, protected: int) -> np.ndarray:
    """Positions of the tokens that are words (ids ``>= protected``), the only ones EDA touches."""
    return np.flatnonzero(tokens >= protected)


def random_swap(tokens: np.ndarray, n: int, rng: np.random.Generator, protected: int) -> np.ndarray:
    """``n`` swaps of two random words; special tokens keep their positions."""
    out = tokens.copy()
    words = word_positions(tokens, protected)
    if len(words) < 2:
        return out
    for a, b in words[rng.integers(len(words), size=(n, 2))]:
        out[a], out[b] = out[b], out[a]
    return out


def random_deletion(tokens: np.ndarray, n: int, rng: np.random.Generator, protected: int) -> np.ndarray:
    """Deletes ``n`` distinct random words, but never the last one left; special tokens all stay."""
    words = word_positions(tokens, protected)
    n = min(n, len(words) - 1)
    if n <= 0:
        return tokens.copy()
    return np.delete(tokens, rng.choice(words, n, replace=False))


def synonym_replacement(tokens: np.ndarray, n: int, rng: np.random.Generator, protected: int,
                        neighbours: np.ndarray) -> np.ndarray:
    """Replaces ``n`` distinct random words, each by one of its ``neighbours`` (a row per token id)."""
    out = tokens.copy()
    words = word_positions(tokens, protected)
    picked = rng.choice(words, min(n, len(words)), replace=False)
    out[picked] = neighbours[tokens[picked], rng.integers(neighbours.shape[1], size=len(picked))]
    return out


def random_insertion(tokens: np.ndarray, n: int, rng: np.random.Generator, protected: int,
                     neighbours: np.ndarray) -> np.ndarray:
    """Inserts ``n`` synonyms of random words at random places strictly inside the document.

    Nothing goes before its first or after its last token, so ``xxbos`` stays at its end of the
    document whichever way it is read (backward classifiers see it reversed).
    """
    words = word_positions(tokens, protected)
    if len(words) == 0:
        return tokens.copy()
    sources = tokens[rng.choice(words, n)]
    synonyms = neighbours[sources, rng.integers(neighbours.shape[1], size=n)]
    slots = rng.integers(1, max(len(tokens), 2), size=n)  # before token 1..len-1 (a lone word: after it)
    return np.insert(tokens, slots, synonyms)


def augment(tokens: np.ndarray, rng: np.random.Generator, alpha: float, neighbours: np.ndarray,
            protected: int = N_SPECIAL) -> np.ndarray:
    """One EDA operation chosen at random, changing about ``max(1, alpha x words)`` words."""
    n = max(1, round(alpha * len(word_positions(tokens, protected))))
    operations = (random_swap, random_deletion, partial(random_insertion, neighbours=neighbours),
                  partial(synonym_replacement, neighbours=neighbours))
    return operations[rng.integers(len(operations))](tokens, n, rng, protected)


def augment_batch(tokens: Tensor, lengths: Tensor, rng: np.random.Generator, p: float, alpha: float,
                  neighbours: np.ndarray) -> tuple[Tensor, Tensor]:
    """A right-padded batch with each document augmented with probability ``p``, right-padded again
    with its new lengths (on the batch's device)."""
    docs = [row[:n] for row, n in zip(tokens.cpu().numpy(), lengths.tolist())]
    docs = [augment(doc, rng, alpha, neighbours) if rng.random() < p else doc for doc in docs]
    new_tokens, new_lengths = pad_batch(docs, PAD_ID)
    return new_tokens.to(tokens.device), new_lengths.to(lengths.device)


@torch.no_grad()
def nearest_neighbours(embedding: Tensor, k: int = N_NEIGHBOURS, protected: int = N_SPECIAL,
                       chunk: int = NEIGHBOUR_CHUNK) -> np.ndarray:
    """[vocab, k] int64: for every token the ``k`` words most cosine-similar to it in ``embedding``,
    most similar first, never itself nor a special token.

    The similarities are computed ``chunk`` rows at a time, so a vocab x vocab matrix is never held.
    """
    vocab = embedding.shape[0]
    k = min(k, vocab - protected - 1)
    if k < 1:
        raise ValueError(f"a vocabulary of {vocab} tokens has no other word to use as a synonym")
    unit = torch.nn.functional.normalize(embedding.detach().float(), dim=1)
    tables = []
    for start in range(0, vocab, chunk):
        rows = torch.arange(start, min(start + chunk, vocab), device=unit.device)
        similarity = unit[rows] @ unit.T
        similarity[:, :protected] = -torch.inf
        similarity[rows - start, rows] = -torch.inf
        tables.append(similarity.topk(k, dim=1).indices.cpu())
    return torch.cat(tables).numpy()


class EDAugment(Callback):
    """Replaces every training batch's inputs by an EDA-augmented copy; evaluation is untouched.

    The generator of a batch is seeded with the run's seed (the one torch was seeded with, which a
    resume restores) and the step, and the synonym table, computed from the embedding at the start
    of the run, is saved with the checkpoint: a resumed run augments exactly as the original did.
    """

    order = -10  # before the tricks that read the inputs

    def __init__(self, p: float, alpha: float):
        self.p, self.alpha = p, alpha
        self.neighbours: np.ndarray | None = None

    def before_fit(self, trainer: Trainer) -> None:
        if self.neighbours is None:
            self.neighbours = nearest_neighbours(trainer.model.encoder.embedding.weight)

    def before_batch(self, trainer: Trainer) -> None:
        if trainer.training:
            rng = np.random.default_rng([torch.initial_seed(), trainer.step])
            trainer.inputs = augment_batch(*trainer.inputs, rng, self.p, self.alpha, self.neighbours)

    def state_dict(self) -> dict:
        return {} if self.neighbours is None else {"neighbours": torch.from_numpy(self.neighbours)}

    def load_state_dict(self, state: dict) -> None:
        if "neighbours" in state:
            self.neighbours = state["neighbours"].cpu().numpy()


@trick("eda", stages=("classifier",))
@dataclass
class EDA:
    """EDA: random swap, deletion, insertion and synonym (embedding neighbour) replacement of words."""

    p: float = 0.5       # probability that a training document is augmented
    alpha: float = 0.1   # fraction of its words changed (at least one)

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {self.p}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")

    def callbacks(self) -> list[Callback]:
        return [EDAugment(self.p, self.alpha)]
