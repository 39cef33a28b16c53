import json
import math
import numpy as np
import pytest
import torch
from torch import nn

from ulmfit.errors import UlmfitError
from ulmfit.lm_data import LMStream
from ulmfit.model.awd_lstm import LanguageModel, make_config
from ulmfit.schedules import discriminative_lrs, make_schedule
from ulmfit.lm_callbacks import ARTAR, LMWindows
from ulmfit.artefacts import BEST_WEIGHTS, LAST_CHECKPOINT, LOG
from ulmfit.training import Callback, RepeatedPasses, Trainer, make_optimizer, passes_for

from toy import resume_matches, toy_trainer

HOOKS = ["before_fit", "before_epoch", "before_batch", "after_forward", "after_loss",
         "before_backward", "after_backward", "before_step", "after_step", "before_eval", "after_eval",
         "after_epoch", "after_fit"]


class Recorder(Callback):
    """Records every hook call (name, training?), the rates at each step and the model inputs."""

    def __init__(self):
        self.calls, self.lrs, self.inputs = [], [], []

    def record(self, name, trainer):
        self.calls.append((name, trainer.training))
        if name == "before_step":
            self.lrs.append([g["lr"] for g in trainer.optimizer.param_groups])
        if name == "after_forward" and trainer.training:
            self.inputs.append(trainer.inputs)


for _hook in HOOKS:
    setattr(Recorder, _hook, lambda self, trainer, _hook=_hook: self.record(_hook, trainer))


class Interrupt(Exception):
    pass


class InterruptAt(Callback):
    """Simulates a crash: raises once the run reaches ``step`` (before that batch runs)."""

    def __init__(self, step):
        self.step = step

    def before_batch(self, trainer):
        if trainer.training and trainer.step == self.step:
            raise Interrupt


def tiny_stream(n_tokens=3000, bs=4, bptt=10, shuffle=True, seed=0, vocab=50):
    rng = np.random.default_rng(seed)
    ids = rng.integers(9, vocab, n_tokens).astype(np.int32)
    ids[::37] = 2
    offsets = np.concatenate([np.flatnonzero(ids == 2), [n_tokens]]).astype(np.int64)
    return LMStream(ids[offsets[0]:], offsets - offsets[0], bs=bs, bptt=bptt, seed=seed, shuffle=shuffle)


def tiny_lm_trainer(out_dir=None, epochs=2, extra=(), max_steps=None, checkpoint_interval_s=None, vocab=50):
    torch.manual_seed(0)
    cfg = make_config("tiny", vocab)
    model = LanguageModel(cfg)
    groups = model.layer_groups()
    opt = make_optimizer(groups, discriminative_lrs(1e-2, len(groups)), wd=0.01, betas=(0.8, 0.99))
    return Trainer(model, model.loss, opt, make_schedule("stlr"),
                   [LMWindows(bptt=10), ARTAR(cfg.ar_alpha, cfg.tar_beta), *extra],
                   train_data=tiny_stream(), valid_data=tiny_stream(600, shuffle=False, seed=1),
                   epochs=epochs, max_steps=max_steps, clip=0.4, out_dir=out_dir,
                   checkpoint_interval_s=checkpoint_interval_s, progress=False)


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_hooks_run_in_order_for_training_and_evaluation():
    rec = Recorder()
    trainer = tiny_lm_trainer(epochs=1, extra=[rec], max_steps=2)
    trainer.fit()
    names = [n for n, _ in rec.calls]
    batch = ["before_batch", "after_forward", "after_loss", "before_backward", "after_backward", "before_step", "after_step"]
    assert names[:2 + 2 * len(batch)] == ["before_fit", "before_epoch"] + batch * 2
    eval_part = names[2 + 2 * len(batch):]
    assert eval_part[0] == "before_eval" and eval_part[-3:] == ["after_eval", "after_epoch", "after_fit"]
    assert set(eval_part[1:-3]) == {"before_batch", "after_forward", "after_loss"}
    assert all(not training for n, training in rec.calls if n in ("before_eval", "after_eval"))
    assert trainer.step == 2 and len(trainer.history) == 1


def test_lr_follows_schedule_times_group_rate_times_window_length():
    rec = Recorder()
    trainer = tiny_lm_trainer(epochs=1, extra=[rec], max_steps=6)
    seq_lens = [b.seq_len for b in trainer.train_data.batches(0)][:6]
    trainer.fit()
    base = discriminative_lrs(1e-2, 3)
    sched = make_schedule("stlr")
    for step, lrs in enumerate(rec.lrs):
        expected = [b * sched(step, 6) * seq_lens[step] / 10 for b in base]
        assert lrs == pytest.approx(expected)


def test_hidden_state_is_carried_detached_and_reset_each_epoch():
    rec = Recorder()
    trainer = tiny_lm_trainer(epochs=2, extra=[rec], max_steps=None)
    trainer.train_data = tiny_stream(400)
    trainer.fit()
    per_epoch = trainer.train_data.n_batches(0)
    states = [inp[1] for inp in rec.inputs]
    assert states[0] is None and states[per_epoch] is None       # fresh at each epoch start
    for state in states[1:per_epoch] + states[per_epoch + 1:]:
        assert state is not None
        assert all(not h.requires_grad and not c.requires_grad for h, c in state)
        assert state[0][0].shape == (1, 4, 32)  # [1, bs, hidden] of the tiny preset's first layer


def test_callbacks_can_replace_the_loss_and_skip_the_step():
    class ZeroLoss(Callback):
        def after_loss(self, trainer):
            trainer.loss = trainer.loss * 0.0

    class SkipStep(Callback):
        def before_step(self, trainer):
            trainer.skip_step = True

    for cb in (ZeroLoss(), SkipStep()):
        trainer = tiny_lm_trainer(epochs=1, extra=[cb], max_steps=3)
        for g in trainer.optimizer.param_groups:
            g["weight_decay"] = 0.0
        before = weights(trainer.model)
        trainer.fit()
        after = trainer.model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)
        assert trainer.history[0]["train_loss"] > 1.0   # reported loss is the real one


def test_optimizer_groups_cover_every_parameter_once():
    model = LanguageModel(make_config("tiny", 30))
    groups = model.layer_groups()
    opt = make_optimizer(groups, discriminative_lrs(1e-3, len(groups)), kind="adam", betas=(0.7, 0.99), wd=0.1)
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert [g["base_lr"] for g in opt.param_groups] == pytest.approx([1e-3 / 2.6 ** 2, 1e-3 / 2.6, 1e-3])
    assert model.encoder.embedding.weight in opt.param_groups[-1]["params"]
    assert opt.param_groups[0]["betas"] == (0.7, 0.99)
    with pytest.raises(UlmfitError, match="unknown optimizer"):
        make_optimizer(groups, [1e-3] * 3, kind="sgd")


def test_checkpoints_and_log_load_with_weights_only(tmp_path):
    trainer = tiny_lm_trainer(tmp_path, epochs=2)
    history = trainer.fit()
    ckpt = torch.load(tmp_path / LAST_CHECKPOINT, weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["batch_index"] == 0 and ckpt["step"] == trainer.step
    assert ckpt["optimizer"]["state"] and ckpt["rng"]["torch"].dtype == torch.uint8
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(ckpt["model"][k], v)
    best = torch.load(tmp_path / BEST_WEIGHTS, weights_only=True)
    assert set(best) == set(trainer.model.state_dict())
    log = [json.loads(line) for line in (tmp_path / LOG).read_text().splitlines()]
    assert log == history and [m["epoch"] for m in log] == [1, 2]
    for key in ("train_loss", "valid_loss", "valid_ppl", "tokens_per_s"):
        assert math.isfinite(log[-1][key])
    assert log[-1]["valid_ppl"] == pytest.approx(math.exp(log[-1]["valid_loss"]))
    assert log[-1]["valid_loss"] < math.log(50)  # learned something about the 50-token corpus


@pytest.mark.parametrize("crash_step, interval", [("epoch", None), (17, 0.0)])
def test_resume_gives_exactly_the_uninterrupted_result(tmp_path, crash_step, interval):
    straight = tiny_lm_trainer(tmp_path / "a", epochs=2)
    straight.fit()
    per_epoch = straight.train_data.n_batches(0)
    step = per_epoch if crash_step == "epoch" else crash_step

    with pytest.raises(Interrupt):
        tiny_lm_trainer(tmp_path / "b", epochs=2, extra=[InterruptAt(step)], checkpoint_interval_s=interval).fit()
    ckpt = torch.load(tmp_path / "b" / LAST_CHECKPOINT, weights_only=True)
    assert ckpt["step"] == step and (ckpt["batch_index"] == 0) == (crash_step == "epoch")
    resume_matches(straight, tiny_lm_trainer(tmp_path / "b", epochs=2))


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(UlmfitError, match="no checkpoint"):
        tiny_lm_trainer(tmp_path).fit(resume=True)


def test_the_loop_is_not_lm_specific():
    """A classifier-shaped task: (inputs, target) batches, loss over labels, no LM callbacks."""
    trainer = toy_trainer()
    history = trainer.fit()
    assert history[-1]["valid_loss"] < 0.3 < history[0]["train_loss"]


def test_callbacks_run_by_order_then_as_given():
    seen = []

    class Named(Callback):
        def __init__(self, name, order):
            self.name, self.order = name, order

        def before_fit(self, trainer):
            seen.append(self.name)

    toy_trainer([Named("late", 10), Named("a", 0), Named("early", -5), Named("b", 0)], epochs=1).fit()
    assert seen == ["early", "a", "b", "late"]


def test_skipped_steps_accumulate_gradients_into_the_next_step():
    """Skipping the step keeps the gradient: two skipped-then-stepped batches sum their gradients."""
    grads = []

    class SkipOdd(Callback):
        def before_step(self, trainer):
            grads.append(trainer.model.weight.grad.clone())
            trainer.skip_step = trainer.step % 2 == 0

    trainer = toy_trainer([SkipOdd()], epochs=1, max_steps=2)
    trainer.fit()
    b0, b1 = list(trainer.train_data.batches(0))[:2]
    torch.manual_seed(0)
    reference = nn.Linear(2, 2)  # toy_trainer's initial weights
    total = sum(nn.functional.cross_entropy(reference(b.x), b.y) for b in (b0, b1))
    total.backward()
    assert torch.allclose(grads[1], reference.weight.grad, atol=1e-6)
    assert not torch.allclose(grads[0], grads[1])


def test_export_weights_chooses_what_is_saved_as_best(tmp_path):
    class Zeros(Callback):
        def export_weights(self, trainer, state):
            return {k: torch.zeros_like(v) for k, v in state.items()}

    trainer = toy_trainer([Zeros()], epochs=1, out_dir=tmp_path)
    trainer.fit()
    best = torch.load(tmp_path / BEST_WEIGHTS, weights_only=True)
    assert all(not v.any() for v in best.values())
    assert trainer.model.weight.abs().sum() > 0  # the model itself keeps training its own weights


def test_ar_tar_is_added_to_training_losses_only():
    from ulmfit.model.awd_lstm import ar_tar_penalty

    class Probe(Callback):
        def __init__(self):
            self.extra = {True: [], False: []}

        def after_loss(self, trainer):
            out = trainer.output
            with torch.no_grad():
                added = trainer.loss - trainer.model.loss(out, trainer.target)
                expected = ar_tar_penalty(out.last_raw, out.last_dropped, 2.0, 1.0) if trainer.training else 0.0
            self.extra[trainer.training].append((float(added), float(expected)))

    probe = Probe()
    tiny_lm_trainer(epochs=1, extra=[probe], max_steps=3).fit()
    assert len(probe.extra[True]) == 3 and probe.extra[False]
    assert all(e > 0 and a == pytest.approx(e, rel=1e-5) for a, e in probe.extra[True])
    assert all(a == 0.0 for a, _ in probe.extra[False])


class Labelled:
    """Batches named (source epoch, index); epoch e has 2 + e % 2 of them."""

    def n_batches(self, epoch):
        return 2 + epoch % 2

    def batches(self, epoch, start=0):
        return ((epoch, i) for i in range(start, self.n_batches(epoch)))


def test_repeated_passes_chain_their_own_source_epochs_and_resume_mid_epoch():
    source, repeated = Labelled(), RepeatedPasses(Labelled(), 3)
    epoch1 = list(repeated.batches(1))
    assert epoch1 == [b for e in (3, 4, 5) for b in source.batches(e)]  # passes never reuse an epoch's order
    assert repeated.n_batches(1) == len(epoch1) == 8
    for start in range(len(epoch1) + 1):  # a resume at any batch, pass boundaries included
        assert list(repeated.batches(1, start)) == epoch1[start:]
    assert list(RepeatedPasses(source, 1).batches(4)) == list(source.batches(4))
    with pytest.raises(ValueError):
        RepeatedPasses(source, 0)


def test_passes_for_reaches_the_minimum_steps_and_never_drops_below_one_pass():
    assert passes_for(200, 6, 2) == 17 and 17 * 6 * 2 >= 200 > 16 * 6 * 2
    assert passes_for(200, 6, 77) == 1 and passes_for(0, 6, 2) == 1
    assert passes_for(200, 0, 2) == 1 and passes_for(200, 6, 0) == 1  # nothing to repeat
