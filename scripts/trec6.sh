#!/usr/bin/env bash
# ULMFiT on TREC-6: tokenize, pretrain (or reuse) a Wikipedia LM, fine-tune it on the questions,
# train and evaluate the classifier, forward and backward, then ensemble both directions.
# Each stage is skipped when its output folder already has metrics.json, so a rerun resumes.
#   PRESET=cpu (default; 2 CPU cores) | paper (GPU) | tiny (seconds per stage, for checks)
#   DIRECTIONS="fwd bwd" (default) | fwd | bwd
#   ULMFIT_DATA: data root (default ../shared/data); RUNS: output root (default runs/$PRESET)
#   LM_EPOCHS, FT_EPOCHS, CLF_EPOCHS, MAX_STEPS: optional overrides of the preset's values.
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET=${PRESET:-cpu}
DATA=${ULMFIT_DATA:-../shared/data}
RUNS=${RUNS:-runs/$PRESET}
DIRECTIONS=${DIRECTIONS:-fwd bwd}
opt() { [ -n "${2:-}" ] && echo "--$1 $2"; true; }
done_() { [ -f "$1/metrics.json" ]; }

wiki_docs=$([ "$PRESET" = tiny ] && echo "--max_docs 20" || true)
ulmfit tokenize --train "$DATA/wikipedia/train-small.jsonl.xz" --valid "$DATA/wikipedia/valid.jsonl.xz" \
    --max_vocab 30000 $wiki_docs --out "$RUNS/wiki/tok" >/dev/null
ulmfit tokenize --train "$DATA/trec/train_5500.label" --test "$DATA/trec/TREC_10.label" \
    --format trec --encoding latin-1 --out "$RUNS/trec/tok" >/dev/null

ensemble_members=()
for dir in $DIRECTIONS; do
    back=$([ "$dir" = bwd ] && echo "--backwards" || true)
    lm="$RUNS/wiki/lm_$dir"; ft="$RUNS/trec/lm_$dir"; clf="$RUNS/trec/clf_$dir"
    done_ "$lm" || ulmfit pretrain --data "$RUNS/wiki/tok" --out "$lm" --preset "$PRESET" $back \
        $(opt epochs "${LM_EPOCHS:-}") $(opt max_steps "${MAX_STEPS:-}") >/dev/null
    done_ "$ft" || ulmfit finetune --pretrained "$lm" --data "$RUNS/trec/tok" --out "$ft" $back \
        $(opt epochs "${FT_EPOCHS:-}") $(opt max_steps "${MAX_STEPS:-}") >/dev/null
    done_ "$clf" || ulmfit train --encoder "$ft" --data "$RUNS/trec/tok" --out "$clf" $back \
        $(opt epochs "${CLF_EPOCHS:-}") $(opt max_steps "${MAX_STEPS:-}") >/dev/null
    ulmfit evaluate --model "$clf" --data "$RUNS/trec/tok" --split test >/dev/null
    ensemble_members+=("$clf")
    echo "$dir: $clf/eval_test.json"
done
if [ ${#ensemble_members[@]} -gt 1 ]; then
    members=$(IFS=,; echo "${ensemble_members[*]}")
    ulmfit ensemble --models "$members" --data "$RUNS/trec/tok" --split test --out "$RUNS/trec" >/dev/null
    echo "ensemble: $RUNS/trec/ensemble_test.json"
fi
