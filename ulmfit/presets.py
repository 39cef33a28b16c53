"""What ``--preset NAME`` means, for every stage, in one place.

A preset names a model shape and, per stage, the values that differ from the stage config's
defaults (which are the paper's: ``AWDLSTMConfig``, ``LMTrainConfig``, ``ClassifierConfig``). A
run resolves its fields in this order, each layer overriding the one before:

    pretrain:    LMTrainConfig defaults -> preset "pretrain" -> options given
    finetune:    LMTrainConfig defaults -> preset "pretrain" -> FINETUNE -> preset "finetune" -> options
    train:       ClassifierConfig defaults -> preset "classifier" -> options given
    the model:   AWDLSTMConfig defaults -> preset "model" -> options given (--drop_mult, --softmax_cutoffs)

Fine-tuning and the classifier take the preset of the LM they start from, and the LM's own model
config (its sizes and dropouts), not this table's, so a model keeps its shape from stage to stage.
The evidence for the ``cpu`` values is in the README ("Pretraining speed"; "Fine-tuning and
classifier defaults").
"""
from __future__ import annotations

from .errors import UlmfitError
from .schedules import default_arg, discriminative_lrs

STAGES = ("model", "pretrain", "finetune", "classifier")

# ULMFiT's LM fine-tuning (Howard & Ruder 2018, sec. 3.2) for every preset: discriminative rates
# (the paper's factor) and STLR, at a lower peak rate than pretraining.
FINETUNE: dict = {"schedule": "stlr", "disc_factor": default_arg(discriminative_lrs, "factor"), "lr": 4e-3}

PRESETS: dict[str, dict[str, dict]] = {
    # Howard & Ruder (2018): the configs' defaults, with 10 epochs of pretraining.
    "paper": {
        "model": {},
        "pretrain": {"epochs": 10},
        "finetune": {},
        "classifier": {},
    },
    # 2 CPU cores (AVX512-BF16), Wikipedia train-small (~2.8M tokens, 30k vocabulary).
    "cpu": {
        # The paper's shape (3 layers, the last one embedding-sized) at about a third of its width.
        # A full softmax over 30k words would be ~60% of a step; the adaptive one (2k frequent
        # words, then clusters of 8k and 20k) trains 4.7x as many tokens/s as fastai's AWD-LSTM
        # in bf16. Half the paper's dropouts: 2M words underfit rather than overfit.
        "model": {"emb_size": 200, "hidden_size": 512, "n_layers": 3, "softmax_cutoffs": (2000, 10000),
                  "drop_mult": 0.5},
        "pretrain": {},
        # At least 300 steps (a small target corpus is read several times; one epoch of TREC-6 is
        # 17 steps) at 2.5x the paper's peak rate: TREC-6, CR and MPQA all better over 3 seeds.
        "finetune": {"min_steps": 300, "lr": 1e-2},
        # One rate for every layer group, 2x the paper's top rate: the best mean validation error
        # over TREC-6, CR and MPQA (3 seeds each) in a sweep from 0.005 to 0.1, where 0.05 already
        # fails on all three; the paper's factor 2.6 stays on --preset paper. 10 epochs, not 6: at
        # this rate the fully unfrozen model was still improving (mean validation error 13.45 vs 14.68).
        "classifier": {"lr": 2e-2, "disc_factor": 1.0, "epochs": 10},
    },
    # Unit tests and the demo: seconds per stage.
    "tiny": {
        "model": {"emb_size": 16, "hidden_size": 32, "n_layers": 2, "drop_mult": 0.2},
        "pretrain": {"bs": 16, "bptt": 20, "lr": 3e-2},
        "finetune": {},
        "classifier": {"bs": 32, "bptt": 20, "max_len": 200, "lr": 2e-2, "epochs": 4, "min_steps": 0},
    },
}


def preset_values(preset: str, stage: str) -> dict:
    """The fields ``preset`` sets for ``stage`` (one of ``STAGES``), layered as the module says."""
    if preset not in PRESETS:
        raise UlmfitError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; one of {STAGES}")
    values = PRESETS[preset]
    if stage == "finetune":
        return {**values["pretrain"], **FINETUNE, **values["finetune"]}
    return dict(values[stage])
