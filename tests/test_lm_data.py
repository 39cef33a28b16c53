import numpy as np
import pytest
import torch

from ulmfit.errors import UlmfitError
from ulmfit.lm_data import LMStream, concat_documents, window_lengths
from ulmfit.text.special import BOS_ID


def make_corpus(lengths, seed=0):
    """Documents of the given lengths, each BOS then distinct ids (so every token is traceable)."""
    docs, next_id = [], 10
    for n in lengths:
        docs.append([BOS_ID] + list(range(next_id, next_id + n - 1)))
        next_id += n - 1
    ids = np.array([t for d in docs for t in d], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    return docs, ids, offsets


def read_all(stream, epoch=0, start=0):
    """Rebuild each row's token sequence from the batches, checking y is x shifted by one."""
    xs, ys = [], []
    for b in stream.batches(epoch, start):
        assert b.x.shape == b.y.shape == (stream.bs, b.seq_len)
        assert b.x.dtype == torch.int64
        xs.append(b.x)
        ys.append(b.y)
    x, y = torch.cat(xs, 1), torch.cat(ys, 1)
    assert torch.equal(x[:, 1:], y[:, :-1])
    return torch.cat([x, y[:, -1:]], 1)


def test_validation_stream_is_documents_in_order_cut_into_rows():
    docs, ids, offsets = make_corpus([7, 12, 5, 30, 9, 4])
    stream = LMStream(ids, offsets, bs=3, bptt=4, shuffle=False)
    rows = read_all(stream)
    flat = [t for d in docs for t in d]
    expected = torch.tensor(flat[:3 * stream.row_len]).view(3, -1)
    assert torch.equal(rows, expected)
    lengths = [b.seq_len for b in stream.batches()]
    assert lengths[:-1] == [4] * (len(lengths) - 1) and 0 < lengths[-1] <= 4
    assert stream.n_batches() == len(list(stream.batches()))


def test_training_order_is_a_permutation_fixed_by_seed_and_epoch():
    docs, ids, offsets = make_corpus([6] * 40)
    stream = LMStream(ids, offsets, bs=1, bptt=10, seed=3)
    r0, r0_again, r1 = stream.rows(0), stream.rows(0), stream.rows(1)
    assert np.array_equal(r0, r0_again)
    assert not np.array_equal(r0, r1)
    other_seed = LMStream(ids, offsets, bs=1, bptt=10, seed=4).rows(0)
    assert not np.array_equal(r0, other_seed)
    # every document appears whole, starting with BOS
    starts = np.flatnonzero(r0[0] == BOS_ID)
    assert len(starts) == 40
    got = sorted(tuple(r0[0][s:s + 6]) for s in starts)
    assert got == sorted(tuple(d) for d in docs)


def test_backwards_reverses_each_document_bos_last():
    docs, ids, offsets = make_corpus([4, 6, 3])
    stream = concat_documents(ids, offsets, np.array([2, 0, 1]), backwards=True)
    expected = docs[2][::-1] + docs[0][::-1] + docs[1][::-1]
    assert stream.tolist() == expected
    assert stream[2] == BOS_ID  # the BOS now ends each reversed document
    lm = LMStream(ids, offsets, bs=1, bptt=3, shuffle=False, backwards=True)
    assert lm.rows().tolist() == [docs[0][::-1] + docs[1][::-1] + docs[2][::-1]]


def test_window_lengths_follow_awd_lstm():
    rng = np.random.default_rng(0)
    lengths = window_lengths(200_000, 70, rng)
    assert sum(lengths) == 200_000
    body = np.array(lengths[:-1])
    assert body.min() >= 5 and body.max() <= 90
    half = (body < 50).mean()
    assert 0.03 < half < 0.07                          # about 5% of windows around bptt / 2
    assert abs(np.median(body) - 70) <= 1
    assert window_lengths(10, 4, None) == [4, 4, 2]


def test_resume_start_skips_exactly_the_first_batches():
    _, ids, offsets = make_corpus([50] * 20)
    stream = LMStream(ids, offsets, bs=4, bptt=8, seed=1)
    full = list(stream.batches(2))
    tail = list(stream.batches(2, start=5))
    assert len(tail) == len(full) - 5 == stream.n_batches(2) - 5
    for a, b in zip(full[5:], tail):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and a.seq_len == b.seq_len


def test_works_from_memory_mapped_files(tmp_path):
    docs, ids, offsets = make_corpus([20, 30, 25])
    np.save(tmp_path / "ids.npy", ids)
    mm = np.load(tmp_path / "ids.npy", mmap_mode="r")
    a = read_all(LMStream(mm, offsets, bs=2, bptt=5, shuffle=False))
    b = read_all(LMStream(ids, offsets, bs=2, bptt=5, shuffle=False))
    assert torch.equal(a, b)


def test_a_subset_of_documents_can_be_held_out():
    docs, ids, offsets = make_corpus([5, 6, 7, 8, 9, 10])
    held_out = LMStream(ids, offsets, bs=1, bptt=4, shuffle=False, docs=np.array([1, 4]))
    assert held_out.rows().tolist() == [docs[1] + docs[4]]
    rest = LMStream(ids, offsets, bs=1, bptt=4, seed=0, docs=np.array([0, 2, 3, 5])).rows(0)[0]
    assert sorted(rest.tolist()) == sorted(docs[0] + docs[2] + docs[3] + docs[5])


def test_too_little_text_is_a_clear_error():
    _, ids, offsets = make_corpus([3])
    with pytest.raises(UlmfitError, match="too few"):
        LMStream(ids, offsets, bs=4, bptt=5)
