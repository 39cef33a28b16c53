"""The ``ulmfit`` command: one python-fire subcommand per pipeline stage."""
from __future__ import annotations

import sys

import fire

from .errors import UlmfitError
from .stages.classify import ensemble, evaluate, predict, train
from .stages.lm import evaluate_lm, finetune, pretrain
from .stages.tokenize import tokenize


def commands() -> dict:
    """Subcommands in pipeline order; each is a plain function importable from ``ulmfit``."""
    return {
        "tokenize": tokenize,
        "pretrain": pretrain,
        "finetune": finetune,
        "evaluate_lm": evaluate_lm,
        "train": train,
        "evaluate": evaluate,
        "predict": predict,
        "ensemble": ensemble,
    }


def main(argv: list[str] | None = None) -> None:
    try:
        fire.Fire(commands(), command=argv, name="ulmfit")
    except UlmfitError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
