#!/usr/bin/env bash
# ULMFiT on TREC-6: pretrain (or reuse) the Wikipedia LMs (scripts/pretrain_wiki.sh), fine-tune them
# on the questions, train and evaluate a classifier on each, then average the classifiers. Each
# stage is skipped when its output folder already has metrics.json, and an interrupted one
# resumes, so a rerun continues where it stopped.
#   PRESET=cpu (default; 2 CPU cores) | paper (GPU) | tiny (seconds per stage, for checks)
#   MODELS="fwd sp_fwd" (default; words and subwords, forward; bwd, sp_bwd: backward; see
#   scripts/common.sh);  PARALLEL=1: the models side by side;  WIKI=small (default) | full
#   ULMFIT_DATA: data root (default ../shared/data); RUNS: output root (default runs/$PRESET)
#   LM_EPOCHS, FT_EPOCHS, CLF_EPOCHS, MAX_STEPS: optional overrides of the preset's values.
# Results: $RUNS/trec/clf_<model>/eval_test.json and, for two models or more, $RUNS/trec/eval_test.json.
cd "$(dirname "$0")/.."
source scripts/common.sh

bash scripts/pretrain_wiki.sh >&2
tokenize_set "$RUNS/trec" --train "$DATA/trec/train_5500.label" --test "$DATA/trec/TREC_10.label" \
    --format trec --encoding latin-1
classify "$RUNS/trec"
