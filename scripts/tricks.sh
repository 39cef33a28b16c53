#!/usr/bin/env bash
# The training-tricks table on TREC-6: the default classifier (gradual unfreezing, discriminative
# rates, STLR on $RUNS/trec/lm_fwd) as row "00-baseline", and with each trick spec of TRICKS as
# rows "01-<spec>", "02-<spec>"... (numbered in TRICKS order), over SEEDS, in the layout of
# scripts/ablate.sh: $RUNS/ablations/trec6/tricks/<row>/seed<N>/. Each classifier's metrics.json
# records its peak memory (peak_rss_mb) beside its time.
#   TRICKS: space-separated specs, each given to `ulmfit train --tricks` as it is, e.g.
#           TRICKS="label_smoothing(alpha=0.2) fgm,ema" (a comma combines tricks in one row), or
#           train options when it starts with -- (joined by commas, as in OPTIONS);
#           default: every classifier trick of `ulmfit tricks` (ema with decay 0.99, the others
#           with their default parameters) and --accumulate=2 (ulmfit/ablations.py, DEFAULT_TRICKS);
#           TRICKS="" runs none.
#   Row "20-tta4": the baseline's classifiers evaluated with 4 passes of test-time augmentation.
#   OPTIONS: rows "21-<options>", "22-..." of train options instead of a trick, each entry's options
#           joined by commas, e.g. OPTIONS="--schedule=warmup_linear --optimizer=lamb,--lr=0.1";
#           default: the warmup schedules, LAMB at three rates and the default at rate 0.03
#           (ulmfit/ablations.py, DEFAULT_OPTIONS); OPTIONS="" runs none.
#   PRESET, RUNS, SEEDS="0 1 2", MAX_STEPS as in scripts/ablate.sh (run scripts/trec6.sh first).
cd "$(dirname "$0")/.."
TABLES=tricks exec bash scripts/ablate.sh
