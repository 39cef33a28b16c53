import math

import pytest
import torch

from ulmfit.errors import UlmfitError
from ulmfit.optim import Lamb, trust_ratio
from ulmfit.stages.lm import LMTrainConfig
from ulmfit.artefacts import LAST_CHECKPOINT
from ulmfit.training import make_optimizer

from toy import toy_trainer


def lamb_by_hand(w, grads, lr, b1, b2, eps, wd):
    """LAMB on a list of floats, written out step by step."""
    m, v = [0.0] * len(w), [0.0] * len(w)
    for t, g in enumerate(grads, start=1):
        m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g)]
        v = [b2 * vi + (1 - b2) * gi * gi for vi, gi in zip(v, g)]
        u = [(mi / (1 - b1 ** t)) / (math.sqrt(vi / (1 - b2 ** t)) + eps) + wd * wi for mi, vi, wi in zip(m, v, w)]
        w_norm, u_norm = math.sqrt(sum(x * x for x in w)), math.sqrt(sum(x * x for x in u))
        ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
        w = [wi - lr * ratio * ui for wi, ui in zip(w, u)]
    return w


def test_lamb_steps_match_the_hand_computation():
    start, grads = [3.0, 4.0, -1.0], [[1.0, -2.0, 0.5], [0.3, 0.1, -4.0]]
    w = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt = Lamb([w], lr=0.1, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01)
    for i, g in enumerate(grads):
        w.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        expected = lamb_by_hand(start, grads[:i + 1], 0.1, 0.9, 0.999, 1e-6, 0.01)
        assert w.tolist() == pytest.approx(expected, rel=1e-12)
    # the first step moves by lr * ||w|| whatever the gradients' scale (the trust ratio at work)
    w2 = torch.tensor(start, requires_grad=True)
    w2.grad = torch.tensor(grads[0]) * 1e4
    Lamb([w2], lr=0.1).step()
    assert (w2.detach() - torch.tensor(start)).norm() == pytest.approx(0.1 * math.sqrt(26), rel=1e-5)


def test_trust_ratio_is_one_when_a_norm_is_zero():
    assert trust_ratio(torch.zeros(4), torch.ones(4)) == 1.0
    assert trust_ratio(torch.ones(4), torch.zeros(4)) == 1.0
    assert trust_ratio(torch.full((4,), 3.0), torch.ones(4)) == pytest.approx(3.0)
    bias = torch.zeros(2, requires_grad=True)      # a zero-initialized bias still moves, by lr * Adam's step
    bias.grad = torch.tensor([0.5, -0.2])
    Lamb([bias], lr=0.1, eps=0.0).step()
    assert bias.tolist() == pytest.approx([-0.1, 0.1])


def test_make_optimizer_builds_lamb_that_trains_and_resumes(tmp_path):
    params = [torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))]
    opt = make_optimizer([params[:1], params[1:]], [0.1, 0.2], kind="lamb", betas=(0.7, 0.99), wd=0.05)
    assert isinstance(opt, Lamb)
    assert [(g["base_lr"], g["betas"], g["weight_decay"]) for g in opt.param_groups] == [
        (0.1, (0.7, 0.99), 0.05), (0.2, (0.7, 0.99), 0.05)]
    trainer = toy_trainer(kind="lamb", lr=0.3, epochs=2, out_dir=tmp_path)
    history = trainer.fit()
    assert history[-1]["valid_loss"] < 0.3
    ckpt = torch.load(tmp_path / LAST_CHECKPOINT, weights_only=True)   # its state is plain tensors and ints
    assert ckpt["optimizer"]["state"][0]["step"] == 16
    resumed = toy_trainer(kind="lamb", lr=0.3, epochs=3, out_dir=tmp_path)
    resumed.fit(resume=True)
    straight = toy_trainer(kind="lamb", lr=0.3, epochs=3)
    straight.fit()
    assert torch.equal(resumed.model.weight, straight.model.weight)


def test_an_unknown_optimizer_is_a_clear_error(trec_tok, tmp_path):
    with pytest.raises(UlmfitError, match=r"unknown optimizer 'sgd' \(--optimizer\); choose one of "
                                          r"\['adam', 'adamw', 'lamb'\]"):
        make_optimizer([[torch.nn.Parameter(torch.ones(1))]], [0.1], kind="sgd")
    with pytest.raises(UlmfitError, match="unknown optimizer 'lars'"):
        LMTrainConfig(optimizer="lars")
    from ulmfit.stages.classify import train
    with pytest.raises(UlmfitError, match="unknown optimizer 'sgd'"):
        train(data=str(trec_tok), out=str(tmp_path / "bad"), from_scratch=True, preset="tiny", optimizer="sgd")
    assert not (tmp_path / "bad").exists()


def test_the_optimizer_option_reaches_every_stage_config(trec_tok, tmp_path):
    from ulmfit.cli import main
    from ulmfit.config import load_config
    from ulmfit.stages.classify import ClassifierConfig
    common = ["--max_steps=2", "--device=cpu", "--optimizer=lamb"]
    main(["pretrain", str(trec_tok), str(tmp_path / "pre"), "--preset=tiny", *common])
    main(["finetune", str(tmp_path / "pre"), str(trec_tok), str(tmp_path / "ft"), *common])
    main(["train", f"--data={trec_tok}", f"--out={tmp_path / 'clf'}", "--from_scratch", "--preset=tiny", *common])
    assert load_config(LMTrainConfig, tmp_path / "pre" / "config.json").optimizer == "lamb"
    assert load_config(LMTrainConfig, tmp_path / "ft" / "config.json").optimizer == "lamb"
    assert load_config(ClassifierConfig, tmp_path / "clf" / "config.json").optimizer == "lamb"
