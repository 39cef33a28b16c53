"""fastai-style text rules: pre rules rewrite the raw text, post rules rewrite the token list.

Pre rules (text -> text) run before the tokenizer; post rules (tokens -> tokens) run after it.
The semantics follow fastai v1, the version the ULMFiT paper used:

- ``replace_rep``: a character repeated 4 or more times becomes ``xxrep n c`` where n is the
  whole run length ("cooool" -> "c xxrep 4 o l").
- ``replace_wrep``: a token repeated 4 or more times in a row becomes ``xxwrep n w``.
- ``replace_caps``: an ALL-CAPS token longer than one character becomes ``xxup tok``; a
  Capitalised token (upper first, lower rest, longer than one character) becomes ``xxmaj tok``;
  every token is lower-cased. Single capitals ("I", "A") are lower-cased without a marker.

The spaCy encoder in :mod:`ulmfit.text.tokenizers` applies the post rules with numpy for speed;
it calls :func:`token_form` here for each distinct token, and its output is tested to be equal
to :func:`apply_post_rules`.
"""
from __future__ import annotations

import html
import re
from typing import Callable, Sequence

from .special import BOS, EOS, MAJ, PAD, REP, UNK, UP, WREP

MIN_CHAR_REPEAT = 4
MIN_WORD_REPEAT = 4
NEWLINE = "\n"

_LINE_BREAK_TAG = re.compile(r"<\s*br\s*/?\s*>", re.IGNORECASE)
# WikiText escapes hyphens and separators inside numbers as " @-@ ".
_WIKITEXT_ESCAPES = {" @-@ ": "-", " @,@ ": ",", " @.@ ": "."}
# "." rather than "\S" because it scans twice as fast; white-space runs are left as they are.
_CHAR_RUN = re.compile(r"(.)\1{%d,}" % (MIN_CHAR_REPEAT - 1))
_SPACED_SYMBOLS = re.compile(r"([/#\\])")


def fix_html(text: str) -> str:
    """Undo HTML entities, turn ``<br />`` into a newline and ``<unk>`` into ``xxunk``."""
    if "&" in text:
        text = html.unescape(text)
    if "<" in text:
        text = _LINE_BREAK_TAG.sub(NEWLINE, text).replace("<unk>", f" {UNK} ")
    if " @" in text:
        for escaped, plain in _WIKITEXT_ESCAPES.items():
            text = text.replace(escaped, plain)
    return text.replace("\xa0", " ")


def replace_rep(text: str) -> str:
    """``"!!!!"`` -> ``" xxrep 4 ! "``: long character runs become one marker and a count."""
    return _CHAR_RUN.sub(_rep_marker, text)


def _rep_marker(match: re.Match) -> str:
    run = match.group()
    return run if run[0].isspace() else f" {REP} {len(run)} {run[0]} "


def spec_add_spaces(text: str) -> str:
    """Put spaces around ``/``, ``#`` and ``\\`` so that "and/or" gives three tokens."""
    return _SPACED_SYMBOLS.sub(r" \1 ", text)


def rm_useless_spaces(text: str) -> str:
    """One space between words: other white space (tabs, runs of spaces, spaces at line ends)
    goes, newlines stay as paragraph marks, the text is stripped."""
    return NEWLINE.join(" ".join(line.split()) for line in text.split(NEWLINE)).strip()


def space_token_form(token: str) -> str | None:
    """White-space tokens: a paragraph mark ``"\\n"`` if they hold a newline, else dropped."""
    return NEWLINE if NEWLINE in token else None


def case_marker(token: str) -> tuple[str | None, str]:
    """``"HELLO"`` -> ``("xxup", "hello")``, ``"Hello"`` -> ``("xxmaj", "hello")``, else no marker."""
    if len(token) > 1:
        if token.isupper():
            return UP, token.lower()
        if token[0].isupper() and token[1:].islower():
            return MAJ, token.lower()
    return None, token.lower()


def token_form(token: str) -> tuple[str | None, str] | None:
    """What the post rules make of one token on its own: (marker or None, text), or None to drop."""
    if token.isspace():
        form = space_token_form(token)
        return None if form is None else (None, form)
    return case_marker(token)


def drop_spaces(tokens: Sequence[str]) -> list[str]:
    """Drop white-space tokens, keeping one ``"\\n"`` for those that contained a newline."""
    out = []
    for t in tokens:
        if t.isspace():
            form = space_token_form(t)
            if form is not None:
                out.append(form)
        else:
            out.append(t)
    return out


def replace_wrep(tokens: Sequence[str]) -> list[str]:
    """``w w w w`` -> ``xxwrep 4 w``: runs of 4+ identical tokens (case-sensitive)."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        j = i + 1
        while j < len(tokens) and tokens[j] == tokens[i]:
            j += 1
        if j - i >= MIN_WORD_REPEAT:
            out += [WREP, str(j - i), tokens[i]]
        else:
            out += tokens[i:j]
        i = j
    return out


def replace_caps(tokens: Sequence[str]) -> list[str]:
    """Lower-case every token, putting ``xxup``/``xxmaj`` before ALL-CAPS/Capitalised ones."""
    out = []
    for t in tokens:
        marker, lowered = case_marker(t)
        if marker is not None:
            out.append(marker)
        out.append(lowered)
    return out


def add_bos(tokens: Sequence[str]) -> list[str]:
    """Every document starts with ``xxbos`` so the model knows a new text begins."""
    return [BOS, *tokens]


PRE_RULES: dict[str, Callable[[str], str]] = {
    f.__name__: f for f in (fix_html, replace_rep, spec_add_spaces, rm_useless_spaces)
}
POST_RULES: dict[str, Callable[[Sequence[str]], list[str]]] = {
    f.__name__: f for f in (drop_spaces, replace_wrep, replace_caps, add_bos)
}


def apply_pre_rules(text: str, names: Sequence[str]) -> str:
    """``text`` through the named pre-rules in order (every tokenizer and SentencePiece training)."""
    for name in names:
        text = PRE_RULES[name](text)
    return text


def apply_post_rules(tokens: Sequence[str], names: Sequence[str] = tuple(POST_RULES)) -> list[str]:
    out = list(tokens)
    for name in names:
        out = POST_RULES[name](out)
    return out


def detokenize(tokens: Sequence[str]) -> str:
    """Readable text from rule-processed tokens: case and repetition markers undone, xxbos,
    xxpad and xxeos dropped, tokens joined by spaces (the original spacing is not kept)."""
    def unit(i: int) -> tuple[str, int]:
        if tokens[i] in (MAJ, UP) and i + 1 < len(tokens):
            word = tokens[i + 1]
            return (word[:1].upper() + word[1:] if tokens[i] == MAJ else word.upper()), i + 2
        return tokens[i], i + 1

    words: list[str] = []
    i = 0
    while i < len(tokens):
        if tokens[i] in (BOS, EOS, PAD):
            i += 1
        elif tokens[i] in (REP, WREP) and i + 2 < len(tokens) and tokens[i + 1].isdigit():
            count, marker = int(tokens[i + 1]), tokens[i]
            word, i = unit(i + 2)
            words.append(word * count if marker == REP else " ".join([word] * count))
        else:
            word, i = unit(i)
            words.append(word)
    return " ".join(words).replace(f" {NEWLINE} ", NEWLINE)
