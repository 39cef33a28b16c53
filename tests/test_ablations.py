"""The ablation tables as data (ulmfit.ablations) and the options the driver derives from them."""
import json

from ulmfit.ablations import (BWD, DEFAULT_TRICKS, FWD, LM, SCRATCH, find_row, lowshot_rows, tables,
                              tricks_rows, wiki_directions)
from ulmfit.stages.ablate import Setup, encoder_options, lm_options
from ulmfit.tricks import list_tricks


def test_default_tricks_are_every_classifier_trick_but_pseudo_label():
    classifier_tricks = {name for name, trick in list_tricks().items()
                         if "classifier" in trick["stages"] and name != "pseudo_label"}
    assert sorted(spec.split("(")[0] for spec in DEFAULT_TRICKS if not spec.startswith("--")) == sorted(
        classifier_tricks)
    assert "--accumulate=2" in DEFAULT_TRICKS  # the trick of earlier versions, as its option


def test_folders_are_numbered_and_unique_in_each_table():
    for table, rows in tables().items():
        folders = [row.folder for row in rows]
        assert len(set(folders)) == len(folders), table
        assert all(folder[:2].isdigit() and folder[2] == "-" for folder in folders)


def test_the_default_classifiers_are_shared_from_the_direction_table():
    shared = {(table, row.folder): row.shared.folder for table, rows in tables(lowshot=("100", "all")).items()
              for row in rows if row.shared}
    assert shared == {("pretraining", "02-wiki"): "01-fwd", ("lm_finetune", "04-full+discr+stlr"): "01-fwd",
                      ("direction", "01-fwd"): "01-fwd", ("direction", "02-bwd"): "02-bwd",
                      ("lowshot", "02-semisup-nall"): "01-fwd"}


def test_only_the_direction_table_needs_the_backward_wikipedia_lm():
    # the recipes' default MODELS pretrains no backward word LM, so ablate checks for it by table
    needs = {table: wiki_directions(rows) for table, rows in tables(lowshot=("100", "all")).items()}
    assert needs == {"classifier": set(), "pretraining": {False}, "lm_finetune": {False},
                     "direction": {False, True}, "lowshot": {False}, "tricks": set()}


def test_paper_figures_only_where_the_paper_has_the_row():
    figures = {table: {row.name: row.paper for row in rows if row.paper is not None} for table, rows in tables().items()}
    assert figures["pretraining"] == {"none": 10.67, "wiki": 5.69}  # Table 4
    assert figures["lm_finetune"] == {"none": 6.38, "full": 6.54, "full+discr": 6.36, "full+discr+stlr": 5.69}  # 6
    assert len(figures["classifier"]) == 9 and figures["classifier"]["last"] == 16.09  # Table 7
    assert figures["direction"] == figures["lowshot"] == figures["tricks"] == {}


def test_rows_of_settings_are_named_as_the_scripts_name_them():
    rows = tricks_rows(("label_smoothing(alpha=0.2)", "fgm,ema"), ("--optimizer=lamb,--lr=0.1",))
    assert [r.folder for r in rows] == ["00-baseline", "20-tta4", "01-label_smoothing_alpha=0.2", "02-fgm+ema",
                                        "21-optimizer=lamb_lr=0.1"]
    assert rows[-1].train == ("--optimizer=lamb", "--lr=0.1")
    assert [r.folder for r in lowshot_rows("all")] == ["01-ulmfit-nall", "02-semisup-nall", "03-scratch-nall"]
    assert find_row("lowshot", "04-semisup+pseudo-n7").train == ("--max_train", "7", "--tricks", "pseudo_label")
    assert find_row("tricks", "05-unknown") is None


def test_language_models_repeat_the_length_of_the_trec_lm(tmp_path):
    lm_fwd, tok = tmp_path / "trec" / "lm_fwd", tmp_path / "trec" / "tok"
    for folder, config, metrics in ((lm_fwd, {"epochs": 3, "max_steps": None}, {"steps": 42}),
                                    (tok, {}, {"splits": {"train": {"docs": 900}}})):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "metrics.json").write_text(json.dumps(metrics))
    setup = Setup(tmp_path, "tiny", None)
    assert lm_options(setup, BWD, "1") == ("--pretrained", str(tmp_path / "wiki" / "lm_bwd"), "--seed", "1",
                                           "--backwards", "--epochs", "3")
    assert lm_options(setup, LM("u", labelled="all"), "0")[4:8] == ("--max_train", "900", "--min_steps", "42")
    assert lm_options(setup, LM("none", "pretrain"), "0")[:2] == ("--preset", "tiny")
    assert lm_options(Setup(tmp_path, "tiny", 4), FWD, "0")[-4:] == ("--epochs", "3", "--max_steps", "4")
    assert lm_options(setup, LM("n", options=("--epochs", "0"), seeded=False, full_length=False), "0") == (
        "--pretrained", str(tmp_path / "wiki" / "lm_fwd"), "--epochs", "0")
    assert encoder_options(setup, find_row("classifier", "01-scratch"), "0") == ("--from_scratch", "--preset", "tiny")
    assert find_row("classifier", "01-scratch").encoder == SCRATCH
