import json

import numpy as np
import pytest
import torch

from ulmfit import cli
from ulmfit.classifier.tta import augmented_copy, tta_probs
from ulmfit.errors import UlmfitError
from locations import data_root
from ulmfit.classifier.predict import predict_probs
from ulmfit.stages.classify import load_classifier, train
from ulmfit.stages.infer import evaluate, predict
from ulmfit.text.corpus import load_split
from ulmfit.text.readers import read_documents
from ulmfit.text.special import BOS_ID
from ulmfit.tricks.eda import nearest_neighbours

NEIGHBOURS = np.random.default_rng(0).integers(9, 60, size=(60, 5))
DOCS = [np.array([BOS_ID, *np.random.default_rng(i).integers(9, 60, size=3 + i)]) for i in range(7)]


def fake_predict(docs):
    """Probabilities that depend on each document alone (its length and first word)."""
    scores = np.array([[len(d), d[1] % 7, 1.0] for d in docs], dtype=np.float64)
    return (scores / scores.sum(1, keepdims=True)).astype(np.float32)


def test_tta_probabilities_are_the_mean_of_the_original_and_each_copy_row_by_row():
    copies = [DOCS, augmented_copy(DOCS, 1, NEIGHBOURS), augmented_copy(DOCS, 2, NEIGHBOURS)]
    assert sum(len(a) != len(b) or not np.array_equal(a, b) for a, b in zip(DOCS, copies[1])) >= 4
    expected = np.mean([fake_predict(c) for c in copies], axis=0)
    assert np.allclose(tta_probs(fake_predict, DOCS, 2, NEIGHBOURS), expected, atol=1e-7)
    assert np.array_equal(tta_probs(fake_predict, DOCS, 0, None), fake_predict(DOCS))


def test_copies_depend_on_the_copy_number_and_document_index_not_on_chunking():
    whole = augmented_copy(DOCS, 1, NEIGHBOURS)
    chunks = augmented_copy(DOCS[:3], 1, NEIGHBOURS) + augmented_copy(DOCS[3:], 1, NEIGHBOURS, first=3)
    assert all(np.array_equal(a, b) for a, b in zip(whole, chunks))
    other = augmented_copy(DOCS, 2, NEIGHBOURS)
    assert any(len(a) != len(b) or not np.array_equal(a, b) for a, b in zip(whole, other))


@pytest.fixture(scope="module")
def classifier(trec_tok, tmp_path_factory):
    out = tmp_path_factory.mktemp("tta") / "clf"
    train(data=str(trec_tok), out=str(out), from_scratch=True, preset="tiny", max_steps=40, device="cpu")
    return out


def test_tta_0_is_plain_prediction_and_tta_n_averages_the_copies(classifier, trec_tok):
    cfg, _, model = load_classifier(classifier)
    docs = list(load_split(trec_tok, "test"))
    plain = predict_probs(model, docs, cfg.bs, cfg.backwards, torch.device("cpu"), cfg.max_tokens)
    report = evaluate(str(classifier), str(trec_tok), tta=0, device="cpu")
    assert report["tta"] == 0 and np.array_equal(np.load(classifier / "probs_test.npy"), plain)

    cli.main(["evaluate", "--model", str(classifier), "--data", str(trec_tok), "--tta", "2", "--device", "cpu"])
    report = json.loads((classifier / "eval_test.json").read_text())
    tta = np.load(classifier / "probs_test.npy")
    neighbours = nearest_neighbours(model.encoder.embedding.weight)
    copies = [predict_probs(model, augmented_copy(docs, c, neighbours), cfg.bs, cfg.backwards, torch.device("cpu"))
              for c in (1, 2)]
    assert report["tta"] == 2 and np.allclose(tta, (plain + copies[0] + copies[1]) / 3, atol=1e-6)
    assert not np.allclose(tta, plain, atol=1e-4)
    labels = np.load(trec_tok / "test_labels.npy")
    assert report["accuracy"] == pytest.approx(np.mean(tta.argmax(1) == labels))


def test_predict_with_tta_keeps_the_input_order_in_any_chunks(classifier, trec_tok, tmp_path, monkeypatch):
    texts = [text for text, _ in read_documents(data_root() / "trec" / "TREC_10.label", encoding="latin-1")]
    (tmp_path / "questions.txt").write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    evaluate(str(classifier), str(trec_tok), tta=2, device="cpu")
    expected = np.load(classifier / "probs_test.npy")
    monkeypatch.setattr("ulmfit.stages.infer.PREDICT_CHUNK_DOCS", 128)
    summary = predict(str(classifier), str(tmp_path / "questions.txt"), str(tmp_path / "p.jsonl"), tta=2,
                      device="cpu")
    assert summary["documents"] == 500 and summary["tta"] == 2
    classes = json.loads((classifier / "classes.json").read_text())
    rows = [json.loads(line)["probs"] for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert np.allclose([[row[c] for c in classes] for row in rows], expected, atol=1e-5)
    with pytest.raises(UlmfitError, match="--tta"):
        evaluate(str(classifier), str(trec_tok), tta=-1, device="cpu")
