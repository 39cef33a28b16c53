import numpy as np
import pytest
import torch

from ulmfit.classifier.sampling import pad_batch, sortish_batches, sorted_batches, sorted_order, unsort


@pytest.mark.parametrize("n, batch_size", [(1, 4), (5, 4), (33, 32), (2000, 32), (1234, 7)])
def test_sortish_covers_every_index_exactly_once(n, batch_size):
    lengths = np.random.default_rng(0).integers(1, 500, n)
    batches = sortish_batches(lengths, batch_size, np.random.default_rng(1))
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(n))
    assert all(len(b) <= batch_size + 1 for b in batches)
    assert n == 1 or all(len(b) > 1 for b in batches)  # BatchNorm cannot train on one example


def test_sortish_longest_first_homogeneous_and_seeded():
    lengths = np.random.default_rng(0).integers(1, 1000, 3000)
    batches = sortish_batches(lengths, 32, np.random.default_rng(1), chunk_mult=20)
    assert lengths[batches[0]].max() == lengths.max()
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    random_batches = np.array_split(np.random.default_rng(2).permutation(3000), len(batches))
    random_spread = np.mean([np.ptp(lengths[b]) for b in random_batches])
    assert spread < random_spread / 10
    # Shuffled: batch order is not simply by length, and the seed decides everything.
    assert not np.all(np.diff([lengths[b].max() for b in batches]) <= 0)
    again = sortish_batches(lengths, 32, np.random.default_rng(1), chunk_mult=20)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    other = sortish_batches(lengths, 32, np.random.default_rng(3), chunk_mult=20)
    assert not np.array_equal(np.concatenate(batches), np.concatenate(other))


def test_sorted_order_is_longest_first_and_stable():
    lengths = [3, 9, 3, 1, 9]
    assert sorted_order(lengths).tolist() == [1, 4, 0, 2, 3]
    assert [b.tolist() for b in sorted_batches(lengths, 2)] == [[1, 4], [0, 2], [3]]


def test_unsort_restores_the_original_order():
    lengths = np.random.default_rng(0).integers(1, 50, 101)
    order = np.concatenate(sortish_batches(lengths, 8, np.random.default_rng(0)))
    predictions = np.stack([lengths[order], -lengths[order]], axis=1)  # computed in batch order
    assert np.array_equal(unsort(predictions, order), np.stack([lengths, -lengths], axis=1))
    with pytest.raises(ValueError):
        unsort(np.zeros(3), np.array([0, 0, 1]))


def test_pad_batch_right_pads_and_reverses():
    docs = [np.array([2, 5, 6], dtype=np.int32), np.array([2, 7], dtype=np.int32), np.array([2, 8, 9, 10])]
    tokens, lengths = pad_batch(docs, pad_id=1)
    assert tokens.dtype == torch.long and lengths.dtype == torch.long
    assert tokens.tolist() == [[2, 5, 6, 1], [2, 7, 1, 1], [2, 8, 9, 10]]
    assert lengths.tolist() == [3, 2, 4]
    backward, back_lengths = pad_batch(docs, pad_id=1, reverse=True)
    assert backward.tolist() == [[6, 5, 2, 1], [7, 2, 1, 1], [10, 9, 8, 2]]
    assert back_lengths.tolist() == [3, 2, 4]
    with pytest.raises(ValueError):
        pad_batch([], pad_id=1)
