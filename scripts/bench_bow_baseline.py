#!/usr/bin/env python3
"""A bag-of-words floor for a classifier's test error (not a test).

Logistic regression on binary bag-of-words features of a tokenized folder, trained on exactly the
documents ``ulmfit train --seed S [--max_train N]`` trains on and validated on the same held-out
ones; the weight decay is picked on validation, the test error is printed for it. A ULMFiT
classifier that does not beat this number has learned less from its LM than a word list gives.

    python scripts/bench_bow_baseline.py runs/cpu/trec/tok
    python scripts/bench_bow_baseline.py runs/cpu/imdb/2000u2000/tok --max_tokens 400
    python scripts/bench_bow_baseline.py runs/cpu/trec/tok --max_train 100 --seed 1
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ulmfit.classifier.selection import labelled_docs  # noqa: E402
from ulmfit.errors import UlmfitError  # noqa: E402
from ulmfit.text.corpus import UNLABELLED, TokenizedSplit, load_split, require_classes  # noqa: E402

WEIGHT_DECAYS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def bag_of_words(split: TokenizedSplit, docs: np.ndarray, vocab_size: int, max_tokens: int | None) -> torch.Tensor:
    """Sparse [len(docs), vocab_size] matrix: 1 where the word occurs in the document's first tokens."""
    rows, cols = [], []
    for row, doc in enumerate(docs):
        words = np.unique(split.doc(doc)[:max_tokens])
        rows.append(np.full(len(words), row))
        cols.append(words)
    index = torch.from_numpy(np.stack([np.concatenate(rows), np.concatenate(cols)]).astype(np.int64))
    return torch.sparse_coo_tensor(index, torch.ones(index.shape[1]), (len(docs), vocab_size),
                                   check_invariants=True).coalesce()


def logits(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return torch.sparse.mm(x, weight) + bias


def fit(x: torch.Tensor, y: torch.Tensor, n_classes: int, weight_decay: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of an L2-penalized multinomial logistic regression (L-BFGS, full batch)."""
    weight = torch.zeros(x.shape[1], n_classes, requires_grad=True)
    bias = torch.zeros(n_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=300, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits(x, weight, bias), y) + weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def error_rate(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> float:
    return (logits(x, weight, bias).argmax(dim=1) != y).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="a folder written by `ulmfit tokenize` with labels and a test split")
    parser.add_argument("--seed", type=int, default=0, help="the classifier's --seed (which documents validate)")
    parser.add_argument("--max_train", type=int, default=None, help="the classifier's --max_train (low-shot)")
    parser.add_argument("--max_tokens", type=int, default=None, help="the classifier's --max_tokens")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"error: {args.data}: no such folder")
    try:
        classes = require_classes(args.data, "the baseline needs labelled data")
        chosen = labelled_docs(args.data, len(classes), args.seed, args.max_train)
        test = load_split(args.data, "test")
    except UlmfitError as error:
        sys.exit(f"error: {error}")
    test_docs = np.flatnonzero(test.labels != UNLABELLED) if test.labels is not None else np.array([], int)
    if not len(test_docs):
        sys.exit(f"error: {args.data}: the test split has no labelled documents")
    vocab_size = 1 + int(max(chosen.train.ids.max(), chosen.valid.ids.max(), test.ids.max()))

    def features(split: TokenizedSplit, docs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return bag_of_words(split, docs, vocab_size, args.max_tokens), torch.from_numpy(split.labels[docs].astype(np.int64))

    train, valid, test_set = (features(chosen.train, chosen.train_docs), features(chosen.valid, chosen.valid_docs),
                              features(test, test_docs))
    best = None
    for weight_decay in WEIGHT_DECAYS:
        weight, bias = fit(*train, len(classes), weight_decay)
        valid_error = error_rate(*valid, weight, bias)
        print(f"weight decay {weight_decay:g}: valid error {100 * valid_error:.2f}%")
        if best is None or valid_error < best[0]:
            best = (valid_error, weight_decay, error_rate(*test_set, weight, bias))
    valid_error, weight_decay, test_error = best
    print(f"bag-of-words logistic regression on {args.data}: {len(chosen.train_docs)} train, "
          f"{len(chosen.valid_docs)} valid, {len(test_docs)} test documents; weight decay {weight_decay:g} "
          f"(best valid {100 * valid_error:.2f}%): test error {100 * test_error:.2f}%")


if __name__ == "__main__":
    main()
