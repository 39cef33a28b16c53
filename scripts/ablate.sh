#!/usr/bin/env bash
# ULMFiT's ablations on TREC-6 (Howard & Ruder 2018, sec. 5): each row is a classifier run with
# one switch changed, on the same data and split, repeated over seeds. Every run is a folder
#   $RUNS/ablations/trec6/<table>/<row>/seed<N>/   (config.json, metrics.json, eval_test.json)
# and is skipped when its eval_test.json exists, so a rerun continues where it stopped.
# Language models that rows start from are trained once into $RUNS/ablations/trec6/lms/<name>/,
# for as many epochs (and max_steps) as $RUNS/trec/lm_fwd was fine-tuned.
# `ulmfit report $RUNS/ablations/trec6` turns the folders into tables and plots.
#   PRESET=cpu (default) | paper | tiny;  SEEDS="0 1 2";  TABLES="classifier" (any of the tables below)
#   RUNS: output root of scripts/trec6.sh (default runs/$PRESET), whose Wikipedia LMs, tokenized
#         TREC-6 and fine-tuned forward LM the rows start from (run it first); MAX_STEPS: bound every run.
#   LOWSHOT="100 200 500 1000 all": training-set sizes of the lowshot table.
#   TRICKS, OPTIONS: the tricks table's specs and option rows (see scripts/tricks.sh).
# Tables (rows as "NN-name"):
#   classifier   classifier fine-tuning (the paper's table 6), on $RUNS/trec/lm_fwd, and 10: row 09 with
#                the schedule restarted in each epoch of gradual unfreezing (--cycle_per_epoch)
#   pretraining  01-none: an LM trained on TREC-6 alone (ulmfit pretrain, as long as fine-tuning);
#                02-wiki: the Wikipedia LM fine-tuned on TREC-6 (the paper's table 4)
#   lm_finetune  the Wikipedia LM 01-none: not fine-tuned (its rows only mapped to TREC's vocabulary),
#                02-full, 03-full+discr: fine-tuned at a constant rate, 04-full+discr+stlr: the default
#                (the paper's table 5)
#   direction    01-fwd, 02-bwd: the forward and backward Wikipedia LMs fine-tuned; 03-ensemble: the
#                average of the two classifiers' probabilities (eval_test.json is the ensemble's report)
#   lowshot      for N in LOWSHOT, classifiers trained on N stratified labelled documents (the same
#                ones for every row of a seed; at least 200 steps, the classifier's --min_steps):
#                01-ulmfit-nN: the LM fine-tuned on those N documents only (supervised ULMFiT; as
#                many steps as $RUNS/trec/lm_fwd), 02-semisup-nN: on all training questions,
#                03-scratch-nN: no LM (the paper's figure 3); 04-semisup+pseudo-nN: 02 plus one round
#                of pseudo-labelling the other training questions (their labels hidden)
#   tricks       00-baseline, a row per trick spec and from 21 on a row per OPTIONS entry, see
#                scripts/tricks.sh
# The default fine-tuned LM of the pretraining, lm_finetune, direction and lowshot rows is fine-tuned
# per seed (lms/fwd/seed<N>, lms/bwd/seed<N>), so each seed repeats the whole pipeline after pretraining.
cd "$(dirname "$0")/.."
source scripts/common.sh
SEEDS=${SEEDS:-0 1 2}
TABLES=${TABLES:-classifier}
LOWSHOT=${LOWSHOT:-100 200 500 1000 all}
# The tricks table's trick rows, in the order of the published table (docs/results/trec6-cpu), so a
# rerun fills the same row numbers: every classifier trick of `ulmfit tricks` (tests check this) but
# pseudo_label, which needs unlabelled questions: the lowshot table's 04-pseudo rows run it; and
# gradient accumulation, a trick in earlier versions, as its option (an entry starting with --).
DEFAULT_TRICKS="label_smoothing ema(decay=0.99) fgm rdrop eda swa focal --accumulate=2 lookahead pgd sharpen"
# The tricks table's option rows: schedules with warmup, LAMB, the default at a higher rate, in float32.
DEFAULT_OPTIONS="--schedule=warmup_linear --optimizer=lamb,--lr=0.1 --schedule=warmup_constant --schedule=warmup_cosine
                 --lr=0.03 --optimizer=lamb,--lr=0.03 --optimizer=lamb,--lr=0.3 --precision=fp32"
TOK=$RUNS/trec/tok
LM=$RUNS/trec/lm_fwd
WIKI_LM=$RUNS/wiki/lm
OUT=$RUNS/ablations/trec6
steps=$(opt max_steps "${MAX_STEPS:-}")
for needed in "$TOK" "$LM"; do
    done_ "$needed" || { echo "$needed: not found; run scripts/trec6.sh with the same PRESET and RUNS first" >&2; exit 2; }
done

# json FILE KEY.KEY...: a value of a JSON file (nothing for null).
json() {
    python -c 'import functools, json, sys
value = functools.reduce(lambda d, k: d[k], sys.argv[2].split("."), json.load(open(sys.argv[1])))
print("" if value is None else value)' "$1" "$2"
}

# The fine-tuning length of $LM, given to every language model the rows train; the lowshot rows'
# LMs, fine-tuned on few documents, make as many steps as $LM made (--min_steps).
lm_length="--epochs $(json "$LM/config.json" epochs) $(opt max_steps "${MAX_STEPS:-$(json "$LM/config.json" max_steps)}")"
lm_steps=$(json "$LM/metrics.json" steps)

# pending TABLE ROW SEED: the run has not been evaluated yet.
pending() { [ ! -f "$OUT/$1/$2/seed$3/eval_test.json" ]; }

# run1 TABLE ROW SEED TRAIN-OPTIONS...: one classifier, trained and evaluated on the test split.
run1() {
    local table=$1 row=$2 seed=$3; shift 3
    local dir=$OUT/$table/$row/seed$seed
    pending "$table" "$row" "$seed" || return 0
    rm -rf "$dir"  # an interrupted run starts over
    echo "== $table/$row seed $seed" >&2
    ulmfit train --data "$TOK" --out "$dir" --seed "$seed" $steps "$@" >/dev/null
    ulmfit evaluate --model "$dir" --data "$TOK" --split test >/dev/null
}

# run TABLE ROW TRAIN-OPTIONS...: one classifier per seed.
run() {
    local table=$1 row=$2; shift 2
    for seed in $SEEDS; do
        run1 "$table" "$row" "$seed" "$@"
    done
}

# lm NAME COMMAND OPTIONS...: the language model $OUT/lms/NAME, made once by
# `ulmfit COMMAND --data $TOK --out $OUT/lms/NAME OPTIONS...` (resumed if interrupted).
lm() {
    local name=$1 command=$2; shift 2
    local dir=$OUT/lms/$name
    done_ "$dir" && return 0
    echo "== language model lms/$name" >&2
    ulmfit "$command" --data "$TOK" --out "$dir" $(resume "$dir") "$@" >/dev/null
}

# lm_run TABLE ROW SEED LM COMMAND LM-OPTIONS... -- TRAIN-OPTIONS...: one classifier on its own
# language model lms/LM (see lm); the LM is made only when the run is pending.
lm_run() {
    local table=$1 row=$2 seed=$3 name=$4 command=$5 lm_options=()
    shift 5
    while [ "$1" != -- ]; do lm_options+=("$1"); shift; done
    shift
    pending "$table" "$row" "$seed" || return 0
    lm "$name" "$command" "${lm_options[@]}"
    run1 "$table" "$row" "$seed" --encoder "$OUT/lms/$name" "$@"
}

# copy_run FOLDER TABLE ROW SEED: the finished run FOLDER copied in as the run of another row.
copy_run() {
    local dir=$OUT/$2/$3/seed$4
    rm -rf "$dir" && mkdir -p "$(dirname "$dir")" && cp -r "$1" "$dir"
}

# default_run TABLE ROW SEED DIRECTION TRAIN-OPTIONS...: one classifier on the seed's default
# fine-tuning of the Wikipedia LM of DIRECTION (fwd or bwd). Without TRAIN-OPTIONS it is the same run
# in every table: trained once, as direction/01-fwd or 02-bwd, and copied into the other rows.
default_run() {
    local table=$1 row=$2 seed=$3 dir=$4; shift 4
    local back=$([ "$dir" = bwd ] && echo "--backwards" || true)
    local shared=$([ "$dir" = bwd ] && echo 02-bwd || echo 01-fwd)
    if [ $# -eq 0 ] && [ "$table/$row" != "direction/$shared" ]; then
        pending "$table" "$row" "$seed" || return 0
        default_run direction "$shared" "$seed" "$dir"
        copy_run "$OUT/direction/$shared/seed$seed" "$table" "$row" "$seed"
        return 0
    fi
    lm_run "$table" "$row" "$seed" "$dir/seed$seed" finetune --pretrained "${WIKI_LM}_$dir" --seed "$seed" \
        $back $lm_length -- $back "$@"
}

# ensemble_run TABLE ROW SEED MODEL...: the averaged probabilities of the models (ulmfit ensemble) as
# a run: eval_test.json is the ensemble's report, metrics.json names the models and their time.
ensemble_run() {
    local table=$1 row=$2 seed=$3; shift 3
    local dir=$OUT/$table/$row/seed$seed
    pending "$table" "$row" "$seed" || return 0
    echo "== $table/$row seed $seed" >&2
    mkdir -p "$dir"
    ulmfit ensemble --models "$(IFS=,; echo "$*")" --data "$TOK" --split test --out "$dir" >/dev/null
    python - "$dir" "$@" <<'EOF'
import sys
from pathlib import Path
from ulmfit.files import read_json, write_json
out, models = Path(sys.argv[1]), sys.argv[2:]
times = [read_json(Path(m) / "metrics.json") for m in models]
write_json(out / "metrics.json", {"models": models, "time_s": sum(t["time_s"] for t in times),
                                  "train_time_s": sum(t["train_time_s"] for t in times)})
write_json(out / "eval_test.json", read_json(out / "ensemble_test.json")["ensemble"])
EOF
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
    run classifier 10-freez+discr+stlr+cycles --encoder "$LM" --cycle_per_epoch
}

table_pretraining() {
    for seed in $SEEDS; do
        lm_run pretraining 01-none "$seed" "none/seed$seed" pretrain --preset "$PRESET" --seed "$seed" $lm_length --
        default_run pretraining 02-wiki "$seed" fwd
    done
}

table_lm_finetune() {
    for seed in $SEEDS; do
        lm_run lm_finetune 01-none "$seed" not-finetuned finetune --pretrained "${WIKI_LM}_fwd" --epochs 0 --
        lm_run lm_finetune 02-full "$seed" "full/seed$seed" finetune --pretrained "${WIKI_LM}_fwd" --seed "$seed" \
            --no_discriminative --schedule constant $lm_length --
        lm_run lm_finetune 03-full+discr "$seed" "full+discr/seed$seed" finetune --pretrained "${WIKI_LM}_fwd" \
            --seed "$seed" --schedule constant $lm_length --
        default_run lm_finetune 04-full+discr+stlr "$seed" fwd
    done
}

table_direction() {
    for seed in $SEEDS; do
        default_run direction 01-fwd "$seed" fwd
        default_run direction 02-bwd "$seed" bwd
        ensemble_run direction 03-ensemble "$seed" "$OUT/direction/01-fwd/seed$seed" "$OUT/direction/02-bwd/seed$seed"
    done
}

# With N=all the classifiers read every labelled question, so 02-semisup is the default run (shared)
# and 03-scratch gets no --max_train; the supervised LM still reads only the labelled questions.
table_lowshot() {
    local n max_train subset
    for n in $LOWSHOT; do
        max_train=$([ "$n" = all ] && json "$TOK/metrics.json" splits.train.docs || echo "$n")
        subset=$([ "$n" = all ] || echo "--max_train $n")
        for seed in $SEEDS; do
            lm_run lowshot "01-ulmfit-n$n" "$seed" "ulmfit-n$n/seed$seed" finetune --pretrained "${WIKI_LM}_fwd" \
                --seed "$seed" --max_train "$max_train" --min_steps "$lm_steps" $lm_length -- $subset
            default_run lowshot "02-semisup-n$n" "$seed" fwd $subset
            run1 lowshot "03-scratch-n$n" "$seed" --from_scratch --preset "$PRESET" $subset
            [ "$n" = all ] || default_run lowshot "04-semisup+pseudo-n$n" "$seed" fwd $subset --tricks pseudo_label
        done
    done
}

# row_name TEXT: TEXT made a folder name (characters other than letters, digits and _.=+- become _).
row_name() { echo "$1" | tr -c 'A-Za-z0-9_.=+-' _ | sed 's/_*$//'; }

# tta_run TABLE ROW FROM PASSES: the runs of row FROM copied and evaluated with test-time
# augmentation (`ulmfit evaluate --tta PASSES`).
tta_run() {
    local table=$1 row=$2 from=$3 passes=$4 seed dir
    for seed in $SEEDS; do
        pending "$table" "$row" "$seed" || continue
        dir=$OUT/$table/$row/seed$seed
        echo "== $table/$row seed $seed" >&2
        copy_run "$OUT/$table/$from/seed$seed" "$table" "$row" "$seed" && rm "$dir/eval_test.json"
        ulmfit evaluate --model "$dir" --data "$TOK" --split test --tta "$passes" >/dev/null
    done
}

# Training tricks (scripts/tricks.sh): the default classifier with each spec of TRICKS, the same
# classifier evaluated with 4 passes of test-time augmentation (20-tta4), then with each entry of
# OPTIONS (train options joined by commas, e.g. "--optimizer=lamb,--lr=0.1").
table_tricks() {
    local i=0 spec
    run tricks 00-baseline --encoder "$LM"
    tta_run tricks 20-tta4 00-baseline 4
    for spec in ${TRICKS-$DEFAULT_TRICKS}; do
        i=$((i + 1))
        case $spec in
            --*) run tricks "$(printf %02d $i)-$(row_name "${spec#--}")" --encoder "$LM" ${spec//,/ } ;;
            *) run tricks "$(printf %02d $i)-$(row_name "$(echo "$spec" | tr , +)")" --encoder "$LM" --tricks "$spec" ;;
        esac
    done
    i=20
    for spec in ${OPTIONS-$DEFAULT_OPTIONS}; do
        i=$((i + 1))
        run tricks "$i-$(row_name "$(echo "$spec" | sed 's/^--//; s/,--/_/g')")" --encoder "$LM" ${spec//,/ }
    done
}

for table in $TABLES; do
    "table_$table"
done
echo "results: $OUT (ulmfit report $OUT)"
