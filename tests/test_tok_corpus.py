"""The tokenized-folder contract: ids/offsets/labels round trip, streaming writer, checks."""
import numpy as np
import pytest

from ulmfit.errors import UlmfitError
from ulmfit.text import corpus
from ulmfit.text.special import BOS_ID


def test_save_and_load_split_round_trip(tmp_path):
    docs = [np.array([BOS_ID, 10, 11]), np.array([BOS_ID]), np.array([BOS_ID, 12])]
    corpus.save_split(tmp_path, "valid", docs, labels=[1, 0, 1])
    data = corpus.load_split(tmp_path, "valid")
    assert isinstance(data.ids, np.memmap) and data.ids.dtype == np.int32
    assert data.offsets.tolist() == [0, 3, 4, 6] and data.offsets.dtype == np.int64
    assert [d.tolist() for d in data] == [d.tolist() for d in docs]
    assert data.labels.tolist() == [1, 0, 1] and data.labels.dtype == np.int64
    assert len(data) == 3 and data.n_tokens == 6 and data.doc(2).tolist() == [BOS_ID, 12]
    assert corpus.available_splits(tmp_path) == ["valid"]
    assert not isinstance(corpus.load_split(tmp_path, "valid", mmap=False).ids, np.memmap)


def test_split_writer_remaps_temporary_ids(tmp_path):
    writer = corpus.SplitWriter(tmp_path, "train")
    writer.add(np.array([2, 20, 21, 2, 22]), np.array([3, 2]))
    writer.add(np.array([2, 21]), np.array([2]))
    lookup = np.zeros(30, dtype=np.int32)
    lookup[[2, 20, 21, 22]] = [2, 9, 10, 0]
    data = writer.finish(lookup, labels=np.array([0, -1, 1]))
    assert [d.tolist() for d in data] == [[2, 9, 10], [2, 0], [2, 10]]
    assert data.labels.tolist() == [0, -1, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train_ids.npy", "train_labels.npy", "train_offsets.npy"]


def test_missing_split_lists_the_available_ones(tmp_path):
    corpus.save_split(tmp_path, "train", [np.array([BOS_ID, 5])])
    with pytest.raises(UlmfitError, match=r"no 'test' split \(has: train\)"):
        corpus.load_split(tmp_path, "test")


def test_inconsistent_offsets_are_reported(tmp_path):
    corpus.save_split(tmp_path, "train", [np.array([BOS_ID, 5])])
    np.save(corpus.offsets_path(tmp_path, "train"), np.array([0, 5], dtype=np.int64))
    with pytest.raises(UlmfitError, match="offsets do not match"):
        corpus.load_split(tmp_path, "train")
