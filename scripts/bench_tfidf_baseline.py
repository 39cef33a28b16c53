#!/usr/bin/env python3
"""The TF-IDF floor for a classifier's test error (not a test): the strongest simple baseline.

TF-IDF of word 1-2-grams and of character 2-5-grams (within word boundaries), both with sublinear
term frequencies, then an L2 logistic regression with C=10, fitted on the whole training input
and scored on the test input. The raw files are read as ``ulmfit tokenize`` reads them (same
formats and options), so the split is the set's own; the floor uses all labelled training
documents, more than the classifier, which holds some out for validation. With ``--held_out_of
TOKENIZED`` it fits on the documents a classifier of ``--seed`` trains on instead, and also scores
the ones that classifier holds out: its validation error, next to the classifier's own. It needs
scikit-learn (``pip install -e '.[dev]'``), a well-kept implementation of exactly these features and
solver.

    python scripts/bench_tfidf_baseline.py ../shared/data/cr/train.csv ../shared/data/cr/test.csv
    python scripts/bench_tfidf_baseline.py ../shared/data/trec/train_5500.label \\
        ../shared/data/trec/TREC_10.label --format trec --encoding latin-1
    python scripts/bench_tfidf_baseline.py ../shared/data/20news/20news-bydate.tar.xz:20news-bydate-train \\
        ../shared/data/20news/20news-bydate.tar.xz:20news-bydate-test --encoding latin-1
    python scripts/bench_tfidf_baseline.py ../shared/data/cr/train.csv ../shared/data/cr/test.csv \\
        --held_out_of runs/cpu/cr/tok --seed 0
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ulmfit.classifier.selection import labelled_docs  # noqa: E402
from ulmfit.errors import UlmfitError  # noqa: E402
from ulmfit.text.corpus import available_splits, require_classes  # noqa: E402
from ulmfit.text.readers import read_documents  # noqa: E402

C = 10.0


def labelled(spec: str, options: dict) -> tuple[list[str], list[str]]:
    """Texts and labels of the labelled documents of one input."""
    docs = [(text, label) for text, label in read_documents(spec, **options) if label is not None]
    if not docs:
        raise UlmfitError(f"{spec}: no labelled document")
    texts, labels = zip(*docs)
    return list(texts), list(labels)


def classifier_split(spec: str, options: dict, tokenized: Path, seed: int
                     ) -> tuple[tuple[list[str], list[str]], tuple[list[str], list[str]]]:
    """The documents of ``spec`` that ``ulmfit train --data tokenized --seed seed`` trains on and
    the ones it holds out for validation, as (texts, labels) each; ``tokenized`` must hold
    ``spec``'s documents in their order (``ulmfit tokenize`` of the same input)."""
    if "valid" in available_splits(tokenized):
        raise UlmfitError(f"{tokenized}: has a valid split of its own; the classifier holds out none of the "
                          f"training input, so score that valid input as the test input instead")
    classes = require_classes(tokenized, "--held_out_of needs a labelled tokenized folder")
    chosen = labelled_docs(tokenized, len(classes), seed)
    docs = list(read_documents(spec, **options))
    names = [None if label < 0 else classes[label] for label in chosen.train.labels]
    if len(docs) != len(names) or any(label != name for (_, label), name in zip(docs, names)):
        raise UlmfitError(f"{tokenized}: does not hold the documents of {spec} in their order "
                          f"(tokenize that input, with the same read options, into it)")
    return tuple(([docs[i][0] for i in part], [docs[i][1] for i in part])
                 for part in (chosen.train_docs, chosen.valid_docs))


def tfidf_errors(train: tuple[list[str], list[str]], tests: list[tuple[list[str], list[str]]],
                 min_df: int = 1) -> list[float]:
    """Error rates on each of ``tests`` of TF-IDF word 1-2-grams + char 2-5-grams and logistic
    regression; n-grams in fewer than ``min_df`` training documents are left out (on long
    documents most of the memory)."""
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    shared = {"sublinear_tf": True, "min_df": min_df, "dtype": np.float32}
    vectorizers = (TfidfVectorizer(ngram_range=(1, 2), **shared),
                   TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), **shared))
    x_train = hstack([v.fit_transform(train[0]) for v in vectorizers]).tocsr()
    model = LogisticRegression(C=C, max_iter=2000).fit(x_train, train[1])
    errors = []
    for texts, labels in tests:
        predicted = model.predict(hstack([v.transform(texts) for v in vectorizers]).tocsr())
        errors.append(sum(p != y for p, y in zip(predicted, labels)) / len(labels))
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("train", help="training input, as for `ulmfit tokenize`")
    parser.add_argument("test", help="test input, same format")
    parser.add_argument("--format", default=None)
    parser.add_argument("--encoding", default="utf-8")
    parser.add_argument("--text_field", default="text")
    parser.add_argument("--label_field", default=None)
    parser.add_argument("--min_df", type=int, default=1,
                        help="keep n-grams of at least this many training documents (20 Newsgroups: 2 keeps "
                             "memory under 16 GB)")
    parser.add_argument("--held_out_of", type=Path, default=None, metavar="TOKENIZED",
                        help="fit on the training documents that `ulmfit train --data TOKENIZED --seed SEED` "
                             "trains on (TOKENIZED: `ulmfit tokenize` of the training input) and also score "
                             "the ones it holds out")
    parser.add_argument("--seed", type=int, default=0, help="the classifier's seed, with --held_out_of")
    args = parser.parse_args()
    options = {"format": args.format, "encoding": args.encoding, "text_field": args.text_field,
               "label_field": args.label_field}
    started = time.perf_counter()
    try:
        test = labelled(args.test, options)
        if args.held_out_of is None:
            train, held_out = labelled(args.train, options), None
        else:
            train, held_out = classifier_split(args.train, options, args.held_out_of, args.seed)
    except UlmfitError as error:
        sys.exit(f"error: {error}")
    unseen = sorted(set(test[1]) - set(train[1]))
    if unseen:
        sys.exit(f"error: {args.test}: labels not in the training input: {', '.join(unseen[:5])}")
    errors = tfidf_errors(train, [test] if held_out is None else [held_out, test], args.min_df)
    held = "" if held_out is None else \
        f"{len(held_out[1])} held out (seed {args.seed}): validation error {100 * errors[0]:.2f}%, "
    print(f"TF-IDF word 1-2 + char 2-5 grams (min_df {args.min_df}), logistic regression C={C:g}: "
          f"{len(train[1])} train, {held}{len(test[1])} test documents: test error {100 * errors[-1]:.2f}% "
          f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
