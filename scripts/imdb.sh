#!/usr/bin/env bash
# ULMFiT on IMDb sentiment (Maas et al. 2011): the Wikipedia LMs of scripts/pretrain_wiki.sh
# fine-tuned on the reviews (labelled and unlabelled), the classifier trained and evaluated on the
# test reviews, for each of MODELS, then their average. Each stage is skipped when its output has
# metrics.json, and an interrupted one resumes.
#   PRESET=cpu (default): a subset: IMDB_DOCS=2000 reviews of each of train and test (half
#          positive, half negative) and IMDB_UNSUP=50000 unlabelled ones (all of them; 2000 gave
#          19.4% test error instead of 15.6%, see README.md; other presets: IMDB_DOCS), taken evenly
#          over the sorted file names and extracted to $RUNS/imdb/<IMDB_DOCS>u<IMDB_UNSUP>/reviews
#          (tokenize --max_docs would read one class only: the archive holds each class in one
#          block); the classifier reads whole reviews (IMDB_TOKENS=N: the first N tokens; whole
#          ones gave 12.95% test error against 13.87% with 400, see README.md).
#          IMDB_DOCS=all: all of it as below, the classifier for CLF_EPOCHS=5 (one per unfreezing
#          stage; 25,000 labels need fewer passes): MODELS=fwd 7.91% test error, 2 h 11 min
#          wall; the default pair (PARALLEL=1) 7.55 +- 0.09% over 3 seeds, 2 h 21 min (README.md).
#   PRESET=paper: all of it (25,000 train, 50,000 unlabelled, 25,000 test reviews), read straight
#          from the archive (ARCHIVE:FOLDER); so does IMDB_DOCS=all with any preset.
#   PRESET=tiny: IMDB_DOCS=40, the first IMDB_TOKENS=400 tokens and tiny models, for checks.
#   MODELS (scripts/common.sh);  PARALLEL=1: the models side by side, each at one thread on 2
#   cores, about nine tenths of the time of the two in turn when nothing else runs (README.md,
#   "Models side by side"; with IMDB_DOCS=all, two LM fine-tunings of about 2.6 GiB each at once);
#   ULMFIT_DATA, RUNS, WIKI, LM_EPOCHS, FT_EPOCHS, CLF_EPOCHS, MAX_STEPS as in scripts/trec6.sh.
# Results, with ROOT=$RUNS/imdb/<IMDB_DOCS>u<IMDB_UNSUP> (or $RUNS/imdb/all):
#   ROOT/clf_<model>/eval_test.json and ROOT/eval_test.json (the average).
cd "$(dirname "$0")/.."
source scripts/common.sh
ARCHIVE=$DATA/imdb/aclImdb_v1.tar.xz
case $PRESET in
    paper) IMDB_DOCS=${IMDB_DOCS:-all} ;;
    tiny) IMDB_DOCS=${IMDB_DOCS:-40}; IMDB_TOKENS=${IMDB_TOKENS:-400} ;;
    *) IMDB_DOCS=${IMDB_DOCS:-2000}; IMDB_UNSUP=${IMDB_UNSUP:-50000}
       if [ "$IMDB_DOCS" = all ]; then CLF_EPOCHS=${CLF_EPOCHS:-5}; fi ;;
esac
IMDB_TOKENS=${IMDB_TOKENS:-}
IMDB_UNSUP=${IMDB_UNSUP:-$IMDB_DOCS}
IMDB=$RUNS/imdb/$([ "$IMDB_DOCS" = all ] && echo all || echo "${IMDB_DOCS}u$IMDB_UNSUP")

# subset N U DIR: N/2 reviews of each of train/pos, train/neg, test/pos and test/neg and U of
# train/unsup, picked evenly over the sorted file names (the same every time) and extracted from the
# archive into DIR/aclImdb (made whole or not at all).
subset() {
    local n=$1 u=$2 dir=$3 folder k
    [ -d "$dir" ] && return 0
    echo "== extract $n labelled reviews per split and $u unlabelled ones from $ARCHIVE" >&2
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    tar -tJf "$ARCHIVE" | sort > "$dir.tmp/archive.txt"
    for folder in train/pos train/neg test/pos test/neg train/unsup; do
        k=$([ "$folder" = train/unsup ] && echo "$u" || echo $((n / 2)))
        grep "^aclImdb/$folder/[^/]*\.txt$" "$dir.tmp/archive.txt" \
            | awk -v k="$k" '{ name[NR] = $0 }
                             END { for (i = 0; i < k && i < NR; i++) print name[int(i * NR / k) + 1] }'
    done > "$dir.tmp/names.txt"
    tar -xJf "$ARCHIVE" -C "$dir.tmp" -T "$dir.tmp/names.txt"
    rm "$dir.tmp/archive.txt"
    mv "$dir.tmp" "$dir"
}

if [ "$IMDB_DOCS" = all ]; then
    train="$ARCHIVE:aclImdb/train"; test="$ARCHIVE:aclImdb/test"
else
    subset "$IMDB_DOCS" "$IMDB_UNSUP" "$IMDB/reviews"
    train="$IMDB/reviews/aclImdb/train"; test="$IMDB/reviews/aclImdb/test"
fi
bash scripts/pretrain_wiki.sh >&2
echo "== tokenize IMDb" >&2
tokenize_set "$IMDB" --train "$train" --unsup --test "$test"
classify "$IMDB" $(opt max_tokens "$IMDB_TOKENS")
