"""ulmfit.presets: one table per preset, layered per stage."""
import dataclasses

import pytest

from ulmfit.errors import UlmfitError
from ulmfit.model import AWDLSTMConfig, make_config
from ulmfit.presets import FINETUNE, PRESETS, STAGES, preset_values
from ulmfit.stages.classify import ClassifierConfig
from ulmfit.stages.lm import LMTrainConfig


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_names_every_stage_with_fields_of_its_config(preset):
    assert set(PRESETS[preset]) == set(STAGES)
    fields = {"model": AWDLSTMConfig, "pretrain": LMTrainConfig, "finetune": LMTrainConfig,
              "classifier": ClassifierConfig}
    for stage, config in fields.items():
        names = {f.name for f in dataclasses.fields(config)}
        assert set(preset_values(preset, stage)) <= names, (preset, stage)


def test_finetuning_layers_the_papers_recipe_over_the_pretraining_preset():
    tiny = preset_values("tiny", "finetune")
    assert tiny["bs"] == PRESETS["tiny"]["pretrain"]["bs"]  # the LM's batch shape carries over
    assert tiny["lr"] == FINETUNE["lr"] != PRESETS["tiny"]["pretrain"]["lr"]  # ... its rate does not
    assert tiny["schedule"] == "stlr" and tiny["disc_factor"] == 2.6


def test_the_model_preset_sets_shape_and_dropout_scale_and_overrides_win():
    cfg = make_config("cpu", 1000)
    assert (cfg.emb_size, cfg.hidden_size, cfg.n_layers, cfg.drop_mult) == (200, 512, 3, 0.5)
    assert make_config("cpu", 1000, drop_mult=0.1).drop_mult == 0.1
    assert make_config("paper", 1000) == AWDLSTMConfig(vocab_size=1000)


def test_a_preset_values_copy_does_not_change_the_table():
    before = PRESETS["cpu"]["classifier"]["lr"]
    preset_values("cpu", "classifier")["lr"] = before * 10
    assert PRESETS["cpu"]["classifier"]["lr"] == before


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(UlmfitError, match="unknown preset 'gpu'; choose one of \\['cpu', 'paper', 'tiny'\\]"):
        preset_values("gpu", "model")
