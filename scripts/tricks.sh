#!/usr/bin/env bash
# The training-tricks table on TREC-6: the default classifier (gradual unfreezing, discriminative
# rates, STLR on $RUNS/trec/lm_fwd) as row "00-baseline", and with each trick spec of TRICKS as
# rows "01-<spec>", "02-<spec>"... (numbered in TRICKS order), over SEEDS, in the layout of
# scripts/ablate.sh: $RUNS/ablations/trec6/tricks/<row>/seed<N>/. Each classifier's metrics.json
# records its peak memory (peak_rss_mb) beside its time.
#   TRICKS: space-separated specs, each given to `ulmfit train --tricks` as it is, e.g.
#           TRICKS="label_smoothing(alpha=0.2) fgm,ema" (a comma combines tricks in one row);
#           default: every classifier trick of `ulmfit tricks` with its default parameters.
#   PRESET, RUNS, SEEDS="0 1 2", MAX_STEPS as in scripts/ablate.sh (run scripts/trec6.sh first).
cd "$(dirname "$0")/.."
TABLES=tricks exec bash scripts/ablate.sh
