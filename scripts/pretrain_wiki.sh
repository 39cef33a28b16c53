#!/usr/bin/env bash
# Pretrain the Wikipedia language models once, for every recipe (trec6.sh, imdb.sh, ablate.sh):
#   $RUNS/wiki/tok      the articles (train and valid) tokenized into words, and their vocabulary;
#   $RUNS/wiki/tok_sp   the same in SentencePiece subwords (only when MODELS has sp_ ones);
#   $RUNS/wiki/lm_<model>  the language model of each of MODELS (fwd, bwd, sp_fwd, sp_bwd).
# A model is skipped when its folder has metrics.json; an interrupted one resumes.
#   WIKI=small (default: train-small.jsonl.xz, 2M words) | full (train.jsonl.xz, 63M words);
#   one corpus per RUNS (e.g. WIKI=full RUNS=runs/full): the recipes' folders start from its LMs
#   PRESET=cpu (default) | paper | tiny (20 articles);  MODELS, PARALLEL: see scripts/common.sh;
#   ULMFIT_DATA: data root (default ../shared/data); RUNS: output root (default runs/$PRESET)
#   MAX_VOCAB (words: default 30000 for small, 60000 for full); SP_VOCAB (pieces: default 15000,
#   MultiFiT's size);
#   LM_EPOCHS (default 8 for small at the cpu preset: 258-271 s an epoch on the first 2-core
#   machine, 373 s on a slower one, see the README's "Pretraining speed"; 1 for full);
#   MAX_STEPS: optional bound.
cd "$(dirname "$0")/.."
source scripts/common.sh
WIKI=${WIKI:-small}
case $WIKI in
    small) train=train-small.jsonl.xz; vocab=30000; epochs=8 ;;
    full) train=train.jsonl.xz; vocab=60000; epochs=1 ;;
    *) echo "WIKI must be small or full, not '$WIKI'" >&2; exit 2 ;;
esac

# same_corpus FOLDER: stop unless RUNS's tokenized Wikipedia FOLDER (if any) holds this run's corpus:
# every recipe folder under RUNS starts from its language models.
same_corpus() {
    local config="$RUNS/wiki/$1/config.json"
    [ ! -f "$config" ] || grep -q "/wikipedia/$train\"" "$config" && return 0
    echo "$RUNS/wiki holds Wikipedia other than WIKI=$WIKI ($train); give it its own RUNS (e.g." \
         "RUNS=runs/$WIKI): the recipes' folders under RUNS all start from its language models" >&2
    exit 2
}
wiki_docs=$([ "$PRESET" = tiny ] && echo "--max_docs 20" || true)
for folder in $(toks); do
    same_corpus "$folder"
    if [ "$folder" = tok_sp ]; then
        vocab_options=(--tokenizer sentencepiece --sp_vocab_size "${SP_VOCAB:-15000}")
    else
        vocab_options=(--max_vocab "${MAX_VOCAB:-$vocab}")
    fi
    ulmfit tokenize --train "$DATA/wikipedia/$train" --valid "$DATA/wikipedia/valid.jsonl.xz" \
        "${vocab_options[@]}" $wiki_docs --out "$RUNS/wiki/$folder" >/dev/null
done
# pretrain MODEL: MODEL's language model, unless it is done.
pretrain() {
    local lm="$RUNS/wiki/lm_$1"
    done_ "$lm" && return 0
    echo "== pretrain the $1 language model on Wikipedia ($train)" >&2
    ulmfit pretrain --data "$RUNS/wiki/$(tok "$1")" --out "$lm" --preset "$PRESET" $(backwards "$1") $(resume "$lm") \
        $(opt epochs "${LM_EPOCHS:-$([ "$PRESET" = cpu ] && echo $epochs || true)}") $(opt max_steps "${MAX_STEPS:-}") >/dev/null
}
each_model "$RUNS/wiki/pretrain" pretrain
echo "wiki language models:$(for model in $MODELS; do echo -n " $RUNS/wiki/lm_$model"; done)"
