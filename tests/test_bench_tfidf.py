"""scripts/bench_tfidf_baseline.py: the TF-IDF floor on small CSV files, on a classifier's held-out
documents, and its input errors."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from ulmfit.classifier.selection import labelled_docs
from ulmfit.stages.tokenize import tokenize

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_tfidf_baseline.py"


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("text,label\n" + "".join(f"{text},{label}\n" for text, label in rows))
    return path


def load_script():
    spec = importlib.util.spec_from_file_location("bench_tfidf_baseline", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(*args: Path | str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def test_floor_separates_classes_that_words_tell_apart(tmp_path):
    good = ["a great film", "great acting and a great plot", "simply great", "great fun"]
    bad = ["an awful film", "awful acting", "simply awful", "awful and dull"]
    train = write_csv(tmp_path / "train.csv", [(t, "pos") for t in good] + [(t, "neg") for t in bad])
    test = write_csv(tmp_path / "test.csv", [("great music", "pos"), ("awful music", "neg"), ("dull", "neg")])
    result = run(train, test)
    assert result.returncode == 0, result.stderr
    assert "8 train, 3 test documents: test error 0.00%" in result.stdout


def test_test_labels_unseen_in_training_are_an_error_naming_the_file(tmp_path):
    train = write_csv(tmp_path / "train.csv", [("good", "pos"), ("bad", "neg")])
    test = write_csv(tmp_path / "test.csv", [("fine", "neutral")])
    result = run(train, test)
    assert result.returncode != 0
    assert f"{test}: labels not in the training input: neutral" in result.stderr
    assert "Traceback" not in result.stderr


def test_held_out_of_fits_the_classifiers_training_documents_and_scores_the_ones_it_holds_out(tmp_path):
    # The held-out documents are named by their text, so the check covers the mapping from the
    # tokenized folder's indices back to the raw input: document i must stay document i.
    rows = [(f"great film number{i}", "pos") if i % 2 else (f"awful film number{i}", "neg") for i in range(40)]
    train = write_csv(tmp_path / "train.csv", rows)
    test = write_csv(tmp_path / "test.csv", [("great", "pos"), ("awful", "neg")])
    tokenize(str(train), out=str(tmp_path / "tok"), workers=1)
    chosen = labelled_docs(tmp_path / "tok", 2, seed=3)
    script = load_script()
    fit, held = script.classifier_split(str(train), {"format": None, "encoding": "utf-8", "text_field": "text",
                                                     "label_field": None}, tmp_path / "tok", 3)
    assert held == ([rows[i][0] for i in chosen.valid_docs], [rows[i][1] for i in chosen.valid_docs])
    assert fit == ([rows[i][0] for i in chosen.train_docs], [rows[i][1] for i in chosen.train_docs])
    assert len(held[1]) == 4 and sorted(fit[0] + held[0]) == sorted(text for text, _ in rows)

    result = run(train, test, "--held_out_of", tmp_path / "tok", "--seed", 3)
    assert result.returncode == 0, result.stderr
    assert "36 train, 4 held out (seed 3): validation error 0.00%, 2 test documents: test error 0.00%" \
        in result.stdout


def test_held_out_of_a_folder_of_other_documents_is_an_error_naming_it(tmp_path):
    train = write_csv(tmp_path / "train.csv", [("good", "pos"), ("bad", "neg")] * 5)
    other = write_csv(tmp_path / "other.csv", [("bad", "neg"), ("good", "pos")] * 5)
    tokenize(str(other), out=str(tmp_path / "tok"), workers=1)
    result = run(train, train, "--held_out_of", tmp_path / "tok")
    assert result.returncode != 0
    assert f"{tmp_path / 'tok'}: does not hold the documents of {train} in their order" in result.stderr
    assert "Traceback" not in result.stderr
