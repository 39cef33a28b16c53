#!/usr/bin/env bash
# ULMFiT on TREC-6: pretrain (or reuse) the Wikipedia LMs (scripts/pretrain_wiki.sh), fine-tune them
# on the questions, train and evaluate the classifier, forward and backward, then ensemble both
# directions. Each stage is skipped when its output folder already has metrics.json, and an
# interrupted one resumes, so a rerun continues where it stopped.
#   PRESET=cpu (default; 2 CPU cores) | paper (GPU) | tiny (seconds per stage, for checks)
#   DIRECTIONS="fwd bwd" (default) | fwd | bwd;  WIKI=small (default) | full (see pretrain_wiki.sh)
#   TOKENIZER=spacy (default, words) | sentencepiece (subwords; with its own RUNS, e.g. runs/sp)
#   ULMFIT_DATA: data root (default ../shared/data); RUNS: output root (default runs/$PRESET)
#   LM_EPOCHS, FT_EPOCHS, CLF_EPOCHS, MAX_STEPS: optional overrides of the preset's values.
# Results: $RUNS/trec/clf_<dir>/eval_test.json and $RUNS/trec/ensemble_test.json.
cd "$(dirname "$0")/.."
source scripts/common.sh

bash scripts/pretrain_wiki.sh >&2
ulmfit tokenize --train "$DATA/trec/train_5500.label" --test "$DATA/trec/TREC_10.label" \
    --format trec --encoding latin-1 $(target_vocab) --out "$RUNS/trec/tok" >/dev/null
classify "$RUNS/trec/tok" "$RUNS/trec"
