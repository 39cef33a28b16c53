"""The ``ulmfit`` command: one python-fire subcommand per pipeline stage."""
from __future__ import annotations

import functools
import json
import sys
from typing import Callable

import fire

from .errors import UlmfitError
from .report import report
from .stages.classify import ensemble, evaluate, predict, train
from .stages.lm import evaluate_lm, finetune, pretrain
from .stages.tokenize import tokenize
from .tricks import list_tricks


def _json_result(stage: Callable) -> Callable:
    """The stage with its returned summary printed as one JSON line on stdout.

    Progress and human-readable reports go to stderr, so a script can read the result with
    ``ulmfit evaluate ... | jq .error_rate`` instead of parsing fire's listing of a dict.
    """

    @functools.wraps(stage)
    def run(*args, **kwargs) -> None:
        result = stage(*args, **kwargs)
        if result is not None:
            print(json.dumps(result, default=str))

    return run


def commands() -> dict:
    """Subcommands in pipeline order; each wraps a plain stage function of ``ulmfit.stages``."""
    return {name: _json_result(stage) for name, stage in {
        "tokenize": tokenize,
        "pretrain": pretrain,
        "finetune": finetune,
        "evaluate_lm": evaluate_lm,
        "train": train,
        "evaluate": evaluate,
        "predict": predict,
        "ensemble": ensemble,
        "tricks": list_tricks,
        "report": report,
    }.items()}


def main(argv: list[str] | None = None) -> None:
    try:
        fire.Fire(commands(), command=argv, name="ulmfit")
    except UlmfitError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
