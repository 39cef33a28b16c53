"""The ``evaluate``, ``predict`` and ``ensemble`` stages: a trained classifier applied to data.

``evaluate`` adds to the classifier folder ``eval_<split>.json`` (the report),
``confusion_<split>.png`` and ``probs_<split>.npy``; ``ensemble`` writes ``ensemble_<split>.json`` and
``ensemble_probs_<split>.npy``; ``predict`` writes one CSV row or JSON line per input document.
Evaluation and prediction run in float32, whatever precision the classifier trained in.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import json
import sys
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from ..artefacts import (CONFIG, CONFUSION_PLOT, ENSEMBLE_PROBS, ENSEMBLE_REPORT, EVAL_PROBS, EVAL_REPORT, METRICS,
                         MODEL)
from ..classifier.head import TextClassifier
from ..classifier.metrics import average_probabilities, classification_report, plot_confusion_matrix
from ..classifier.predict import predict_probs
from ..classifier.selection import check_labels
from ..classifier.tta import tta_neighbours, tta_probs
from ..errors import UlmfitError
from ..files import atomic_path, read_json, save_npy, write_json
from ..model_folder import check_data_fits, check_same_classes
from ..text.corpus import UNLABELLED, TokenizedSplit, ids_path, load_split, offsets_path
from ..text.readers import DocumentSource, ReadOptions
from ..text.tokenizers import load_tokenizer
from .classify import ClassifierConfig, load_classifier
from .common import resolve_device

PREDICT_CHUNK_DOCS = 4096  # documents tokenized and classified at a time by ``predict``

def evaluate(model: str, data: str, split: str = "test", bs: int | None = None, tta: int = 0,
             device: str = "auto") -> dict:
    """Score a classifier on a labelled split: accuracy, error rate, macro-F1, per-class precision
    and recall, confusion matrix.

    Writes ``<model>/eval_<split>.json`` (the report), ``<model>/confusion_<split>.png`` and
    ``<model>/probs_<split>.npy`` (float32 [documents, classes], in the split's order; unlabelled
    documents get probabilities too but are not scored). Prints a summary to stderr.

    Args:
        model: classifier folder written by ``ulmfit train``.
        data: tokenized folder with the same tokenizer, vocabulary and classes as the model's.
        split: train, valid or test.
        bs: documents per batch (default: the training batch size).
        tta: test-time augmentation: average the probabilities of every document and of this many
            copies of it changed by EDA operations (see ulmfit.classifier.tta; averaging forward and
            backward classifiers is ``ulmfit ensemble``).
        device: "cpu", "cuda" or "auto" (cuda if available).

    Returns:
        The report, as written to eval_<split>.json.
    """
    model_dir, data_dir = Path(model), Path(data)
    _, classes, split_data, probs = _model_probs(model_dir, data_dir, split, bs, resolve_device(device), tta)
    probs_path = model_dir / EVAL_PROBS.format(split=split)
    save_npy(probs_path, probs.astype(np.float32))
    report = {"model": str(model_dir), "data": str(data_dir), "split": split, "tta": tta,
              **_report(np.asarray(split_data.labels), probs, classes),
              "inputs_sha256": _inputs_sha256(model_dir, data_dir, split), "probs_sha256": _sha256(probs_path)}
    plot_confusion_matrix(np.array(report["confusion_matrix"]), classes, model_dir / CONFUSION_PLOT.format(split=split))
    write_json(model_dir / EVAL_REPORT.format(split=split), report)
    print(format_report(report), file=sys.stderr)
    return report


def predict(model: str, input: str, output: str, format: str | None = None, encoding: str = "utf-8",
            text_field: str = ReadOptions.text_field, doc_per: str = ReadOptions.doc_per,
            output_format: str | None = None, bs: int | None = None, tta: int = 0, device: str = "auto") -> dict:
    """Classify raw text with a trained classifier, its own tokenizer and vocabulary.

    The input is streamed in chunks of documents; the output has one row per document, in the
    input's order: the predicted label and the probability of every class. Empty documents are
    skipped, as in ``ulmfit tokenize``.

    Args:
        model: classifier folder written by ``ulmfit train``.
        input: a file in any format ``ulmfit tokenize`` reads (txt, csv, tsv, jsonl, trec, a
            folder or tar tree, possibly compressed), or "-" for standard input (one document
            per line; write ``--input=-``, fire reads a lone "-" as a separator).
        output: CSV (columns ``label``, ``prob_<class>``...) or JSONL (``{"label", "probs"}``) file,
            written only once complete.
        format: the input's format; default: inferred from its name.
        encoding: text encoding of the input.
        text_field: CSV/TSV column or JSONL key holding the text.
        doc_per: txt: "line" (one document per line) or "file".
        output_format: "csv" or "jsonl"; default: from the output's name.
        bs: documents per batch (default: the training batch size).
        tta: test-time augmentation with this many augmented copies of every document (see evaluate).
        device: "cpu", "cuda" or "auto" (cuda if available).

    Returns:
        ``{"documents", "output", "counts", "tta"}``: how many documents went to which label.
    """
    model_dir = Path(model)
    out_format = output_format or _output_format(output)
    cfg, classes, clf = load_classifier(model_dir)
    tokenizer = load_tokenizer(model_dir)
    dev = resolve_device(device)
    clf.to(dev)
    neighbours = tta_neighbours(clf, tta)
    counts = np.zeros(len(classes), dtype=np.int64)
    with atomic_path(output) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = _row_writer(f, out_format, classes)
        for texts in _chunks(_input_texts(input, ReadOptions(format=format, encoding=encoding, text_field=text_field,
                                                                  doc_per=doc_per)), PREDICT_CHUNK_DOCS):
            probs = _tta_predict(clf, tokenizer.encode_docs(texts), cfg, bs, dev, tta, neighbours,
                                 first=int(counts.sum()))
            for row in probs:
                writer(row)
            counts += np.bincount(probs.argmax(1), minlength=len(classes))
    return {"documents": int(counts.sum()), "output": str(output),
            "counts": {name: int(n) for name, n in zip(classes, counts)}, "tta": tta}


def ensemble(models: str | Sequence[str], data: str | Sequence[str], split: str = "test", out: str | None = None,
             bs: int | None = None, device: str = "auto") -> dict:
    """Average the class probabilities of several classifiers (e.g. forward and backward, or
    several seeds) and score each model and the average on a labelled split.

    Each model reads the documents in its own direction. Models with different tokenizers (words
    and subwords) each read their own tokenized folder of the same raw split. Writes
    ``ensemble_<split>.json`` and ``ensemble_probs_<split>.npy`` to ``out``. A folder given as
    ``out`` becomes the ensemble's run, shaped like a classifier's evaluated run (for ``ulmfit
    report``): ``eval_<split>.json`` (the ensemble's report, as ``evaluate`` writes it),
    ``config.json`` (the models, data and split) and ``metrics.json`` (the models' training times
    summed). A model that ``evaluate`` scored on the same split is not scored again: its saved
    probabilities are read back while its weights, config and the split's ids are unchanged.

    Args:
        models: classifier folders, comma-separated (or a list).
        data: tokenized folder with the models' tokenizer, vocabulary and classes; or one folder
            per model, comma-separated in the models' order, each tokenized from the same raw
            split (same documents, same order, same labels).
        split: train, valid or test.
        out: folder for the results (not one of the models'); default: the first model's folder,
            without the run's files.
        bs: documents per batch (default: each model's training batch size).
        device: "cpu", "cuda" or "auto" (cuda if available).

    Returns:
        ``{"models": [per-model summary], "ensemble": full report}``, as written to the JSON.
    """
    names = _folder_list(models)
    if not names:
        raise UlmfitError("--models: give at least one classifier folder")
    data_dirs = _folder_list(data)
    if len(data_dirs) == 1:
        data_dirs *= len(names)
    if len(data_dirs) != len(names):
        raise UlmfitError(f"--data: {len(data_dirs)} tokenized folders for {len(names)} models; "
                          f"give one for all or one per model")
    if out and any(Path(out).resolve() == Path(name).resolve() for name in names):
        raise UlmfitError(f"--out: {out} is one of the models; give a folder of its own (or none)")
    dev = resolve_device(device)
    members, all_probs, classes, labels = [], [], None, None
    for name, data_dir in zip(names, data_dirs):
        cfg, model_classes, split_data, probs = _model_probs(Path(name), Path(data_dir), split, bs, dev,
                                                             reuse_saved=True)
        model_labels = np.asarray(split_data.labels)
        if classes is not None:
            check_same_classes(Path(name), model_classes, Path(names[0]), classes)
            _check_same_documents(Path(data_dir), model_labels, Path(data_dirs[0]), labels, split)
        classes, labels = model_classes, model_labels
        report = _report(labels, probs, classes)
        members.append({"model": name, "data": data_dir, "backwards": cfg.backwards,
                        **{k: report[k] for k in ("accuracy", "error_rate", "macro_f1")}})
        all_probs.append(probs)
    averaged = average_probabilities(all_probs)
    shared_data = data_dirs[0] if len(set(data_dirs)) == 1 else ",".join(data_dirs)
    result = {"data": shared_data, "split": split, "models": members,
              "ensemble": _report(labels, averaged, classes)}
    out_dir = Path(out) if out else Path(names[0])
    save_npy(out_dir / ENSEMBLE_PROBS.format(split=split), averaged.astype(np.float32))
    write_json(out_dir / ENSEMBLE_REPORT.format(split=split), result)
    if out:
        _write_ensemble_run(out_dir, names, result)
    for member in members:
        print(f"{member['model']}: error {member['error_rate']:.4f}", file=sys.stderr)
    print(f"ensemble: error {result['ensemble']['error_rate']:.4f}", file=sys.stderr)
    return result


def _folder_list(folders: str | Sequence[str]) -> list[str]:
    """Folders given comma-separated (the command line) or as a list (Python, or fire's tuple)."""
    items = folders.split(",") if isinstance(folders, str) else [str(f) for f in folders]
    return [item.strip() for item in items if item.strip()]


def _check_same_documents(data_dir: Path, labels: np.ndarray, first_dir: Path, first_labels: np.ndarray,
                          split: str) -> None:
    """Models averaged document by document must have read the same documents in the same order;
    the labels are the check that is left once the tokenizers differ."""
    if data_dir.resolve() == first_dir.resolve():
        return
    if not np.array_equal(labels, first_labels):
        raise UlmfitError(f"{data_dir}: its {split} split does not hold the same documents as {first_dir}'s "
                          f"({len(labels)} vs {len(first_labels)} documents, or labels in another order); "
                          f"tokenize the same raw files for every model")


def _write_ensemble_run(out_dir: Path, models: list[str], result: dict) -> None:
    """The ensemble as a run folder: config and summed times first, the evaluation report last
    (its presence marks the run finished)."""
    split = result["split"]
    times = [read_json(Path(model) / METRICS) for model in models]
    write_json(out_dir / CONFIG, {"models": models, "data": result["data"], "split": split})
    write_json(out_dir / METRICS, {"models": models, **{key: _total(t.get(key) for t in times)
                                                        for key in ("time_s", "train_time_s")}})
    write_json(out_dir / EVAL_REPORT.format(split=split),
               {"models": models, "data": result["data"], "split": split, **result["ensemble"]})


def _total(values: Iterable[float | None]) -> float | None:
    """The sum, or None when a value is missing (a model with no recorded time)."""
    values = list(values)
    return None if None in values else sum(values)


# -- the model's probabilities --------------------------------------------------------------------

def _model_probs(model_dir: Path, data_dir: Path, split: str, bs: int | None, device: torch.device,
                 tta: int = 0, reuse_saved: bool = False
                 ) -> tuple[ClassifierConfig, list[str], TokenizedSplit, np.ndarray]:
    """Load a classifier, check it fits the data and return its probabilities on ``split``
    (averaged over ``tta`` augmented copies too); ``reuse_saved`` (no ``tta``): those ``evaluate``
    saved for the same model and data without augmentation, when there are such (see ``_saved_probs``)."""
    cfg, classes, model = load_classifier(model_dir)
    check_data_fits(model_dir, classes, data_dir)
    data = load_split(data_dir, split)
    check_labels(data, len(classes), data_dir, split)
    saved = _saved_probs(model_dir, data_dir, split) if reuse_saved else None
    if saved is not None:
        return cfg, classes, data, saved
    probs = _tta_predict(model.to(device), list(data), cfg, bs, device, tta, tta_neighbours(model, tta))
    return cfg, classes, data, probs


def _saved_probs(model_dir: Path, data_dir: Path, split: str) -> np.ndarray | None:
    """``probs_<split>.npy`` of the model's last ``evaluate`` on ``split``, if that ran without
    augmentation on the very same weights, config and tokenized split (by content, whatever the
    paths), and the file is the one it wrote (so its shape is the split's and the model's); else
    None. Scoring is the slow part of an ensemble."""
    report_path, probs_path = model_dir / EVAL_REPORT.format(split=split), model_dir / EVAL_PROBS.format(split=split)
    if not (report_path.exists() and probs_path.exists()):
        return None
    report = read_json(report_path)
    if (report.get("tta") != 0 or report.get("probs_sha256") != _sha256(probs_path)
            or report.get("inputs_sha256") != _inputs_sha256(model_dir, data_dir, split)):
        return None
    return np.load(probs_path, allow_pickle=False)


def _inputs_sha256(model_dir: Path, data_dir: Path, split: str) -> str:
    """A hash of everything a classifier's probabilities on a split depend on: its weights, its
    config (reading direction, max_tokens) and the split's arrays."""
    files = [model_dir / MODEL, model_dir / CONFIG, ids_path(data_dir, split), offsets_path(data_dir, split)]
    digest = hashlib.sha256()
    for path in files:
        digest.update(_sha256(path).encode())
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tta_predict(model: TextClassifier, docs: Sequence[np.ndarray], cfg: ClassifierConfig, bs: int | None,
                 device: torch.device, tta: int, neighbours: np.ndarray | None, first: int = 0) -> np.ndarray:
    """Class probabilities of ``docs`` read as in training (first max_tokens tokens, then augmented),
    averaged with ``tta`` augmented copies (see ulmfit.classifier.tta); ``first``: index of docs[0]."""
    predict = functools.partial(predict_probs, model, bs=bs or cfg.bs, backwards=cfg.backwards, device=device)
    return tta_probs(predict, [doc[:cfg.max_tokens] for doc in docs], tta, neighbours, first)


def _report(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    labelled = labels != UNLABELLED
    if not labelled.any():
        raise UlmfitError("no labelled documents to score")
    report = classification_report(labels[labelled], probs[labelled].argmax(1), classes)
    return {**report, "unlabelled": int((~labelled).sum())}


def format_report(report: dict) -> str:
    """A few readable lines: overall scores, then precision and recall per class."""
    lines = [f"n {report['n']}  accuracy {report['accuracy']:.4f}  error {report['error_rate']:.4f}  "
             f"macro-F1 {report['macro_f1']:.4f}"]
    for name, scores in report["per_class"].items():
        lines.append(f"  {name:>12}  precision {scores['precision']:.3f}  recall {scores['recall']:.3f}  "
                     f"f1 {scores['f1']:.3f}  support {scores['support']}")
    return "\n".join(lines)



# -- predict's input and output -----------------------------------------------------------------

def _input_texts(spec: str, options: ReadOptions) -> Iterator[str]:
    if spec == "-":
        return (line.strip() for line in sys.stdin if line.strip())
    return (text for text, _ in DocumentSource(spec, options))


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


OUTPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}


def _output_format(output: str) -> str:
    fmt = OUTPUT_FORMATS.get(Path(output).suffix.lower())
    if fmt is None:
        raise UlmfitError(f"{output}: cannot tell the output format from the name; use .csv or .jsonl "
                          f"or pass --output_format")
    return fmt


def _row_writer(f, out_format: str, classes: list[str]):
    """A function writing one document's probabilities as a CSV row or a JSON line."""
    if out_format == "csv":
        writer = csv.writer(f)
        writer.writerow(["label"] + [f"prob_{name}" for name in classes])
        return lambda probs: writer.writerow([classes[int(probs.argmax())]] + [f"{p:.6g}" for p in probs])
    if out_format == "jsonl":
        return lambda probs: f.write(json.dumps({"label": classes[int(probs.argmax())],
                                                 "probs": {n: float(p) for n, p in zip(classes, probs)}}) + "\n")
    raise UlmfitError(f"unknown output format {out_format!r}; choose csv or jsonl")
