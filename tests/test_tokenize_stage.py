"""The ``tokenize`` stage end to end: output contract, reruns, reuse, bad input, CLI."""
import inspect
import json
import subprocess
import sys

import numpy as np
import pytest

from ulmfit.errors import UlmfitError
from locations import REPO_ROOT, data_root
from ulmfit.stages import tokenize as stage
from ulmfit.stages.tokenize import tokenize
from ulmfit.text.corpus import load_classes, load_split
from ulmfit.text.special import BOS_ID, SPECIAL_TOKENS
from ulmfit.text.tokenizers import load_tokenizer
from ulmfit.text.vocab import Vocab

DATA = data_root()
needs_data = pytest.mark.skipif(not DATA.exists(), reason="shared data root not available")
TREC = DATA / "trec"
WIKI = DATA / "wikipedia"


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


REVIEWS = [
    {"text": "A GREAT movie!!!! Loved it.", "label": "pos"},
    {"text": "Terrible. Just terrible terrible terrible terrible.", "label": "neg"},
    {"text": "I loved the actors<br />and the music.", "label": "pos"},
    {"text": "   ", "label": "neg"},
    {"text": "Boring plot, boring actors.", "label": "neg"},
]


@pytest.fixture(scope="module")
def trec_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("trec") / "tok"
    metrics = tokenize(str(TREC / "train_5500.label"), test=str(TREC / "TREC_10.label"), out=str(out),
                       format="trec", encoding="latin-1")
    return out, metrics


@needs_data
def test_trec_output_contract(trec_run):
    out, metrics = trec_run
    vocab = Vocab.load(out)
    assert vocab.itos[: len(SPECIAL_TOKENS)] == SPECIAL_TOKENS
    assert load_classes(out) == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    for split, n_docs in (("train", 5452), ("test", 500)):
        data = load_split(out, split)
        assert isinstance(data.ids, np.memmap) and data.ids.dtype == np.int32
        assert data.offsets.dtype == np.int64 and data.labels.dtype == np.int64
        assert len(data) == n_docs == metrics["splits"][split]["docs"]
        assert (data.ids[data.offsets[:-1]] == BOS_ID).all()
        assert data.ids.max() < len(vocab)
        for path in out.glob(f"{split}_*.npy"):
            np.load(path, allow_pickle=False)
    assert np.bincount(load_split(out, "test").labels).tolist() == [9, 138, 94, 65, 81, 113]
    assert not (out / "valid_ids.npy").exists()
    assert json.loads((out / "config.json").read_text())["format"] == "trec"
    assert metrics["splits"]["train"]["tokens"] == load_split(out, "train").n_tokens
    assert 0 < metrics["splits"]["test"]["unk_rate"] < 0.2


@needs_data
def test_saved_tokenizer_reproduces_training_ids(trec_run):
    out, _ = trec_run
    tok = load_tokenizer(out)
    first = "How did serfdom develop in and then leave Russia ?"
    ids = tok.encode(first)
    assert ids.tolist() == load_split(out, "train").doc(0).tolist()
    assert tok.decode(ids).startswith("How did")


@needs_data
def test_same_config_is_skipped_other_config_is_an_error(trec_run, capsys):
    out, metrics = trec_run
    before = (out / "train_ids.npy").stat().st_mtime_ns
    again = tokenize(str(TREC / "train_5500.label"), test=str(TREC / "TREC_10.label"), out=str(out),
                     format="trec", encoding="latin-1", workers=1)
    assert again == json.loads((out / "metrics.json").read_text())
    assert "already holds this tokenize run" in capsys.readouterr().err
    assert (out / "train_ids.npy").stat().st_mtime_ns == before
    spelled_otherwise = str(TREC.resolve() / ".." / "trec" / "train_5500.label")
    assert tokenize(spelled_otherwise, test=str(TREC / "TREC_10.label"), out=str(out), format="trec",
                    encoding="latin-1", workers=1) == again
    with pytest.raises(UlmfitError, match=r"other settings \(min_freq: 2 -> 5\).*--overwrite"):
        tokenize(str(TREC / "train_5500.label"), test=str(TREC / "TREC_10.label"), out=str(out),
                 format="trec", encoding="latin-1", min_freq=5)


def test_overwrite_replaces_a_different_run(tmp_path):
    out = tmp_path / "tok"
    train = write_jsonl(tmp_path / "r.jsonl", REVIEWS)
    tokenize(train, out=str(out), min_freq=1)
    metrics = tokenize(train, out=str(out), min_freq=3, overwrite=True)
    assert json.loads((out / "config.json").read_text())["min_freq"] == 3
    assert metrics["vocab_size"] < len(SPECIAL_TOKENS) + 5


def test_folder_that_is_not_a_run_is_protected(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(UlmfitError, match="not a tokenize output"):
        tokenize(write_jsonl(tmp_path / "r.jsonl", REVIEWS), out=str(tmp_path / "out"))


def test_labels_empty_docs_and_rules(tmp_path):
    out = tmp_path / "tok"
    metrics = tokenize(write_jsonl(tmp_path / "r.jsonl", REVIEWS), out=str(out), min_freq=1)
    train = load_split(out, "train")
    vocab = Vocab.load(out)
    assert metrics["splits"]["train"]["docs"] == 4 and metrics["splits"]["train"]["empty_docs"] == 1
    assert load_classes(out) == ["neg", "pos"] and train.labels.tolist() == [1, 0, 1, 0]
    assert vocab.textify(train.doc(0)) == ["xxbos", "a", "xxup", "great", "movie", "xxrep", "4", "!",
                                           "xxmaj", "loved", "it", "."]
    assert "xxwrep" in vocab.textify(train.doc(1)) and "\n" in vocab.textify(train.doc(2))


def test_unseen_test_labels_are_an_error(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", REVIEWS)
    test = write_jsonl(tmp_path / "test.jsonl", [{"text": "meh", "label": "neutral"}])
    with pytest.raises(UlmfitError, match="test.jsonl: labels not seen in train: neutral"):
        tokenize(train, test=test, out=str(tmp_path / "tok"))
    assert not (tmp_path / "tok").exists() and not list(tmp_path.glob(".tok.*"))


def write_bytes(path, content: bytes) -> str:
    path.write_bytes(content)
    return str(path)


@pytest.mark.parametrize("make_input, message", [
    (lambda d: str(d / "missing.jsonl"), "missing.jsonl: file not found"),
    (lambda d: write_bytes(d / "empty.txt", b""), "empty.txt: file is empty"),
    (lambda d: write_jsonl(d / "blank.jsonl", [{"text": " "}, {"text": ""}]), r"no documents found \(2 empty"),
    (lambda d: write_bytes(d / "bad.txt", b"fine\n\xff\n"), r"bad.txt, line 2: .*--encoding"),
    (lambda d: write_jsonl(d / "nokey.jsonl", [{"body": "x"}]), "no 'text' key"),
    (lambda d: write_bytes(d / "q.csv", b"review,label\nfine,pos\n"), "no 'text' column"),
])
def test_bad_input_leaves_nothing_behind(tmp_path, make_input, message):
    with pytest.raises(UlmfitError, match=message):
        tokenize(make_input(tmp_path), out=str(tmp_path / "tok"))
    assert not (tmp_path / "tok").exists() and not list(tmp_path.glob(".tok.*"))


@needs_data
def test_worker_pool_gives_the_same_output_as_one_process(tmp_path, monkeypatch):
    monkeypatch.setattr(stage, "POOL_MIN_BYTES", 0)  # use the pool even for this small input
    monkeypatch.setattr(stage, "CHUNK_DOCS", 50)  # many chunks, spread over both workers
    for name, workers in (("one", 1), ("two", 2)):
        tokenize(str(TREC / "train_5500.label"), valid=str(TREC / "TREC_10.label"), out=str(tmp_path / name),
                 encoding="latin-1", workers=workers)
    for name in ("vocab.json", "classes.json"):
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "two" / name).read_text()
    for split in ("train", "valid"):
        one, two = load_split(tmp_path / "one", split), load_split(tmp_path / "two", split)
        assert np.array_equal(one.ids, two.ids) and np.array_equal(one.offsets, two.offsets)
        assert np.array_equal(one.labels, two.labels)


@needs_data
def test_wikipedia_then_reuse_its_tokenizer_and_vocab(tmp_path):
    wiki = tmp_path / "wiki"
    tokenize(str(WIKI / "train-small.jsonl.xz"), valid=str(WIKI / "valid.jsonl.xz"), out=str(wiki), max_docs=8)
    assert not (wiki / "train_labels.npy").exists() and not (wiki / "classes.json").exists()
    target = tmp_path / "target"
    reviews = write_jsonl(tmp_path / "r.jsonl", REVIEWS)
    metrics = tokenize(reviews, out=str(target), vocab_from=str(wiki), min_freq=1)
    assert (target / "vocab.json").read_text() == (wiki / "vocab.json").read_text()
    assert (target / "tokenizer.json").read_text() == (wiki / "tokenizer.json").read_text()
    ids = load_split(target, "train")
    assert ids.doc(0).tolist() == load_tokenizer(wiki).encode(REVIEWS[0]["text"]).tolist()
    assert metrics["vocab_size"] == len(Vocab.load(wiki))


def test_sentencepiece_run_and_reuse(tmp_path):
    texts = [{"text": f"Review number {i}: the film was {w} and the actors were {w}er than ever.", "label": w}
             for i, w in enumerate(["good", "bad", "nice", "dull"] * 15)]
    train = write_jsonl(tmp_path / "train.jsonl", texts)
    out = tmp_path / "sp"
    metrics = tokenize(train, out=str(out), tokenizer="sentencepiece", sp_vocab_size=80)
    assert (out / "spm.model").exists() and metrics["tokenizer"] == "sentencepiece"
    vocab = Vocab.load(out)
    assert vocab.itos[: len(SPECIAL_TOKENS)] == SPECIAL_TOKENS and len(vocab) <= 80
    data = load_split(out, "train")
    tok = load_tokenizer(out)
    assert tok.decode(data.doc(3)) == texts[3]["text"]
    assert data.doc(3).tolist() == tok.encode(texts[3]["text"]).tolist()
    reused = tmp_path / "reused"
    tokenize(train, out=str(reused), vocab_from=str(out))
    assert (reused / "spm.model").read_bytes() == (out / "spm.model").read_bytes()
    assert np.array_equal(load_split(reused, "train").ids, data.ids)


def test_help_documents_every_argument():
    names = list(inspect.signature(tokenize).parameters)
    doc = inspect.getdoc(tokenize)
    undocumented = [name for name in names if f"    {name}: " not in doc]
    assert not undocumented
    result = subprocess.run([sys.executable, "-m", "ulmfit", "tokenize", "--help"], cwd=REPO_ROOT,
                            capture_output=True, text=True, env={"PAGER": "cat", "PATH": ""}, timeout=60)
    shown = result.stdout + result.stderr  # fire writes help to stderr when not on a terminal
    assert "TRAIN" in shown and all(f"--{name}" in shown for name in names if name != "train")


def test_cli_reports_bad_input_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ulmfit", "tokenize", "--train", str(tmp_path / "nope.txt"),
                             "--out", str(tmp_path / "tok")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'nope.txt'}: file not found"


def test_sentencepiece_reports_undecodable_input_plainly(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"good line\nbad \xff line\n")
    with pytest.raises(UlmfitError, match=r"^.*bad.txt, line 2: .*--encoding"):
        tokenize(str(path), out=str(tmp_path / "tok"), tokenizer="sentencepiece")
    assert not (tmp_path / "tok").exists()


def test_class_tree_with_unsup_gives_unlabelled_documents(tmp_path):
    for folder, texts in {"pos": ["Great fun.", "Loved it."], "neg": ["Dull."], "unsup": ["Some film."]}.items():
        (tmp_path / "train" / folder).mkdir(parents=True)
        for i, text in enumerate(texts):
            (tmp_path / "train" / folder / f"{i}.txt").write_text(text)
    tokenize(str(tmp_path / "train"), out=str(tmp_path / "tok"), unsup=True, min_freq=1)
    assert load_classes(tmp_path / "tok") == ["neg", "pos"]
    assert load_split(tmp_path / "tok", "train").labels.tolist() == [0, 1, 1, -1]
