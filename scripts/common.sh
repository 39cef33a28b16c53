# Sourced by the recipes after `cd` to the repository root: the shared settings and steps.
#   PRESET=cpu (default) | paper | tiny;  ULMFIT_DATA: data root (default ../shared/data);
#   RUNS: output root (default runs/$PRESET);  DIRECTIONS="fwd bwd" (default) | fwd | bwd;
#   PARALLEL=1: the directions run side by side rather than one after the other (see each_direction);
#   TOKENIZER=spacy (default: words) | sentencepiece (subwords, one model trained on Wikipedia and
#   shared by every target set; give it its own RUNS, e.g. RUNS=runs/sp);
#   ENSEMBLE_WITH=OTHER_RUNS: classify also averages the set's classifiers with those the same recipe
#   trained under OTHER_RUNS (e.g. words with subwords: RUNS=runs/cpu ENSEMBLE_WITH=runs/sp).
# They are exported, for the recipes a recipe calls.
set -euo pipefail
PRESET=${PRESET:-cpu}
DATA=${ULMFIT_DATA:-../shared/data}
RUNS=${RUNS:-runs/$PRESET}
DIRECTIONS=${DIRECTIONS:-fwd bwd}
PARALLEL=${PARALLEL:-0}
TOKENIZER=${TOKENIZER:-spacy}
export PRESET RUNS DIRECTIONS PARALLEL TOKENIZER ULMFIT_DATA=$DATA

# opt NAME VALUE: "--NAME VALUE" when VALUE is set (an optional override), else nothing.
opt() { [ -n "${2:-}" ] && echo "--$1 $2"; true; }
# backwards DIR: "--backwards" for the backward direction, else nothing.
backwards() { [ "$1" = bwd ] && echo "--backwards"; true; }

# target_vocab: how a target set is tokenized. Words get the set's own vocabulary (fine-tuning maps
# the Wikipedia LM's onto it); subwords must be Wikipedia's pieces, which the LM was trained on.
target_vocab() { [ "$TOKENIZER" = sentencepiece ] && echo "--vocab_from $RUNS/wiki/tok"; true; }

# done_ DIR: the stage writing DIR has finished (it writes metrics.json last).
done_() { [ -f "$1/metrics.json" ]; }

# resume DIR: "--resume" when an interrupted run left its checkpoint in DIR, else DIR is cleared
# (a run stopped before its first checkpoint starts over).
resume() { if [ -f "$1/last.pt" ]; then echo "--resume"; else rm -rf "$1"; fi; }

# each_direction LOG STEP ARGS...: "STEP DIR ARGS..." for each DIR of DIRECTIONS, one after the other.
# With PARALLEL=1 they run side by side, each at OMP_NUM_THREADS=<cores / directions> unless that is
# set, with its stderr (progress bars) in LOG_<dir>.log: on a busy 2-core machine two one-thread runs
# got more done than one two-thread run (README.md, "Both directions side by side").
each_direction() {
    local log=$1 step=$2 dir pids=() failed=() threads i=0
    shift 2
    if [ "$PARALLEL" != 1 ]; then
        for dir in $DIRECTIONS; do "$step" "$dir" "$@"; done
        return 0
    fi
    threads=${OMP_NUM_THREADS:-$(( $(nproc) / $(wc -w <<< "$DIRECTIONS") ))}
    threads=$((threads > 0 ? threads : 1))
    mkdir -p "$(dirname "$log")"
    for dir in $DIRECTIONS; do
        echo "== $dir direction in the background at $threads thread(s): ${log}_$dir.log" >&2
        (export OMP_NUM_THREADS=$threads; "$step" "$dir" "$@") 2> "${log}_$dir.log" &
        pids+=($!)
    done
    for dir in $DIRECTIONS; do
        wait "${pids[i]}" || failed+=("$dir (see ${log}_$dir.log)")
        i=$((i + 1))
    done
    if [ ${#failed[@]} -gt 0 ]; then echo "failed: ${failed[*]}" >&2; return 1; fi
}

# classify TOK ROOT TRAIN-OPTIONS...: ULMFiT's stages 2 and 3 on a tokenized labelled folder, for
# each of DIRECTIONS (each_direction: PARALLEL=1 runs them side by side): the Wikipedia LM
# $RUNS/wiki/lm_<dir> fine-tuned on TOK (ROOT/lm_<dir>), the classifier trained on it (ROOT/clf_<dir>)
# and evaluated on the test split; then the ensemble of the directions (ROOT/ensemble_test.json),
# and with ENSEMBLE_WITH, of them and OTHER_RUNS's (ROOT/ensemble_with/ensemble_test.json).
# FT_EPOCHS, CLF_EPOCHS, MAX_STEPS override the presets.
classify() {
    local tok=$1 root=$2 dir members=() data=() other
    shift 2
    each_direction "$root/log" classify_direction "$tok" "$root" "$@"
    for dir in $DIRECTIONS; do members+=("$root/clf_$dir"); data+=("$tok"); done
    if [ ${#members[@]} -gt 1 ]; then
        ulmfit ensemble --models "$(IFS=,; echo "${members[*]}")" --data "$tok" --split test --out "$root" \
            >/dev/null
        echo "ensemble: $root/ensemble_test.json"
    fi
    if [ -n "${ENSEMBLE_WITH:-}" ]; then
        other=${root/#"$RUNS"/$ENSEMBLE_WITH}
        for dir in $DIRECTIONS; do members+=("$other/clf_$dir"); data+=("${tok/#"$RUNS"/$ENSEMBLE_WITH}"); done
        ulmfit ensemble --models "$(IFS=,; echo "${members[*]}")" --data "$(IFS=,; echo "${data[*]}")" \
            --split test --out "$root/ensemble_with" >/dev/null
        echo "ensemble with $other: $root/ensemble_with/ensemble_test.json"
    fi
}

# classify_direction DIR TOK ROOT TRAIN-OPTIONS...: classify's stages for one direction.
classify_direction() {
    local dir=$1 tok=$2 root=$3 ft clf
    shift 3
    ft="$root/lm_$dir"; clf="$root/clf_$dir"
    if ! done_ "$ft"; then
        echo "== fine-tune the $dir language model on $tok" >&2
        ulmfit finetune --pretrained "$RUNS/wiki/lm_$dir" --data "$tok" --out "$ft" $(backwards "$dir") $(resume "$ft") \
            $(opt epochs "${FT_EPOCHS:-}") $(opt max_steps "${MAX_STEPS:-}") >/dev/null
    fi
    if ! done_ "$clf"; then
        echo "== train the $dir classifier" >&2
        ulmfit train --encoder "$ft" --data "$tok" --out "$clf" $(backwards "$dir") $(resume "$clf") \
            $(opt epochs "${CLF_EPOCHS:-}") $(opt max_steps "${MAX_STEPS:-}") "$@" >/dev/null
    fi
    [ -f "$clf/eval_test.json" ] || ulmfit evaluate --model "$clf" --data "$tok" --split test >/dev/null
    echo "$dir: $clf/eval_test.json"
}
