"""The classifier stages on real TREC-6 data: train, evaluate, predict, ensemble."""
import csv
import io
import json
import shutil

import numpy as np
import pytest
import torch

from ulmfit import cli
from ulmfit.classifier.selection import hold_out, stratified_sample
from ulmfit.config import load_config
from ulmfit.errors import UlmfitError
from ulmfit.classifier.data import ClassificationData, training_data
from ulmfit.classifier.predict import predict_probs
from ulmfit.stages.classify import ClassifierConfig, train
from ulmfit.stages import infer
from ulmfit.stages.infer import ensemble, evaluate, predict
from locations import data_root
from ulmfit.stages.lm import LMTrainConfig, _stream, finetune, pretrain
from ulmfit.text.readers import read_documents
from ulmfit.stages.tokenize import tokenize

@pytest.fixture(scope="module")
def encoder(trec_tok, tmp_path_factory):
    """A tiny forward language model pretrained and fine-tuned on the TREC questions."""
    root = tmp_path_factory.mktemp("lm")
    pretrain(str(trec_tok), str(root / "pre"), preset="tiny", max_steps=30, device="cpu")
    finetune(str(root / "pre"), str(trec_tok), str(root / "ft"), max_steps=10, device="cpu")
    return root / "ft"


@pytest.fixture(scope="module")
def scratch(trec_tok, tmp_path_factory):
    """A tiny classifier trained from scratch on all of TREC, evaluated on its test split."""
    out = tmp_path_factory.mktemp("clf") / "fwd"
    metrics = train(data=str(trec_tok), out=str(out), from_scratch=True, preset="tiny", epochs=6, device="cpu")
    return out, metrics, evaluate(str(out), str(trec_tok), "test", device="cpu")


def test_hold_out_and_stratified_sample_are_seeded_and_proportional():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10 + [-1] * 5)
    train_docs, valid_docs = hold_out(labels, 0.1, seed=3)
    assert len(valid_docs) == 10 and not set(train_docs) & set(valid_docs)
    assert sorted(np.concatenate([train_docs, valid_docs])) == list(range(100))  # unlabelled left out
    assert np.array_equal(hold_out(labels, 0.1, seed=3)[1], valid_docs)
    assert not np.array_equal(hold_out(labels, 0.1, seed=4)[1], valid_docs)
    docs = np.arange(100)[::-1] + 1000  # indices into a split; labels are given per element of docs
    sample = stratified_sample(docs, labels[:100], 20, seed=0)
    assert np.bincount(labels[1099 - sample]).tolist() == [12, 6, 2]
    assert np.array_equal(stratified_sample(docs, labels[:100], 500, seed=0), np.sort(docs))


def test_from_scratch_on_real_trec_beats_the_majority_class_and_evaluate_writes_its_files(scratch, trec_tok):
    out, metrics, report = scratch
    test_labels = np.load(trec_tok / "test_labels.npy")
    majority = np.bincount(test_labels).max() / len(test_labels)  # DESC: 27.6%
    assert report["accuracy"] > majority + 0.35, report["accuracy"]
    assert report["error_rate"] == pytest.approx(1 - report["accuracy"])
    assert metrics["train_docs"] + metrics["valid_docs"] == 5452 and metrics["valid_docs"] == 545
    assert 50 < metrics["peak_rss_mb"] < 64 * 1024  # MiB: a torch process needs more than 50
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in log] == list(range(1, 7)) and metrics["best_valid_error"] == min(
        m["valid_error"] for m in log)
    for name in ("model.pt", "config.json", "vocab.json", "tokenizer.json", "classes.json", "metrics.json"):
        assert (out / name).exists(), name

    assert json.loads((out / "eval_test.json").read_text()) == report
    assert (out / "confusion_test.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    probs = np.load(out / "probs_test.npy")
    assert probs.shape == (500, 6) and np.allclose(probs.sum(1), 1, atol=1e-5)
    # probabilities are in the split's order: they score exactly as the report says
    assert np.mean(probs.argmax(1) == test_labels) == pytest.approx(report["accuracy"])
    cm = np.array(report["confusion_matrix"])
    assert cm.shape == (6, 6) and cm.sum() == 500 and np.array_equal(cm.sum(1), np.bincount(test_labels))
    assert set(report["per_class"]) == {"ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"}


def test_predict_on_raw_text_keeps_the_input_order(scratch, tmp_path, monkeypatch):
    out = scratch[0]
    texts = [text for text, _ in read_documents(data_root() / "trec" / "TREC_10.label", encoding="latin-1")]
    order = np.random.default_rng(0).permutation(len(texts))  # any order comes back as given
    (tmp_path / "questions.txt").write_text("".join(texts[i] + "\n" for i in order), encoding="utf-8")
    summary = predict(str(out), str(tmp_path / "questions.txt"), str(tmp_path / "preds.csv"), device="cpu")
    assert summary["documents"] == 500
    with open(tmp_path / "preds.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    classes = json.loads((out / "classes.json").read_text())
    assert list(rows[0]) == ["label"] + [f"prob_{c}" for c in classes]
    expected = np.load(out / "probs_test.npy")[order]  # evaluate's probabilities of the same questions
    got = np.array([[float(row[f"prob_{c}"]) for c in classes] for row in rows])
    assert np.allclose(got, expected, atol=1e-5)
    assert [row["label"] for row in rows] == [classes[k] for k in expected.argmax(1)]

    # JSONL out, standard input in, through the command line
    monkeypatch.setattr("sys.stdin", io.StringIO("what is the capital of france ?\n\nwho wrote hamlet ?\n"))
    cli.main(["predict", "--model", str(out), "--input=-", "--output", str(tmp_path / "p.jsonl"),
              "--device", "cpu"])
    lines = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and set(lines[0]["probs"]) == set(classes)
    assert lines[0]["label"] == max(lines[0]["probs"], key=lines[0]["probs"].get)
    with pytest.raises(UlmfitError, match="output format"):
        predict(str(out), str(tmp_path / "questions.txt"), str(tmp_path / "preds.txt"))


def test_encoder_path_freezes_all_but_the_head_in_the_first_epoch(encoder, trec_tok, tmp_path):
    enc = torch.load(encoder / "encoder.pt", weights_only=True)
    train(str(encoder), str(trec_tok), str(tmp_path / "gu"), epochs=1, max_train=300, device="cpu")
    head_only = torch.load(tmp_path / "gu" / "model.pt", weights_only=True)
    assert all(torch.equal(head_only[f"encoder.{k}"], v) for k, v in enc.items())  # head only
    train(str(encoder), str(trec_tok), str(tmp_path / "all"), epochs=1, max_train=300, no_gradual_unfreezing=True,
          device="cpu")
    all_layers = torch.load(tmp_path / "all" / "model.pt", weights_only=True)
    assert not torch.equal(all_layers["encoder.lstms.0.weight_hh_l0"], enc["lstms.0.weight_hh_l0"])

    metrics = train(str(encoder), str(trec_tok), str(tmp_path / "three"), epochs=3, max_train=300, device="cpu")
    log = [json.loads(line) for line in (tmp_path / "three" / "log.jsonl").read_text().splitlines()]
    assert [m["trainable_groups"] for m in log] == [1, 2, 3] and metrics["train_docs"] == 300
    cfg = load_config(ClassifierConfig, tmp_path / "three" / "config.json")
    assert (cfg.preset, cfg.encoder, cfg.bptt, cfg.head_hidden) == ("tiny", str(encoder), 20, 50)
    assert cfg.gradual_unfreezing and cfg.discriminative and cfg.schedule == "stlr"
    # discriminative rates: embedding, lstm0, lstm1, head, each 2.6 times the one below
    groups = torch.load(tmp_path / "three" / "last.pt", weights_only=True)["optimizer"]["param_groups"]
    base = [g["base_lr"] for g in groups]
    assert base[-1] == pytest.approx(cfg.lr) and np.allclose(np.array(base[1:]) / base[:-1], 2.6)


def test_min_steps_repeats_a_tiny_training_set_within_each_epoch(encoder, trec_tok, tmp_path):
    metrics = train(str(encoder), str(trec_tok), str(tmp_path / "few"), epochs=2, max_train=40, min_steps=12,
                    device="cpu")
    log = [json.loads(line) for line in (tmp_path / "few" / "log.jsonl").read_text().splitlines()]
    # 40 documents at batch 32 are 2 batches a pass: 3 passes an epoch, and unfreezing still counts epochs
    assert metrics["steps"] == 12 and [m["trainable_groups"] for m in log] == [1, 2]
    assert load_config(ClassifierConfig, tmp_path / "few" / "config.json").min_steps == 12
    with pytest.raises(UlmfitError, match="min_steps"):
        train(str(encoder), str(trec_tok), str(tmp_path / "bad"), min_steps=-1, device="cpu")


def test_the_last_epochs_weights_are_kept_unless_keep_best(trec_tok, tmp_path):
    """model.pt is the last epoch's; --keep_best takes the lowest validation error's (best.pt)."""
    options = dict(data=str(trec_tok), from_scratch=True, preset="tiny", max_train=100, epochs=5, min_steps=0,
                   device="cpu")
    metrics = train(out=str(tmp_path / "last"), **options)
    assert metrics["best_epoch"] < metrics["epochs"]  # else the two choices would not differ
    weights = {name: torch.load(tmp_path / "last" / name, weights_only=True) for name in ("model.pt", "best.pt")}
    last = torch.load(tmp_path / "last" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(weights["model.pt"][k], v) for k, v in last.items())
    assert not all(torch.equal(weights["best.pt"][k], v) for k, v in last.items())

    train(out=str(tmp_path / "best"), keep_best=True, **options)
    kept = torch.load(tmp_path / "best" / "model.pt", weights_only=True)
    assert all(torch.equal(kept[k], v) for k, v in weights["best.pt"].items())
    assert load_config(ClassifierConfig, tmp_path / "best" / "config.json").keep_best


def test_finetune_max_train_reads_the_documents_the_classifier_of_the_same_seed_trains_on(encoder, trec_tok,
                                                                                           tmp_path):
    for seed in (0, 3):
        clf_train, clf_valid = training_data(ClassifierConfig(max_train=60, seed=seed), trec_tok, 6)
        lm_cfg = LMTrainConfig(max_train=60, seed=seed, bs=4, bptt=10)
        assert np.array_equal(_stream(lm_cfg, trec_tok, "train", shuffle=True).docs, clf_train.docs)
        assert np.array_equal(_stream(lm_cfg, trec_tok, "valid", shuffle=False).docs, clf_valid.docs)
    assert len(clf_train.docs) == 60 and not np.array_equal(
        training_data(ClassifierConfig(max_train=60, seed=0), trec_tok, 6)[0].docs, clf_train.docs)
    metrics = finetune(str(encoder.parent / "pre"), str(trec_tok), str(tmp_path / "lm"), max_train=60, seed=3,
                       bs=4, epochs=1, min_steps=30, device="cpu")
    assert load_config(LMTrainConfig, tmp_path / "lm" / "config.json").max_train == 60
    assert metrics["steps"] >= 30 and np.isfinite(metrics["final_valid_loss"])


def test_ensemble_averages_each_models_probabilities_read_in_its_own_direction(scratch, trec_tok, tmp_path,
                                                                               monkeypatch):
    monkeypatch.setattr(infer, "_saved_probs", lambda *args: None)  # score the models here, not reuse evaluate's
    fwd = scratch[0]
    bwd = tmp_path / "bwd"
    train(data=str(trec_tok), out=str(bwd), from_scratch=True, backwards=True, preset="tiny", epochs=2,
          max_train=1000, device="cpu")
    assert load_config(ClassifierConfig, bwd / "config.json").backwards
    bwd_report = evaluate(str(bwd), str(trec_tok), device="cpu")
    result = ensemble(f"{fwd},{bwd}", str(trec_tok), out=str(tmp_path), device="cpu")
    members = [np.load(fwd / "probs_test.npy"), np.load(bwd / "probs_test.npy")]
    averaged = np.load(tmp_path / "ensemble_probs_test.npy")
    assert np.allclose(averaged, (members[0] + members[1]) / 2, atol=1e-6)
    assert [m["error_rate"] for m in result["models"]] == [scratch[2]["error_rate"], bwd_report["error_rate"]]
    assert [m["backwards"] for m in result["models"]] == [False, True]
    labels = np.load(trec_tok / "test_labels.npy")
    assert result["ensemble"]["accuracy"] == pytest.approx(np.mean(averaged.argmax(1) == labels))
    assert json.loads((tmp_path / "ensemble_test.json").read_text()) == result
    # --out is the ensemble's run folder: evaluated like a classifier, for ulmfit report
    run = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in ("eval_test", "metrics", "config")}
    assert run["eval_test"]["error_rate"] == result["ensemble"]["error_rate"]
    assert run["eval_test"]["models"] == run["config"]["models"] == run["metrics"]["models"] == [str(fwd), str(bwd)]
    times = [json.loads((m / "metrics.json").read_text())["time_s"] for m in (fwd, bwd)]
    assert run["metrics"]["time_s"] == pytest.approx(sum(times))
    with pytest.raises(UlmfitError, match="is one of the models"):
        ensemble(f"{fwd},{bwd}", str(trec_tok), out=str(bwd), device="cpu")


def test_ensemble_reuses_evaluates_probabilities_only_for_the_same_weights_and_split(scratch, trec_tok, tmp_path,
                                                                                     monkeypatch):
    model = tmp_path / "clf"
    shutil.copytree(scratch[0], model)
    evaluate(str(model), str(trec_tok), device="cpu")
    saved = np.load(model / "probs_test.npy")
    scored = []
    real_predict = infer._tta_predict
    monkeypatch.setattr(infer, "_tta_predict", lambda *args: scored.append(1) or real_predict(*args))

    def ensemble_probs():
        ensemble([str(model), str(model)], str(trec_tok), out=str(tmp_path / "ens"), device="cpu")
        return np.load(tmp_path / "ens" / "ensemble_probs_test.npy")

    assert np.array_equal(ensemble_probs(), saved) and not scored  # read back, not scored again
    np.save(model / "probs_test.npy", np.full_like(saved, 1 / saved.shape[1]))  # not the file evaluate wrote
    assert np.array_equal(ensemble_probs(), saved) and len(scored) == 2
    evaluate(str(model), str(trec_tok), device="cpu")
    weights = torch.load(model / "model.pt", weights_only=True)
    torch.save({name: value + 0.01 if value.is_floating_point() else value for name, value in weights.items()},
               model / "model.pt")  # retrained, say
    changed = ensemble_probs()
    assert len(scored) == 5 and not np.allclose(changed, saved)
    evaluate(str(model), str(trec_tok), tta=1, device="cpu")  # augmented: not what the ensemble averages
    scored.clear()
    ensemble_probs()
    assert len(scored) == 2


def test_ensemble_of_word_and_subword_models_reads_each_models_own_tokenized_folder(scratch, trec_tok, tmp_path,
                                                                                   monkeypatch):
    monkeypatch.setattr(infer, "_saved_probs", lambda *args: None)  # score the models here, not reuse evaluate's
    trec = data_root() / "trec"
    pieces = tmp_path / "sp_tok"
    tokenize(str(trec / "train_5500.label"), test=str(trec / "TREC_10.label"), out=str(pieces), format="trec",
             encoding="latin-1", tokenizer="sentencepiece", sp_vocab_size=500, workers=1)
    subword = tmp_path / "sp_clf"
    train(data=str(pieces), out=str(subword), from_scratch=True, preset="tiny", epochs=1, max_train=1000, device="cpu")
    evaluate(str(subword), str(pieces), device="cpu")
    word = scratch[0]
    result = ensemble([str(word), str(subword)], f"{trec_tok},{pieces}", out=str(tmp_path / "ens"), device="cpu")
    averaged = np.load(tmp_path / "ens" / "ensemble_probs_test.npy")
    members = [np.load(word / "probs_test.npy"), np.load(subword / "probs_test.npy")]
    assert np.allclose(averaged, (members[0] + members[1]) / 2, atol=1e-6)
    assert [m["data"] for m in result["models"]] == [str(trec_tok), str(pieces)]
    assert result["data"] == f"{trec_tok},{pieces}"
    with pytest.raises(UlmfitError, match="kind is 'spacy' but the model at .*sp_clf used 'sentencepiece'"):
        ensemble([str(word), str(subword)], str(trec_tok), out=str(tmp_path / "ens"), device="cpu")
    with pytest.raises(UlmfitError, match="3 tokenized folders for 2 models"):
        ensemble([str(word), str(subword)], [str(trec_tok), str(pieces), str(pieces)], device="cpu")
    shuffled = tmp_path / "shuffled"
    shutil.copytree(pieces, shuffled)
    labels = np.load(shuffled / "test_labels.npy")
    np.save(shuffled / "test_labels.npy", np.roll(labels, 1))
    with pytest.raises(UlmfitError, match=f"{shuffled}: its test split does not hold the same documents"):
        ensemble([str(word), str(subword)], [str(trec_tok), str(shuffled)], device="cpu")


def test_bad_input_is_refused_with_the_file_named(scratch, encoder, trec_tok, tmp_path):
    out = scratch[0]
    with pytest.raises(UlmfitError, match="forward language model; a backward classifier"):
        train(str(encoder), str(trec_tok), str(tmp_path / "a"), backwards=True)
    with pytest.raises(UlmfitError, match="--encoder"):
        train(data=str(trec_tok), out=str(tmp_path / "b"))

    other_vocab = tmp_path / "other_vocab"
    shutil.copytree(trec_tok, other_vocab)
    itos = json.loads((trec_tok / "vocab.json").read_text())
    itos[9], itos[10] = itos[10], itos[9]
    (other_vocab / "vocab.json").write_text(json.dumps(itos))
    with pytest.raises(UlmfitError, match=r"vocab.json: not the vocabulary of .*first difference at id 9"):
        train(str(encoder), str(other_vocab), str(tmp_path / "c"))
    with pytest.raises(UlmfitError, match="not the vocabulary"):
        evaluate(str(out), str(other_vocab))

    other_classes = tmp_path / "other_classes"
    shutil.copytree(trec_tok, other_classes)
    (other_classes / "classes.json").write_text(json.dumps(["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM", "X"]))
    with pytest.raises(UlmfitError, match="classes.json: classes .* differ from the model's"):
        evaluate(str(out), str(other_classes))
    (other_classes / "classes.json").write_text((trec_tok / "classes.json").read_text())
    labels = np.load(trec_tok / "test_labels.npy")
    labels[3] = 6
    np.save(other_classes / "test_labels.npy", labels)
    with pytest.raises(UlmfitError, match="test_labels.npy: label 6 is not a class"):
        evaluate(str(out), str(other_classes))
    assert not (tmp_path / "c").exists()  # refused before any output

    for name in ("model.pt", "classes.json", "config.json"):
        broken = tmp_path / f"no_{name}"
        shutil.copytree(out, broken)
        (broken / name).unlink()
        with pytest.raises(UlmfitError, match=f"{name}: file not found"):
            evaluate(str(broken), str(trec_tok))
    with pytest.raises(UlmfitError, match="not empty"):
        train(data=str(trec_tok), out=str(out), from_scratch=True, preset="tiny")


def test_tricks_are_resolved_into_the_config_and_change_the_run(trec_tok, tmp_path):
    out = tmp_path / "ls"
    train(data=str(trec_tok), out=str(out), from_scratch=True, preset="tiny", max_steps=3, device="cpu",
          tricks="label_smoothing(alpha=0.2)")
    cfg = load_config(ClassifierConfig, out / "config.json")
    assert cfg.tricks == {"label_smoothing": {"alpha": 0.2}}
    with pytest.raises(UlmfitError, match="tricks"):
        train(data=str(trec_tok), out=str(out), from_scratch=True, preset="tiny", max_steps=3, device="cpu",
              tricks="label_smoothing(alpha=0.3)", resume=True)


def test_max_tokens_keeps_the_first_tokens_in_training_and_prediction(trec_tok, scratch):
    from ulmfit.stages.classify import load_classifier
    from ulmfit.text.corpus import load_split
    split = load_split(trec_tok, "test")
    data = ClassificationData(split, np.arange(len(split)), bs=16, max_tokens=5)
    batch = next(iter(data.batches()))
    assert batch.lengths.max() == 5
    for row, length in zip(batch.tokens, batch.lengths):
        assert (row[length:] == 1).all()
    docs = [split.doc(i) for i in range(40)]
    _, _, model = load_classifier(scratch[0])
    cut = predict_probs(model, docs, 8, False, torch.device("cpu"), max_tokens=5)
    assert np.array_equal(cut, predict_probs(model, [d[:5] for d in docs], 8, False, torch.device("cpu")))
    assert not np.allclose(cut, predict_probs(model, docs, 8, False, torch.device("cpu")))


def test_head_only_leaves_the_encoder_untouched(trec_tok, encoder, tmp_path):
    out = tmp_path / "last"
    train(encoder=str(encoder), data=str(trec_tok), out=str(out), head_only=True, epochs=2, max_steps=6,
          device="cpu")
    cfg = load_config(ClassifierConfig, out / "config.json")
    assert cfg.head_only and not cfg.gradual_unfreezing
    trained = torch.load(out / "model.pt", weights_only=True)
    pretrained = torch.load(encoder / "encoder.pt", weights_only=True)
    assert all(torch.equal(trained[f"encoder.{k}"], v) for k, v in pretrained.items())
    with pytest.raises(UlmfitError, match="head_only"):
        train(data=str(trec_tok), out=str(tmp_path / "x"), from_scratch=True, head_only=True)
