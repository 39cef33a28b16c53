"""Tokenizers: raw document texts -> int32 ids, the same way at training and at predict time.

Two kinds, recorded in ``tokenizer.json`` so any later stage can rebuild the exact tokenizer:

- ``spacy``: spaCy's rule-based tokenizer for ``lang`` (``spacy.blank(lang).tokenizer``, no model
  download) between the fastai pre rules (``fix_html``, ``replace_rep``, ``spec_add_spaces``,
  ``rm_useless_spaces``) and post rules (``drop_spaces``, ``replace_wrep``, ``replace_caps``,
  ``add_bos``), see :mod:`ulmfit.text.rules`. Ids come from a :class:`Vocab` built on the corpus.
- ``sentencepiece``: a unigram or BPE model trained on the corpus (``spm.model``); its pieces are
  the vocabulary, special tokens at ids 0..8. Only ``fix_html`` and ``rm_useless_spaces`` apply:
  case and repetitions are left to the subword model, which keeps ``decode(encode(text))``
  equal to the text (up to SentencePiece's NFKC normalisation; newlines become spaces).

Encoders (:class:`~ulmfit.text.spacy_encoder.SpacyEncoder`, in its own module as the packed
fast path it is, and :class:`SentencePieceEncoder`) turn a chunk of texts into one
:class:`~ulmfit.text.chunks.EncodedChunk`; they run in worker processes during ``ulmfit
tokenize`` and inline in :class:`Tokenizer` at predict time.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..artefacts import SPM_MODEL, TOKENIZER
from ..config import config_from_dict
from ..errors import UlmfitError
from ..files import read_json, write_json
from . import rules
from .chunks import EncodedChunk, IdTranslator
from .spacy_encoder import SpacyEncoder
from .special import BOS, BOS_ID, EOS, FLD, MAJ, PAD, REP, UNK, UNK_ID, UP, WREP
from .vocab import Vocab

SPACY, SENTENCEPIECE = "spacy", "sentencepiece"
KINDS = (SPACY, SENTENCEPIECE)
SP_MODEL_TYPES = ("unigram", "bpe")
DEFAULT_SP_MODEL_TYPE = "unigram"
DEFAULT_SP_VOCAB_SIZE = 25000
DEFAULT_SP_SAMPLE_SENTENCES = 200_000  # paragraphs; ~70 MB of Wikipedia text, ~1.2 GB RSS to train
SP_MAX_SENTENCE_BYTES = 1 << 16
SP_TRAIN_LINE_CHARS = SP_MAX_SENTENCE_BYTES // 4  # cut longer training lines so none is skipped
SPACY_PRE_RULES = ("fix_html", "replace_rep", "spec_add_spaces", "rm_useless_spaces")
SPACY_POST_RULES = tuple(rules.POST_RULES)
SP_PRE_RULES = ("fix_html", "rm_useless_spaces")


@dataclass
class TokenizerSettings:
    """Everything needed to rebuild a tokenizer; saved as ``tokenizer.json``."""

    kind: str = SPACY
    lang: str = "en"
    pre_rules: list[str] = field(default_factory=lambda: list(SPACY_PRE_RULES))
    post_rules: list[str] = field(default_factory=lambda: list(SPACY_POST_RULES))
    sp_model_type: str | None = None
    sp_vocab_size: int | None = None

    @classmethod
    def create(cls, kind: str, lang: str, sp_model_type: str, sp_vocab_size: int) -> "TokenizerSettings":
        """The settings a new run of ``kind`` uses (the rules are fixed per kind)."""
        if kind == SPACY:
            return cls(SPACY, lang)
        if kind == SENTENCEPIECE:
            if sp_model_type not in SP_MODEL_TYPES:
                raise UlmfitError(f"sp_model_type must be one of {SP_MODEL_TYPES}, not '{sp_model_type}'")
            return cls(SENTENCEPIECE, lang, list(SP_PRE_RULES), [], sp_model_type, int(sp_vocab_size))
        raise UlmfitError(f"unknown tokenizer '{kind}' (choose from {', '.join(KINDS)})")

    def check(self, source: str) -> None:
        if self.kind not in KINDS:
            raise UlmfitError(f"{source}: unknown tokenizer kind '{self.kind}'")
        unknown = [r for r in self.pre_rules if r not in rules.PRE_RULES]
        if unknown:
            raise UlmfitError(f"{source}: unknown pre rules {unknown}")
        expected = list(SPACY_POST_RULES) if self.kind == SPACY else []
        if list(self.post_rules) != expected:
            raise UlmfitError(f"{source}: post rules {self.post_rules} are not supported (this version applies {expected})")

    def save(self, folder: str | os.PathLike) -> None:
        write_json(Path(folder) / TOKENIZER, dataclasses.asdict(self))

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "TokenizerSettings":
        path = Path(folder) / TOKENIZER
        settings = config_from_dict(cls, read_json(path), source=str(path))
        settings.check(str(path))
        return settings


class SentencePieceEncoder:
    """Texts -> SentencePiece ids (final vocabulary ids), ``xxbos`` first in each document."""

    def __init__(self, settings: TokenizerSettings, model_path: str | os.PathLike):
        import sentencepiece as spm

        if not Path(model_path).exists():
            raise UlmfitError(f"{model_path}: SentencePiece model not found")
        self.processor = spm.SentencePieceProcessor(model_file=str(model_path))
        self._pre_rules = settings.pre_rules

    def encode(self, texts: Sequence[str]) -> EncodedChunk:
        n_bytes = sum(len(t.encode("utf-8")) for t in texts)
        pieces = self.processor.encode([rules.apply_pre_rules(text, self._pre_rules) for text in texts])
        ids = np.fromiter(chain.from_iterable(chain((BOS_ID,), p) for p in pieces), dtype=np.int32)
        lengths = np.array([len(p) + 1 for p in pieces], dtype=np.int64)
        return EncodedChunk(ids, lengths, n_bytes, os.getpid(), None)

    def vocab(self) -> Vocab:
        return Vocab([self.processor.id_to_piece(i) for i in range(self.processor.get_piece_size())])


def make_encoder(settings: TokenizerSettings, folder: str | os.PathLike | None):
    """The encoder for ``settings``; SentencePiece reads ``spm.model`` from ``folder``."""
    if settings.kind == SPACY:
        return SpacyEncoder(settings)
    return SentencePieceEncoder(settings, Path(folder) / SPM_MODEL)


def _sp_training_lines(texts: Iterable[str], pre_rules: Sequence[str]) -> Iterator[str]:
    """Paragraphs of the texts, cut to at most SP_TRAIN_LINE_CHARS at a space, rules applied."""
    for text in texts:
        for line in rules.apply_pre_rules(text, pre_rules).split("\n"):
            while len(line) > SP_TRAIN_LINE_CHARS:
                cut = line.rfind(" ", 0, SP_TRAIN_LINE_CHARS)
                cut = cut if cut > 0 else SP_TRAIN_LINE_CHARS
                yield line[:cut]
                line = line[cut:].lstrip()
            if line.strip():
                yield line


def train_sentencepiece(
    texts: Iterable[str], folder: str | os.PathLike, settings: TokenizerSettings,
    sample_sentences: int, threads: int,
) -> Path:
    """Train ``folder/spm.model`` on the texts' paragraphs, sampling ``sample_sentences`` of them.

    The special tokens take ids 0..8 (unk, pad, bos, eos as SentencePiece's own specials, the
    rest as control symbols, which plain text never produces). ``hard_vocab_limit`` is off so
    that a corpus too small for ``sp_vocab_size`` gives a smaller vocabulary instead of failing.
    """
    import sentencepiece as spm

    model_path = Path(folder) / SPM_MODEL
    reading_error: list[BaseException] = []

    def lines() -> Iterator[str]:  # SentencePiece wraps errors of the input; keep ours to re-raise
        try:
            yield from _sp_training_lines(texts, settings.pre_rules)
        except BaseException as e:
            reading_error.append(e)
            raise

    with open(model_path, "wb") as writer:
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=lines(),
                model_writer=writer,
                model_type=settings.sp_model_type,
                vocab_size=settings.sp_vocab_size,
                hard_vocab_limit=False,
                unk_id=0, pad_id=1, bos_id=2, eos_id=3,
                unk_piece=UNK, pad_piece=PAD, bos_piece=BOS, eos_piece=EOS,
                control_symbols=[FLD, REP, WREP, UP, MAJ],
                input_sentence_size=sample_sentences,
                shuffle_input_sentence=True,
                max_sentence_length=SP_MAX_SENTENCE_BYTES,
                num_threads=max(1, threads),
                minloglevel=1,
            )
        except RuntimeError as e:
            if reading_error:
                raise reading_error[0] from None
            raise UlmfitError(f"SentencePiece training failed: {e}") from None
    return model_path


class Tokenizer:
    """A saved tokenizer + vocabulary: raw texts -> vocabulary ids exactly as at training time."""

    def __init__(self, settings: TokenizerSettings, vocab: Vocab, folder: str | os.PathLike | None = None):
        self.settings, self.vocab, self.folder = settings, vocab, folder
        self._encoder = make_encoder(settings, folder)
        self._translate = IdTranslator(lambda t: vocab.stoi.get(t, UNK_ID))

    @property
    def kind(self) -> str:
        return self.settings.kind

    def encode_docs(self, texts: Sequence[str]) -> list[np.ndarray]:
        """One int32 id array per text, each starting with ``xxbos``; unknown tokens -> ``xxunk``."""
        if not texts:
            return []
        chunk = self._encoder.encode(list(texts))
        ids = self._translate(chunk)
        return np.split(ids, np.cumsum(chunk.lengths)[:-1])

    def encode(self, text: str) -> np.ndarray:
        return self.encode_docs([text])[0]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> readable text: SentencePiece decodes exactly; spaCy tokens are joined with
        spaces after undoing the case and repetition markers."""
        ids = [int(i) for i in ids]
        if self.kind == SENTENCEPIECE:
            return self._encoder.processor.decode(ids)
        return rules.detokenize(self.vocab.textify(ids))


def load_tokenizer(folder: str | os.PathLike) -> Tokenizer:
    """Rebuild the tokenizer saved in a tokenized (or model) folder."""
    folder = Path(folder)
    if not (folder / TOKENIZER).exists():
        raise UlmfitError(f"{folder}: no {TOKENIZER}; is it the output of 'ulmfit tokenize'?")
    return Tokenizer(TokenizerSettings.load(folder), Vocab.load(folder), folder)
