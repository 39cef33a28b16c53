"""scripts/bench_tfidf_baseline.py: the TF-IDF floor on small CSV files, and its input errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_tfidf_baseline.py"


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("text,label\n" + "".join(f"{text},{label}\n" for text, label in rows))
    return path


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
