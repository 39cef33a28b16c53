"""The ``ablate`` stage: run the tables of :mod:`ulmfit.ablations` on the outputs of scripts/trec6.sh.

Every run goes through the ``ulmfit`` command's own path in this process (the same option checks,
output locks and stale-file clean-up as a command line; one import of torch for all of them), so
a row's options are exactly the words ``ulmfit train`` would get and the spec can hold them as
such. A run whose ``eval_test.json`` exists is skipped; an interrupted language model or
classifier resumes from its checkpoint; a finished but unevaluated classifier is only evaluated.
"""
from __future__ import annotations

import contextlib
import io
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import fire

from ..ablations import (ALL, DEFAULT_LOWSHOT, DEFAULT_OPTIONS, DEFAULT_TRICKS, LM, SCRATCH, SHARED_TABLE, TREC_LM,
                         Row, wiki_directions)
from ..ablations import tables as table_rows
from ..artefacts import CONFIG, EVAL_REPORT, LAST_CHECKPOINT, METRICS
from ..errors import UlmfitError
from ..files import read_json
from ..validate import check_command_line

EVAL_TEST = EVAL_REPORT.format(split="test")
ABLATIONS = Path("ablations") / "trec6"
LMS = "lms"


@dataclass(frozen=True)
class Setup:
    """What every run of one ``ablate`` call reads: the inputs and the lengths taken from the
    forward LM of scripts/trec6.sh, which every language model of the rows repeats."""

    runs: Path
    preset: str
    max_steps: int | None

    @property
    def out(self) -> Path:
        return self.runs / ABLATIONS

    @property
    def tok(self) -> Path:
        return self.runs / "trec" / "tok"

    @property
    def trec_lm(self) -> Path:
        return self.runs / "trec" / "lm_fwd"

    def wiki_lm(self, backwards: bool) -> Path:
        return self.runs / "wiki" / f"lm_{'bwd' if backwards else 'fwd'}"

    def steps(self) -> tuple[str, ...]:
        return () if self.max_steps is None else ("--max_steps", str(self.max_steps))

    def lm_length(self) -> tuple[str, ...]:
        """The epochs and step bound of $RUNS/trec/lm_fwd (MAX_STEPS instead, when set)."""
        config = read_json(self.trec_lm / CONFIG)
        max_steps = self.max_steps if self.max_steps is not None else config["max_steps"]
        return ("--epochs", str(config["epochs"]), *(() if max_steps is None else ("--max_steps", str(max_steps))))


def ulmfit(*args: str) -> None:
    """One stage run as ``ulmfit ARGS...`` runs it (checked, its output locked); the JSON summary
    it prints is dropped, its progress goes to stderr."""
    from ..cli import commands  # imported here: the command table lists this stage too

    stages = commands()
    check_command_line(stages, list(args))
    with contextlib.redirect_stdout(io.StringIO()):
        fire.Fire(stages, command=list(args), name="ulmfit")


def resume_or_clear(folder: Path) -> tuple[str, ...]:
    """``--resume`` when an interrupted run left its checkpoint in ``folder``, else the folder is
    removed (a run stopped before its first checkpoint starts over)."""
    if (folder / LAST_CHECKPOINT).exists():
        return ("--resume",)
    shutil.rmtree(folder, ignore_errors=True)
    return ()


def copy_run(source: Path, target: Path, without: str | None = None) -> None:
    """``source`` copied to ``target`` (less the file ``without``), through a temporary folder so
    that an interrupted copy never looks finished."""
    tmp = target.with_name(target.name + ".copy")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, tmp)
    if without:
        (tmp / without).unlink()
    tmp.rename(target)


def lm_folder(setup: Setup, lm: LM, seed: str) -> Path:
    return setup.out / LMS / lm.folder / (f"seed{seed}" if lm.seeded else "")


def lm_options(setup: Setup, lm: LM, seed: str) -> tuple[str, ...]:
    """``ulmfit finetune|pretrain`` options of ``lm`` beyond --data and --out."""
    start = ("--preset", setup.preset) if lm.command == "pretrain" else ("--pretrained", str(setup.wiki_lm(lm.backwards)))
    labelled = ()
    if lm.labelled is not None:
        n = read_json(setup.tok / METRICS)["splits"]["train"]["docs"] if lm.labelled == ALL else lm.labelled
        labelled = ("--max_train", str(n), "--min_steps", str(read_json(setup.trec_lm / METRICS)["steps"]))
    return (*start, *(("--seed", seed) if lm.seeded else ()), *(("--backwards",) if lm.backwards else ()),
            *labelled, *(setup.lm_length() if lm.full_length else ()), *lm.options)


def make_lm(setup: Setup, lm: LM, seed: str) -> Path:
    """The language model ``lm`` of ``seed``, made unless finished (resumed if interrupted)."""
    folder = lm_folder(setup, lm, seed)
    if not (folder / METRICS).exists():
        print(f"== language model {folder.relative_to(setup.out / LMS)}", file=sys.stderr)
        ulmfit(lm.command, "--data", str(setup.tok), "--out", str(folder), *resume_or_clear(folder),
               *lm_options(setup, lm, seed))
    return folder


def encoder_options(setup: Setup, row: Row, seed: str) -> tuple[str, ...]:
    """The ``ulmfit train`` options that give the row's classifier its encoder (the LM made first)."""
    if row.encoder == SCRATCH:
        return ("--from_scratch", "--preset", setup.preset)
    if row.encoder == TREC_LM:
        return ("--encoder", str(setup.trec_lm))
    return ("--encoder", str(make_lm(setup, row.encoder, seed)), *(("--backwards",) if row.encoder.backwards else ()))


def run_row(setup: Setup, table: str, row: Row, seed: str, rows: dict[str, Row]) -> None:
    """The run of ``row`` (of ``table``, whose rows by folder are ``rows``) for ``seed``, unless
    it is evaluated already; the runs it copies or averages come first."""
    folder = setup.out / table / row.folder / f"seed{seed}"
    if (folder / EVAL_TEST).exists():
        return
    shared = row.shared
    if shared and (table, row.folder) != (SHARED_TABLE, shared.folder):
        run_row(setup, SHARED_TABLE, shared, seed, rows)
        copy_run(setup.out / SHARED_TABLE / shared.folder / f"seed{seed}", folder)
        return
    for member in (*row.ensemble, *([row.copy_of] if row.copy_of else [])):
        run_row(setup, table, rows[member], seed, rows)
    print(f"== {table}/{row.folder} seed {seed}", file=sys.stderr)
    data = ("--data", str(setup.tok))
    if row.ensemble:
        members = ",".join(str(setup.out / table / member / f"seed{seed}") for member in row.ensemble)
        ulmfit("ensemble", "--models", members, *data, "--split", "test", "--out", str(folder))
        return
    if row.copy_of and not (folder / METRICS).exists():
        copy_run(setup.out / table / row.copy_of / f"seed{seed}", folder, without=EVAL_TEST)
    elif not (folder / METRICS).exists():
        ulmfit("train", *data, "--out", str(folder), "--seed", seed, *resume_or_clear(folder), *setup.steps(),
               *encoder_options(setup, row, seed), *row.train)
    ulmfit("evaluate", "--model", str(folder), *data, "--split", "test", *row.evaluate)


def ablate(runs: str, tables: str = "classifier", seeds: str = "0 1 2", lowshot: str = " ".join(DEFAULT_LOWSHOT),
           tricks: str | None = None, options: str | None = None, preset: str = "cpu",
           max_steps: int | None = None) -> dict:
    """Run ULMFiT's ablation tables on TREC-6 (see ulmfit.ablations), each row over the seeds, into
    ``RUNS/ablations/trec6/<table>/<NN-row>/seed<N>/``; language models the rows start from go to
    ``RUNS/ablations/trec6/lms/``. Finished runs (with eval_test.json) are skipped, interrupted
    ones resumed. ``ulmfit report RUNS/ablations/trec6`` turns the folders into tables and plots.

    Args:
        runs: the output root of scripts/trec6.sh with the same preset: the Wikipedia LMs
            (wiki/lm_fwd; wiki/lm_bwd for the direction table, ``MODELS=bwd
            scripts/pretrain_wiki.sh``), the tokenized TREC-6 (trec/tok) and its fine-tuned
            forward LM (trec/lm_fwd), whose length every language model of the rows repeats.
        tables: space-separated, any of classifier, pretraining, lm_finetune, direction, lowshot,
            tricks.
        seeds: space-separated seeds; each repeats the whole pipeline after pretraining.
        lowshot: space-separated training-set sizes of the lowshot table ("all": every question).
        tricks: space-separated trick specs of the tricks table (a comma combines tricks in one
            row); default: every classifier trick but pseudo_label; "" runs none.
        options: space-separated rows of train options of the tricks table, each row's options
            joined by commas (e.g. "--optimizer=lamb,--lr=0.1"); default: warmup schedules, LAMB
            at three rates, the default at rate 0.03, in float32; "" runs none.
        preset: the preset of the from-scratch classifiers and the TREC-6-only language model.
        max_steps: bound every classifier and language model to this many steps.

    Returns:
        ``{"out", "tables", "seeds"}``: the root of the run folders and what ran.
    """
    spec = table_rows(tuple(lowshot.split()), DEFAULT_TRICKS if tricks is None else tuple(tricks.split()),
                      DEFAULT_OPTIONS if options is None else tuple(options.split()))
    chosen = tables.split()
    unknown = [name for name in chosen if name not in spec]
    if unknown:
        raise UlmfitError(f"--tables: unknown table {unknown[0]!r}; choose from {', '.join(spec)}")
    setup = Setup(Path(runs), preset, max_steps)
    for needed in (setup.tok, setup.trec_lm):
        if not (needed / METRICS).exists():
            raise UlmfitError(f"{needed}: not found; run scripts/trec6.sh with the same preset and runs first")
    for table in chosen:
        for lm in (setup.wiki_lm(backwards) for backwards in sorted(wiki_directions(spec[table]))):
            if not (lm / METRICS).exists():  # the recipes' default MODELS has no bwd
                raise UlmfitError(f"{lm}: not found; the {table} table starts from it: run "
                                  f"MODELS={lm.name.removeprefix('lm_')} scripts/pretrain_wiki.sh with the same "
                                  "preset and runs first")
    for table in chosen:
        rows = {row.folder: row for row in spec[table]}
        for seed in seeds.split():
            for row in spec[table]:
                run_row(setup, table, row, seed, rows)
    return {"out": str(setup.out), "tables": chosen, "seeds": seeds.split()}
