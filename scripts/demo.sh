#!/usr/bin/env bash
# The main job on a small real default: the ULMFiT pipeline on TREC-6 with a tiny model and
# bounded steps, so it finishes in a few minutes on 2 CPU cores. For real results use
# scripts/trec6.sh with PRESET=cpu (or paper on a GPU).
# Data root: $ULMFIT_DATA, else ../shared/data. Output: $RUNS (default runs/demo).
set -euo pipefail
# Tiny models run fastest on one thread, and one thread per process avoids oversubscribing
# the cores when another job runs beside the demo. At this size bf16 does not pay (0.9x the
# float32 speed, scripts/bench_lm_throughput.py --preset tiny), so the demo runs in float32.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PRECISION="--precision fp32"
cd "$(dirname "$0")/.."
DATA=${ULMFIT_DATA:-../shared/data}
RUNS=${RUNS:-runs/demo}
mkdir -p "$RUNS"

echo "== tokenize: Wikipedia (first 40 articles of train-small and valid) and TREC-6"
ulmfit tokenize --train "$DATA/wikipedia/train-small.jsonl.xz" --valid "$DATA/wikipedia/valid.jsonl.xz" \
    --max_docs 40 --max_vocab 20000 --out "$RUNS/wiki_tok"
ulmfit tokenize --train "$DATA/trec/train_5500.label" --test "$DATA/trec/TREC_10.label" \
    --format trec --encoding latin-1 --out "$RUNS/trec_tok"

echo "== pretrain a tiny language model on Wikipedia"
[ -f "$RUNS/wiki_lm/metrics.json" ] || ulmfit pretrain --data "$RUNS/wiki_tok" --out "$RUNS/wiki_lm" --preset tiny --max_steps 300 \
    $PRECISION

echo "== fine-tune it on TREC-6 questions"
[ -f "$RUNS/trec_lm/metrics.json" ] || ulmfit finetune --pretrained "$RUNS/wiki_lm" --data "$RUNS/trec_tok" --out "$RUNS/trec_lm" --max_steps 100 $PRECISION

echo "== train the classifier (gradual unfreezing, discriminative rates, STLR) and evaluate it"
[ -f "$RUNS/trec_clf/metrics.json" ] || ulmfit train --encoder "$RUNS/trec_lm" --data "$RUNS/trec_tok" --out "$RUNS/trec_clf" --epochs 4 $PRECISION
ulmfit evaluate --model "$RUNS/trec_clf" --data "$RUNS/trec_tok" --split test

echo "demo done: results under $RUNS (metrics.json in each folder)"
