import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ulmfit.classifier.sampling import pad_batch
from ulmfit.stages.classify import train
from ulmfit.text.special import BOS_ID, MAJ_ID, PAD_ID, UP_ID
from ulmfit.tricks.eda import (EDAugment, augment, augment_batch, nearest_neighbours, random_deletion,
                               random_insertion, random_swap, synonym_replacement)

P = 9  # ids below are special
DOC = np.array([BOS_ID, MAJ_ID, 20, 21, 22, 23, UP_ID, 24, 25, 26, 27, 28], dtype=np.int64)
NEIGHBOURS = np.random.default_rng(0).integers(P, 40, size=(40, 5))


def specials(tokens):
    return tokens[tokens < P].tolist()


def is_subsequence(short, long):
    it = iter(long.tolist())
    return all(any(x == y for y in it) for x in short.tolist())


@pytest.mark.parametrize("seed", range(20))
def test_swap_and_replacement_keep_the_length_and_every_special_token_in_place(seed):
    rng = np.random.default_rng(seed)
    swapped = random_swap(DOC, 3, rng, P)
    assert len(swapped) == len(DOC) and np.array_equal(swapped < P, DOC < P)
    assert np.array_equal(swapped[DOC < P], DOC[DOC < P])
    assert sorted(swapped.tolist()) == sorted(DOC.tolist())
    replaced = synonym_replacement(DOC, 3, rng, P, NEIGHBOURS)
    assert np.array_equal(replaced[DOC < P], DOC[DOC < P])
    changed = np.flatnonzero(replaced != DOC)
    assert len(changed) <= 3 and all(replaced[i] in NEIGHBOURS[DOC[i]] for i in changed)


@pytest.mark.parametrize("seed", range(20))
def test_deletion_shortens_and_insertion_lengthens_keeping_special_tokens_in_order(seed):
    rng = np.random.default_rng(seed)
    deleted = random_deletion(DOC, 3, rng, P)
    assert len(deleted) == len(DOC) - 3 and specials(deleted) == specials(DOC)
    assert is_subsequence(deleted, DOC)
    inserted = random_insertion(DOC, 3, rng, P, NEIGHBOURS)
    assert len(inserted) == len(DOC) + 3 and specials(inserted) == specials(DOC)
    assert is_subsequence(DOC, inserted) and inserted[0] == BOS_ID and inserted[-1] == DOC[-1]
    backward = random_insertion(DOC[::-1].copy(), 3, rng, P, NEIGHBOURS)
    assert backward[-1] == BOS_ID  # nothing goes after xxbos in a reversed document either


def test_documents_are_never_left_empty_and_special_tokens_never_change():
    rng = np.random.default_rng(0)
    assert random_deletion(np.array([BOS_ID, 20]), 5, rng, P).tolist() == [BOS_ID, 20]
    assert len(random_deletion(np.array([20, 21, 22]), 5, rng, P)) == 1
    only_special = np.array([BOS_ID, MAJ_ID])
    for seed in range(20):
        assert augment(only_special, np.random.default_rng(seed), 0.5, NEIGHBOURS, P).tolist() == [BOS_ID, MAJ_ID]
    lengths = {len(augment(DOC, np.random.default_rng(s), 0.25, NEIGHBOURS, P)) for s in range(40)}
    assert lengths == {len(DOC) - 2, len(DOC), len(DOC) + 2}  # alpha x 9 words ~ 2 changes


def test_neighbours_are_the_most_cosine_similar_words_never_itself_or_special():
    angles = {P: 0, P + 1: 10, P + 2: 30, P + 3: 90, P + 4: 180}
    emb = torch.zeros(P + 5, 2)
    for token, degrees in angles.items():
        emb[token] = (1 + token) * torch.tensor([math.cos(math.radians(degrees)), math.sin(math.radians(degrees))])
    emb[BOS_ID] = emb[P]  # a special token identical to a word is still never a synonym
    table = nearest_neighbours(emb, k=2, chunk=3)
    assert table.shape == (P + 5, 2)
    assert table[P:].tolist() == [[P + 1, P + 2], [P, P + 2], [P + 1, P], [P + 2, P + 1], [P + 3, P + 2]]
    assert np.array_equal(table, nearest_neighbours(emb, k=2, chunk=100))  # chunks change nothing


def batch():
    docs = [DOC, DOC[:4], np.array([BOS_ID, 30, 31, 32, 33, 34, 35]), DOC[::-1].copy()]
    return pad_batch(docs, PAD_ID)


def test_p0_is_the_identity_and_augmented_batches_stay_right_padded_with_their_lengths():
    tokens, lengths = batch()
    same = augment_batch(tokens, lengths, np.random.default_rng(0), 0.0, 0.5, NEIGHBOURS)
    assert torch.equal(same[0], tokens) and torch.equal(same[1], lengths)
    new_tokens, new_lengths = augment_batch(tokens, lengths, np.random.default_rng(1), 1.0, 0.5, NEIGHBOURS)
    assert new_tokens.dtype == new_lengths.dtype == torch.int64
    assert new_tokens.shape == (4, int(new_lengths.max())) and not torch.equal(new_lengths, lengths)
    positions = torch.arange(new_tokens.shape[1])
    assert torch.equal(new_tokens == PAD_ID, positions >= new_lengths[:, None])


def fake_trainer(step, training=True, seed=0):
    torch.manual_seed(seed)
    model = SimpleNamespace(encoder=SimpleNamespace(embedding=torch.nn.Embedding(40, 8)))
    return SimpleNamespace(model=model, training=training, step=step, inputs=batch())


def test_the_callback_augments_training_batches_by_seed_and_step_and_resumes_identically():
    cb = EDAugment(p=1.0, alpha=0.3)
    cb.before_fit(fake_trainer(0))
    assert cb.neighbours.shape == (40, 5)
    runs = {}
    for step, seed in [(5, 0), (5, 0), (6, 0), (5, 1)]:
        trainer = fake_trainer(step, seed=seed)
        cb.before_batch(trainer)
        runs.setdefault((step, seed), []).append(trainer.inputs[0].tolist())
    assert runs[5, 0][0] == runs[5, 0][1] and runs[5, 0][0] != runs[6, 0][0] and runs[5, 0][0] != runs[5, 1][0]

    evaluating = fake_trainer(5, training=False)
    cb.before_batch(evaluating)
    assert evaluating.inputs[0].tolist() == batch()[0].tolist()

    resumed = EDAugment(p=1.0, alpha=0.3)
    resumed.load_state_dict(cb.state_dict())
    resumed.before_fit(fake_trainer(0, seed=7))  # another embedding by now: the saved table is kept
    trainer = fake_trainer(5)
    resumed.before_batch(trainer)
    assert trainer.inputs[0].tolist() == runs[5, 0][0]


def test_a_tiny_real_run_trains_with_eda(trec_tok, tmp_path):
    metrics = train(data=str(trec_tok), out=str(tmp_path / "clf"), from_scratch=True, preset="tiny", max_steps=3,
                    tricks="eda(p=1.0)", device="cpu")
    assert metrics["steps"] == 3 and 0.0 <= metrics["final_valid_error"] <= 1.0
    assert json.loads((tmp_path / "clf" / "config.json").read_text())["tricks"] == {"eda": {"p": 1.0, "alpha": 0.1}}
    saved = torch.load(tmp_path / "clf" / "last.pt", weights_only=True)["callbacks"]
    (neighbours,) = [state["neighbours"] for key, state in saved.items() if key.endswith("EDAugment")]
    assert neighbours.shape == (len(json.loads((trec_tok / "vocab.json").read_text())), 5)
    assert neighbours.min() >= P
