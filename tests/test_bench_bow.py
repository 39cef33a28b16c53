"""scripts/bench_bow_baseline.py: its features and an end-to-end run on TREC-6."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from ulmfit.text.corpus import TokenizedSplit

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_bow_baseline.py"
spec = importlib.util.spec_from_file_location("bench_bow_baseline", SCRIPT)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_bag_of_words_is_binary_and_reads_only_the_first_tokens():
    split = TokenizedSplit(ids=np.array([5, 5, 7, 9, 3, 3]), offsets=np.array([0, 4, 6]))
    x = bench.bag_of_words(split, np.array([1, 0]), vocab_size=10, max_tokens=3).to_dense()
    assert x[0].nonzero().flatten().tolist() == [3]
    assert x[1].nonzero().flatten().tolist() == [5, 7]  # 9 is past max_tokens, 5 counted once
    assert x.max() == 1


def test_baseline_learns_trec6_from_300_questions(trec_tok):
    result = subprocess.run([sys.executable, str(SCRIPT), str(trec_tok), "--max_train", "300"],
                            capture_output=True, text=True, check=True)
    summary = result.stdout.strip().splitlines()[-1]
    assert "300 train" in summary and "500 test documents" in summary
    # the majority class is 72% test error; words alone do far better
    assert float(re.search(r"test error ([\d.]+)%", summary).group(1)) < 50


def test_baseline_names_the_folder_without_labels(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert result.returncode != 0 and str(tmp_path) in result.stderr and "Traceback" not in result.stderr
