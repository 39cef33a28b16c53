#!/usr/bin/env bash
# ULMFiT's ablations on TREC-6 (Howard & Ruder 2018, sec. 5): each row is a classifier run with
# one switch changed, on the same data and split, repeated over seeds. Every run is a folder
#   $RUNS/ablations/trec6/<table>/<row>/seed<N>/   (config.json, metrics.json, eval_test.json)
# and is skipped when its eval_test.json exists, so a rerun continues where it stopped.
# `ulmfit report $RUNS/ablations/trec6` turns the folders into tables and plots.
#   PRESET=cpu (default) | paper | tiny;  SEEDS="0 1 2";  TABLES="classifier" (see below)
#   RUNS: output root of scripts/trec6.sh (default runs/$PRESET), whose tokenized TREC-6 and
#         fine-tuned forward LM the rows start from (run it first); MAX_STEPS: bound every run.
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET=${PRESET:-cpu}
RUNS=${RUNS:-runs/$PRESET}
SEEDS=${SEEDS:-0 1 2}
TABLES=${TABLES:-classifier}
TOK=$RUNS/trec/tok
LM=$RUNS/trec/lm_fwd
OUT=$RUNS/ablations/trec6
steps=$([ -n "${MAX_STEPS:-}" ] && echo "--max_steps $MAX_STEPS" || true)

# run TABLE ROW TRAIN-OPTIONS...: one classifier per seed, trained and evaluated on the test split.
run() {
    local table=$1 row=$2; shift 2
    for seed in $SEEDS; do
        local dir=$OUT/$table/$row/seed$seed
        [ -f "$dir/eval_test.json" ] && continue
        rm -rf "$dir"  # an interrupted run starts over
        echo "== $table/$row seed $seed" >&2
        ulmfit train --data "$TOK" --out "$dir" --seed "$seed" $steps "$@" >/dev/null
        ulmfit evaluate --model "$dir" --data "$TOK" --split test >/dev/null
    done
}

# Classifier fine-tuning (the paper's table 6): without "stlr" or "cos" a row uses a constant rate.
table_classifier() {
    run classifier 01-scratch --from_scratch --preset "$PRESET"
    run classifier 02-full --encoder "$LM" --no_gradual_unfreezing --no_discriminative --schedule constant
    run classifier 03-full+discr --encoder "$LM" --no_gradual_unfreezing --schedule constant
    run classifier 04-last --encoder "$LM" --head_only --schedule constant
    run classifier 05-freez --encoder "$LM" --no_discriminative --schedule constant
    run classifier 06-freez+discr --encoder "$LM" --schedule constant
    run classifier 07-freez+stlr --encoder "$LM" --no_discriminative
    run classifier 08-freez+cos --encoder "$LM" --no_discriminative --schedule cosine
    run classifier 09-freez+discr+stlr --encoder "$LM"
}

for table in $TABLES; do
    "table_$table"
done
echo "results: $OUT (ulmfit report $OUT)"
