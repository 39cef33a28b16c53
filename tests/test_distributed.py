"""Data parallelism (ulmfit.distributed): shares of the data, and 2 gloo processes x 1 thread that
must train as one process on the same global batch, resume exactly, and run the stages under
torchrun. Every multi-process run is bounded by a timeout, so a hang fails instead of blocking."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from conftest import ptb_docs, write_tokenized
from toy import Crash, CrashAt, resume_matches
from ulmfit import distributed
from ulmfit.classifier.data import ClassificationData
from ulmfit.classifier.sampling import sortish_batches
from ulmfit.errors import UlmfitError
from ulmfit.lm_callbacks import ARTAR, LMWindows
from ulmfit.lm_data import LMStream
from ulmfit.model.awd_lstm import LanguageModel, make_config
from ulmfit.schedules import discriminative_lrs, make_schedule
from ulmfit.stages.lm import finetune, pretrain
from ulmfit.text.corpus import load_split
from ulmfit.training import Callback, Trainer, make_optimizer

VOCAB = 50
RANKS_TIMEOUT_S = 120
TORCHRUN_TIMEOUT_S = 180


# -- shares of the data (one process) -----------------------------------------------------------

@pytest.fixture(scope="module")
def labelled_tok(tmp_path_factory) -> Path:
    """PTB documents labelled by whether they hold a number (N), as a tokenized folder."""
    docs = ptb_docs("train", 1200)
    return write_tokenized(tmp_path_factory.mktemp("labelled") / "tok", {"train": docs},
                           {"train": [int("N" in doc) for doc in docs]}, ["none", "number"])


@pytest.mark.parametrize("n, world", [(16, 2), (7, 2), (5, 3), (2, 4)])
def test_shares_cover_every_item_once_in_blocks_differing_by_at_most_one(n, world):
    blocks = [distributed.share(n, (r, world)) for r in range(world)]
    assert np.concatenate([np.arange(n)[b] for b in blocks]).tolist() == list(range(n))
    sizes = [b.stop - b.start for b in blocks]
    assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError):
        distributed.share(n, (world, world))


def token_stream(n_tokens=3000, bs=4, bptt=10, shuffle=True, seed=0, part=(0, 1)) -> LMStream:
    rng = np.random.default_rng(seed)
    ids = rng.integers(9, VOCAB, n_tokens).astype(np.int32)
    ids[::37] = 2
    offsets = np.concatenate([np.flatnonzero(ids == 2), [n_tokens]]).astype(np.int64)
    return LMStream(ids[offsets[0]:], offsets - offsets[0], bs=bs, bptt=bptt, seed=seed, shuffle=shuffle,
                    part=part)


@pytest.mark.parametrize("bs, shuffle", [(4, True), (3, True), (1, False)])
def test_lm_parts_read_blocks_of_the_same_rows_in_the_same_windows(bs, shuffle):
    whole = list(token_stream(bs=bs, shuffle=shuffle).batches(1))
    parts = [list(token_stream(bs=bs, shuffle=shuffle, part=(r, 2)).batches(1)) for r in range(2)]
    if bs == 1:  # evaluation: the second process has no row and no batch
        assert parts[1] == [] and token_stream(bs=1, shuffle=False, part=(1, 2)).n_batches(1) == len(whole)
        parts = parts[:1]
    for i, batch in enumerate(whole):
        assert torch.equal(torch.cat([p[i].x for p in parts]), batch.x)
        assert torch.equal(torch.cat([p[i].y for p in parts]), batch.y)


def test_training_rows_and_documents_must_reach_every_process(labelled_tok):
    with pytest.raises(UlmfitError, match="without rows"):
        token_stream(bs=1, part=(1, 2))
    split = load_split(labelled_tok, "train")
    with pytest.raises(UlmfitError, match="at least 4"):
        ClassificationData(split, np.arange(len(split)), bs=3, shuffle=True, part=(0, 2))


def test_classifier_parts_split_each_batch_and_keep_two_documents_for_batchnorm(labelled_tok):
    split = load_split(labelled_tok, "train")
    docs = np.arange(len(split))
    for shuffle in (True, False):
        whole = ClassificationData(split, docs, bs=8, seed=1, shuffle=shuffle)
        parts = [ClassificationData(split, docs, bs=8, seed=1, shuffle=shuffle, part=(r, 2)) for r in range(2)]
        assert {p.n_batches(0) for p in parts} == {whole.n_batches(0)}
        joined = [torch.cat([a.labels, b.labels]) for a, b in zip(*(p.batches(0) for p in parts))]
        assert all(torch.equal(j, w.labels) for j, w in zip(joined, whole.batches(0)))
    lengths = np.arange(11)  # 8 + 3: a trailing batch of 3 cannot give 2 ranks 2 documents each
    assert [len(b) for b in sortish_batches(lengths, 8, np.random.default_rng(0))] == [8, 3]
    assert [len(b) for b in sortish_batches(lengths, 8, np.random.default_rng(0), min_size=4)] == [11]


def test_one_process_needs_no_process_group_and_refuses_a_multi_process_checkpoint():
    assert not torch.distributed.is_initialized() and distributed.part() == (0, 1)
    assert distributed.sum_across(1, 2.5) == (1, 2.5) and distributed.run_info() == {}
    checkpoint = {"step": 3, "rng": {}}
    assert distributed.gather_rank_state(checkpoint) is checkpoint
    assert distributed.rank_state(checkpoint, "last.pt") is checkpoint
    with pytest.raises(UlmfitError, match="2 process"):
        distributed.rank_state({"step": 3, "ranks": [{}, {}]}, "last.pt")


# -- two processes against one ------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_entry(index: int, world: int, port: int, worker, args) -> None:
    os.environ.update(RANK=str(index), LOCAL_RANK=str(index), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    with distributed.process_group():
        worker(*args)
    distributed.exit_without_finalizing(0)  # as the CLI's ranks do: finalizing can abort after gloo


def run_ranks(worker, *args, world: int = 2) -> None:
    """``worker(*args)`` in ``world`` spawned processes joined in a gloo group; an exception in
    any of them fails the test, and so does running past ``RANKS_TIMEOUT_S``."""
    context = mp.start_processes(_rank_entry, args=(world, free_port(), worker, args), nprocs=world,
                                 join=False, start_method="spawn")
    deadline = time.monotonic() + RANKS_TIMEOUT_S
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"{world} processes did not finish within {RANKS_TIMEOUT_S} s")


class GlobalLosses(Callback):
    """The loss of each training batch over all ranks' targets (before AR/TAR adds to it)."""

    order = -1

    def __init__(self):
        self.values = []

    def after_loss(self, trainer):
        if trainer.training:
            n = trainer.target.numel()
            total, count = distributed.sum_across(trainer.loss.item() * n, n)
            self.values.append(total / count)


def lm_trainer(out_dir=None, drop_mult=None, extra=(), max_steps=None, checkpoint_interval_s=None) -> Trainer:
    torch.manual_seed(0)
    cfg = make_config("tiny", VOCAB, **({} if drop_mult is None else {"drop_mult": drop_mult}))
    model = LanguageModel(cfg)
    distributed.seed_rank(0)
    groups = model.layer_groups()
    opt = make_optimizer(groups, discriminative_lrs(1e-2, len(groups)), wd=0.01, betas=(0.8, 0.99))
    part = distributed.part()
    return Trainer(model, model.loss, opt, make_schedule("stlr"),
                   [LMWindows(bptt=10), ARTAR(cfg.ar_alpha, cfg.tar_beta), *extra],
                   train_data=token_stream(part=part), valid_data=token_stream(600, shuffle=False, seed=1, part=part),
                   epochs=2, max_steps=max_steps, clip=0.4, out_dir=out_dir, progress=False,
                   checkpoint_interval_s=checkpoint_interval_s)


def equivalence_run(result: Path | None) -> dict:
    losses = GlobalLosses()
    trainer = lm_trainer(drop_mult=0.0, extra=[losses], max_steps=12)
    trainer.fit()
    out = {"losses": losses.values, "weights": trainer.model.state_dict(), "history": trainer.history}
    if result is not None and distributed.is_main():
        torch.save(out, result)
    return out


def test_two_processes_without_dropout_train_as_one_on_the_same_global_batch(tmp_path):
    run_ranks(equivalence_run, tmp_path / "two.pt")
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    one = equivalence_run(None)
    assert len(two["losses"]) == len(one["losses"]) == 12
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-5)
    for name, weight in one["weights"].items():
        torch.testing.assert_close(two["weights"][name], weight, rtol=0, atol=1e-5)
    for key in ("train_loss", "valid_loss"):
        assert two["history"][-1][key] == pytest.approx(one["history"][-1][key], rel=1e-5)


def resume_run(root: Path) -> None:
    """On each rank, with dropout: a straight run, one killed mid-epoch, and its resumption."""
    straight = lm_trainer(root / "a")
    straight.fit()
    try:
        lm_trainer(root / "b", extra=[CrashAt(17)], checkpoint_interval_s=0.0).fit()
        raise AssertionError("the run was not interrupted")
    except Crash:
        pass
    torch.distributed.barrier()  # rank 0 has saved the checkpoint every rank resumes from
    ckpt = torch.load(root / "b" / "last.pt", weights_only=True)
    assert ckpt["step"] == 17 and len(ckpt["ranks"]) == 2
    assert not torch.equal(ckpt["ranks"][0]["rng"]["torch"], ckpt["ranks"][1]["rng"]["torch"])
    resume_matches(straight, lm_trainer(root / "b"))


def test_a_killed_two_process_run_resumes_to_the_same_result_and_only_with_two(tmp_path):
    run_ranks(resume_run, tmp_path)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["best.pt", "last.pt", "log.jsonl"]
    with pytest.raises(UlmfitError, match="2 process"):
        lm_trainer(tmp_path / "b").fit(resume=True)


# -- the stages under torchrun -----------------------------------------------------------------

def torchrun_process(*args: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 -m ulmfit ARGS``, finished."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "ulmfit", *args, "--device", "cpu", "--precision", "fp32"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=TORCHRUN_TIMEOUT_S, env=env)


def torchrun(*args: str) -> dict:
    """``torchrun --standalone --nproc_per_node 2 -m ulmfit ARGS``'s summary (stdout's JSON line)."""
    done = torchrun_process(*args)
    assert done.returncode == 0, done.stderr[-6000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout  # rank 0 alone prints
    return json.loads(lines[0])


def test_torchrun_pretrain_matches_one_process(ptb_tok, tmp_path):
    options = dict(preset="tiny", drop_mult=0.0, max_steps=8, seed=1)
    two = torchrun("pretrain", "--data", str(ptb_tok), "--out", str(tmp_path / "two"),
                   *(f"--{k}={v}" for k, v in options.items()))
    one = pretrain(str(ptb_tok), str(tmp_path / "one"), device="cpu", precision="fp32", **options)
    assert two["world_size"] == 2 and two["steps"] == one["steps"] == 8
    assert two["final_valid_loss"] == pytest.approx(one["final_valid_loss"], rel=1e-5)
    a = torch.load(tmp_path / "one" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "model.pt", weights_only=True)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-5)


def test_torchrun_trains_a_classifier_with_gradual_unfreezing(labelled_tok, tmp_path):
    tok = labelled_tok
    pretrain(str(tok), str(tmp_path / "pre"), preset="tiny", max_steps=5, device="cpu")
    finetune(str(tmp_path / "pre"), str(tok), str(tmp_path / "lm"), epochs=0, device="cpu")
    metrics = torchrun("train", "--encoder", str(tmp_path / "lm"), "--data", str(tok), "--out", str(tmp_path / "clf"),
                       "--epochs", "4", "--max_tokens", "40")
    log = [json.loads(line) for line in (tmp_path / "clf" / "log.jsonl").read_text().splitlines()]
    assert [m["trainable_groups"] for m in log] == [1, 2, 3, 4]
    assert metrics["world_size"] == 2 and metrics["valid_docs"] == 24 and 0.0 <= metrics["best_valid_error"] <= 1.0
    assert (tmp_path / "clf" / "model.pt").exists() and all(np.isfinite(m["valid_loss"]) for m in log)


def test_torchrun_ranks_leave_with_the_stage_s_exit_status_and_message(labelled_tok, tmp_path):
    """The ranks skip Python's finalization (``distributed.exit_without_finalizing``); a refused run must
    still exit 2 with its message, not 0 and not a traceback."""
    done = torchrun_process("train", "--encoder", str(tmp_path / "missing"), "--data", str(labelled_tok),
                            "--out", str(tmp_path / "clf"))
    ranks_said = done.stderr.split("torch/distributed/elastic")[0]  # before the launcher's own report
    assert done.returncode != 0 and "failed (exitcode: 2)" in done.stderr, done.stderr[-3000:]
    assert f"error: {tmp_path / 'missing' / 'config.json'}: file not found" in ranks_said
    assert "Traceback" not in ranks_said and not (tmp_path / "clf").exists()
