import math

import pytest

from ulmfit.errors import UlmfitError
from ulmfit.schedules import (constant, cosine, default_arg, discriminative_lrs, make_schedule,
                              one_cycle, restarted, stlr)


def test_stlr_matches_equation_3():
    # T=1000, cut_frac=0.1 -> cut=100; eta_t / eta_max = (1 + p (ratio - 1)) / ratio.
    assert stlr(0, 1000) == pytest.approx(1 / 32)
    assert stlr(50, 1000) == pytest.approx((1 + 0.5 * 31) / 32)
    assert stlr(100, 1000) == pytest.approx(1.0)
    assert stlr(550, 1000) == pytest.approx((1 + 0.5 * 31) / 32)  # p = 1 - 450 / (100 * 9)
    assert stlr(1000, 1000) == pytest.approx(1 / 32)
    assert stlr(20, 100, cut_frac=0.2, ratio=10) == pytest.approx(1.0)
    assert stlr(60, 100, cut_frac=0.2, ratio=10) == pytest.approx((1 + 0.5 * 9) / 10)


def test_stlr_rises_then_falls_and_survives_tiny_runs():
    values = [stlr(t, 200) for t in range(201)]
    peak = values.index(max(values))
    assert peak == 20
    assert all(a < b for a, b in zip(values[:peak], values[1:peak + 1]))
    assert all(a > b for a, b in zip(values[peak:-1], values[peak + 1:]))
    assert [stlr(t, 3) for t in range(3)] == pytest.approx([1 / 32, 1.0, 1 - 1 / 9 * 31 / 32])
    with pytest.raises(UlmfitError):
        stlr(0, 10, cut_frac=1.0)


def test_one_cycle_and_cosine_exact_points():
    assert one_cycle(0, 100) == pytest.approx(1 / 25)
    assert one_cycle(25, 100) == pytest.approx(1.0)
    assert one_cycle(12.5, 100) == pytest.approx((1 / 25 + 1) / 2)
    assert one_cycle(100, 100) == pytest.approx(1e-5)
    assert one_cycle(62.5, 100) == pytest.approx((1 + 1e-5) / 2)
    assert cosine(0, 10) == 1.0
    assert cosine(5, 10) == pytest.approx(0.5)
    assert cosine(10, 10, final=0.1) == pytest.approx(0.1)
    assert constant(7, 10) == 1.0


def test_make_schedule_picks_its_own_options():
    fn = make_schedule("stlr", cut_frac=0.2, ratio=10.0, pct_start=0.3)
    assert fn(20, 100) == pytest.approx(1.0)
    assert make_schedule("one_cycle", cut_frac=0.2, pct_start=0.5)(50, 100) == pytest.approx(1.0)
    with pytest.raises(UlmfitError, match="unknown schedule"):
        make_schedule("linear")


def test_discriminative_lrs_divide_by_factor_going_down():
    lrs = discriminative_lrs(0.01, 4)
    assert lrs[-1] == 0.01
    assert lrs == pytest.approx([0.01 / 2.6 ** 3, 0.01 / 2.6 ** 2, 0.01 / 2.6, 0.01])
    assert discriminative_lrs(1e-3, 3, factor=1.0) == [1e-3] * 3
    assert default_arg(discriminative_lrs, "factor") == 2.6
    assert math.isclose(default_arg(stlr, "ratio"), 32)


@pytest.mark.parametrize("name, midpoint", [("warmup_constant", 1.0), ("warmup_linear", 0.5),
                                            ("warmup_cosine", 0.5)])
def test_warmup_schedules_rise_linearly_then_hold_or_decay_to_zero(name, midpoint):
    fn = make_schedule(name, cut_frac=0.2, ratio=7.0)    # ratio is stlr's: ignored
    total = 110                                          # warm-up: steps 0..22, decay over 88 steps
    assert fn(0, total) == 0.0
    assert fn(11, total) == pytest.approx(0.5)
    assert fn(22, total) == pytest.approx(1.0)
    assert fn(22 + 44, total) == pytest.approx(midpoint)
    assert fn(total, total) == pytest.approx(1.0 if name == "warmup_constant" else 0.0, abs=1e-12)
    values = [fn(t, total) for t in range(total + 1)]
    assert all(a < b for a, b in zip(values[:22], values[1:23]))
    tail = values[22:]
    if name == "warmup_constant":
        assert tail == [1.0] * len(tail)
    else:
        assert all(a > b for a, b in zip(tail, tail[1:]))
    if name == "warmup_cosine":  # slower than linear at first, faster later
        assert fn(22 + 22, total) > 0.75 and fn(22 + 66, total) < 0.25
    assert make_schedule(name)(1, 10) == pytest.approx(1.0)   # default cut_frac 0.1: one warm-up step
    assert make_schedule(name)(0, 1) == 0.0 and make_schedule(name)(1, 1) >= 0.0
    with pytest.raises(UlmfitError, match="cut_frac"):
        fn.func(0, 10, cut_frac=0.0)


def test_the_schedule_option_accepts_the_warmup_schedules(trec_tok, tmp_path):
    from ulmfit.config import load_config
    from ulmfit.stages.classify import ClassifierConfig, train
    out = tmp_path / "clf"
    train(data=str(trec_tok), out=str(out), from_scratch=True, preset="tiny", max_steps=2, device="cpu",
          schedule="warmup_cosine")
    assert load_config(ClassifierConfig, out / "config.json").schedule == "warmup_cosine"
    with pytest.raises(UlmfitError, match="unknown schedule 'warmup'"):
        train(data=str(trec_tok), out=str(tmp_path / "bad"), from_scratch=True, preset="tiny", schedule="warmup")


def test_restarted_repeats_the_schedule_each_cycle_and_fits_a_shorter_run():
    cycled = restarted(stlr, 10)
    first = [stlr(k, 10) for k in range(10)]
    assert [cycled(k, 30) for k in range(30)] == first * 3  # the total no longer matters, the cycle does
    assert [cycled(k, 4) for k in range(4)] == [stlr(k, 4) for k in range(4)]
    with pytest.raises(ValueError):
        restarted(stlr, 0)


def test_cycle_per_epoch_restarts_the_rate_in_every_epoch_of_a_classifier(trec_tok, tmp_path):
    import json
    from ulmfit.stages.classify import train

    def end_of_epoch_lrs(name, **options):
        train(data=str(trec_tok), out=str(tmp_path / name), from_scratch=True, preset="tiny", epochs=3,
              max_train=96, device="cpu", **options)
        return [json.loads(line)["lr"] for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]

    # 96 documents at the tiny batch of 32 are 3 steps an epoch; the log has each epoch's last rate
    once = end_of_epoch_lrs("once")
    assert once == pytest.approx([2e-2 * stlr(step, 9) for step in (2, 5, 8)])  # one decay over the run
    cycles = end_of_epoch_lrs("cycles", cycle_per_epoch=True)
    assert cycles == pytest.approx([2e-2 * stlr(2, 3)] * 3)
