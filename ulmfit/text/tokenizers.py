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

Encoders (:class:`SpacyEncoder`, :class:`SentencePieceEncoder`) turn a chunk of texts into one
:class:`EncodedChunk`; they run in worker processes during ``ulmfit tokenize`` and inline in
:class:`Tokenizer` at predict time.

~530 lines: the two encoders, their settings and the predict-time Tokenizer are still one module;
splitting it is the tokenizer step of issue 12, left for its own change.
"""
from __future__ import annotations

import dataclasses
import os
import string
from dataclasses import dataclass, field
from itertools import chain, repeat
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from ..artefacts import SPM_MODEL, TOKENIZER
from ..config import config_from_dict
from ..errors import UlmfitError
from ..files import read_json, write_json
from . import rules
from .special import BOS, BOS_ID, EOS, FLD, MAJ, MAJ_ID, PAD, REP, SPECIAL_TOKENS, UNK, UNK_ID, UP, UP_ID, WREP, WREP_ID
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


def make_spacy_tokenizer(lang: str):
    """spaCy's bare rule-based tokenizer for ``lang``, which never splits a special token."""
    import spacy
    from spacy.symbols import ORTH

    try:
        nlp = spacy.blank(lang)
    except (ImportError, KeyError, ValueError) as e:
        raise UlmfitError(f"spaCy has no language '{lang}' ({e})") from None
    for token in SPECIAL_TOKENS:
        nlp.tokenizer.add_special_case(token, [{ORTH: token}])
    # Lexical attributes (shape, like_num, ...) are computed for every new word and never used
    # here; tokenization does not depend on them.
    nlp.vocab.lex_attr_getters = {}
    return nlp.tokenizer


class _Memo(dict):
    """key -> value computed on first use (``compute(key)``)."""

    def __init__(self, compute: Callable):
        super().__init__()
        self._compute = compute

    def __missing__(self, key):
        value = self[key] = self._compute(key)
        return value


# Packed form of one token: run key (for xxwrep) | local id of its text | case marker code.
_DROP, _MARKER_CODES = 3, {None: 0, MAJ: 1, UP: 2}
_MARKER_IDS = np.array([0, MAJ_ID, UP_ID], dtype=np.int32)
_LID_SHIFT, _KEY_SHIFT, _LID_MASK = 2, 34, (1 << 32) - 1
_DOC_START_KEY = 0  # run key reserved for the xxbos that starts each document
_DOC_START = " " + BOS  # a span key no text can produce (spans hold no white space)
_OPENERS, _CLOSERS = '("', ',;:)"'
_ASCII_LOWER = frozenset(string.ascii_lowercase)
MAX_MEMO_SPANS = 1 << 21  # bounds worker memory (~250 MB); frequent spans come back at once


class _SpanForms:
    """Memo of span -> packed token forms, stored as one flat array with per-span offsets."""

    def __init__(self):
        self.ids: dict[str, int] = {}
        self.start = np.zeros(1 << 16, dtype=np.int64)
        self.length = np.zeros(1 << 16, dtype=np.int64)
        self.flat = np.zeros(1 << 16, dtype=np.int64)
        self._flat_size = 0

    def add(self, spans: Sequence[str], forms: Sequence[Sequence[int]]) -> None:
        first = len(self.ids)
        lengths = np.fromiter(map(len, forms), dtype=np.int64, count=len(forms))
        values = np.fromiter(chain.from_iterable(forms), dtype=np.int64, count=int(lengths.sum()))
        self.start = fit_array(self.start, first + len(spans))
        self.length = fit_array(self.length, first + len(spans))
        self.flat = fit_array(self.flat, self._flat_size + len(values))
        self.start[first : first + len(spans)] = self._flat_size + np.cumsum(lengths) - lengths
        self.length[first : first + len(spans)] = lengths
        self.flat[self._flat_size : self._flat_size + len(values)] = values
        self._flat_size += len(values)
        self.ids.update(zip(spans, range(first, first + len(spans))))

    def lookup(self, spans: list[str]) -> np.ndarray:
        """The id of each span, -1 for spans not memoised yet."""
        return np.fromiter(map(self.ids.get, spans, repeat(-1)), dtype=np.int64, count=len(spans))

    def forms_of(self, sids: np.ndarray) -> np.ndarray:
        """Packed forms of a sequence of memoised spans (by id), back to back."""
        lengths = self.length[sids]
        out_start = np.cumsum(lengths) - lengths
        index = np.arange(int(lengths.sum())) + np.repeat(self.start[sids] - out_start, lengths)
        return self.flat[index]


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


class SpacyEncoder:
    """Texts -> ids local to this encoder, with the fastai pre and post rules.

    spaCy tokenizes each white-space separated span on its own, so the token forms of every
    distinct span are memoised and a chunk costs mostly dictionary lookups. New spans go through
    spaCy in one call; English words with at most a bracket, quote, comma or full stop around
    them skip it, as its affix rules split them at exactly those characters. White space between spans only
    matters when it holds a newline, which gives one ``"\n"`` token (:func:`rules.drop_spaces`).
    The post rules run on numpy arrays of packed token forms (:func:`rules.token_form` once per
    distinct token). The output equals spaCy + :func:`rules.apply_post_rules` on the token
    strings (checked on real text in the tests), except that spaCy's special-case matcher can,
    very rarely, match across a space in running text; here a span always gets the tokens it
    gets on its own, so the same text always gives the same tokens.
    """

    def __init__(self, settings: TokenizerSettings):
        from spacy.attrs import ORTH

        self._orth = ORTH
        self._tokenizer = make_spacy_tokenizer(settings.lang)
        self._special_cases = set(self._tokenizer.rules)
        self._english = settings.lang == "en"  # the shortcut for plain words is checked for English
        self._strings = self._tokenizer.vocab.strings
        self._newline_orth = self._strings.add(rules.NEWLINE)
        self._pre_rules = settings.pre_rules
        self._numbering = TokenNumbering()
        self.tokens = self._numbering.tokens
        self.local_id = self._numbering.id
        self._reported = len(self.tokens)
        self._run_keys: dict[str, int] = {_DOC_START: _DOC_START_KEY}
        self._forms = _Memo(self._pack)
        self._spans = _SpanForms()

    def _pack(self, text: str) -> int:
        form = rules.token_form(text)
        if form is None:
            return _DROP
        marker, lowered = form
        key = self._run_keys.setdefault(lowered if text.isspace() else text, len(self._run_keys))
        return (key << _KEY_SHIFT) | (self.local_id(lowered) << _LID_SHIFT) | _MARKER_CODES[marker]

    def _reset_spans(self) -> None:
        self._spans = _SpanForms()
        doc_start = (_DOC_START_KEY << _KEY_SHIFT) | (BOS_ID << _LID_SHIFT)
        self._spans.add([_DOC_START, rules.NEWLINE], [[doc_start], [self._forms[rules.NEWLINE]]])

    def _plain_word_pieces(self, span: str) -> list[str] | None:
        """A word with at most one ``(``/``"`` before and one ``, ; : ) "`` (or a full stop after
        a-z) after it splits into those pieces under spaCy's English rules unless
        a special case applies; else None."""
        start = 1 if span[0] in _OPENERS else 0
        closed = span[-1] in _CLOSERS or (span[-1] == "." and span[-2:-1] in _ASCII_LOWER)
        end = len(span) - 1 if closed and len(span) > start + 1 else len(span)
        word = span[start:end]
        if not word.isalpha() or not self._special_cases.isdisjoint((span, span[start:], span[:end], word)):
            return None
        return [piece for piece in (span[:start], word, span[end:]) if piece]

    def _learn_spans(self, spans: list[str]) -> None:
        """Memoise new spans: plain words directly, the rest with one spaCy call."""
        other = spans
        if self._english:
            pieces = list(map(self._plain_word_pieces, spans))
            plain = [(s, p) for s, p in zip(spans, pieces) if p is not None]
            self._spans.add([s for s, _ in plain], [list(map(self._forms.__getitem__, p)) for _, p in plain])
            other = [s for s, p in zip(spans, pieces) if p is None]
        if not other:
            return
        # A newline token between spans keeps spaCy's special-case matcher from matching across
        # spans, so each span gets the tokens it gets on its own, whatever its neighbours.
        orths = self._tokenizer(rules.NEWLINE.join(other)).to_array(self._orth)
        separators = np.flatnonzero(orths == self._newline_orth)
        if len(separators) != len(other) - 1:
            raise AssertionError("spaCy split the joined spans differently from white space")
        forms = [self._forms[self._strings[orth]] for orth in orths.tolist()]
        starts, ends = [0, *(separators + 1).tolist()], [*separators.tolist(), len(forms)]
        self._spans.add(other, [forms[a:b] for a, b in zip(starts, ends)])

    def _doc_spans(self, text: str, out: list[str]) -> None:
        """Append a document start, then the text's spans with one newline between paragraphs."""
        out.append(_DOC_START)
        first = True
        for paragraph in text.split(rules.NEWLINE):
            words = paragraph.split()
            if words:
                if not first:
                    out.append(rules.NEWLINE)
                out.extend(words)
                first = False

    def encode(self, texts: Sequence[str]) -> EncodedChunk:
        if not self._spans.ids or len(self._spans.ids) > MAX_MEMO_SPANS:
            self._reset_spans()
        n_bytes = 0
        spans: list[str] = []
        for text in texts:
            n_bytes += len(text.encode("utf-8"))
            self._doc_spans(rules.apply_pre_rules(text, self._pre_rules), spans)
        sids = self._spans.lookup(spans)
        missing = np.flatnonzero(sids < 0).tolist()
        if missing:
            self._learn_spans(list(dict.fromkeys(spans[i] for i in missing)))
            sids[missing] = self._spans.lookup([spans[i] for i in missing])
        ids, lengths = _apply_post_rules(self._spans.forms_of(sids), len(texts), self.local_id)
        new_tokens = self.tokens[self._reported :]
        self._reported = len(self.tokens)
        return EncodedChunk(ids, lengths, n_bytes, os.getpid(), new_tokens)

    def token_strings(self, text: str) -> list[str]:
        """The tokens of one text as strings (for inspection and tests)."""
        chunk = self.encode([text])
        return [self.tokens[i] for i in chunk.ids]


def _apply_post_rules(packed: np.ndarray, n_docs: int, local_id: Callable[[str], int]):
    """Vectorised drop_spaces + replace_wrep + replace_caps over a chunk of packed tokens."""
    code = packed & 3
    packed = packed[code != _DROP]
    code = packed & 3
    lid = ((packed >> _LID_SHIFT) & _LID_MASK).astype(np.int32)
    key = packed >> _KEY_SHIFT
    doc_start = key == _DOC_START_KEY
    doc = np.cumsum(doc_start) - 1
    n = len(lid)
    # Runs of the same token, never crossing a document start (nor any xxbos).
    bos = lid == BOS_ID
    starts = np.ones(n, dtype=bool)
    starts[1:] = (key[1:] != key[:-1]) | bos[1:] | bos[:-1]
    run_starts = np.flatnonzero(starts)
    run_lengths = np.diff(np.append(run_starts, n))
    long_run = run_lengths[np.cumsum(starts) - 1] >= rules.MIN_WORD_REPEAT
    emitted = starts | ~long_run
    wrep = (starts & long_run)[emitted]
    code, lid, doc = code[emitted], lid[emitted], doc[emitted]
    width = 1 + (code > 0) + 2 * wrep
    end = np.cumsum(width)
    out = np.empty(int(end[-1]) if n else 0, dtype=np.int32)
    out[end - 1] = lid
    marked = code > 0
    out[end[marked] - 2] = _MARKER_IDS[code[marked]]
    first = (end - width)[wrep]
    out[first] = WREP_ID
    counts = run_lengths[long_run[run_starts]]
    out[first + 1] = [local_id(str(c)) for c in counts.tolist()]
    lengths = np.bincount(doc, weights=width, minlength=n_docs).astype(np.int64)
    return out, lengths


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
