"""``ulmfit tokenize``: raw corpora -> numpy id arrays, vocabulary and tokenizer settings.

Streaming design: the main process reads documents in chunks and hands them to a pool of
``workers`` processes (inline when ``workers=1``) that run the pre rules, the tokenizer and the
post rules and send back int32 ids in their own local numbering plus the token strings they
had not reported before. The main process maps them to one temporary numbering, counts token
frequencies, and appends the ids to a temporary file per split. After the pass it builds the
vocabulary from the train counts and rewrites every split through one ``temporary -> final``
lookup array. No split's token strings are ever held in memory; only the distinct ones are.

One module of ~440 lines on purpose: the streaming pass, the worker pool and the staged
replacement of the output folder share one run's state; the tokenizers themselves are
:mod:`ulmfit.text.tokenizers` and :mod:`ulmfit.text.spacy_encoder`.
"""
from __future__ import annotations

import collections
import dataclasses
import itertools
import multiprocessing
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from ..artefacts import CLASSES, CONFIG, METRICS, SPM_MODEL, TOKENIZER, VOCAB
from ..config import config_to_dict, load_config, save_config
from ..errors import UlmfitError
from ..files import copy_file, read_json, staging_dir, write_json
from ..outdir import unknown_files
from ..progress import progress_bar
from ..text import corpus
from ..text.readers import DocumentSource, ReadOptions, read_options_from, split_archive_spec
from ..text.special import UNK_ID
from ..text.chunks import EncodedChunk, IdTranslator, TokenNumbering, fit_array
from ..text.tokenizers import (
    DEFAULT_SP_MODEL_TYPE, DEFAULT_SP_SAMPLE_SENTENCES, DEFAULT_SP_VOCAB_SIZE, SENTENCEPIECE, SPACY,
    TokenizerSettings, make_encoder, train_sentencepiece,
)
from ..text.vocab import DEFAULT_MAX_VOCAB, DEFAULT_MIN_FREQ, Vocab

CHUNK_CHARS = 1 << 20  # ~1 MB of text per task sent to a worker
CHUNK_DOCS = 2000
IN_FLIGHT_PER_WORKER = 3  # chunks queued per worker: keeps workers busy, bounds memory
# Inputs smaller than this on disk (all splits) are tokenized in one process: each worker has to
# learn the corpus' words on its own, which on small inputs costs more than the second core gives.
POOL_MIN_BYTES = 16 << 20
RUNTIME_FIELDS = ("workers",)  # do not change the output, so a rerun with others is the same run
# Every file a tokenize output can hold: --overwrite replaces a folder only if it holds nothing else.
OUTPUT_FILES = frozenset([CONFIG, METRICS, VOCAB, TOKENIZER, SPM_MODEL, CLASSES]
                         + [path(".", split).name for split in corpus.SPLITS
                            for path in (corpus.ids_path, corpus.offsets_path, corpus.labels_path)])


@dataclass
class TokenizeConfig:
    """All settings of one ``ulmfit tokenize`` run (saved as ``config.json``)."""

    train: str
    valid: str | None = None
    test: str | None = None
    format: str | None = ReadOptions.format
    encoding: str = ReadOptions.encoding
    text_field: str = ReadOptions.text_field
    label_field: str | None = ReadOptions.label_field
    doc_per: str = ReadOptions.doc_per
    classes: list[str] | None = None
    unsup: bool = ReadOptions.unsup
    fine_labels: bool = ReadOptions.fine_labels
    tokenizer: str = TokenizerSettings.kind
    lang: str = TokenizerSettings.lang
    max_vocab: int = DEFAULT_MAX_VOCAB
    min_freq: int = DEFAULT_MIN_FREQ
    sp_model_type: str = DEFAULT_SP_MODEL_TYPE
    sp_vocab_size: int = DEFAULT_SP_VOCAB_SIZE
    sp_sample_sentences: int = DEFAULT_SP_SAMPLE_SENTENCES
    vocab_from: str | None = None
    max_docs: int | None = None
    workers: int = 2

    def inputs(self) -> dict[str, str]:
        return {split: getattr(self, split) for split in corpus.SPLITS if getattr(self, split)}


_D = TokenizeConfig  # defaults below are read from the dataclass, never written twice


def tokenize(
    train: str,
    valid: str | None = _D.valid,
    test: str | None = _D.test,
    out: str | None = None,
    format: str | None = _D.format,
    encoding: str = _D.encoding,
    text_field: str = _D.text_field,
    label_field: str | None = _D.label_field,
    doc_per: str = _D.doc_per,
    classes: str | Sequence[str] | None = _D.classes,
    unsup: bool = _D.unsup,
    fine_labels: bool = _D.fine_labels,
    tokenizer: str = _D.tokenizer,
    lang: str = _D.lang,
    max_vocab: int = _D.max_vocab,
    min_freq: int = _D.min_freq,
    sp_model_type: str = _D.sp_model_type,
    sp_vocab_size: int = _D.sp_vocab_size,
    sp_sample_sentences: int = _D.sp_sample_sentences,
    vocab_from: str | None = _D.vocab_from,
    max_docs: int | None = _D.max_docs,
    workers: int = _D.workers,
    overwrite: bool = False,
) -> dict:
    """Tokenize raw text into numpy id arrays plus the vocabulary and tokenizer that made them.

    Writes to OUT: {split}_ids.npy (int32), {split}_offsets.npy (int64, n_docs+1),
    {split}_labels.npy (int64, -1 = unlabelled) for split in train/valid/test, vocab.json,
    classes.json, tokenizer.json (+ spm.model), config.json and metrics.json. The folder
    appears only when complete. Documents that are empty or white space only are skipped
    and counted in metrics.json (empty_docs); an input without any document is an error.

    A folder-per-class tree (aclImdb/train/pos/*.txt) is read from a folder or, without
    unpacking, from inside a tar archive, named ARCHIVE:FOLDER, e.g.
    --train aclImdb_v1.tar.xz:aclImdb/train --test aclImdb_v1.tar.xz:aclImdb/test

    Args:
        train: Training input; the vocabulary (or SentencePiece model) and the class names
            are built from it. The format is --format or inferred from the name (.txt, .csv,
            .tsv, .jsonl, .label for TREC, a folder-per-class tree, or such a tree inside a
            .tar/.tar.gz/.tar.xz archive as described above). Any single file may be
            compressed (.gz, .bz2, .xz).
        valid: Validation input, same format as train.
        test: Test input, same format as train. Its labels must be classes seen in train.
        out: Output folder (required).
        format: txt, csv, tsv, jsonl, trec, folder or tar; default: inferred per input.
        encoding: Text encoding of the inputs (TREC needs latin-1).
        text_field: Column (CSV/TSV) or key (JSONL) holding the text.
        label_field: Column or key holding the label; default: "label" when present.
        doc_per: For txt: "line" (one document per line) or "file" (the file is one document).
        classes: Class folders to read from a folder/tar tree, e.g. pos,neg; default: all but unsup.
        unsup: Also read the tree's "unsup" folder, as unlabelled documents (label -1).
        fine_labels: TREC: use the fine label (DESC:manner) instead of the coarse one (DESC).
        tokenizer: "spacy" (rule-based words + fastai rules) or "sentencepiece" (subwords).
        lang: spaCy language code for the rule-based tokenizer.
        max_vocab: spaCy: largest vocabulary size, special tokens included.
        min_freq: spaCy: a token needs this many occurrences in train to enter the vocabulary.
        sp_model_type: SentencePiece model: "unigram" or "bpe".
        sp_vocab_size: SentencePiece vocabulary size (an upper bound on small corpora).
        sp_sample_sentences: SentencePiece trains on this many paragraphs sampled from train.
        vocab_from: A previous tokenize output folder whose tokenizer and vocabulary are
            reused as they are (no vocabulary building; the tokenizer options above are ignored),
            so target data is numericalized like the pretraining corpus.
        max_docs: Read at most this many documents per input (for quick trials).
        workers: Processes that tokenize in parallel (1 = in this process).
        overwrite: Replace OUT if it holds a run with different settings.

    Returns:
        The metrics: per split documents, tokens, unknown-token rate, empty documents
        skipped, MB of text, seconds and MB/s; the vocabulary size, the number of worker
        processes used (1 for small inputs) and the total time.
    """
    if not out:
        raise UlmfitError("--out is required: the folder to write the tokenized data to")
    values = dict(locals())
    fields = {f.name for f in dataclasses.fields(TokenizeConfig)}
    cfg = TokenizeConfig(**{k: v for k, v in values.items() if k in fields})
    cfg.classes = ReadOptions(classes=classes).class_list()
    previous = _previous_run(Path(out), cfg, overwrite)
    if previous is not None:
        print(f"{out}: already holds this tokenize run; skipping (pass --overwrite to redo it)", file=sys.stderr)
        return previous
    return run_tokenize(cfg, Path(out))


def _previous_run(out: Path, cfg: TokenizeConfig, overwrite: bool) -> dict | None:
    """The saved metrics if ``out`` holds the same run; None if it may be (re)written; an error if
    it holds another tokenize run (without ``overwrite``) or anything ulmfit tokenize did not write."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return None
    if not out.is_dir():
        raise UlmfitError(f"{out}: exists and is not a folder")
    foreign = unknown_files(out, OUTPUT_FILES)
    if foreign or not (out / CONFIG).exists() or not (out / METRICS).exists():
        found = f" (it holds {', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''})" if foreign else ""
        raise UlmfitError(f"{out}: folder exists and is not a tokenize output{found}; choose another --out "
                          f"(--overwrite replaces only a folder that ulmfit tokenize wrote)")
    saved = config_to_dict(load_config(TokenizeConfig, out / CONFIG))
    if overwrite:
        return None
    wanted = config_to_dict(cfg)
    differ = sorted(k for k in wanted if k not in RUNTIME_FIELDS and not _same_setting(k, saved.get(k), wanted[k]))
    if not differ:
        return read_json(out / METRICS)
    changes = ", ".join(f"{k}: {saved.get(k)!r} -> {wanted[k]!r}" for k in differ)
    raise UlmfitError(f"{out}: holds a tokenize run with other settings ({changes}); "
                      "pass --overwrite to replace it or choose another --out")


_PATH_FIELDS = (*corpus.SPLITS, "vocab_from")  # the settings that name files


def _same_setting(field: str, saved, wanted) -> bool:
    """Equal settings; an input path counts as equal however it is written (``../shared/data/x``
    and ``/work/shared/data/x``), so a recipe run from another data root spelling still skips."""
    if field not in _PATH_FIELDS or saved is None or wanted is None:
        return saved == wanted
    (saved_path, saved_member), (wanted_path, wanted_member) = map(split_archive_spec, (saved, wanted))
    return saved_member == wanted_member and saved_path.resolve() == wanted_path.resolve()


def run_tokenize(cfg: TokenizeConfig, out: Path) -> dict:
    """Run the stage for a complete config; ``out`` is replaced as a whole when done."""
    started = time.perf_counter()
    if not cfg.train:
        raise UlmfitError("--train is required")
    if cfg.workers < 1:
        raise UlmfitError(f"workers must be at least 1, not {cfg.workers}")
    read_options = read_options_from(cfg)
    sources = {split: DocumentSource(spec, read_options) for split, spec in cfg.inputs().items()}
    with staging_dir(out) as folder:
        settings, vocab = _prepare_tokenizer(cfg, folder, sources["train"])
        prepare_seconds = time.perf_counter() - started
        table = _TokenTable()
        splits: dict[str, _EncodedSplit] = {}
        workers = _useful_workers(cfg.workers, sources.values())
        with _EncoderPool(settings, folder, workers) as pool:
            for split, source in sources.items():
                splits[split] = _encode_split(split, source, cfg.max_docs, pool, table, folder)
        if vocab is None:
            vocab = Vocab.from_counts(table.counts_by_token(), cfg.max_vocab, cfg.min_freq)
        lookup = table.lookup_into(vocab) if settings.kind == SPACY else None
        classes = _classes({s: e.labels for s, e in splits.items()}, {s: src.spec for s, src in sources.items()})
        metrics: dict = {"splits": {}}
        for split, encoded in splits.items():
            label_ids = _label_ids(encoded.labels, classes)
            written = encoded.writer.finish(lookup, label_ids)
            metrics["splits"][split] = encoded.metrics(written)
        settings.save(folder)
        vocab.save(folder)
        if classes:
            corpus.save_classes(folder, classes)
        metrics.update(tokenizer=settings.kind, vocab_size=len(vocab), classes=len(classes), workers=workers,
                       prepare_seconds=round(prepare_seconds, 2), seconds=round(time.perf_counter() - started, 2))
        save_config(cfg, folder / CONFIG)
        write_json(folder / METRICS, metrics)
    return metrics


def _prepare_tokenizer(cfg: TokenizeConfig, folder: Path, train: DocumentSource):
    """Settings (and a fixed vocabulary, or None to build one) for this run, written to ``folder``."""
    if cfg.vocab_from:
        source = Path(cfg.vocab_from)
        if not (source / TOKENIZER).exists():
            raise UlmfitError(f"{source}: no {TOKENIZER}; --vocab_from needs a folder written by 'ulmfit tokenize'")
        settings = TokenizerSettings.load(source)
        vocab = Vocab.load(source)
        if settings.kind == SENTENCEPIECE:
            copy_file(source / SPM_MODEL, folder / SPM_MODEL)
        print(f"reusing the {settings.kind} tokenizer and {len(vocab)}-token vocabulary of {source}", file=sys.stderr)
        return settings, vocab
    settings = TokenizerSettings.create(cfg.tokenizer, cfg.lang, cfg.sp_model_type, cfg.sp_vocab_size)
    if settings.kind != SENTENCEPIECE:
        return settings, None
    texts = (text for text, _ in _limited(_progress(train, "sentencepiece: read train"), cfg.max_docs))
    train_sentencepiece(texts, folder, settings, cfg.sp_sample_sentences, cfg.workers)
    return settings, make_encoder(settings, folder).vocab()


def _useful_workers(workers: int, sources: Iterable[DocumentSource]) -> int:
    """Small inputs are tokenized in this process (see POOL_MIN_BYTES)."""
    return 1 if sum(s.bytes_total for s in sources) < POOL_MIN_BYTES else workers


def _limited(items: Iterable, limit: int | None) -> Iterator:
    return iter(items) if limit is None else itertools.islice(items, limit)


def _bar(source: DocumentSource, desc: str) -> tqdm:
    """A progress bar over the input's on-disk bytes: the document count is not known ahead."""
    return progress_bar(total=source.bytes_total, desc=desc, unit="B", unit_scale=True, mininterval=1.0)


def _progress(source: DocumentSource, desc: str) -> Iterator[tuple[str, str | None]]:
    with _bar(source, desc) as bar:
        for doc in source:
            yield doc
            bar.update(max(source.bytes_read() - bar.n, 0))


class _TokenTable:
    """The temporary numbering of every distinct token of the run (specials first) and counts."""

    def __init__(self):
        self._numbering = TokenNumbering()
        self.tokens = self._numbering.tokens
        self.counts = np.zeros(1 << 16, dtype=np.int64)
        self._translators: dict[int, IdTranslator] = {}

    def ids_of(self, chunk: EncodedChunk) -> np.ndarray:
        if chunk.source not in self._translators:
            self._translators[chunk.source] = IdTranslator(self._numbering.id)
        return self._translators[chunk.source](chunk)

    def count(self, ids: np.ndarray) -> None:
        found = np.bincount(ids)
        self.counts = fit_array(self.counts, len(found))
        self.counts[: len(found)] += found

    def counts_by_token(self) -> dict[str, int]:
        counts = self.counts[: len(self.tokens)].tolist()
        return {t: c for t, c in zip(self.tokens, counts) if c}

    def lookup_into(self, vocab: Vocab) -> np.ndarray:
        """``lookup[temporary id] = vocabulary id`` (``xxunk`` for tokens not in it)."""
        get = vocab.stoi.get
        return np.fromiter((get(t, UNK_ID) for t in self.tokens), dtype=np.int32, count=len(self.tokens))


def _init_worker(settings: TokenizerSettings, folder: str) -> None:
    global _worker_encoder
    _worker_encoder = make_encoder(settings, folder)


def _encode_in_worker(texts: list[str]) -> EncodedChunk:
    return _worker_encoder.encode(texts)


class _EncoderPool:
    """Encodes chunks in order, in ``workers`` processes, with a bounded number in flight."""

    def __init__(self, settings: TokenizerSettings, folder: Path, workers: int):
        self._settings, self._folder, self._workers = settings, folder, workers
        self._pool = None
        self._inline = None

    def __enter__(self) -> "_EncoderPool":
        if self._workers == 1:
            self._inline = make_encoder(self._settings, self._folder)
        else:
            self._pool = multiprocessing.get_context().Pool(
                self._workers, initializer=_init_worker, initargs=(self._settings, str(self._folder)))
        return self

    def __exit__(self, exc_type, *_):
        if self._pool is not None:
            if exc_type is None:
                self._pool.close()
            else:
                self._pool.terminate()
            self._pool.join()

    def map(self, chunks: Iterable[tuple[list[str], object]]) -> Iterator[tuple[EncodedChunk, object]]:
        """``(texts, extra)`` -> ``(encoded, extra)`` in input order."""
        if self._inline is not None:
            for texts, extra in chunks:
                yield self._inline.encode(texts), extra
            return
        pending: collections.deque = collections.deque()
        for texts, extra in chunks:
            pending.append((self._pool.apply_async(_encode_in_worker, (texts,)), extra))
            if len(pending) >= IN_FLIGHT_PER_WORKER * self._workers:
                result, extra_done = pending.popleft()
                yield result.get(), extra_done
        while pending:
            result, extra_done = pending.popleft()
            yield result.get(), extra_done


def _chunks(docs: Iterable[tuple[str, str | None]], source: DocumentSource) -> Iterator[tuple[list[str], tuple]]:
    """Group documents into ~1 MB chunks; the extra part carries labels and the read position."""
    texts: list[str] = []
    labels: list[str | None] = []
    size = 0
    for text, label in docs:
        texts.append(text)
        labels.append(label)
        size += len(text)
        if size >= CHUNK_CHARS or len(texts) >= CHUNK_DOCS:
            yield texts, (labels, source.bytes_read())
            texts, labels, size = [], [], 0
    if texts:
        yield texts, (labels, source.bytes_total)


@dataclass
class _EncodedSplit:
    source: DocumentSource
    writer: corpus.SplitWriter
    labels: list[str | None]
    n_bytes: int
    seconds: float

    def metrics(self, written: corpus.TokenizedSplit) -> dict:
        unk = sum(int(np.count_nonzero(written.ids[i : i + (1 << 24)] == UNK_ID))
                  for i in range(0, len(written.ids), 1 << 24))
        mb = self.n_bytes / 1e6
        return {
            "input": self.source.spec,
            "docs": len(written),
            "tokens": written.n_tokens,
            "unk_rate": round(unk / max(written.n_tokens, 1), 6),
            "empty_docs": self.source.empty,
            "mb": round(mb, 3),
            "seconds": round(self.seconds, 2),
            "mb_per_s": round(mb / max(self.seconds, 1e-9), 3),
        }


def _encode_split(split: str, source: DocumentSource, max_docs: int | None, pool: _EncoderPool,
                  table: _TokenTable, folder: Path) -> _EncodedSplit:
    """Tokenize one input into a temporary-id file in ``folder``; train tokens are counted."""
    started = time.perf_counter()
    count = split == "train"
    writer = corpus.SplitWriter(folder, split)
    labels: list[str | None] = []
    n_bytes = n_docs = 0
    with _bar(source, f"tokenize {split}") as bar:
        for encoded, (chunk_labels, position) in pool.map(_chunks(_limited(source, max_docs), source)):
            ids = table.ids_of(encoded)
            if count:
                table.count(ids)
            writer.add(ids, encoded.lengths)
            labels += chunk_labels
            n_bytes += encoded.n_bytes
            n_docs += len(chunk_labels)
            bar.update(max(position - bar.n, 0))
            bar.set_postfix(docs=n_docs, docs_s=f"{n_docs / max(time.perf_counter() - started, 1e-9):.0f}",
                            MB_s=f"{n_bytes / 1e6 / max(time.perf_counter() - started, 1e-9):.2f}", refresh=False)
    if source.empty:
        where = f" (e.g. {', '.join(source.empty_where)})" if source.empty_where else ""
        print(f"{source.spec}: skipped {source.empty} empty documents{where}", file=sys.stderr)
    return _EncodedSplit(source, writer, labels, n_bytes, time.perf_counter() - started)


def _classes(labels: dict[str, list[str | None]], specs: dict[str, str]) -> list[str]:
    """Class names: those of train; if train has none, those of the other splits together."""
    names = {label for label in labels["train"] if label is not None}
    if not names:
        names = {label for split_labels in labels.values() for label in split_labels if label is not None}
    classes = sorted(names)
    for split, split_labels in labels.items():
        unseen = sorted({label for label in split_labels if label is not None} - names)
        if unseen:
            shown = ", ".join(unseen[:10]) + (" ..." if len(unseen) > 10 else "")
            raise UlmfitError(f"{specs[split]}: labels not seen in train: {shown} (train classes: {', '.join(classes)})")
    return classes


def _label_ids(labels: list[str | None], classes: list[str]) -> np.ndarray | None:
    """Label ids for a split, or None when it has no label at all."""
    if not classes or all(label is None for label in labels):
        return None
    index = {c: i for i, c in enumerate(classes)}
    return np.array([corpus.UNLABELLED if label is None else index[label] for label in labels], dtype=np.int64)
