import numpy as np
import pytest
import torch
from torch import nn

from ulmfit.classifier.head import (PoolingClassifierHead, TextClassifier, gradual_unfreezing_schedule,
                                    set_trainable_groups)
from ulmfit.classifier.sampling import pad_batch

from ulmfit.model import awd_lstm
PAD = 1



def make_classifier(n_classes=3, vocab_size=40, **overrides):
    torch.manual_seed(0)
    cfg = awd_lstm.make_config("tiny", vocab_size=vocab_size, **overrides)
    head = PoolingClassifierHead(3 * cfg.emb_size, n_classes, hidden=50, dropouts=(0.2, 0.1))
    return TextClassifier(awd_lstm.AWDLSTM(cfg), head, bptt=16, max_len=32)


def test_head_is_the_ulmfit_stack():
    head = PoolingClassifierHead(12, 5, hidden=50, dropouts=(0.2, 0.1))
    assert [type(m) for m in head] == [nn.BatchNorm1d, nn.Dropout, nn.Linear, nn.ReLU,
                                       nn.BatchNorm1d, nn.Dropout, nn.Linear]
    assert (head[1].p, head[5].p) == (0.2, 0.1)
    assert (head[2].in_features, head[2].out_features, head[6].out_features) == (12, 50, 5)
    assert head(torch.randn(4, 12)).shape == (4, 5)
    with pytest.raises(ValueError):
        PoolingClassifierHead(12, 5, hidden=50, dropouts=(0.2,))


def test_layer_groups_embedding_lstms_head_partition_the_parameters():
    model = make_classifier()
    groups = model.layer_groups()
    assert len(groups) == 1 + len(model.encoder.lstms) + 1
    assert groups[0] == [model.encoder.embedding.weight]
    assert [id(p) for p in groups[-1]] == [id(p) for p in model.head.parameters()]
    for group, lstm in zip(groups[1:-1], model.encoder.lstms):
        assert {id(p) for p in group} == {id(p) for p in lstm.parameters()}
    grouped = [id(p) for group in groups for p in group]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # each exactly once


def test_gradual_unfreezing_schedule():
    assert [gradual_unfreezing_schedule(4, epoch) for epoch in range(6)] == [1, 2, 3, 4, 4, 4]
    assert gradual_unfreezing_schedule(1, 0) == 1
    with pytest.raises(ValueError):
        gradual_unfreezing_schedule(4, -1)


@pytest.mark.parametrize("epoch", [0, 1, 3])
def test_unfreezing_trains_only_the_top_groups(epoch):
    model = make_classifier()
    groups = model.layer_groups()
    n_trainable = gradual_unfreezing_schedule(len(groups), epoch)
    set_trainable_groups(groups, n_trainable)
    tokens, lengths = pad_batch([np.arange(2, 30), np.arange(5, 12)], PAD)
    model(tokens, lengths).sum().backward()
    for index, group in enumerate(groups):
        trainable = index >= len(groups) - n_trainable
        assert all(p.requires_grad == trainable for p in group)
        assert all((p.grad is not None) == trainable for p in group)


def test_eval_probabilities_do_not_depend_on_batch_mates():
    model = make_classifier()
    rng = np.random.default_rng(0)
    docs = [rng.integers(2, 40, n) for n in (90, 23, 50, 7, 61)]
    model.train()
    for _ in range(3):  # give the BatchNorm layers non-trivial running statistics
        model(*pad_batch(docs, PAD))
    model.eval()
    with torch.no_grad():
        batched = model(*pad_batch(docs, PAD)).softmax(-1)
        alone = torch.cat([model(*pad_batch([doc], PAD)).softmax(-1) for doc in docs])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-4)


def test_learns_a_toy_task_through_bpt3c():
    """Label 1 iff token 9 occurs somewhere (often before the last max_len tokens' window)."""
    model = make_classifier(n_classes=2, drop_mult=0.0)
    rng = np.random.default_rng(0)
    docs, labels = [], []
    for _ in range(64):
        doc = rng.integers(10, 40, rng.integers(5, 45))
        label = int(rng.integers(2))
        if label:
            doc[rng.integers(max(1, len(doc) - 30), len(doc))] = 9  # inside the last 32 tokens
        docs.append(np.concatenate([[2], doc]))
        labels.append(label)
    tokens, lengths = pad_batch(docs, PAD)
    targets = torch.tensor(labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(30):
        optimizer.zero_grad()
        logits = model(tokens, lengths)
        nn.functional.cross_entropy(logits, targets).backward()
        optimizer.step()
    # Train-mode accuracy (BatchNorm on batch statistics): the running statistics of a head
    # trained for a few large full-batch steps lag too far behind to judge eval mode here.
    accuracy = (logits.argmax(-1) == targets).float().mean().item()
    assert accuracy > 0.9
