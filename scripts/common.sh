# Sourced by the recipes after `cd` to the repository root: the shared settings and steps.
#   PRESET=cpu (default) | paper | tiny;  ULMFIT_DATA: data root (default ../shared/data);
#   RUNS: output root (default runs/$PRESET);  DIRECTIONS="fwd bwd" (default) | fwd | bwd.
# They are exported, for the recipes a recipe calls.
set -euo pipefail
PRESET=${PRESET:-cpu}
DATA=${ULMFIT_DATA:-../shared/data}
RUNS=${RUNS:-runs/$PRESET}
DIRECTIONS=${DIRECTIONS:-fwd bwd}
export PRESET RUNS DIRECTIONS ULMFIT_DATA=$DATA

# opt NAME VALUE: "--NAME VALUE" when VALUE is set (an optional override), else nothing.
opt() { [ -n "${2:-}" ] && echo "--$1 $2"; true; }

# done_ DIR: the stage writing DIR has finished (it writes metrics.json last).
done_() { [ -f "$1/metrics.json" ]; }

# resume DIR: "--resume" when an interrupted run left its checkpoint in DIR, else DIR is cleared
# (a run stopped before its first checkpoint starts over).
resume() { if [ -f "$1/last.pt" ]; then echo "--resume"; else rm -rf "$1"; fi; }

# classify TOK ROOT TRAIN-OPTIONS...: ULMFiT's stages 2 and 3 on a tokenized labelled folder, for
# each of DIRECTIONS: the Wikipedia LM $RUNS/wiki/lm_<dir> fine-tuned on TOK (ROOT/lm_<dir>), the
# classifier trained on it (ROOT/clf_<dir>) and evaluated on the test split; then the ensemble of
# the directions (ROOT/ensemble_test.json). FT_EPOCHS, CLF_EPOCHS, MAX_STEPS override the presets.
classify() {
    local tok=$1 root=$2 dir back ft clf members=()
    shift 2
    for dir in $DIRECTIONS; do
        back=$([ "$dir" = bwd ] && echo "--backwards" || true)
        ft="$root/lm_$dir"; clf="$root/clf_$dir"
        if ! done_ "$ft"; then
            echo "== fine-tune the $dir language model on $tok" >&2
            ulmfit finetune --pretrained "$RUNS/wiki/lm_$dir" --data "$tok" --out "$ft" $back $(resume "$ft") \
                $(opt epochs "${FT_EPOCHS:-}") $(opt max_steps "${MAX_STEPS:-}") >/dev/null
        fi
        if ! done_ "$clf"; then
            echo "== train the $dir classifier" >&2
            ulmfit train --encoder "$ft" --data "$tok" --out "$clf" $back $(resume "$clf") \
                $(opt epochs "${CLF_EPOCHS:-}") $(opt max_steps "${MAX_STEPS:-}") "$@" >/dev/null
        fi
        [ -f "$clf/eval_test.json" ] || ulmfit evaluate --model "$clf" --data "$tok" --split test >/dev/null
        members+=("$clf")
        echo "$dir: $clf/eval_test.json"
    done
    if [ ${#members[@]} -gt 1 ]; then
        ulmfit ensemble --models "$(IFS=,; echo "${members[*]}")" --data "$tok" --split test --out "$root" \
            >/dev/null
        echo "ensemble: $root/ensemble_test.json"
    fi
}
