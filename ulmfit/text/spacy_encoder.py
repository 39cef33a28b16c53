"""The spaCy tokenizer's fast path: texts -> ids local to the encoder, with the fastai pre and
post rules, memoised per white-space separated span and post-processed on packed numpy arrays.

Kept apart from :mod:`ulmfit.text.tokenizers` (settings, SentencePiece, the predict-time
Tokenizer) because its packing of token forms is a self-contained optimisation that a reader of
the facade does not need; its output is checked against plain spaCy + the rules in the tests.
"""
from __future__ import annotations

import os
import string
from itertools import chain, repeat
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ..errors import UlmfitError
from . import rules
from .chunks import EncodedChunk, TokenNumbering, fit_array
from .special import BOS, BOS_ID, MAJ, MAJ_ID, SPECIAL_TOKENS, UP, UP_ID, WREP_ID

if TYPE_CHECKING:
    from .tokenizers import TokenizerSettings


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
