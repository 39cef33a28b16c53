#!/usr/bin/env bash
# ULMFiT's ablations on TREC-6 (Howard & Ruder 2018, sec. 5): each row is a classifier run with
# one switch changed, on the same data and split, repeated over seeds. Every run is a folder
#   $RUNS/ablations/trec6/<table>/<row>/seed<N>/   (config.json, metrics.json, eval_test.json)
# and is skipped when its eval_test.json exists, so a rerun continues where it stopped.
# The tables and their rows are data (ulmfit/ablations.py); `ulmfit ablate` runs them and
# `ulmfit report $RUNS/ablations/trec6` turns the folders into tables and plots.
#   PRESET=cpu (default) | paper | tiny;  SEEDS="0 1 2";  TABLES="classifier" (any of classifier,
#   pretraining, lm_finetune, direction, lowshot, tricks)
#   RUNS: output root of scripts/trec6.sh (default runs/$PRESET), whose Wikipedia LMs, tokenized
#         TREC-6 and fine-tuned forward LM the rows start from (run it first; the direction table also
#         needs the backward word LM: MODELS=bwd scripts/pretrain_wiki.sh); MAX_STEPS: bound every run.
#   LOWSHOT="100 200 500 1000 all": training-set sizes of the lowshot table.
#   TRICKS, OPTIONS: the tricks table's specs and option rows (see scripts/tricks.sh); unset: the
#         defaults below, empty: none.
cd "$(dirname "$0")/.."
source scripts/common.sh
# The tricks table's default trick rows: every classifier trick but pseudo_label (ulmfit/ablations.py).
DEFAULT_TRICKS=$(python -c 'from ulmfit.ablations import DEFAULT_TRICKS; print(*DEFAULT_TRICKS)')
ulmfit ablate --runs="$RUNS" --preset="$PRESET" --tables="${TABLES:-classifier}" --tricks="${TRICKS-$DEFAULT_TRICKS}" \
    ${SEEDS:+--seeds="$SEEDS"} ${LOWSHOT:+--lowshot="$LOWSHOT"} ${OPTIONS+--options="$OPTIONS"} \
    $(opt max_steps "${MAX_STEPS:-}") >/dev/null
echo "results: $RUNS/ablations/trec6 (ulmfit report $RUNS/ablations/trec6)"
