#!/usr/bin/env bash
# ULMFiT on the dev suite beyond TREC-6 and IMDb: customer reviews (cr), opinion phrases (mpqa) and
# 20 Newsgroups (20news, long documents, 20 classes), each on its own train/test split (see the
# data README). For each set: tokenize, fine-tune the Wikipedia LMs of scripts/pretrain_wiki.sh,
# train and evaluate a classifier per model of MODELS, average them; then one table of test errors
# next to the bag-of-words floor (scripts/bench_bow_baseline.py, same training documents)
# and the TF-IDF word+char floor (scripts/bench_tfidf_baseline.py, the set's whole train split).
# Each stage is skipped when its output has metrics.json, and an interrupted one resumes.
#   SETS="cr mpqa 20news" (default) or a subset;  PRESET, MODELS, PARALLEL, ULMFIT_DATA, RUNS,
#   WIKI, LM_EPOCHS, FT_EPOCHS, CLF_EPOCHS, MAX_STEPS as in scripts/trec6.sh.
# Results: $RUNS/<set>/clf_<model>/eval_test.json, $RUNS/<set>/eval_test.json (the average of two
# models or more), $RUNS/devsuite.txt.
# Long documents (20news, one seed): MODELS="fwd bwd" beat the default pair, 15.45 against 16.64%
# (README.md, "The backward word model on 20 Newsgroups").
cd "$(dirname "$0")/.."
source scripts/common.sh
SETS=${SETS:-cr mpqa 20news}

# inputs NAME: sets INPUTS (the set's raw train and test files), READ (how to read them) and
# FLOOR (options of the TF-IDF floor).
inputs() {
    case $1 in
        cr | mpqa) INPUTS=("$DATA/$1/train.csv" "$DATA/$1/test.csv"); READ=(); FLOOR=() ;;
        # 37 messages hold latin-1 bytes; latin-1 reads the (ASCII) rest unchanged.
        20news) INPUTS=("$DATA/20news/20news-bydate.tar.xz:20news-bydate-train"
                        "$DATA/20news/20news-bydate.tar.xz:20news-bydate-test"); READ=(--encoding latin-1)
                FLOOR=(--min_df 2) ;;  # all n-grams of the long messages would need over 16 GB
        *) echo "unknown set $1 (cr, mpqa, 20news)" >&2; return 1 ;;
    esac
}

# error FILE: the test error in percent from an eval_test.json (a classifier's or an ensemble run's).
error() { python -c "import json, sys; print(f\"{100 * json.load(open(sys.argv[1]))['error_rate']:.2f}\")" "$1"; }
# floor_error: the test error in percent from a floor script's last line on stdin.
floor_error() { sed -n 's/.*test error \([0-9.]*\)%.*/\1/p'; }

bash scripts/pretrain_wiki.sh >&2
table="set     $(printf '  %6s' $MODELS)  ensemble  bow floor  tf-idf floor"
for name in $SETS; do
    inputs "$name"
    echo "== tokenize $name" >&2
    tokenize_set "$RUNS/$name" --train "${INPUTS[0]}" --test "${INPUTS[1]}" "${READ[@]}"
    classify "$RUNS/$name" >&2
    row=$(printf '%-8s' "$name")
    for model in $MODELS; do row+=$(printf '  %6s' "$(error "$RUNS/$name/clf_$model/eval_test.json")"); done
    # One model averages nothing: an eval_test.json there is an earlier run's average of other MODELS.
    ensemble=$([ "$(wc -w <<< "$MODELS")" -gt 1 ] && error "$RUNS/$name/eval_test.json" || echo -)
    bow=$(python scripts/bench_bow_baseline.py "$RUNS/$name/$(toks | head -n 1)" | floor_error)
    if [ ! -f "$RUNS/$name/tfidf.txt" ]; then
        python scripts/bench_tfidf_baseline.py "${INPUTS[@]}" "${READ[@]}" "${FLOOR[@]}" > "$RUNS/$name/tfidf.txt.tmp"
        mv "$RUNS/$name/tfidf.txt.tmp" "$RUNS/$name/tfidf.txt"
    fi
    tfidf=$(floor_error < "$RUNS/$name/tfidf.txt")
    table+=$'\n'$(printf '%s  %8s  %9s  %12s' "$row" "$ensemble" "$bow" "$tfidf")
done
echo "$table" | tee "$RUNS/devsuite.txt"
