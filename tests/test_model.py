"""AWD-LSTM config, encoder, tied language model and AR/TAR (ulmfit/model/awd_lstm.py)."""
import warnings

import pytest
import torch

from ulmfit.config import load_config, save_config
from ulmfit.errors import UlmfitError
from ulmfit.model import (
    AWDLSTMConfig,
    LanguageModel,
    ar_tar_penalty,
    detach_state,
    make_config,
)

VOCAB = 60


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def tiny_lm(**overrides) -> LanguageModel:
    """The tiny preset's model with its dropout probabilities at face value (drop_mult 1)."""
    return LanguageModel(make_config("tiny", VOCAB, **{"drop_mult": 1.0, **overrides}))


def nll(lm: LanguageModel, tokens: torch.Tensor, state=None) -> torch.Tensor:
    """[B, T-1]: -log p of each next token of ``tokens`` (the model reads all but the last)."""
    return lm.token_nll(lm(tokens[:, :-1], state), tokens[:, 1:])


# ---------------------------------------------------------------- config and presets


def test_presets_and_overrides():
    paper = make_config("paper", 30000)
    assert (paper.vocab_size, paper.emb_size, paper.hidden_size, paper.n_layers) == (30000, 400, 1152, 3)
    assert paper.dropouts() == {"embed_p": 0.05, "input_p": 0.4, "hidden_p": 0.3, "weight_p": 0.5, "output_p": 0.4}
    tiny = make_config("tiny", 100, hidden_size=24)
    assert (tiny.emb_size, tiny.hidden_size, tiny.n_layers) == (16, 24, 2)
    assert make_config("cpu", 100).n_layers >= 2


@pytest.mark.parametrize(
    "call",
    [
        lambda: make_config("huge", 100),
        lambda: make_config("tiny", 100, hiden_size=3),
        lambda: make_config("tiny", 100, drop_mult=2.5),  # 0.5 * 2.5 is no probability
        lambda: make_config("tiny", 100, n_layers=0),
        lambda: LanguageModel(make_config("tiny", 1)),
    ],
)
def test_bad_configs_are_user_errors(call):
    with pytest.raises(UlmfitError):
        call()


def test_config_json_round_trip(tmp_path):
    cfg = make_config("tiny", VOCAB, drop_mult=0.3)
    save_config(cfg, tmp_path / "config.json")
    assert load_config(AWDLSTMConfig, tmp_path / "config.json") == cfg


def test_layer_sizes_end_at_the_embedding_size():
    cfg = make_config("paper", 100)
    assert cfg.layer_sizes() == [(400, 1152), (1152, 1152), (1152, 400)]


def test_drop_mult_scales_all_five_dropouts():
    encoder = tiny_lm(drop_mult=0.5).encoder
    cfg = AWDLSTMConfig()
    assert encoder.embed_p == pytest.approx(cfg.embed_p * 0.5)
    assert encoder.input_dropout.p == pytest.approx(cfg.input_p * 0.5)
    assert all(d.p == pytest.approx(cfg.hidden_p * 0.5) for d in encoder.hidden_dropouts)
    assert all(lstm.weight_p == pytest.approx(cfg.weight_p * 0.5) for lstm in encoder.lstms)
    assert encoder.output_dropout.p == pytest.approx(cfg.output_p * 0.5)


# ---------------------------------------------------------------- model structure


@pytest.mark.parametrize("active", [None, "embed_p", "input_p", "hidden_p", "weight_p", "output_p"])
def test_each_dropout_is_wired_into_training_mode_only(active):
    probs = {name: (0.5 if name == active else 0.0) for name in AWDLSTMConfig().dropouts()}
    lm = tiny_lm(**probs)
    tokens = torch.randint(2, VOCAB, (4, 8))
    assert torch.allclose(nll(lm.train(), tokens), nll(lm.eval(), tokens)) == (active is None)


def test_last_dropped_is_last_raw_under_a_locked_mask():
    lm = tiny_lm(embed_p=0.0, input_p=0.0, hidden_p=0.0, weight_p=0.0, output_p=0.5).train()
    out = lm(torch.randint(2, VOCAB, (4, 8)))
    mask = out.last_dropped / out.last_raw
    assert set(mask.detach().unique().tolist()) == {0.0, 2.0}
    torch.testing.assert_close(mask, mask[:, :1].expand_as(mask))
    targets = torch.randint(2, VOCAB, (4, 8))
    torch.testing.assert_close(lm.token_nll(out, targets), lm.decoder.nll(out.last_dropped, targets))


def test_output_shapes_and_state():
    lm = tiny_lm()
    out = lm(torch.randint(0, VOCAB, (3, 7)))
    assert lm.token_nll(out, torch.randint(0, VOCAB, (3, 7))).shape == (3, 7)
    assert out.last_raw.shape == out.last_dropped.shape == (3, 7, 16)
    assert [tuple(h.shape) for h, _ in out.state] == [(1, 3, 32), (1, 3, 16)]
    assert [tuple(c.shape) for _, c in out.state] == [(1, 3, 32), (1, 3, 16)]
    assert out.state[0][0].requires_grad  # not detached: the caller decides
    assert not any(h.requires_grad or c.requires_grad for h, c in detach_state(out.state))


def test_init_embedding_uniform_pad_row_zero_decoder_bias_zero():
    lm = LanguageModel(make_config("tiny", 5000))
    weight = lm.encoder.embedding.weight
    assert weight.abs().max() <= 0.1
    assert weight.std().item() == pytest.approx(0.1 / 3**0.5, rel=0.05)
    assert weight[lm.cfg.pad_id].abs().sum() == 0
    assert lm.decoder.bias.abs().sum() == 0


def test_decoder_is_tied_to_the_embedding():
    lm = tiny_lm()
    assert lm.decoder.weight is lm.encoder.embedding.weight
    untied = tiny_lm(tie_weights=False)
    assert untied.decoder.weight is not untied.encoder.embedding.weight


@pytest.mark.parametrize("tie", [True, False])
def test_layer_groups_cover_every_parameter_once(tie):
    lm = tiny_lm(tie_weights=tie)
    groups = lm.layer_groups()
    flat = [p for group in groups for p in group]
    assert len(flat) == len({id(p) for p in flat}) == len(list(lm.parameters()))
    assert {id(p) for p in flat} == {id(p) for p in lm.parameters()}
    assert len(groups) == lm.cfg.n_layers + 1
    for group, lstm in zip(groups, lm.encoder.lstms):
        assert [id(p) for p in group] == [id(p) for p in lstm.parameters()]
    assert groups[-1][0] is lm.encoder.embedding.weight and groups[-1][-1] is lm.decoder.bias
    torch.optim.Adam([{"params": g} for g in groups])  # no parameter in two groups
    encoder_groups = lm.encoder.layer_groups()
    assert [[id(p) for p in g] for g in encoder_groups] == [[id(p) for p in g] for g in groups[:-1]]


def test_checkpoint_holds_raw_weights_and_round_trips(tmp_path):
    lm = tiny_lm()
    keys = list(lm.state_dict())
    assert keys == [
        "encoder.embedding.weight",
        *[f"encoder.lstms.{i}.{n}" for i in range(2) for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")],
        "decoder.weight",  # the same tensor as the embedding (tied)
        "decoder.bias",
    ]
    lm.train()(torch.randint(0, VOCAB, (2, 5)))
    assert list(lm.state_dict()) == keys
    torch.save(lm.state_dict(), tmp_path / "model.pt")
    other = tiny_lm()
    other.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    assert other.decoder.weight is other.encoder.embedding.weight
    tokens = torch.randint(0, VOCAB, (2, 6))
    torch.testing.assert_close(nll(lm.eval(), tokens), nll(other.eval(), tokens))


def test_carried_state_equals_one_long_window():
    lm = tiny_lm().eval()
    tokens = torch.randint(0, VOCAB, (2, 12))
    whole = lm(tokens)
    first = lm(tokens[:, :5])
    second = lm(tokens[:, 5:], detach_state(first.state))
    torch.testing.assert_close(torch.cat([first.last_raw, second.last_raw], 1), whole.last_raw)
    for (h, c), (h2, c2) in zip(whole.state, second.state):
        torch.testing.assert_close(h, h2)
        torch.testing.assert_close(c, c2)


def test_eval_is_deterministic_and_training_is_not():
    lm = tiny_lm()
    tokens = torch.randint(0, VOCAB, (2, 6))
    lm.eval()
    torch.testing.assert_close(nll(lm, tokens), nll(lm, tokens))
    lm.train()
    assert not torch.allclose(nll(lm, tokens), nll(lm, tokens))


def test_training_reduces_loss_without_warnings():
    lm = tiny_lm(drop_mult=0.2)
    opt = torch.optim.Adam(lm.parameters(), lr=3e-2)
    pattern = torch.arange(2, 14).repeat(4, 8)  # periodic sequences to learn
    tokens, targets = pattern[:, :-1], pattern[:, 1:]

    def eval_loss():
        lm.eval()
        with torch.no_grad():
            return lm.loss(lm(tokens), targets).item()

    before = eval_loss()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(120):
            lm.train()
            out = lm(tokens)
            loss = lm.loss(out, targets) + ar_tar_penalty(out.last_raw, out.last_dropped, lm.cfg.ar_alpha, lm.cfg.tar_beta)
            opt.zero_grad()
            loss.backward()
            opt.step()
        after = eval_loss()
    assert after < 0.1 * before, (before, after)


# ---------------------------------------------------------------- AR / TAR


def test_ar_tar_exact_values():
    last_dropped = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # mean of squares 7.5
    last_raw = torch.tensor([[[1.0, 1.0], [2.0, 3.0], [4.0, 3.0]]])  # steps differ by (1,2), (2,0): 2.25
    assert ar_tar_penalty(last_raw, last_dropped, alpha=2.0, beta=0.0).item() == pytest.approx(15.0)
    assert ar_tar_penalty(last_raw, last_dropped, alpha=0.0, beta=1.0).item() == pytest.approx(2.25)
    assert ar_tar_penalty(last_raw, last_dropped, alpha=2.0, beta=3.0).item() == pytest.approx(15.0 + 6.75)
    assert ar_tar_penalty(last_raw[:, :1], last_dropped, alpha=0.0, beta=1.0).item() == 0.0  # one step


def test_ar_tar_gradients_flow_to_both_inputs():
    raw = torch.randn(2, 4, 3, requires_grad=True)
    dropped = torch.randn(2, 4, 3, requires_grad=True)
    ar_tar_penalty(raw, dropped, 2.0, 1.0).backward()
    torch.testing.assert_close(dropped.grad, 2.0 * 2 * dropped.detach() / dropped.numel())
    assert raw.grad.abs().sum() > 0
