"""Shared test helpers: tokenized folders in the on-disk format, built from real text.

``write_tokenized`` writes what ``ulmfit tokenize`` would (ids/offsets/labels per split,
vocab.json, tokenizer.json) from documents that are already lists of tokens, so tests of later
stages do not depend on the tokenizer. The ``ptb_tok`` fixture is a small PTB excerpt in it.
"""
from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
import torch

from locations import data_root
from ulmfit.stages.tokenize import tokenize
from ulmfit.text.special import BOS_ID, SPECIAL_TOKENS, UNK_ID

# Test models are tiny and the machine is shared: one thread avoids oversubscription, which on a
# loaded 2-core machine made small training runs 10-20x slower.
torch.set_num_threads(1)


def read_lines(relative: str, n: int, start: int = 0) -> list[str]:
    """``n`` non-empty lines of a file under the data root from line ``start``; skips the test if absent."""
    path = data_root() / relative
    if not path.exists():
        pytest.skip(f"{path} not available")
    lines = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= start and line.strip():
                lines.append(line.strip())
            if len(lines) >= n:
                break
    return lines


def write_tokenized(out: Path, splits: dict[str, Sequence[Sequence[str]]],
                    labels: dict[str, Sequence[int]] | None = None, classes: Sequence[str] | None = None,
                    tokenizer: dict | None = None, max_vocab: int | None = None) -> Path:
    """Write a tokenized folder for documents given as token lists (BOS is prepended here).

    The vocabulary is the special tokens then the ``train`` tokens by decreasing frequency (ties
    by first appearance); other tokens become UNK.
    """
    out.mkdir(parents=True, exist_ok=True)
    counts = collections.Counter(tok for doc in splits["train"] for tok in doc)
    words = [w for w, _ in counts.most_common(max_vocab) if w not in SPECIAL_TOKENS]
    itos = SPECIAL_TOKENS + words
    stoi = {w: i for i, w in enumerate(itos)}
    for split, docs in splits.items():
        encoded = [[BOS_ID] + [stoi.get(t, UNK_ID) for t in doc] for doc in docs]
        ids = np.array([i for doc in encoded for i in doc], dtype=np.int32)
        offsets = np.concatenate([[0], np.cumsum([len(d) for d in encoded])]).astype(np.int64)
        np.save(out / f"{split}_ids.npy", ids)
        np.save(out / f"{split}_offsets.npy", offsets)
        if labels is not None:
            np.save(out / f"{split}_labels.npy", np.asarray(labels[split], dtype=np.int64))
    (out / "vocab.json").write_text(json.dumps(itos), encoding="utf-8")
    (out / "tokenizer.json").write_text(json.dumps(tokenizer or {"kind": "spacy", "lang": "en"}),
                                        encoding="utf-8")
    if classes is not None:
        (out / "classes.json").write_text(json.dumps(list(classes)), encoding="utf-8")
    return out


def ptb_docs(split: str, n_lines: int, lines_per_doc: int = 5) -> list[list[str]]:
    """PTB lines as documents of ``lines_per_doc`` sentences each, ``<eos>`` between sentences."""
    lines = read_lines(f"ptb/ptb.{split}.txt", n_lines)
    return [[tok for line in lines[i:i + lines_per_doc] for tok in line.split() + ["<eos>"]]
            for i in range(0, len(lines), lines_per_doc)]


@pytest.fixture(scope="session")
def ptb_tok(tmp_path_factory) -> Path:
    """A small tokenized PTB folder: ~67k training tokens, ~7k validation and test tokens."""
    return write_tokenized(tmp_path_factory.mktemp("ptb") / "tok", {
        "train": ptb_docs("train", 3000),
        "valid": ptb_docs("valid", 300),
        "test": ptb_docs("test", 300),
    })


@pytest.fixture(scope="session")
def trec_tok(tmp_path_factory) -> Path:
    """All of TREC-6 (5452 training, 500 test questions), tokenized with spaCy; no valid split."""
    trec = data_root() / "trec"
    if not (trec / "train_5500.label").exists():
        pytest.skip(f"{trec} not available")
    out = tmp_path_factory.mktemp("trec") / "tok"
    tokenize(str(trec / "train_5500.label"), test=str(trec / "TREC_10.label"), out=str(out), format="trec",
             encoding="latin-1", workers=1)
    return out
