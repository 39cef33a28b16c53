import json
from pathlib import Path

import pytest

from ulmfit.cli import main
from ulmfit.errors import UlmfitError
from ulmfit.ablations import find_row
from ulmfit.report import display_name, mean_std, report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(folder: Path, test_error: float, valid_curve: list[float] | None = None, **metrics) -> None:
    """A seed folder as ``ulmfit train`` + ``ulmfit evaluate`` leave it (only the files the report reads)."""
    folder.mkdir(parents=True)
    if valid_curve:
        metrics["best_valid_error"] = min(valid_curve)
        (folder / "log.jsonl").write_text("".join(json.dumps({"epoch": i + 1, "valid_error": e, "train_loss": 1.0})
                                                  + "\n" for i, e in enumerate(valid_curve)))
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "eval_test.json").write_text(json.dumps({"error_rate": test_error, "accuracy": 1 - test_error}))


@pytest.fixture
def runs(tmp_path) -> Path:
    root = tmp_path / "trec6"
    clf = root / "classifier"
    # rows in the order of their folders' numbers, named and given the paper's figure by the spec
    make_run(clf / "09-freez+discr+stlr" / "seed0", 0.03, [0.07, 0.05], time_s=40.0, peak_rss_mb=300.0)
    make_run(clf / "09-freez+discr+stlr" / "seed1", 0.05, [0.08, 0.06], time_s=50.0, peak_rss_mb=310.0)
    for seed, (test, valid, time) in enumerate([(0.10, 0.08, 10.0), (0.12, 0.09, 20.0), (0.14, 0.10, 30.0)]):
        make_run(clf / "01-scratch" / f"seed{seed}", test, [0.2, valid], time_s=time)
    make_run(clf / "02-full" / "seed0", 0.05, [0.06], time_s=12.0, peak_rss_mb=250.0)
    make_run(clf / "03-ensemble" / "seed0", 0.04)  # no row of the spec; minimal metrics: test error only
    (clf / "04-broken" / "seed0").mkdir(parents=True)
    (clf / "04-broken" / "seed0" / "metrics.json").write_text("{}")  # trained, never evaluated
    (root / "lms" / "01-none" / "seed0").mkdir(parents=True)  # an interrupted language model
    lm = root / "lms" / "02-fwd" / "seed0"  # a finished one: left out, it is no run
    lm.mkdir(parents=True)
    (lm / "encoder.pt").write_bytes(b"")
    (lm / "metrics.json").write_text("{}")
    make_run(root / "pretraining" / "01-none" / "seed0", 0.11, [0.12], time_s=5.0)
    make_run(root / "pretraining" / "02-wiki" / "seed0", 0.06, [0.07], time_s=6.0)
    for method, n, errors in [("ulmfit", "100", (0.2, 0.3)), ("scratch", "100", (0.5, 0.6)),
                              ("ulmfit", "all", (0.05, 0.07)), ("scratch", "all", (0.1, 0.12))]:
        order = "01" if method == "ulmfit" else "03"
        for seed, error in enumerate(errors):
            make_run(root / "lowshot" / f"{order}-{method}-n{n}" / f"seed{seed}", error, [error, error],
                     time_s=1.0, train_docs=100 if n == "100" else 4907)
    return root


def table_lines(markdown: str, table: str) -> list[str]:
    """The Markdown table lines under ``## table``."""
    section = markdown.split(f"## {table}\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("|")]


def test_tables_hold_hand_computed_statistics_in_prefix_order(runs, tmp_path):
    result = report(str(runs), out=str(tmp_path / "out"))
    markdown = Path(result["report"]).read_text(encoding="utf-8")
    assert result["runs"] == 17 and f"`{runs}`" in markdown and "17 runs" in markdown
    assert table_lines(markdown, "classifier") == [
        "| row | seeds | test error % | valid error % | time/run s | peak RSS MB | paper valid error % |",
        "|---|---|---|---|---|---|---|",
        # test 10, 12, 14 %: mean 12, sample std 2; valid 8, 9, 10 %; time 10, 20, 30 s
        "| scratch | 3 | 12.00 ± 2.00 | 9.00 ± 1.00 | 20 | – | 13.36 |",
        "| full | 1 | 5.00 ± – | 6.00 ± – | 12 | 250 | 6.86 |",
        "| 03-ensemble | 1 | 4.00 ± – | – | – | – | – |",
        # test 3, 5 %: std sqrt(2); valid 5, 6 %: std sqrt(0.5); the largest peak memory
        "| freez+discr+stlr | 2 | 4.00 ± 1.41 | 5.50 ± 0.71 | 45 | 310 | 5.69 |",
    ]
    assert table_lines(markdown, "pretraining") == [  # no run recorded memory: no column
        "| row | seeds | test error % | valid error % | time/run s | paper valid error % |",
        "|---|---|---|---|---|---|",
        "| none | 1 | 11.00 ± – | 12.00 ± – | 5 | 10.67 |",
        "| wiki | 1 | 6.00 ± – | 7.00 ± – | 6 | 5.69 |",
    ]
    assert [line.split(" | ")[0] for line in table_lines(markdown, "lowshot")[2:]] == [
        "| ulmfit-n100", "| ulmfit-nall", "| scratch-n100", "| scratch-nall"]
    assert "## lms" not in markdown


def test_skipped_folders_are_reported(runs, tmp_path):
    result = report(str(runs), out=str(tmp_path / "out"))
    assert sorted(result["skipped"]) == [str(runs / "classifier" / "04-broken" / "seed0"),
                                         str(runs / "lms" / "01-none" / "seed0")]
    markdown = Path(result["report"]).read_text(encoding="utf-8")
    skipped = markdown.split("## Skipped folders\n", 1)[1]
    assert "`classifier/04-broken/seed0`: no eval_test.json" in skipped
    assert "`lms/01-none/seed0`: no metrics.json or eval_test.json" in skipped


def test_plots_are_png_files_linked_from_the_report(runs):
    result = report(str(runs))  # default: written into the runs folder
    assert Path(result["report"]) == runs / "report.md"
    names = sorted(Path(p).name for p in result["plots"])
    assert names == sorted(["classifier_error.png", "classifier_training.png", "pretraining_error.png",
                            "pretraining_training.png", "lowshot_error.png", "lowshot_curve.png",
                            "lowshot_training.png"])
    markdown = (runs / "report.md").read_text(encoding="utf-8")
    for name in names:
        assert (runs / name).read_bytes()[:8] == PNG_MAGIC
        assert f"]({name})" in markdown
    assert report(str(runs))["runs"] == 17  # the report's own files do not disturb a rerun


def test_machine_facts_are_listed(tmp_path):
    make_run(tmp_path / "t" / "01-a" / "seed0", 0.1, machine={"cpu": "2 cores", "gpu": None})
    make_run(tmp_path / "t" / "01-a" / "seed1", 0.1, machine={"cpu": "2 cores", "gpu": None})
    markdown = Path(report(str(tmp_path))["report"]).read_text(encoding="utf-8")
    assert "- machine: cpu 2 cores, gpu None (2 runs)" in markdown


def test_missing_or_empty_folders_are_errors(tmp_path):
    with pytest.raises(UlmfitError, match="nope: folder not found"):
        report(str(tmp_path / "nope"))
    with pytest.raises(UlmfitError, match="no runs found"):
        report(str(tmp_path))
    (tmp_path / "t" / "01-a" / "seed0").mkdir(parents=True)
    with pytest.raises(UlmfitError, match="no runs found"):
        report(str(tmp_path))
    assert not (tmp_path / "report.md").exists()


def test_cli_prints_paths_and_run_count(runs, tmp_path, capsys):
    main(["report", str(runs), "--out", str(tmp_path / "out")])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["runs"] == 17 and result["report"] == str(tmp_path / "out" / "report.md")
    assert all(Path(p).exists() for p in result["plots"])


def test_names_and_statistics():
    assert display_name("classifier", "09-freez+discr+stlr") == "freez+discr+stlr"
    assert display_name("tricks", "01-label_smoothing_alpha=0.2") == "01-label_smoothing_alpha=0.2"  # not a default
    assert find_row("lowshot", "01-ulmfit-n50").lowshot == ("ulmfit", 50)  # any size
    assert find_row("lowshot", "02-semisup-nall").lowshot == ("semisup", None)
    assert find_row("classifier", "02-full").lowshot is None
    assert mean_std([1.0, 2.0, 6.0]) == (3.0, pytest.approx(2.6458, abs=1e-4))
    assert mean_std([4.0]) == (4.0, None)
