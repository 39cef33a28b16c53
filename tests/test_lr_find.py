import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import ptb_docs, write_tokenized
from ulmfit.cli import main
from ulmfit.errors import UlmfitError
from ulmfit.stages.import_fastai import import_fastai
from ulmfit.stages.lm import finetune
from ulmfit.stages.lr_find import LRFindConfig, _report, diverged, loss_minimum, plot_sweep, smoothed, sweep_rates
from ulmfit.text.tokenizers import TokenizerSettings

FIXTURE = Path(__file__).parent / "fixtures" / "fastai_tiny"


def test_rates_rise_exponentially_between_the_bounds():
    rates = sweep_rates(1e-6, 1.0, 100)
    assert len(rates) == 100 and rates[0] == pytest.approx(1e-6) and rates[-1] == pytest.approx(1.0)
    np.testing.assert_allclose(rates[1:] / rates[:-1], (1e6) ** (1 / 99))
    with pytest.raises(UlmfitError, match="start_lr < end_lr"):
        sweep_rates(1.0, 0.1, 100)
    with pytest.raises(UlmfitError, match="steps"):
        sweep_rates(1e-6, 1.0, 1)


def test_smoothing_is_debiased_and_divergence_is_relative_to_the_best():
    np.testing.assert_allclose(smoothed([2.0] * 20), 2.0)
    assert smoothed([1.0, 3.0], beta=0.5)[1] == pytest.approx((0.25 * 1 + 0.5 * 3) / 0.75)
    assert not diverged([3.0, 1.0, 3.9], 4.0) and diverged([3.0, 1.0, 4.1], 4.0)
    assert diverged([1.0, math.nan], 4.0)


def test_the_minimum_leaves_out_the_first_batches_and_needs_a_fall():
    rates = np.geomspace(1e-6, 10, 200)
    x = np.log10(rates)
    # a plateau, a fall centred on 1e-3, a minimum at 1e-1, then divergence
    losses = 2.0 - 1.5 / (1 + np.exp(-3 * (x + 3))) + np.where(x > -1, 5 * (x + 1) ** 2, 0)
    assert rates[loss_minimum(losses)] == pytest.approx(1e-1, rel=0.1)
    # a lucky first batch (lower than anything after it) is not the minimum
    lucky = losses.copy()
    lucky[0] = 0.1
    assert loss_minimum(lucky) == loss_minimum(losses)
    with pytest.raises(UlmfitError, match="never fell"):
        loss_minimum(np.linspace(1, 2, 200))
    assert loss_minimum([3.0, 2.0, 1.0]) == 2  # a sweep shorter than the batches left out


def test_a_sweep_ending_on_an_overflowed_loss_is_reported_and_plotted_without_it(tmp_path):
    rates = sweep_rates(1e-5, 10, 30)
    report = _report(LRFindConfig("train", steps=30), rates, [*np.linspace(3.0, 1.0, 20), math.inf])
    assert report["steps"] == len(report["rates"]) == len(report["smoothed_losses"]) == 20 and report["stopped_early"]
    plot_sweep(report, tmp_path / "sweep.png")  # the plot reads the report's curve, overflow left out
    assert (tmp_path / "sweep.png").read_bytes().startswith(b"\x89PNG")


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    """fastai's tiny model imported and mapped onto labelled PTB documents (finetune --epochs 0)."""
    root = tmp_path_factory.mktemp("lrf")
    docs = ptb_docs("train", 400)
    tok = write_tokenized(root / "tok", {"train": docs}, labels={"train": [i % 2 for i in range(len(docs))]},
                          classes=["even", "odd"], tokenizer=dataclasses.asdict(TokenizerSettings()))
    import_fastai(str(FIXTURE / "lm.pth"), str(FIXTURE / "vocab.pkl"), str(root / "pre"), preset="tiny")
    finetune(str(root / "pre"), str(tok), str(root / "lm"), epochs=0, device="cpu")
    return root, tok


def folder_state(folder: Path) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


@pytest.mark.parametrize("stage", ["train", "finetune"])
def test_lr_find_writes_its_report_and_plot_and_nothing_else(tiny_encoder, tmp_path, capsys, stage):
    root, tok = tiny_encoder
    before = {name: folder_state(root / name) for name in ("pre", "lm", "tok")}
    source = ["--encoder", str(root / "lm")] if stage == "train" else ["--pretrained", str(root / "pre")]
    main(["lr_find", stage, *source, "--data", str(tok), "--out", str(tmp_path / "lrf"), "--steps", "30",
          "--start_lr", "1e-5", "--end_lr", "10", "--device", "cpu"])
    summary = json.loads(capsys.readouterr().out)
    assert sorted(p.name for p in (tmp_path / "lrf").iterdir()) == ["config.json", "lr_find.json", "lr_find.png"]
    report = json.loads((tmp_path / "lrf" / "lr_find.json").read_text())
    assert report["suggested_lr"] == summary["suggested_lr"] and 1e-5 <= summary["suggested_lr"] <= 10
    assert "minimum" in summary["rule"] and summary["suggested_lr"] == pytest.approx(summary["min_loss_lr"] / 10)
    assert len(report["losses"]) == summary["steps"] <= 30
    np.testing.assert_allclose(report["rates"], sweep_rates(1e-5, 10, 30)[:summary["steps"]])
    config = json.loads((tmp_path / "lrf" / "config.json").read_text())
    assert config["stage"] == stage and config["stage_config"]["preset"] == "tiny"
    assert {name: folder_state(root / name) for name in ("pre", "lm", "tok")} == before
    assert not (tmp_path / "lrf" / "model.pt").exists()


def test_lr_find_refuses_lr_and_resume_and_needs_a_stage(tiny_encoder, tmp_path, capsys):
    root, tok = tiny_encoder
    for extra in (["--lr", "0.1"], ["--resume"]):
        with pytest.raises(SystemExit):
            main(["lr_find", "train", "--encoder", str(root / "lm"), "--data", str(tok), "--out",
                  str(tmp_path / "x"), *extra])
        assert "error: " in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["lr_find", "--out", str(tmp_path / "x")])
    assert "name a command after it: pretrain, finetune, train" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_sweep_whose_loss_never_fell_is_still_reported_then_fails_clearly(tiny_encoder, tmp_path, capsys):
    root, tok = tiny_encoder
    out = tmp_path / "lrf"
    with pytest.raises(SystemExit):  # rates far too high: the loss jumps at batch 2 and the sweep stops there
        main(["lr_find", "train", "--encoder", str(root / "lm"), "--data", str(tok), "--out", str(out),
              "--steps", "20", "--start_lr", "5", "--end_lr", "10", "--diverge_factor", "1.5", "--device", "cpu"])
    err = capsys.readouterr().err
    assert "never fell" in err and str(out / "lr_find.png") in err and "Traceback" not in err
    report = json.loads((out / "lr_find.json").read_text())
    assert report["suggested_lr"] is None and "never fell" in report["failure"] and len(report["losses"]) == 2
