# Sourced by the recipes after `cd` to the repository root: the shared settings and steps.
#   PRESET=cpu (default) | paper | tiny;  ULMFIT_DATA: data root (default ../shared/data);
#   RUNS: output root (default runs/$PRESET);
#   MODELS: the classifiers a recipe trains and averages, each a Wikipedia LM of its own:
#     fwd | bwd: words (spaCy rules, each set its own vocabulary), read forward | backward;
#     sp_fwd | sp_bwd: subwords (SentencePiece pieces learnt on Wikipedia, shared by every set).
#     Default "fwd sp_fwd" (words and subwords, forward; README.md, "Default: words and subwords");
#     e.g. MODELS=fwd for one model, MODELS="fwd bwd" for the paper's forward + backward pair.
#   PARALLEL=1: the models run side by side rather than one after the other (see each_model).
# They are exported, for the recipes a recipe calls.
set -euo pipefail
PRESET=${PRESET:-cpu}
DATA=${ULMFIT_DATA:-../shared/data}
RUNS=${RUNS:-runs/$PRESET}
MODELS=${MODELS:-fwd sp_fwd}
PARALLEL=${PARALLEL:-0}
export PRESET RUNS MODELS PARALLEL ULMFIT_DATA=$DATA
for model in $MODELS; do
    case $model in
        fwd | bwd | sp_fwd | sp_bwd) ;;
        *) echo "MODELS: '$model' is not a model (fwd, bwd, sp_fwd, sp_bwd)" >&2; exit 2 ;;
    esac
done

# opt NAME VALUE: "--NAME VALUE" when VALUE is set (an optional override), else nothing.
opt() { [ -n "${2:-}" ] && echo "--$1 $2"; true; }
# backwards MODEL: "--backwards" for a backward model, else nothing.
backwards() { [[ "$1" = *bwd ]] && echo "--backwards"; true; }
# tok MODEL: the name of the tokenized folders MODEL reads: tok (words) or tok_sp (subwords).
tok() { [[ "$1" = sp_* ]] && echo tok_sp || echo tok; }
# toks: the tokenized folders the MODELS need, each once.
toks() { local model; for model in $MODELS; do tok "$model"; done | sort -u; }

# tokenize_set ROOT TOKENIZE-OPTIONS...: a target set tokenized into ROOT/<tok> for each of toks,
# unless done. Words get the set's own vocabulary (fine-tuning maps the Wikipedia LM's onto it);
# subwords must be Wikipedia's pieces, which the LM was trained on.
tokenize_set() {
    local root=$1 folder
    shift
    for folder in $(toks); do
        ulmfit tokenize "$@" $([ "$folder" = tok_sp ] && echo "--vocab_from $RUNS/wiki/tok_sp") \
            --out "$root/$folder" >/dev/null
    done
}

# done_ DIR: the stage writing DIR has finished (it writes metrics.json last).
done_() { [ -f "$1/metrics.json" ]; }

# resume DIR: "--resume" when an interrupted run left its checkpoint in DIR, else DIR is cleared
# (a run stopped before its first checkpoint starts over).
resume() { if [ -f "$1/last.pt" ]; then echo "--resume"; else rm -rf "$1"; fi; }

# each_model LOG STEP ARGS...: "STEP MODEL ARGS..." for each of MODELS, one after the other.
# With PARALLEL=1 they run side by side, each at OMP_NUM_THREADS=<cores / models> unless that is
# set, with its stderr (progress bars) in LOG_<model>.log: on a busy 2-core machine two one-thread
# runs got more done than one two-thread run (README.md, "Models side by side").
each_model() {
    local log=$1 step=$2 model pids=() failed=() threads i=0
    shift 2
    if [ "$PARALLEL" != 1 ]; then
        for model in $MODELS; do "$step" "$model" "$@"; done
        return 0
    fi
    threads=${OMP_NUM_THREADS:-$(( $(nproc) / $(wc -w <<< "$MODELS") ))}
    threads=$((threads > 0 ? threads : 1))
    mkdir -p "$(dirname "$log")"
    for model in $MODELS; do
        echo "== $model in the background at $threads thread(s): ${log}_$model.log" >&2
        (export OMP_NUM_THREADS=$threads; "$step" "$model" "$@") 2> "${log}_$model.log" &
        pids+=($!)
    done
    for model in $MODELS; do
        wait "${pids[i]}" || failed+=("$model (see ${log}_$model.log)")
        i=$((i + 1))
    done
    if [ ${#failed[@]} -gt 0 ]; then echo "failed: ${failed[*]}" >&2; return 1; fi
}

# classify ROOT TRAIN-OPTIONS...: ULMFiT's stages 2 and 3 on a set tokenized by tokenize_set, for
# each of MODELS (each_model: PARALLEL=1 runs them side by side): the Wikipedia LM
# $RUNS/wiki/lm_<model> fine-tuned on ROOT/<tok> (ROOT/lm_<model>), the classifier trained on it
# (ROOT/clf_<model>) and evaluated on the test split; then, with two models or more, their
# average (ulmfit ensemble, each on its own tokens: ROOT/eval_test.json).
# FT_EPOCHS, CLF_EPOCHS, MAX_STEPS override the presets.
classify() {
    local root=$1 model members=() data=()
    shift
    each_model "$root/log" classify_model "$root" "$@"
    for model in $MODELS; do members+=("$root/clf_$model"); data+=("$root/$(tok "$model")"); done
    if [ ${#members[@]} -gt 1 ]; then
        ulmfit ensemble --models "$(IFS=,; echo "${members[*]}")" --data "$(IFS=,; echo "${data[*]}")" \
            --split test --out "$root" >/dev/null
        echo "ensemble: $root/eval_test.json"
    fi
}

# classify_model MODEL ROOT TRAIN-OPTIONS...: one model's fine-tuning, classifier and evaluation.
classify_model() {
    local model=$1 root=$2 ft clf data
    shift 2
    ft="$root/lm_$model"; clf="$root/clf_$model"; data="$root/$(tok "$model")"
    if ! done_ "$ft"; then
        echo "== fine-tune the $model language model on $data" >&2
        ulmfit finetune --pretrained "$RUNS/wiki/lm_$model" --data "$data" --out "$ft" $(backwards "$model") \
            $(resume "$ft") $(opt epochs "${FT_EPOCHS:-}") $(opt max_steps "${MAX_STEPS:-}") >/dev/null
    fi
    if ! done_ "$clf"; then
        echo "== train the $model classifier" >&2
        ulmfit train --encoder "$ft" --data "$data" --out "$clf" $(backwards "$model") $(resume "$clf") \
            $(opt epochs "${CLF_EPOCHS:-}") $(opt max_steps "${MAX_STEPS:-}") "$@" >/dev/null
    fi
    [ -f "$clf/eval_test.json" ] || ulmfit evaluate --model "$clf" --data "$data" --split test >/dev/null
    echo "$model: $clf/eval_test.json"
}
