import json
import math
import shutil

import numpy as np
import pytest
import torch

from conftest import ptb_docs, write_tokenized
from ulmfit.config import load_config
from ulmfit.errors import UlmfitError
from ulmfit.model.awd_lstm import AWDLSTM, LanguageModel
from ulmfit.stages.lm import (LMTrainConfig, evaluate_lm, finetune, held_out_docs, map_lm_vocab, map_vocab_rows,
                              parse_cutoffs, pretrain)


def unigram_perplexity(tok):
    """Validation perplexity of add-one unigram frequencies of the training split: no context."""
    train, valid = np.load(tok / "train_ids.npy"), np.load(tok / "valid_ids.npy")
    counts = np.bincount(train, minlength=len(json.loads((tok / "vocab.json").read_text()))) + 1.0
    return math.exp(-np.log(counts[valid] / counts.sum()).mean())


def test_map_vocab_rows_copies_known_tokens_and_gives_new_ones_the_mean():
    old_itos = ["a", "b", "c"]
    weight = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0]])
    new = map_vocab_rows(old_itos, ["c", "z", "a", "b", "y"], weight)
    mean = torch.tensor([3.0, 2.0])
    assert torch.equal(new, torch.stack([weight[2], mean, weight[0], weight[1], mean]))
    bias = map_vocab_rows(old_itos, ["b", "new"], torch.tensor([0.5, 1.0, 3.0]))
    assert torch.allclose(bias, torch.tensor([1.0, 1.5]))
    with pytest.raises(ValueError):
        map_vocab_rows(["a"], ["a"], weight)


def test_map_lm_vocab_maps_tied_embedding_decoder_and_bias_only():
    from ulmfit.model.awd_lstm import make_config
    model = LanguageModel(make_config("tiny", 12))
    old_itos = [f"t{i}" for i in range(12)]
    new_itos = old_itos[:9] + ["new", "t11"]
    state = map_lm_vocab(model.state_dict(), old_itos, new_itos)
    fresh = LanguageModel(make_config("tiny", len(new_itos)))
    fresh.load_state_dict(state)  # shapes fit the new vocabulary
    emb = model.encoder.embedding.weight.detach()
    assert torch.equal(fresh.encoder.embedding.weight[10], emb[11])
    assert torch.allclose(fresh.encoder.embedding.weight[9], emb.mean(0))
    assert fresh.decoder.weight is fresh.encoder.embedding.weight
    assert torch.equal(state["encoder.lstms.0.weight_hh_l0"], model.state_dict()["encoder.lstms.0.weight_hh_l0"])


@pytest.fixture(scope="module")
def pretrained(ptb_tok, tmp_path_factory):
    out = tmp_path_factory.mktemp("pre") / "lm"
    metrics = pretrain(str(ptb_tok), str(out), preset="tiny", epochs=2, device="cpu")
    return out, metrics


def test_pretrain_writes_a_model_folder_and_perplexity_falls(pretrained, ptb_tok):
    out, metrics = pretrained
    for name in ("model.pt", "encoder.pt", "config.json", "vocab.json", "tokenizer.json", "metrics.json",
                 "log.jsonl", "best.pt", "last.pt"):
        assert (out / name).exists(), name
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    vocab_size = len(json.loads((out / "vocab.json").read_text()))
    ppl = [m["valid_ppl"] for m in log]
    assert ppl[1] < ppl[0] < vocab_size / 4            # an untrained model sits near vocab_size
    assert ppl[1] < 0.95 * unigram_perplexity(ptb_tok)  # so it uses the context
    assert metrics == json.loads((out / "metrics.json").read_text())
    assert metrics["final_valid_ppl"] == pytest.approx(math.exp(metrics["final_valid_loss"]))
    assert metrics["best_valid_loss"] <= metrics["final_valid_loss"] and metrics["tokens_per_s"] > 0

    cfg = load_config(LMTrainConfig, out / "config.json")
    assert cfg.preset == "tiny" and cfg.model.vocab_size == vocab_size and cfg.epochs == 2
    model = LanguageModel(cfg.model)
    model.load_state_dict(torch.load(out / "model.pt", weights_only=True))
    encoder = AWDLSTM(cfg.model)
    encoder.load_state_dict(torch.load(out / "encoder.pt", weights_only=True))
    assert torch.equal(encoder.embedding.weight, model.encoder.embedding.weight)


def test_evaluate_lm_reproduces_the_validation_loss_and_scores_other_vocabularies(pretrained, ptb_tok,
                                                                                 target_tok):
    out, metrics = pretrained
    result = evaluate_lm(str(out), str(ptb_tok), "valid", device="cpu")
    assert result["loss"] == pytest.approx(metrics["final_valid_loss"], rel=1e-6)
    assert result["ppl"] == pytest.approx(metrics["final_valid_ppl"], rel=1e-6)
    on_target = evaluate_lm(str(out), str(target_tok), "valid", device="cpu")
    assert math.isfinite(on_target["loss"]) and on_target["tokens"] > 1000


def test_resume_of_a_finished_run_changes_nothing_and_other_options_are_refused(pretrained, ptb_tok):
    out, metrics = pretrained
    before = torch.load(out / "model.pt", weights_only=True)
    again = pretrain(str(ptb_tok), str(out), preset="tiny", epochs=2, resume=True, device="cpu")
    del again["peak_rss_mb"]  # of this process, so far
    assert again == {k: v for k, v in metrics.items() if k != "peak_rss_mb"} and metrics["peak_rss_mb"] > 0
    after = torch.load(out / "model.pt", weights_only=True)
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(UlmfitError, match="lr: 0.03 -> 0.5"):
        pretrain(str(ptb_tok), str(out), preset="tiny", epochs=2, lr=0.5, resume=True)
    with pytest.raises(UlmfitError, match="not empty"):
        pretrain(str(ptb_tok), str(out), preset="tiny")


@pytest.fixture(scope="module")
def target_tok(tmp_path_factory):
    """Target text with a different vocabulary: PTB test sentences, some of them words never seen."""
    docs = ptb_docs("test", 600)
    return write_tokenized(tmp_path_factory.mktemp("target") / "tok", {
        "train": [d + ["brandnewword"] for d in docs[:100]],
        "valid": docs[100:],
    })


def test_finetune_maps_the_vocabulary_and_trains_with_stlr(pretrained, target_tok, tmp_path):
    pre, _ = pretrained
    out = tmp_path / "ft"
    metrics = finetune(str(pre), str(target_tok), str(out), epochs=1, max_steps=20, device="cpu")
    cfg = load_config(LMTrainConfig, out / "config.json")
    target_itos = json.loads((target_tok / "vocab.json").read_text())
    assert cfg.schedule == "stlr" and cfg.disc_factor == 2.6 and cfg.pretrained == str(pre)
    assert cfg.model.vocab_size == len(target_itos) and "brandnewword" in target_itos
    assert json.loads((out / "vocab.json").read_text()) == target_itos
    pre_cfg = load_config(LMTrainConfig, pre / "config.json")
    assert (cfg.model.emb_size, cfg.model.drop_mult) == (pre_cfg.model.emb_size, pre_cfg.model.drop_mult)
    assert metrics["steps"] == 20 and math.isfinite(metrics["final_valid_loss"])
    encoder = AWDLSTM(cfg.model)
    encoder.load_state_dict(torch.load(out / "encoder.pt", weights_only=True))

    # with a negligible learning rate the weights stay where the vocabulary mapping put them
    finetune(str(pre), str(target_tok), str(tmp_path / "still"), max_steps=2, lr=1e-12, device="cpu")
    old_emb = torch.load(pre / "model.pt", weights_only=True)["encoder.embedding.weight"]
    new_emb = torch.load(tmp_path / "still" / "model.pt", weights_only=True)["encoder.embedding.weight"]
    old_itos = json.loads((pre / "vocab.json").read_text())
    the_old, the_new = old_itos.index("the"), target_itos.index("the")
    assert torch.allclose(new_emb[the_new], old_emb[the_old], atol=1e-6)
    assert torch.allclose(new_emb[target_itos.index("brandnewword")], old_emb.mean(0), atol=1e-6)


def test_finetune_of_zero_epochs_keeps_the_mapped_pretrained_model(pretrained, target_tok, tmp_path):
    pre, _ = pretrained
    metrics = finetune(str(pre), str(target_tok), str(tmp_path / "none"), epochs=0, device="cpu")
    old_itos = json.loads((pre / "vocab.json").read_text())
    new_itos = json.loads((target_tok / "vocab.json").read_text())
    mapped = map_lm_vocab(torch.load(pre / "model.pt", weights_only=True), old_itos, new_itos)
    saved = torch.load(tmp_path / "none" / "model.pt", weights_only=True)
    assert saved.keys() == mapped.keys() and all(torch.equal(saved[k], mapped[k]) for k in mapped)
    encoder = torch.load(tmp_path / "none" / "encoder.pt", weights_only=True)
    assert torch.equal(encoder["embedding.weight"], mapped["encoder.embedding.weight"])
    assert metrics["steps"] == 0 and metrics["epochs"] == 0
    assert metrics["final_valid_loss"] == pytest.approx(
        evaluate_lm(str(tmp_path / "none"), str(target_tok), "valid", device="cpu")["loss"], rel=1e-6)
    with pytest.raises(UlmfitError, match="no epoch"):  # pretraining nothing stays an error
        pretrain(str(target_tok), str(tmp_path / "empty"), preset="tiny", epochs=0, device="cpu")


def test_finetune_max_train_needs_labelled_data(pretrained, target_tok, tmp_path):
    with pytest.raises(UlmfitError, match="classes.json: file not found; --max_train needs labelled data"):
        finetune(str(pretrained[0]), str(target_tok), str(tmp_path / "ft"), max_train=10, device="cpu")
    assert not (tmp_path / "ft").exists()  # refused before writing anything


def test_without_a_valid_split_every_tenth_training_document_validates(pretrained, target_tok, tmp_path):
    assert held_out_docs(25, valid=True).tolist() == [9, 19]
    assert len(held_out_docs(25, valid=False)) == 23
    train_only = tmp_path / "train_only"
    shutil.copytree(target_tok, train_only, ignore=shutil.ignore_patterns("valid_*"))
    metrics = finetune(str(pretrained[0]), str(train_only), str(tmp_path / "ft"), max_steps=3, device="cpu")
    assert math.isfinite(metrics["final_valid_loss"])
    assert evaluate_lm(str(tmp_path / "ft"), str(train_only), "valid")["loss"] == pytest.approx(
        metrics["final_valid_loss"], rel=1e-6)


def test_finetune_refuses_mismatched_tokenizer_direction_and_weights(pretrained, target_tok, tmp_path):
    pre, _ = pretrained
    other = tmp_path / "sp_tok"
    shutil.copytree(target_tok, other)
    (other / "tokenizer.json").write_text(json.dumps({"kind": "sentencepiece", "lang": "en"}))
    with pytest.raises(UlmfitError, match="kind is 'sentencepiece'"):
        finetune(str(pre), str(other), str(tmp_path / "a"))
    with pytest.raises(UlmfitError, match="forward language model"):
        finetune(str(pre), str(target_tok), str(tmp_path / "b"), backwards=True)

    broken = tmp_path / "broken"
    shutil.copytree(pre, broken)
    state = torch.load(broken / "model.pt", weights_only=True)
    state["encoder.lstms.0.weight_hh_l0"] = state["encoder.lstms.0.weight_hh_l0"][:, :3]
    torch.save(state, broken / "model.pt")
    with pytest.raises(UlmfitError, match="does not match the architecture"):
        finetune(str(broken), str(target_tok), str(tmp_path / "c"))
    (broken / "vocab.json").write_text(json.dumps(json.loads((pre / "vocab.json").read_text())[:-1]))
    with pytest.raises(UlmfitError, match="vocab_size"):
        finetune(str(broken), str(target_tok), str(tmp_path / "d"))


def test_backward_pretraining_reads_reversed_documents(ptb_tok, tmp_path):
    metrics = pretrain(str(ptb_tok), str(tmp_path / "bwd"), preset="tiny", max_steps=5, backwards=True,
                       device="cpu")
    assert load_config(LMTrainConfig, tmp_path / "bwd" / "config.json").backwards
    assert metrics["steps"] == 5


def test_an_adaptive_softmax_lm_pretrains_finetunes_onto_a_new_vocabulary_and_logs_a_curve(ptb_tok, target_tok,
                                                                                           tmp_path):
    pre = tmp_path / "adaptive"
    metrics = pretrain(str(ptb_tok), str(pre), preset="tiny", max_steps=30, softmax_cutoffs="100,1000",
                       curve_every_s=1e-9, device="cpu")
    cfg = load_config(LMTrainConfig, pre / "config.json")
    assert cfg.model.softmax_cutoffs == (100, 1000) and cfg.curve_every_s == 1e-9
    curve = [json.loads(line) for line in (pre / "curve.jsonl").read_text().splitlines()]
    assert len(curve) == 31 and [p["step"] for p in curve] == list(range(1, 31)) + [30]  # every step, then the end
    assert curve[-1]["valid_ppl"] < curve[0]["valid_ppl"] and curve[-1]["train_s"] >= curve[-2]["train_s"]
    assert evaluate_lm(str(pre), str(ptb_tok), "valid")["loss"] == pytest.approx(metrics["final_valid_loss"],
                                                                                   rel=1e-6)
    tuned = finetune(str(pre), str(target_tok), str(tmp_path / "ft"), max_steps=5, device="cpu")
    assert load_config(LMTrainConfig, tmp_path / "ft" / "config.json").model.softmax_cutoffs == (100, 1000)
    assert math.isfinite(tuned["final_valid_loss"])


def test_softmax_cutoffs_option():
    assert parse_cutoffs((2000, 10000)) == parse_cutoffs("2000,10000") == (2000, 10000)
    assert parse_cutoffs(0) == parse_cutoffs("") == ()
    with pytest.raises(UlmfitError, match="--softmax_cutoffs 'many'"):
        parse_cutoffs("many")
