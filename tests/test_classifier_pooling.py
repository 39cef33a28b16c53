import pytest
import torch

from ulmfit.classifier.pooling import ConcatPooler, masked_concat_pool


def test_matches_hand_computation_with_padding():
    outputs = torch.tensor([
        [[1., -2.], [3., -5.], [100., 100.], [100., 100.]],   # right padding with huge values
        [[-1., 4.], [-7., -8.], [2., 0.], [-3., 6.]],         # arbitrary (non-prefix) mask
        [[-1., -2.], [-3., -4.], [0., 0.], [0., 0.]],         # all negative, zero padding
    ])
    mask = torch.tensor([[1, 1, 0, 0], [0, 1, 0, 1], [1, 1, 0, 0]], dtype=torch.bool)
    expected = torch.tensor([
        # last        max          mean
        [3., -5., 3., -2., 2., -3.5],
        [-3., 6., -3., 6., -5., -1.],
        [-3., -4., -1., -2., -2., -3.],
    ])
    torch.testing.assert_close(masked_concat_pool(outputs, mask), expected)


def test_row_without_real_tokens_pools_to_zeros():
    outputs = torch.randn(2, 3, 4)
    mask = torch.tensor([[True, False, False], [False, False, False]])
    pooled = masked_concat_pool(outputs, mask)
    assert torch.equal(pooled[1], torch.zeros(12))
    assert torch.isfinite(pooled).all()


def test_chunked_updates_equal_one_shot_pooling():
    torch.manual_seed(0)
    outputs = torch.randn(4, 23, 5)
    mask = torch.rand(4, 23) > 0.4
    mask[:, 0] = True
    mask[3, 5:] = False  # a row whose real tokens all lie in the first chunk
    pooler = ConcatPooler()
    for start in range(0, 23, 7):
        pooler.update(outputs[:, start:start + 7], mask[:, start:start + 7])
    torch.testing.assert_close(pooler.result(), masked_concat_pool(outputs, mask))


def test_padding_gets_no_gradient():
    outputs = torch.randn(2, 6, 3, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]], dtype=torch.bool)
    masked_concat_pool(outputs, mask).sum().backward()
    assert (outputs.grad[~mask] == 0).all()
    assert (outputs.grad[mask].abs().sum(-1) > 0).all()


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError):
        masked_concat_pool(torch.randn(2, 3, 4), torch.ones(2, 4, dtype=torch.bool))
