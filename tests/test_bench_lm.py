"""The language-model benchmarks run end to end on tiny settings (their figures are not checked)."""
import json
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def test_throughput_benchmark_prints_a_row_per_model():
    out = subprocess.run([sys.executable, str(SCRIPTS / "bench_lm_throughput.py"), "--preset", "tiny", "--vocab", "300",
                          "--cutoffs", "50,100", "--bs", "4", "--bptt", "8", "--steps", "2", "--warmup", "1"],
                         capture_output=True, text=True, check=True).stdout
    rows = {line.split()[0] + " " + line.split()[1] for line in out.splitlines()[2:]}
    assert {"full fp32", "full bf16", "adaptive fp32", "adaptive bf16"} <= rows


def test_time_to_perplexity_benchmark_trains_each_variant_and_writes_curves(ptb_tok, tmp_path):
    out = tmp_path / "ttp"
    command = [sys.executable, str(SCRIPTS / "bench_time_to_ppl.py"), "--data", str(ptb_tok), "--out", str(out),
               "--variants", "", "--every_s", "0.01", "--target", "1e9",
               "--variant", "full=--preset tiny --max_steps 4 --softmax_cutoffs 0",
               "--variant", "adaptive=--preset tiny --max_steps 4 --softmax_cutoffs 100,1000"]
    printed = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    curves = [json.loads(line) for line in (out / "curves.jsonl").read_text().splitlines()]
    assert {c["variant"] for c in curves} == {"full", "adaptive"}
    assert (out / "time_to_ppl.png").stat().st_size > 0
    assert "adaptive" in printed and "never" not in printed  # the target 1e9 is reached at the first point
    again = subprocess.run(command, capture_output=True, text=True, check=True).stdout  # finished runs are kept
    assert again.splitlines()[1:] == printed.splitlines()[1:]
