#!/usr/bin/env bash
# Pretrain the Wikipedia language models once, for every recipe (trec6.sh, imdb.sh, ablate.sh):
#   $RUNS/wiki/tok      the tokenized articles (train and valid) and their vocabulary
#   $RUNS/wiki/lm_fwd   the forward LM;  $RUNS/wiki/lm_bwd  the backward LM
# A model is skipped when its folder has metrics.json; an interrupted one resumes.
#   WIKI=small (default: train-small.jsonl.xz, 2M words) | full (train.jsonl.xz, 63M words);
#   one corpus per RUNS (e.g. WIKI=full RUNS=runs/full): the recipes' folders start from its LMs
#   PRESET=cpu (default) | paper | tiny (20 articles);  DIRECTIONS="fwd bwd" (default) | fwd | bwd;
#   PARALLEL=1: both directions side by side (scripts/common.sh)
#   ULMFIT_DATA: data root (default ../shared/data); RUNS: output root (default runs/$PRESET)
#   TOKENIZER=spacy (default) | sentencepiece (scripts/common.sh; SP_VOCAB pieces, default 15000,
#   MultiFiT's size); MAX_VOCAB (words: default 30000 for small, 60000 for full);
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

case $TOKENIZER in
    spacy) vocab_options=(--max_vocab "${MAX_VOCAB:-$vocab}") ;;
    sentencepiece) vocab_options=(--tokenizer sentencepiece --sp_vocab_size "${SP_VOCAB:-15000}") ;;
    *) echo "TOKENIZER must be spacy or sentencepiece, not '$TOKENIZER'" >&2; exit 2 ;;
esac
# same_corpus PATTERN PROBLEM EXAMPLE: stop unless RUNS's tokenized Wikipedia (if any) was made with
# this run's settings, its config.json holding PATTERN: every recipe folder under RUNS starts from it.
same_corpus() {
    local config="$RUNS/wiki/tok/config.json"
    [ ! -f "$config" ] || grep -q "$1" "$config" && return 0
    echo "$RUNS/wiki $2; give it its own RUNS (e.g. RUNS=$3): the recipes' folders under RUNS all" \
         "start from its language models" >&2
    exit 2
}
same_corpus "/wikipedia/$train\"" "holds Wikipedia other than WIKI=$WIKI ($train)" "runs/$WIKI"
same_corpus "\"tokenizer\": \"$TOKENIZER\"" "was tokenized with another tokenizer than TOKENIZER=$TOKENIZER" runs/sp
wiki_docs=$([ "$PRESET" = tiny ] && echo "--max_docs 20" || true)
ulmfit tokenize --train "$DATA/wikipedia/$train" --valid "$DATA/wikipedia/valid.jsonl.xz" \
    "${vocab_options[@]}" $wiki_docs --out "$RUNS/wiki/tok" >/dev/null
# pretrain DIR: the DIR language model, unless it is done.
pretrain() {
    local lm="$RUNS/wiki/lm_$1"
    done_ "$lm" && return 0
    echo "== pretrain the $1 language model on Wikipedia ($train)" >&2
    ulmfit pretrain --data "$RUNS/wiki/tok" --out "$lm" --preset "$PRESET" $(backwards "$1") $(resume "$lm") \
        $(opt epochs "${LM_EPOCHS:-$([ "$PRESET" = cpu ] && echo $epochs || true)}") $(opt max_steps "${MAX_STEPS:-}") >/dev/null
}
each_direction "$RUNS/wiki/pretrain" pretrain
echo "wiki language models: $RUNS/wiki/lm_{${DIRECTIONS// /,}}"
