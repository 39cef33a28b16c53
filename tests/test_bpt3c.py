from types import SimpleNamespace

import pytest
import torch
from torch import nn

from ulmfit.classifier.bpt3c import bpt3c_features, chunk_spans
from ulmfit.classifier.pooling import masked_concat_pool
from ulmfit.classifier.sampling import pad_batch
from ulmfit.model.awd_lstm import AWDLSTM, make_config

PAD = 1



class StandInEncoder(nn.Module):
    """Embedding + two stacked LSTMs with the AWDLSTM forward signature; logs its calls."""

    def __init__(self, vocab_size, emb_size=6, hidden_size=10):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emb_size, padding_idx=PAD)
        self.lstms = nn.ModuleList([nn.LSTM(emb_size, hidden_size, batch_first=True),
                                    nn.LSTM(hidden_size, emb_size, batch_first=True)])
        self.calls = []  # (chunk length, grad enabled)
        self.rows = []  # documents in each call

    def forward(self, tokens, state=None):
        self.calls.append((tokens.shape[1], torch.is_grad_enabled()))
        self.rows.append(tokens.shape[0])
        x, new_state = self.embedding(tokens), []
        for layer, lstm in enumerate(self.lstms):
            x, layer_state = lstm(x, None if state is None else state[layer])
            new_state.append(layer_state)
        return SimpleNamespace(last_raw=x, last_dropped=x, state=new_state)

    def layer_groups(self):
        return [list(lstm.parameters()) for lstm in self.lstms]


def make_encoder(kind, vocab_size):
    torch.manual_seed(0)
    if kind == "stand-in":
        return StandInEncoder(vocab_size)
    return AWDLSTM(make_config("tiny", vocab_size=vocab_size))


ENCODERS = ["stand-in", "awd-lstm"]


def test_chunk_spans_split_exactly_at_the_gradient_window():
    assert chunk_spans(300, 70, 100) == [(0, 70, False), (70, 140, False), (140, 200, False),
                                         (200, 270, True), (270, 300, True)]
    assert chunk_spans(50, 70, 100) == [(0, 50, True)]
    assert chunk_spans(140, 70, 140) == [(0, 70, True), (70, 140, True)]
    spans = chunk_spans(1001, 7, 33)
    assert [s for s, _, _ in spans[1:]] == [e for _, e, _ in spans[:-1]]
    assert sum(e - s for s, e, grad in spans if grad) == 33
    assert all(e - s <= 7 for s, e, _ in spans)


@pytest.mark.parametrize("kind", ENCODERS)
def test_gradient_only_in_last_max_len_tokens(kind):
    # Every position holds a distinct token id, so embedding-gradient rows map back to positions.
    long_ids, short_ids = torch.arange(10, 310), torch.arange(400, 650)
    encoder = make_encoder(kind, vocab_size=700).eval()  # eval: no dropout noise, grads still flow
    tokens, lengths = pad_batch([long_ids.numpy(), short_ids.numpy()], PAD)
    bpt3c_features(encoder, tokens, lengths, bptt=30, max_len=100).sum().backward()
    has_grad = encoder.embedding.weight.grad.abs().sum(1) > 0
    # Longest document (300 tokens): gradient exactly in its last 100 positions.
    assert torch.equal(has_grad[long_ids], torch.arange(300) >= 200)
    # Shorter document (250): only batch positions >= 200, inside its own last 100 tokens.
    assert torch.equal(has_grad[short_ids], torch.arange(250) >= 200)


def test_only_the_window_builds_a_graph():
    encoder = make_encoder("stand-in", vocab_size=50)
    tokens = torch.randint(2, 50, (3, 500))
    lengths = torch.tensor([500, 480, 17])
    features = bpt3c_features(encoder, tokens, lengths, bptt=70, max_len=140)
    assert features.requires_grad
    grad_tokens = sum(n for n, grad in encoder.calls if grad)
    assert grad_tokens == 140
    assert sum(n for n, _ in encoder.calls) == 500


def test_the_encoder_reads_only_the_documents_not_ended_yet():
    encoder = make_encoder("stand-in", vocab_size=50)
    tokens = torch.randint(2, 50, (3, 500))
    lengths = torch.tensor([500, 420, 17])
    with torch.no_grad():
        bpt3c_features(encoder, tokens, lengths, bptt=70, max_len=140)
    starts = [s for s, _, _ in chunk_spans(500, 70, 140)]  # 0, 70, ..., 350, 360, 430: 420 has ended
    assert encoder.rows == [int((lengths > s).sum()) for s in starts]
    assert encoder.rows[0] == 3 and encoder.rows[1] == 2 and encoder.rows[-1] == 1


def test_an_empty_document_pools_to_zeros_beside_one_read_in_chunks():
    encoder = make_encoder("awd-lstm", vocab_size=40).eval()
    doc = torch.randint(2, 40, (50,))
    tokens = torch.full((2, 50), PAD)
    tokens[0] = doc
    with torch.no_grad():
        features = bpt3c_features(encoder, tokens, torch.tensor([50, 0]), bptt=20, max_len=30)
        alone = bpt3c_features(encoder, doc[None], torch.tensor([50]), bptt=20, max_len=30)
    assert torch.equal(features[1], torch.zeros_like(features[1]))
    torch.testing.assert_close(features[0], alone[0], atol=1e-5, rtol=1e-4)


def test_no_graph_under_no_grad():
    encoder = make_encoder("stand-in", vocab_size=50)
    with torch.no_grad():
        features = bpt3c_features(encoder, torch.randint(2, 50, (2, 90)), torch.tensor([90, 40]),
                                  bptt=20, max_len=50)
    assert not features.requires_grad
    assert not any(grad for _, grad in encoder.calls)


@pytest.mark.parametrize("kind", ENCODERS)
def test_equals_pooling_the_last_max_len_tokens_of_one_full_pass(kind):
    encoder = make_encoder(kind, vocab_size=60).eval()
    torch.manual_seed(1)
    docs = [torch.randint(2, 60, (n,)).numpy() for n in (95, 61, 12)]
    tokens, lengths = pad_batch(docs, PAD)
    with torch.no_grad():
        features = bpt3c_features(encoder, tokens, lengths, bptt=16, max_len=40)
        outputs = encoder(tokens, None).last_raw
    positions = torch.arange(tokens.shape[1])
    mask = (positions < lengths[:, None]) & (positions >= lengths[:, None] - 40)
    torch.testing.assert_close(features, masked_concat_pool(outputs, mask), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ENCODERS)
def test_batch_invariance(kind):
    """A document's features do not depend on its batch-mates, their lengths or the padding."""
    encoder = make_encoder(kind, vocab_size=80).eval()
    torch.manual_seed(2)
    short, long_doc = torch.randint(2, 80, (37,)).numpy(), torch.randint(2, 80, (150,)).numpy()
    others = [torch.randint(2, 80, (n,)).numpy() for n in (400, 260, 5)]
    with torch.no_grad():
        alone = [bpt3c_features(encoder, *pad_batch([doc], PAD), bptt=20, max_len=60)
                 for doc in (short, long_doc)]
        tokens, lengths = pad_batch([others[0], short, others[1], long_doc, others[2]], PAD)
        batched = bpt3c_features(encoder, tokens, lengths, bptt=20, max_len=60)
        tokens[tokens == PAD] = 7  # garbage in the padding changes nothing either
        garbage = bpt3c_features(encoder, tokens, lengths, bptt=20, max_len=60)
    for index, single in zip((1, 3), alone):
        torch.testing.assert_close(batched[index], single[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(garbage, batched, atol=1e-5, rtol=1e-4)


def test_bad_shapes_are_rejected():
    encoder = make_encoder("stand-in", vocab_size=20)
    with pytest.raises(ValueError):
        bpt3c_features(encoder, torch.ones(2, 5, dtype=torch.long), torch.tensor([6, 2]), 4, 8)
    with pytest.raises(ValueError):
        bpt3c_features(encoder, torch.ones(2, 5, dtype=torch.long), torch.tensor([5]), 4, 8)


def saved_bytes_and_grads(encoder, tokens, lengths, checkpoint_tokens):
    """Bytes autograd keeps for the backward pass, then the features and the encoder's gradients
    after a backward pass (training mode, so every dropout draws its masks)."""
    saved = []

    def pack(tensor):
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    encoder.zero_grad()
    torch.manual_seed(3)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        features = bpt3c_features(encoder, tokens, lengths, bptt=10, max_len=100,
                                  checkpoint_tokens=checkpoint_tokens)
    (features * torch.linspace(-1, 1, features.shape[1])).sum().backward()
    return sum(saved), features.detach(), [p.grad.clone() for p in encoder.parameters()]


def test_a_checkpointed_window_keeps_less_and_trains_exactly_the_same():
    encoder = make_encoder("awd-lstm", vocab_size=90).train()
    torch.manual_seed(4)
    tokens, lengths = pad_batch([torch.randint(2, 90, (n,)).numpy() for n in (160, 120, 100, 30)], PAD)
    window_tokens = 4 * 100
    kept, features, grads = saved_bytes_and_grads(encoder, tokens, lengths, checkpoint_tokens=0)
    below, *_ = saved_bytes_and_grads(encoder, tokens, lengths, checkpoint_tokens=window_tokens)
    recomputed, ck_features, ck_grads = saved_bytes_and_grads(encoder, tokens, lengths,
                                                              checkpoint_tokens=window_tokens - 1)
    assert below == kept  # a window of at most checkpoint_tokens is not checkpointed
    assert recomputed < kept / 3  # ten chunks: only their inputs and outputs are kept
    torch.testing.assert_close(ck_features, features, atol=0, rtol=0)
    for ck_grad, grad in zip(ck_grads, grads):
        torch.testing.assert_close(ck_grad, grad, atol=1e-6, rtol=1e-5)  # same dropout masks
