"""The spaCy and SentencePiece encoders and the predict-time Tokenizer."""
import functools
import itertools

import numpy as np
import pytest

from ulmfit.artefacts import SPM_MODEL
from locations import data_root
from ulmfit.text import rules, spacy_encoder, tokenizers
from ulmfit.text.chunks import IdTranslator
from ulmfit.text.readers import read_documents
from ulmfit.text.special import BOS_ID, SPECIAL_TOKENS, UNK_ID
from ulmfit.text.spacy_encoder import SpacyEncoder, make_spacy_tokenizer
from ulmfit.text.tokenizers import SPACY_PRE_RULES, TokenizerSettings, Tokenizer, train_sentencepiece
from ulmfit.text.vocab import Vocab

DATA = data_root()

TRICKY = [
    "Hello World!!!! THIS is GREAT great great great great. The the the the end",
    "I'm sure U.S.A. isn't e.g. 3.5km away :) (see http://example.com/a?b=1) and/or #tag",
    "Paragraph one.\n\n  Paragraph  two \n three\tfour",
    "<br /><br />Tom &amp; Jerry... <unk> xxbos xxmaj literal",
    "no no no no no no, NO NO NO NO",
    "naïve café — “quoted” 1,000,000 sooooo",
    "",
]


@functools.lru_cache(maxsize=1)
def plain_spacy():
    return make_spacy_tokenizer("en")


def reference_tokens(text):
    """spaCy + the list-based rules: the definition the fast encoder must match."""
    tokenizer = plain_spacy()
    return rules.apply_post_rules([t.text for t in tokenizer(rules.apply_pre_rules(text, SPACY_PRE_RULES))])


def encoded_tokens(encoder, texts):
    chunk = encoder.encode(texts)
    return [[encoder.tokens[i] for i in doc] for doc in np.split(chunk.ids, np.cumsum(chunk.lengths)[:-1])]


def real_excerpts():
    if not DATA.exists():
        return []
    texts = [t for t, _ in itertools.islice(read_documents(str(DATA / "imdb" / "aclImdb_v1.tar.xz") + ":aclImdb/test"), 40)]
    texts += [t[:20000] for t, _ in itertools.islice(read_documents(DATA / "wikipedia" / "valid.jsonl.xz"), 2)]
    return texts


@pytest.fixture(scope="module")
def encoder():
    return SpacyEncoder(TokenizerSettings())


def test_fast_spacy_encoder_equals_spacy_plus_rules(encoder):
    texts = TRICKY + real_excerpts()
    assert encoded_tokens(encoder, texts) == [reference_tokens(t) for t in texts]


def test_plain_word_shortcut_splits_like_spacy(encoder):
    spans = ["word,", "(word", '"Word"', "(word)", "word.", "Word.", "USA.", "A.", "e.g.", "etc.", "Mr.",
             "cannot,", "gonna", "θεὰ.", "𐐲.", "naïve;", "(", ",", '"', "a,", "I.", "word:", "word)"]
    tokens = encoded_tokens(encoder, [" ".join(spans)])[0]
    spacy_tokens = [t.text for span in spans for t in plain_spacy()(span)]
    assert tokens == rules.apply_post_rules(spacy_tokens)
    assert encoder._plain_word_pieces("word.") == ["word", "."]
    assert encoder._plain_word_pieces("A.") is None and encoder._plain_word_pieces("θεὰ.") is None


def test_encoder_output_does_not_depend_on_chunking_or_memo_resets(monkeypatch):
    texts = TRICKY * 3
    expected = [reference_tokens(t) for t in texts]
    monkeypatch.setattr(spacy_encoder, "MAX_MEMO_SPANS", 5)
    small_memo = SpacyEncoder(TokenizerSettings())
    got = [doc for i in range(0, len(texts), 2) for doc in encoded_tokens(small_memo, texts[i:i + 2])]
    assert got == expected


def test_special_tokens_are_never_split(encoder):
    text = " ".join(SPECIAL_TOKENS) + " (xxmaj) xxrep."
    tokens = encoded_tokens(encoder, [text])[0]
    assert tokens[1 : 1 + len(SPECIAL_TOKENS)] == SPECIAL_TOKENS
    assert tokens[-5:] == ["(", "xxmaj", ")", "xxrep", "."]


def test_every_document_starts_with_bos_and_lengths_add_up(encoder):
    chunk = encoder.encode(["a b", "", "c"])
    assert chunk.lengths.tolist() == [3, 1, 2]
    assert chunk.ids[np.cumsum(chunk.lengths) - chunk.lengths].tolist() == [BOS_ID] * 3
    assert chunk.n_bytes == 4


def test_new_tokens_are_reported_once(encoder):
    first = encoder.encode(["zebra quagga"])
    second = encoder.encode(["zebra okapi"])
    assert {"zebra", "quagga"} <= set(first.new_tokens)
    assert "zebra" not in second.new_tokens and "okapi" in second.new_tokens


def test_id_translator_follows_local_numbering():
    encoder = SpacyEncoder(TokenizerSettings())  # a translator follows an encoder from its start
    table = {}
    translate = IdTranslator(lambda t: table.setdefault(t, 100 + len(table)))
    ids = translate(encoder.encode(["one two one"]))
    assert ids.tolist() == [BOS_ID, table["one"], table["two"], table["one"]]
    ids = translate(encoder.encode(["two three"]))
    assert ids.tolist() == [BOS_ID, table["two"], table["three"]]


def test_spacy_tokenizer_encode_and_decode():
    vocab = Vocab.from_counts({"hello": 2, "world": 2, "!": 2}, min_freq=1)
    tok = Tokenizer(TokenizerSettings(), vocab)
    ids = tok.encode_docs(["Hello WORLD!", "hello moon"])
    assert [vocab.textify(d) for d in ids] == [["xxbos", "xxmaj", "hello", "xxup", "world", "!"],
                                               ["xxbos", "hello", "xxunk"]]
    assert tok.decode(ids[0]) == "Hello WORLD !"


def test_settings_reject_unknown_rules(tmp_path):
    settings = TokenizerSettings(pre_rules=["fix_html", "magic"])
    settings.save(tmp_path)
    with pytest.raises(Exception, match="unknown pre rules"):
        TokenizerSettings.load(tmp_path)


# --- SentencePiece ---------------------------------------------------------------------------
SP_TEXTS = [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Language models learn the structure of text from raw corpora.",
    "Transfer learning fine-tunes a pretrained model on the target task.",
] * 20


@pytest.fixture(scope="module")
def sp_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sp")
    settings = TokenizerSettings.create("sentencepiece", "en", "unigram", 120)
    train_sentencepiece(SP_TEXTS, folder, settings, sample_sentences=1000, threads=1)
    encoder = tokenizers.SentencePieceEncoder(settings, folder / SPM_MODEL)
    settings.save(folder)
    encoder.vocab().save(folder)
    return folder


def test_sentencepiece_vocab_has_specials_first(sp_folder):
    vocab = Vocab.load(sp_folder)
    assert vocab.itos[: len(SPECIAL_TOKENS)] == SPECIAL_TOKENS
    assert 20 < len(vocab) <= 120


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_sentencepiece_decode_encode_round_trip(tmp_path, model_type):
    settings = TokenizerSettings.create("sentencepiece", "en", model_type, 100)
    train_sentencepiece(SP_TEXTS, tmp_path, settings, sample_sentences=1000, threads=1)
    encoder = tokenizers.SentencePieceEncoder(settings, tmp_path / SPM_MODEL)
    tok = Tokenizer(settings, encoder.vocab(), tmp_path)
    text = "The lazy fox learns the structure of a model."
    ids = tok.encode(text)
    assert ids[0] == BOS_ID and ids.dtype.name == "int32"
    assert tok.decode(ids) == text


def test_sentencepiece_tokenizer_reloads_from_folder(sp_folder):
    tok = tokenizers.load_tokenizer(sp_folder)
    assert tok.kind == "sentencepiece"
    docs = tok.encode_docs(["the quick dog", "models"])
    assert [d[0] for d in docs] == [BOS_ID, BOS_ID]
    assert tok.decode(docs[0]) == "the quick dog"
    assert UNK_ID not in docs[0]


def test_sentencepiece_training_lines_are_cut_not_skipped():
    long_paragraph = "word " * tokenizers.SP_TRAIN_LINE_CHARS
    lines = list(tokenizers._sp_training_lines([long_paragraph + "\nshort"], ["rm_useless_spaces"]))
    assert all(len(line) <= tokenizers.SP_TRAIN_LINE_CHARS for line in lines)
    assert " ".join(lines[:-1]).split() == long_paragraph.split() and lines[-1] == "short"
