"""ULMFiT's ablations on TREC-6 (Howard & Ruder 2018, sec. 5) as data: table -> rows.

Each row is a classifier run with one switch changed, on the same data and split, repeated over
seeds, in ``<root>/<table>/<NN-name>/seed<N>/``. A row says where its encoder comes from (the
forward LM of scripts/trec6.sh, none, or a language model made once under ``<root>/lms/``), the
``ulmfit train`` options it adds to the defaults, and the paper's TREC-6 validation error (%)
where the paper has the row. ``ulmfit ablate`` runs the tables (:mod:`ulmfit.stages.ablate`);
``ulmfit report`` reads them to name the rows and put the paper beside them.

The paper's figures: Table 4 (pretraining), Table 6 (LM fine-tuning), Table 7 (classifier
fine-tuning). Its Table 5 compares LM architectures (not ablated here); bidirectionality and the
low-shot curves (Figure 3) have no TREC-6 figure in it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

TREC_LM = "trec"        # $RUNS/trec/lm_fwd, the forward LM fine-tuned by scripts/trec6.sh
SCRATCH = "scratch"     # no encoder: `ulmfit train --from_scratch --preset $PRESET`
ALL = "all"             # a low-shot size: every labelled training question
CONSTANT = ("--schedule", "constant")


@dataclass(frozen=True)
class LM:
    """A language model some rows start from, made once into ``lms/<folder>[/seed<N>]``.

    ``finetune`` fine-tunes the Wikipedia LM of its direction; ``pretrain`` trains one on TREC-6
    alone, with the preset. ``seeded``: one per seed (``--seed N``); ``full_length``: as many
    epochs (and max_steps) as $RUNS/trec/lm_fwd; ``labelled``: fine-tuned on that many labelled
    documents only (``all``: every one), for as many steps as $RUNS/trec/lm_fwd made.
    """

    folder: str
    command: str = "finetune"
    options: tuple[str, ...] = ()
    backwards: bool = False
    seeded: bool = True
    full_length: bool = True
    labelled: str | None = None


FWD = LM("fwd")                     # the default fine-tuning of the forward Wikipedia LM
BWD = LM("bwd", backwards=True)     # ... and of the backward one


@dataclass(frozen=True)
class Row:
    """One row of a table: a classifier per seed, or an ensemble or re-evaluation of other rows.

    ``ensemble``: the row averages the probabilities of these rows of its table (``ulmfit
    ensemble``). ``copy_of``: the row's classifiers are that row's, evaluated with ``evaluate``.
    ``lowshot``: the curve and number of labelled documents (None: all) it is a point of.
    """

    order: int
    name: str
    encoder: str | LM = TREC_LM
    train: tuple[str, ...] = ()
    paper: float | None = None
    ensemble: tuple[str, ...] = ()
    copy_of: str | None = None
    evaluate: tuple[str, ...] = ()
    lowshot: tuple[str, int | None] | None = None

    @property
    def folder(self) -> str:
        return f"{self.order:02d}-{self.name}"

    @property
    def shared(self) -> Row | None:
        """The row of the ``direction`` table that trains this run when it is the seed's default
        forward or backward classifier, the same in every table (trained once, copied into the
        others); None for other rows."""
        if self.train or self.encoder not in (FWD, BWD):
            return None
        return DIRECTION[self.encoder.backwards]


def wiki_directions(rows: tuple[Row, ...]) -> set[bool]:
    """The directions (``backwards``) of the Wikipedia LMs that ``rows`` fine-tune."""
    return {row.encoder.backwards for row in rows if isinstance(row.encoder, LM) and row.encoder.command == "finetune"}


# Table 7 of the paper: without "stlr" or "cos" a row uses a constant rate. Row 10 restarts the
# schedule in each epoch of gradual unfreezing, as the original ULMFiT scripts did.
CLASSIFIER = (
    Row(1, "scratch", SCRATCH, paper=13.36),
    Row(2, "full", train=("--no_gradual_unfreezing", "--no_discriminative", *CONSTANT), paper=6.86),
    Row(3, "full+discr", train=("--no_gradual_unfreezing", *CONSTANT), paper=6.21),
    Row(4, "last", train=("--head_only", *CONSTANT), paper=16.09),
    Row(5, "freez", train=("--no_discriminative", *CONSTANT), paper=6.86),
    Row(6, "freez+discr", train=CONSTANT, paper=5.86),
    Row(7, "freez+stlr", train=("--no_discriminative",), paper=6.02),
    Row(8, "freez+cos", train=("--no_discriminative", "--schedule", "cosine"), paper=6.38),
    Row(9, "freez+discr+stlr", paper=5.69),
    Row(10, "freez+discr+stlr+cycles", train=("--cycle_per_epoch",)),
)

# Table 4: an LM trained on TREC-6 alone (as long as fine-tuning) against the Wikipedia LM.
PRETRAINING = (
    Row(1, "none", LM("none", "pretrain"), paper=10.67),
    Row(2, "wiki", FWD, paper=5.69),
)

# Table 6: the Wikipedia LM not fine-tuned (only mapped to TREC's vocabulary), fine-tuned at a
# constant rate, with discriminative rates, and the default (STLR).
LM_FINETUNE = (
    Row(1, "none", LM("not-finetuned", options=("--epochs", "0"), seeded=False, full_length=False),
        paper=6.38),
    Row(2, "full", LM("full", options=("--no_discriminative", *CONSTANT)), paper=6.54),
    Row(3, "full+discr", LM("full+discr", options=CONSTANT), paper=6.36),
    Row(4, "full+discr+stlr", FWD, paper=5.69),
)

# The forward and backward classifiers and their ensemble (sec. 5, "Impact of bidirectionality").
SHARED_TABLE = "direction"
DIRECTION = (
    Row(1, "fwd", FWD),
    Row(2, "bwd", BWD),
    Row(3, "ensemble", ensemble=("01-fwd", "02-bwd")),
)

DEFAULT_LOWSHOT = ("100", "200", "500", "1000", ALL)

# The tricks table's trick rows, in the order of the published table (docs/results/trec6-cpu), so a
# rerun fills the same row numbers: every classifier trick of `ulmfit tricks` (tests check this) but
# pseudo_label, which needs unlabelled questions: the lowshot table's pseudo rows run it; and
# gradient accumulation, a trick in earlier versions, as its train option (an entry starting with --).
DEFAULT_TRICKS = ("label_smoothing", "ema(decay=0.99)", "fgm", "rdrop", "eda", "swa", "focal", "--accumulate=2",
                  "lookahead", "pgd", "sharpen")
# The tricks table's option rows (train options joined by commas): schedules with warmup, LAMB,
# the default at a higher rate, in float32.
DEFAULT_OPTIONS = ("--schedule=warmup_linear", "--optimizer=lamb,--lr=0.1", "--schedule=warmup_constant",
                   "--schedule=warmup_cosine", "--lr=0.03", "--optimizer=lamb,--lr=0.03",
                   "--optimizer=lamb,--lr=0.3", "--precision=fp32")
TTA_PASSES = 4


def lowshot_rows(n: str) -> tuple[Row, ...]:
    """The low-shot rows for ``n`` labelled questions (the same ones for every row of a seed):
    supervised ULMFiT (the LM fine-tuned on those questions only), semi-supervised (on all
    training questions), from scratch (the paper's Figure 3), and with ``n`` below all, the
    semi-supervised classifier plus one round of pseudo-labelling the other training questions."""
    subset = () if n == ALL else ("--max_train", n)
    point = None if n == ALL else int(n)

    def row(order: int, method: str, encoder: str | LM, *extra: str) -> Row:
        return Row(order, f"{method}-n{n}", encoder, (*subset, *extra), lowshot=(method, point))

    rows = (row(1, "ulmfit", LM(f"ulmfit-n{n}", labelled=n)), row(2, "semisup", FWD), row(3, "scratch", SCRATCH))
    return rows if n == ALL else (*rows, row(4, "semisup+pseudo", FWD, "--tricks", "pseudo_label"))


def row_name(text: str) -> str:
    """``text`` made a folder name: characters other than letters, digits and ``_.=+-`` become _."""
    return re.sub(r"[^A-Za-z0-9_.=+-]", "_", text).rstrip("_")


def tricks_rows(tricks: tuple[str, ...], options: tuple[str, ...]) -> tuple[Row, ...]:
    """The default classifier (00-baseline), the same evaluated with test-time augmentation
    (20-tta4), with each trick spec (01-...; a comma combines tricks in one row; an entry starting
    with -- is train options instead), and with each entry of train options joined by commas (21-...)."""
    baseline = Row(0, "baseline")
    tta = Row(20, f"tta{TTA_PASSES}", copy_of=baseline.folder, evaluate=("--tta", str(TTA_PASSES)))
    with_tricks = (options_row(i, spec) if spec.startswith("--") else
                   Row(i, row_name(spec.replace(",", "+")), train=("--tricks", spec))
                   for i, spec in enumerate(tricks, 1))
    with_options = (options_row(20 + i, entry) for i, entry in enumerate(options, 1))
    return (baseline, tta, *with_tricks, *with_options)


def options_row(order: int, entry: str) -> Row:
    """A row of train options joined by commas (``--optimizer=lamb,--lr=0.1``), named after them."""
    return Row(order, row_name(re.sub(r"^--", "", entry).replace(",--", "_")), train=tuple(entry.split(",")))


def tables(lowshot: tuple[str, ...] = DEFAULT_LOWSHOT, tricks: tuple[str, ...] = DEFAULT_TRICKS,
           options: tuple[str, ...] = DEFAULT_OPTIONS) -> dict[str, tuple[Row, ...]]:
    """Every table's rows in the order they run (a row runs after the rows it copies)."""
    return {"classifier": CLASSIFIER, "pretraining": PRETRAINING, "lm_finetune": LM_FINETUNE,
            SHARED_TABLE: DIRECTION, "lowshot": tuple(r for n in lowshot for r in lowshot_rows(n)),
            "tricks": tricks_rows(tricks, options)}


def find_row(table: str, folder: str) -> Row | None:
    """The row of ``table`` written to ``folder`` by the default tables (a low-shot row for any
    size), or None: e.g. a row of a trick spec given in TRICKS."""
    size = re.search(r"-n(\d+|all)$", folder)
    rows = tables(lowshot=(size.group(1),) if size else ()).get(table, ())
    return next((row for row in rows if row.folder == folder), None)
