"""Vocabulary building, numericalization and the vocab.json round trip."""
import json
from collections import Counter

import pytest

from ulmfit.errors import UlmfitError
from ulmfit.text.special import SPECIAL_TOKENS, UNK_ID
from ulmfit.text.vocab import Vocab


def test_specials_first_then_by_frequency_then_text():
    vocab = Vocab.from_counts(Counter({"b": 5, "a": 5, "c": 9, "rare": 1}), max_vocab=100, min_freq=2)
    assert vocab.itos[: len(SPECIAL_TOKENS)] == SPECIAL_TOKENS
    assert vocab.itos[len(SPECIAL_TOKENS):] == ["c", "a", "b"]
    assert vocab.stoi["c"] == len(SPECIAL_TOKENS)


def test_max_vocab_counts_the_specials():
    counts = {f"w{i}": 100 - i for i in range(50)}
    vocab = Vocab.from_counts(counts, max_vocab=20, min_freq=1)
    assert len(vocab) == 20
    assert vocab.itos[-1] == "w10"


def test_specials_in_counts_are_not_duplicated():
    vocab = Vocab.from_counts({"xxmaj": 50, "xxunk": 3, "the": 9}, min_freq=1)
    assert vocab.itos == SPECIAL_TOKENS + ["the"]


def test_max_vocab_smaller_than_specials_is_an_error():
    with pytest.raises(UlmfitError, match="special tokens"):
        Vocab.from_counts({"a": 3}, max_vocab=5)


def test_numericalize_maps_unknown_tokens_to_unk():
    vocab = Vocab.from_counts({"the": 3, "cat": 2}, min_freq=2)
    ids = vocab.numericalize(["the", "dog", "cat"])
    assert ids.dtype.name == "int32"
    assert ids.tolist() == [vocab.stoi["the"], UNK_ID, vocab.stoi["cat"]]
    assert vocab.textify(ids) == ["the", "xxunk", "cat"]


def test_save_load_round_trip(tmp_path):
    vocab = Vocab.from_counts({"é": 4, "naïve": 3, "\n": 2}, min_freq=2)
    vocab.save(tmp_path)
    assert json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8")) == vocab.itos
    loaded = Vocab.load(tmp_path)
    assert loaded.itos == vocab.itos and loaded.stoi == vocab.stoi
    assert Vocab.load(tmp_path / "vocab.json").itos == vocab.itos


def test_load_rejects_a_vocab_without_the_specials_first(tmp_path):
    (tmp_path / "vocab.json").write_text(json.dumps(["the"] + SPECIAL_TOKENS))
    with pytest.raises(UlmfitError, match="special tokens"):
        Vocab.load(tmp_path)


def test_load_missing_vocab_names_the_file(tmp_path):
    with pytest.raises(UlmfitError, match="vocab.json: file not found"):
        Vocab.load(tmp_path)
