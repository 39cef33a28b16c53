"""The recipes in scripts/ on the tiny preset with a few steps: folders, skipping on a rerun."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from locations import REPO_ROOT, data_root
from ulmfit.tricks import list_tricks


def run_script(name: str, runs: Path, **settings: str) -> subprocess.CompletedProcess:
    """Run scripts/<name> on the tiny preset into ``runs``; it must succeed.

    This checkout's package goes first on PYTHONPATH, so the ``ulmfit`` console script (which may
    be installed from another checkout) runs this code. The recipes' default MODELS applies unless
    ``settings`` names one.
    """
    inherited = {k: v for k, v in os.environ.items() if k != "MODELS"}
    env = {**inherited, "PRESET": "tiny", "RUNS": str(runs), "OMP_NUM_THREADS": "1",
           "ULMFIT_DATA": str(data_root()), "PYTHONPATH": os.pathsep.join(
               p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p), **settings}
    result = subprocess.run(["bash", str(REPO_ROOT / "scripts" / name)], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def read(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def trec6(tmp_path_factory):
    """The outputs of scripts/trec6.sh (tiny, 8 steps per stage) with the word models forward and
    backward side by side, which the other recipes (ablate's direction table) start from."""
    if not (data_root() / "trec").exists() or not (data_root() / "wikipedia").exists():
        pytest.skip("TREC or Wikipedia data not found under the data root")
    runs = tmp_path_factory.mktemp("runs")
    return runs, run_script("trec6.sh", runs, MAX_STEPS="8", PARALLEL="1", MODELS="fwd bwd")


@pytest.mark.slow
def test_trec6_recipe_runs_end_to_end_on_the_tiny_preset(trec6):
    runs, _ = trec6
    report = read(runs / "trec" / "ensemble_test.json")
    assert [m["backwards"] for m in report["models"]] == [False, True]
    assert report["ensemble"]["n"] == 500
    for lm in ("lm_fwd", "lm_bwd"):  # pretrained by scripts/pretrain_wiki.sh
        assert read(runs / "wiki" / lm / "metrics.json")["steps"] == 8
    for log in ("wiki/pretrain_fwd.log", "wiki/pretrain_bwd.log", "trec/log_fwd.log", "trec/log_bwd.log"):
        assert "epoch 1" in (runs / log).read_text()  # PARALLEL=1: each model's progress in its log
    # a rerun (one model after the other) skips every finished stage
    again = run_script("trec6.sh", runs, MAX_STEPS="8", MODELS="fwd bwd")
    assert "epoch 1" not in again.stderr and "==" not in again.stderr


@pytest.mark.slow
def test_pretraining_on_the_other_wikipedia_into_the_same_runs_is_refused(trec6):
    runs, _ = trec6  # its Wikipedia LMs are train-small's
    env = {**os.environ, "PRESET": "tiny", "RUNS": str(runs), "WIKI": "full", "ULMFIT_DATA": str(data_root())}
    result = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "pretrain_wiki.sh")], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"{runs}/wiki holds Wikipedia other than WIKI=full" in result.stderr and "RUNS=runs/full" in result.stderr


@pytest.mark.slow
def test_the_default_models_are_words_and_subwords_each_reading_their_own_tokens_averaged(tmp_path):
    if not (data_root() / "trec").exists() or not (data_root() / "wikipedia").exists():
        pytest.skip("TREC or Wikipedia data not found under the data root")
    runs = tmp_path / "runs"
    run_script("trec6.sh", runs, MAX_STEPS="4")
    assert read(runs / "wiki" / "tok" / "tokenizer.json")["kind"] == "spacy"
    assert read(runs / "wiki" / "tok_sp" / "tokenizer.json")["kind"] == "sentencepiece"
    assert read(runs / "wiki" / "lm_sp_fwd" / "config.json")["data"] == f"{runs}/wiki/tok_sp"
    assert read(runs / "trec" / "tok_sp" / "config.json")["vocab_from"] == f"{runs}/wiki/tok_sp"
    assert read(runs / "trec" / "clf_sp_fwd" / "eval_test.json")["n"] == 500
    mixed = read(runs / "trec" / "ensemble_test.json")
    assert [(m["model"], m["data"]) for m in mixed["models"]] == [
        (f"{runs}/trec/clf_fwd", f"{runs}/trec/tok"), (f"{runs}/trec/clf_sp_fwd", f"{runs}/trec/tok_sp")]
    assert mixed["ensemble"]["n"] == 500
    if (data_root() / "mpqa" / "train.csv").exists():  # devsuite's table: a column per model
        run_script("devsuite.sh", runs, SETS="mpqa", MAX_STEPS="4")
        table = (runs / "devsuite.txt").read_text().splitlines()
        assert table[0].split() == ["set", "fwd", "sp_fwd", "ensemble", "bow", "floor", "tf-idf", "floor"]
        error = read(runs / "mpqa" / "ensemble_test.json")["ensemble"]["error_rate"]
        assert table[1].split()[3] == f"{100 * error:.2f}"
        run_script("devsuite.sh", runs, SETS="mpqa", MAX_STEPS="4", MODELS="fwd")  # one model averages nothing,
        assert (runs / "devsuite.txt").read_text().splitlines()[1].split()[2] == "-"  # not the pair's above


def test_an_unknown_model_name_is_refused_before_any_work():
    result = subprocess.run(["bash", "-c", "source scripts/common.sh"], cwd=REPO_ROOT,
                            env={**os.environ, "MODELS": "fwd words_bwd"}, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "MODELS: 'words_bwd' is not a model (fwd, bwd, sp_fwd, sp_bwd)" in result.stderr


@pytest.mark.slow
def test_ablation_tables_write_a_folder_per_row_and_seed_and_a_rerun_skips_them(trec6):
    runs, _ = trec6
    settings = {"SEEDS": "0", "MAX_STEPS": "4", "LOWSHOT": "100 all",
                "TABLES": "pretraining lm_finetune direction lowshot"}
    result = run_script("ablate.sh", runs, **settings)
    out = runs / "ablations" / "trec6"
    rows = {"pretraining": ["01-none", "02-wiki"],
            "lm_finetune": ["01-none", "02-full", "03-full+discr", "04-full+discr+stlr"],
            "direction": ["01-fwd", "02-bwd", "03-ensemble"],
            "lowshot": ["01-ulmfit-n100", "01-ulmfit-nall", "02-semisup-n100", "02-semisup-nall",
                        "03-scratch-n100", "03-scratch-nall", "04-semisup+pseudo-n100"]}
    for table, names in rows.items():
        assert sorted(p.name for p in (out / table).iterdir()) == names
        for name in names:
            run = out / table / name / "seed0"
            assert 0 <= read(run / "eval_test.json")["error_rate"] <= 1 and (run / "metrics.json").exists()
    assert f"results: {out}" in result.stdout

    def lm_of(table: str, row: str) -> dict:
        return read(Path(read(out / table / row / "seed0" / "config.json")["encoder"]) / "config.json")

    assert lm_of("pretraining", "01-none")["pretrained"] is None
    assert read(out / "lms" / "not-finetuned" / "metrics.json")["steps"] == 0
    assert (lm_of("lm_finetune", "02-full")["disc_factor"], lm_of("lm_finetune", "02-full")["schedule"]) == (
        1.0, "constant")
    assert lm_of("direction", "02-bwd")["backwards"]
    pseudo = read(out / "lowshot" / "04-semisup+pseudo-n100" / "seed0" / "metrics.json")["pseudo_label_rounds"]
    assert [r["round"] for r in pseudo] == [0, 1]
    ensemble = read(out / "direction" / "03-ensemble" / "seed0" / "ensemble_test.json")
    assert [m["backwards"] for m in ensemble["models"]] == [False, True]
    members = [str(out / "direction" / row / "seed0") for row in ("01-fwd", "02-bwd")]
    assert read(out / "direction" / "03-ensemble" / "seed0" / "config.json")["models"] == members  # ensemble --out
    assert lm_of("lowshot", "01-ulmfit-n100")["max_train"] == 100
    assert lm_of("lowshot", "01-ulmfit-n100")["min_steps"] == read(runs / "trec" / "lm_fwd" / "metrics.json")["steps"]
    # the default forward classifier is trained once per seed and copied into the rows that are it
    shared = (("pretraining", "02-wiki"), ("lm_finetune", "04-full+discr+stlr"), ("lowshot", "02-semisup-nall"))
    for table, row in shared:
        assert f"== {table}/{row}" not in result.stderr
        assert read(out / table / row / "seed0" / "eval_test.json") == read(out / "direction/01-fwd/seed0/eval_test.json")
    assert lm_of("lowshot", "02-semisup-n100")["max_train"] is None
    assert read(out / "lowshot" / "03-scratch-n100" / "seed0" / "metrics.json")["train_docs"] == 100
    # N=all: the supervised LM reads every labelled question, the classifiers take no --max_train
    n_train = read(runs / "trec" / "tok" / "metrics.json")["splits"]["train"]["docs"]
    assert lm_of("lowshot", "01-ulmfit-nall")["max_train"] == n_train
    assert read(out / "lowshot" / "03-scratch-nall" / "seed0" / "config.json")["max_train"] is None

    again = run_script("ablate.sh", runs, **settings)
    assert "==" not in again.stderr


@pytest.mark.slow
def test_tricks_table_has_a_baseline_and_a_row_per_trick_with_peak_memory(trec6):
    runs, _ = trec6
    run_script("tricks.sh", runs, SEEDS="0", MAX_STEPS="4", TRICKS="label_smoothing(alpha=0.2)",
               OPTIONS="--optimizer=lamb,--lr=0.1")
    out = runs / "ablations" / "trec6" / "tricks"
    assert sorted(p.name for p in out.iterdir()) == ["00-baseline", "01-label_smoothing_alpha=0.2",
                                                     "20-tta4", "21-optimizer=lamb_lr=0.1"]
    lamb = read(out / "21-optimizer=lamb_lr=0.1" / "seed0" / "config.json")
    assert (lamb["optimizer"], lamb["lr"], lamb["tricks"]) == ("lamb", 0.1, {})
    assert read(out / "01-label_smoothing_alpha=0.2" / "seed0" / "config.json")["tricks"] == {
        "label_smoothing": {"alpha": 0.2}}
    assert read(out / "00-baseline" / "seed0" / "config.json")["tricks"] == {}
    assert read(out / "00-baseline" / "seed0" / "metrics.json")["peak_rss_mb"] > 50
    assert (out / "00-baseline" / "seed0" / "eval_test.json").exists()
    assert read(out / "20-tta4" / "seed0" / "eval_test.json")["tta"] == 4
    baseline_weights = (out / "00-baseline" / "seed0" / "model.pt").read_bytes()
    assert (out / "20-tta4" / "seed0" / "model.pt").read_bytes() == baseline_weights


def run_each_model(tmp_path: Path, parallel: str, models: str) -> subprocess.CompletedProcess:
    """scripts/common.sh's each_model over ``models`` with a step that fails on bwd."""
    script = f"""source scripts/common.sh
step() {{ echo "$1 $2 ${{OMP_NUM_THREADS:-}}" >> {tmp_path}/ran; echo "$1 progress" >&2; [ "$1" = fwd ]; }}
each_model {tmp_path}/logs/log step ARG"""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MODELS")}
    return subprocess.run(["bash", "-c", script], cwd=REPO_ROOT,
                          env={**env, "PARALLEL": parallel, "MODELS": models},
                          capture_output=True, text=True, timeout=60)


def test_each_model_side_by_side_splits_the_cores_and_names_the_failed_models_log(tmp_path):
    result = run_each_model(tmp_path, "1", "bwd fwd")
    assert result.returncode == 1
    assert f"failed: bwd (see {tmp_path}/logs/log_bwd.log)" in result.stderr
    assert (tmp_path / "logs" / "log_fwd.log").read_text() == "fwd progress\n"
    assert (tmp_path / "logs" / "log_bwd.log").read_text() == "bwd progress\n"
    cores = int(subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout)
    threads = str(max(1, cores // 2))
    assert sorted((tmp_path / "ran").read_text().split("\n")[:-1]) == [f"bwd ARG {threads}", f"fwd ARG {threads}"]


def test_each_model_in_turn_stops_at_the_first_failure(tmp_path):
    result = run_each_model(tmp_path, "0", "bwd fwd")
    assert result.returncode == 1
    assert result.stderr == "bwd progress\n" and not (tmp_path / "logs").exists()
    assert (tmp_path / "ran").read_text() == "bwd ARG \n"  # fwd never started


def test_default_tricks_row_list_names_every_classifier_trick_but_pseudo_label():
    read_list = "source <(grep ^DEFAULT_TRICKS= scripts/ablate.sh); echo $DEFAULT_TRICKS"
    listed = subprocess.run(["bash", "-c", read_list], cwd=REPO_ROOT, capture_output=True, text=True,
                            check=True).stdout.split()
    assert "--accumulate=2" in listed  # the trick of earlier versions, as its option
    names = sorted(spec.split("(")[0] for spec in listed if not spec.startswith("--"))
    classifier_tricks = sorted(name for name, trick in list_tricks().items()
                               if "classifier" in trick["stages"] and name != "pseudo_label")
    assert names == classifier_tricks


@pytest.mark.slow
def test_imdb_recipe_runs_on_a_balanced_subset(trec6):
    if not (data_root() / "imdb" / "aclImdb_v1.tar.xz").exists():
        pytest.skip("IMDb archive not found under the data root")
    runs, _ = trec6
    run_script("imdb.sh", runs, IMDB_DOCS="20", IMDB_UNSUP="30", MODELS="fwd", MAX_STEPS="4")
    root = runs / "imdb" / "20u30"
    subset = root / "reviews" / "aclImdb"
    counts = {f"{split}/{c}": len(list((subset / split / c).iterdir()))
              for split, classes in (("train", ("pos", "neg", "unsup")), ("test", ("pos", "neg"))) for c in classes}
    assert counts == {"train/pos": 10, "train/neg": 10, "train/unsup": 30, "test/pos": 10, "test/neg": 10}
    tokenized = read(root / "tok" / "metrics.json")
    assert tokenized["classes"] == 2 and tokenized["splits"]["train"]["docs"] == 50
    report = read(root / "clf_fwd" / "eval_test.json")
    assert report["n"] == 20 and report["unlabelled"] == 0
    assert read(root / "clf_fwd" / "config.json")["max_tokens"] == 400


@pytest.mark.slow
def test_devsuite_recipe_tabulates_each_set_against_its_floors(trec6):
    if not all((data_root() / name / "train.csv").exists() for name in ("cr", "mpqa")):
        pytest.skip("CR or MPQA data not found under the data root")
    runs, _ = trec6
    result = run_script("devsuite.sh", runs, SETS="cr mpqa", MAX_STEPS="4", MODELS="fwd bwd")
    for name, n_test in (("cr", 377), ("mpqa", 1060)):
        assert read(runs / name / "tok" / "metrics.json")["splits"]["test"]["docs"] == n_test
        assert read(runs / name / "clf_bwd" / "eval_test.json")["n"] == n_test
    table = (runs / "devsuite.txt").read_text().splitlines()
    assert table[0].split() == ["set", "fwd", "bwd", "ensemble", "bow", "floor", "tf-idf", "floor"]
    rows = {line.split()[0]: line.split()[1:] for line in table[1:]}
    assert set(rows) == {"cr", "mpqa"}
    for name, values in rows.items():  # fwd, bwd, ensemble, bow floor, tf-idf floor
        ensemble = read(runs / name / "ensemble_test.json")["ensemble"]["error_rate"]
        assert values[2] == f"{100 * ensemble:.2f}" and 0 <= float(values[3]) <= 100
        assert 5 < float(values[4]) < 30  # TF-IDF + logistic regression learns both sets
    assert result.stdout.splitlines()[-3:] == table
