"""Embedding dropout, locked dropout and the weight-dropped LSTM (ulmfit/model/dropout.py)."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ulmfit.model.dropout import (
    LockedDropout,
    WeightDropLSTM,
    embedding_dropout,
    locked_dropout,
    views_of_one_buffer,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


# ---------------------------------------------------------------- embedding dropout


def test_embedding_dropout_drops_whole_words_and_scales_the_rest():
    vocab, p = 200, 0.5
    weight = torch.randn(vocab, 8)
    tokens = torch.stack([torch.randperm(vocab) for _ in range(3)])  # every word 3 times
    out = embedding_dropout(tokens, weight, p, training=True)
    dropped = out.abs().sum(-1) == 0
    for word in range(vocab):
        where = tokens == word
        if dropped[where].all():
            continue
        assert not dropped[where].any(), f"word {word} dropped at some positions only"
        torch.testing.assert_close(out[where], weight[word].expand(3, -1) / (1 - p))
    fraction = dropped.float().mean().item()
    assert 0.35 < fraction < 0.65


def test_embedding_dropout_matches_masking_the_matrix_with_gradients():
    vocab, p = 50, 0.3
    weight = torch.randn(vocab, 6, requires_grad=True)
    tokens = torch.randint(0, vocab, (4, 9))
    out = embedding_dropout(tokens, weight, p, training=True)
    (out * torch.arange(6.0)).sum().backward()
    grad = weight.grad.clone()

    kept_rows = torch.ones(vocab)
    kept_rows[tokens[out.abs().sum(-1) == 0]] = 0
    weight.grad = None
    reference = F.embedding(tokens, weight * kept_rows[:, None] / (1 - p))
    (reference * torch.arange(6.0)).sum().backward()
    torch.testing.assert_close(out, reference)
    torch.testing.assert_close(grad, weight.grad)


def test_embedding_dropout_is_plain_lookup_in_eval_or_at_p0():
    weight = torch.randn(20, 4)
    tokens = torch.randint(0, 20, (2, 5))
    torch.testing.assert_close(embedding_dropout(tokens, weight, 0.5, training=False), F.embedding(tokens, weight))
    torch.testing.assert_close(embedding_dropout(tokens, weight, 0.0, training=True), F.embedding(tokens, weight))


def test_embedding_dropout_gives_no_gradient_to_the_padding_row():
    weight = torch.randn(10, 4, requires_grad=True)
    tokens = torch.tensor([[1, 2, 3, 1, 4]])
    out = embedding_dropout(tokens, weight, 0.2, training=True, padding_idx=1)
    out.sum().backward()
    assert weight.grad[1].abs().sum() == 0
    kept = tokens[(out.abs().sum(-1) > 0) & (tokens != 1)]
    assert (weight.grad[kept].abs().sum(-1) > 0).all()


# ---------------------------------------------------------------- locked dropout


def test_locked_dropout_mask_is_constant_over_time_and_differs_between_sequences():
    p = 0.5
    x = torch.ones(6, 10, 32)
    out = locked_dropout(x, p, training=True)
    assert set(out.unique().tolist()) == {0.0, 1 / (1 - p)}
    torch.testing.assert_close(out, out[:, :1].expand_as(out))  # same at every step
    assert not torch.equal(out[0, 0], out[1, 0])  # one mask per sequence


def test_locked_dropout_is_identity_in_eval_or_at_p0():
    x = torch.randn(2, 3, 4)
    module = LockedDropout(0.5).eval()
    assert torch.equal(module(x), x)
    assert torch.equal(locked_dropout(x, 0.0, training=True), x)


# ---------------------------------------------------------------- weight drop


def make_pair(p=0.5, n_in=5, hidden=7):
    """A weight-dropped LSTM and a stock nn.LSTM with the same weights."""
    wd = WeightDropLSTM(n_in, hidden, p)
    plain = nn.LSTM(n_in, hidden, batch_first=True)
    plain.load_state_dict(wd.state_dict())
    return wd, plain


def test_weight_drop_checkpoint_holds_only_the_raw_lstm_weights():
    wd, plain = make_pair()
    assert list(wd.state_dict()) == list(plain.state_dict())
    assert [n for n, _ in wd.named_parameters()] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    wd.train()(torch.randn(2, 3, 5))
    assert list(wd.state_dict()) == list(plain.state_dict())  # forward leaves no copies behind
    assert isinstance(wd.weight_hh_l0, nn.Parameter)


def test_weight_drop_eval_uses_the_undropped_weight():
    wd, plain = make_pair()
    x = torch.randn(3, 4, 5)
    h0 = (torch.randn(1, 3, 7), torch.randn(1, 3, 7))
    wd.eval()
    out, (h, c) = wd(x, h0)
    ref, (h_ref, c_ref) = plain(x, h0)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(h, h_ref)
    torch.testing.assert_close(c, c_ref)


def test_weight_drop_training_forward_applies_a_scaled_dropout_mask_to_weight_hh():
    wd, plain = make_pair(p=0.5)
    x = torch.randn(3, 4, 5)
    torch.manual_seed(123)
    out, _ = wd.train()(x)
    torch.manual_seed(123)  # the forward's only random draw is the weight mask
    dropped = F.dropout(wd.weight_hh_l0.detach(), 0.5, training=True)
    with torch.no_grad():
        plain.weight_hh_l0.copy_(dropped)
    torch.testing.assert_close(out, plain(x)[0])
    assert not torch.allclose(out, wd.eval()(x)[0])


def test_weight_drop_mask_is_renewed_each_forward_and_raw_weight_gets_gradients():
    wd, _ = make_pair(p=0.5, hidden=16)
    wd.train()
    x = torch.randn(4, 6, 5)
    zero_patterns = []
    for _ in range(2):
        wd.zero_grad(set_to_none=True)
        wd(x)[0].pow(2).sum().backward()
        grad = wd.weight_hh_l0.grad
        assert grad is not None and grad.abs().sum() > 0
        zero_patterns.append(grad == 0)  # exactly the dropped connections
        assert 0.35 < zero_patterns[-1].float().mean() < 0.65
        assert (wd.weight_ih_l0.grad != 0).float().mean() > 0.95
    assert not torch.equal(zero_patterns[0], zero_patterns[1])


@pytest.mark.parametrize("device", DEVICES)
def test_weight_drop_train_eval_train_cycle_emits_no_warnings(device):
    wd = WeightDropLSTM(5, 8, 0.5).to(device)
    x = torch.randn(3, 4, 5, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for mode in ["train", "train", "eval", "eval", "train"]:
            wd.train(mode == "train")
            out, state = wd(x)
            out, _ = wd(x, state)
            if mode == "train":
                out.sum().backward()
            else:
                with torch.no_grad():
                    wd(x)
    wd.eval()
    torch.testing.assert_close(wd(x)[0], wd(x)[0])  # eval is deterministic again


def test_weight_drop_keeps_the_fused_onednn_kernel_on_cpu():
    if not torch.backends.mkldnn.is_available():
        pytest.skip("torch built without oneDNN")
    wd = WeightDropLSTM(5, 8, 0.5).train()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        wd(torch.randn(2, 3, 5))[0].sum().backward()
    names = {event.name for event in prof.events()}
    assert "aten::mkldnn_rnn_layer" in names
    assert "aten::mkldnn_rnn_layer_backward" in names


def test_views_of_one_buffer_lay_tensors_out_back_to_back_for_cudnn():
    tensors = [torch.randn(8, 3, requires_grad=True), torch.randn(8, 2), torch.randn(8, requires_grad=True)]
    views = views_of_one_buffer(tensors)
    storage = views[0].untyped_storage().data_ptr()
    assert all(v.untyped_storage().data_ptr() == storage and v.is_contiguous() for v in views)
    assert [v.storage_offset() for v in views] == [0, 24, 40]
    for view, tensor in zip(views, tensors):
        assert torch.equal(view, tensor)
    sum(v.sum() for v in views).backward()
    assert torch.equal(tensors[0].grad, torch.ones(8, 3)) and torch.equal(tensors[2].grad, torch.ones(8))
