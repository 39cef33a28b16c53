"""The ``ulmfit`` command: one python-fire subcommand per pipeline stage."""
from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Callable, Iterator

import fire

from . import distributed
from .errors import UlmfitError
from .outdir import output_lock, remove_stale_temps
from .report import report
from .stages.ablate import ablate
from .stages.classify import train
from .stages.import_fastai import import_fastai
from .stages.infer import ensemble, evaluate, predict
from .stages.lm import evaluate_lm, finetune, pretrain
from .stages.lr_find import lr_find_commands
from .stages.tokenize import tokenize
from .tricks import list_tricks
from .validate import OUTPUTS, check_command_line, checked_arguments


def _checked_stage(stage: Callable) -> Callable:
    """The stage run from the command line: its options checked before any work, its outputs
    locked against a second writer for the run (stale temporary files of killed runs removed),
    and its returned summary printed as one JSON line on stdout. Under torchrun rank 0 alone
    locks and prints (see :mod:`ulmfit.distributed`).

    Progress and human-readable reports go to stderr, so a script can read the result with
    ``ulmfit evaluate ... | jq .error_rate`` instead of parsing fire's listing of a dict.
    """

    @functools.wraps(stage)
    def run(*args, **kwargs) -> None:
        values = checked_arguments(stage, args, kwargs)
        with contextlib.ExitStack() as locks:
            for name in OUTPUTS if distributed.is_main() else ():
                if values.get(name) is not None:
                    target = Path(values[name]).resolve()  # "out/..", "." or a link: the place itself
                    locks.enter_context(output_lock(target))
                    remove_stale_temps(target)
            result = stage(**values)
        if result is not None and distributed.is_main():
            print(json.dumps(result, default=str))

    return run


def commands() -> dict:
    """Subcommands in pipeline order; each wraps a plain stage function of ``ulmfit.stages``
    (``lr_find`` is a group: ``lr_find pretrain|finetune|train``)."""
    stages = {name: _checked_stage(stage) for name, stage in {
        "tokenize": tokenize,
        "pretrain": pretrain,
        "import_fastai": import_fastai,
        "finetune": finetune,
        "evaluate_lm": evaluate_lm,
        "train": train,
        "evaluate": evaluate,
        "predict": predict,
        "ensemble": ensemble,
        "tricks": list_tricks,
        "ablate": ablate,
        "report": report,
    }.items()}
    stages["lr_find"] = {name: _checked_stage(command) for name, command in lr_find_commands().items()}
    return stages


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the run is, so it stops as after Ctrl-C: temporary files removed,
    locks released, the last checkpoint kept for --resume."""


@contextlib.contextmanager
def _terminate_like_interrupt() -> Iterator[None]:
    """SIGTERM raises ``Terminated`` in this process; forked workers (tokenize's pool) keep the
    default action, so terminating the pool still ends them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()

    def handle(signum, _frame) -> None:
        if os.getpid() != owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> None:
    if not distributed.launched():
        _run(argv)
        return
    try:
        _run(argv)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    distributed.exit_without_finalizing(code)


def _run(argv: list[str] | None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    stages = commands()
    try:
        with _terminate_like_interrupt(), distributed.process_group():
            check_command_line(stages, args)
            fire.Fire(stages, command=args, name="ulmfit")
    except UlmfitError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as e:
        print("terminated" if isinstance(e, Terminated) else "interrupted", file=sys.stderr)
        sys.exit(128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT))
