#!/usr/bin/env python3
"""The TF-IDF floor for a classifier's test error (not a test): the strongest simple baseline.

TF-IDF of word 1-2-grams and of character 2-5-grams (within word boundaries), both with sublinear
term frequencies, then an L2 logistic regression with C=10, fitted on the whole training input
and scored on the test input. The raw files are read as ``ulmfit tokenize`` reads them (same
formats and options), so the split is the set's own; the floor uses all labelled training
documents, more than the classifier, which holds some out for validation. It needs scikit-learn
(``pip install -e '.[dev]'``), a well-kept implementation of exactly these features and solver.

    python scripts/bench_tfidf_baseline.py ../shared/data/cr/train.csv ../shared/data/cr/test.csv
    python scripts/bench_tfidf_baseline.py ../shared/data/trec/train_5500.label \\
        ../shared/data/trec/TREC_10.label --format trec --encoding latin-1
    python scripts/bench_tfidf_baseline.py ../shared/data/20news/20news-bydate.tar.xz:20news-bydate-train \\
        ../shared/data/20news/20news-bydate.tar.xz:20news-bydate-test --encoding latin-1
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ulmfit.errors import UlmfitError  # noqa: E402
from ulmfit.text.readers import read_documents  # noqa: E402

C = 10.0


def labelled(spec: str, options: dict) -> tuple[list[str], list[str]]:
    """Texts and labels of the labelled documents of one input."""
    docs = [(text, label) for text, label in read_documents(spec, **options) if label is not None]
    if not docs:
        raise UlmfitError(f"{spec}: no labelled document")
    texts, labels = zip(*docs)
    return list(texts), list(labels)


def tfidf_error(train: tuple[list[str], list[str]], test: tuple[list[str], list[str]], min_df: int = 1) -> float:
    """Test error rate of TF-IDF word 1-2-grams + char 2-5-grams and logistic regression; n-grams
    in fewer than ``min_df`` training documents are left out (on long documents most of the memory)."""
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    shared = {"sublinear_tf": True, "min_df": min_df, "dtype": np.float32}
    vectorizers = (TfidfVectorizer(ngram_range=(1, 2), **shared),
                   TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), **shared))
    x_train = hstack([v.fit_transform(train[0]) for v in vectorizers]).tocsr()
    x_test = hstack([v.transform(test[0]) for v in vectorizers]).tocsr()
    model = LogisticRegression(C=C, max_iter=2000).fit(x_train, train[1])
    wrong = sum(p != y for p, y in zip(model.predict(x_test), test[1]))
    return wrong / len(test[1])


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
    args = parser.parse_args()
    options = {"format": args.format, "encoding": args.encoding, "text_field": args.text_field,
               "label_field": args.label_field}
    started = time.perf_counter()
    try:
        train, test = labelled(args.train, options), labelled(args.test, options)
    except UlmfitError as error:
        sys.exit(f"error: {error}")
    unseen = sorted(set(test[1]) - set(train[1]))
    if unseen:
        sys.exit(f"error: {args.test}: labels not in the training input: {', '.join(unseen[:5])}")
    error = tfidf_error(train, test, args.min_df)
    print(f"TF-IDF word 1-2 + char 2-5 grams (min_df {args.min_df}), logistic regression C={C:g}: "
          f"{len(train[1])} train, {len(test[1])} test documents: test error {100 * error:.2f}% ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
