#!/usr/bin/env python3
"""Benchmark ``ulmfit tokenize`` (not a test): MB/s and peak memory on one input.

Runs the stage as a child process on FILE (any format ``ulmfit tokenize`` reads) and prints
the throughput the stage measured (text MB/s, reading and decompression included), the wall
time, the peak RSS of the largest process (``getrusage`` of the children) and the peak of the
summed RSS of the stage's process tree (sampled from /proc), plus the machine load.

With --limit_mb/--limit_docs the first documents are first copied to a temporary JSONL file
(not timed), so a slice of a big corpus can be measured quickly.

    python scripts/bench_tokenize.py ../shared/data/wikipedia/train.jsonl.xz --limit_mb 60
    python scripts/bench_tokenize.py ../shared/data/wikipedia/train.jsonl.xz            # full
    python scripts/bench_tokenize.py ../shared/data/imdb/aclImdb_v1.tar.xz:aclImdb/train --unsup
    python scripts/bench_tokenize.py FILE --tokenizer sentencepiece --workers 2
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ulmfit.text.readers import DocumentSource, ReadOptions  # noqa: E402


def write_slice(spec: str, options: ReadOptions, folder: Path, limit_mb: float | None, limit_docs: int | None) -> tuple[Path, int, float]:
    """Copy the first documents of ``spec`` to ``folder/slice.jsonl``; returns path, docs, MB."""
    path = folder / "slice.jsonl"
    n, size = 0, 0
    with open(path, "w", encoding="utf-8") as f:
        for text, label in DocumentSource(spec, options):
            f.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")
            n += 1
            size += len(text.encode("utf-8"))
            if (limit_docs and n >= limit_docs) or (limit_mb and size >= limit_mb * 1e6):
                break
    return path, n, size / 1e6


def tree_rss_bytes(pid: int) -> int:
    """Summed RSS of a process and all its descendants, from /proc."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def run_stage(args: argparse.Namespace, train: str, out: Path, extra: list[str]) -> tuple[dict, float, int]:
    command = [sys.executable, "-m", "ulmfit", "tokenize", "--train", train, "--out", str(out),
               "--tokenizer", args.tokenizer, "--workers", str(args.workers), *extra]
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)
    peak = [0]

    def sample() -> None:
        while child.poll() is None:
            peak[0] = max(peak[0], tree_rss_bytes(child.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    child.wait()
    sampler.join()
    wall = time.perf_counter() - started
    if child.returncode != 0:
        sys.exit(f"ulmfit tokenize failed with status {child.returncode}")
    metrics = json.loads((out / "metrics.json").read_text())
    return metrics, wall, peak[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", help="input, e.g. ../shared/data/wikipedia/train.jsonl.xz")
    parser.add_argument("--tokenizer", default="spacy", choices=["spacy", "sentencepiece"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit_mb", type=float, default=None, help="only the first MB of text")
    parser.add_argument("--limit_docs", type=int, default=None, help="only the first documents")
    parser.add_argument("--format", default=None)
    parser.add_argument("--encoding", default="utf-8")
    parser.add_argument("--unsup", action="store_true", help="folder/tar trees: include unsup")
    parser.add_argument("--sp_sample_sentences", type=int, default=None)
    args = parser.parse_args()

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_tokenize.") as tmp:
        tmp = Path(tmp)
        train, extra = args.file, ["--encoding", args.encoding]
        if args.format:
            extra += ["--format", args.format]
        if args.unsup:
            extra += ["--unsup", "True"]
        if args.sp_sample_sentences:
            extra += ["--sp_sample_sentences", str(args.sp_sample_sentences)]
        if args.limit_mb or args.limit_docs:
            options = ReadOptions(format=args.format, encoding=args.encoding, unsup=args.unsup)
            path, n, mb = write_slice(args.file, options, tmp, args.limit_mb, args.limit_docs)
            print(f"slice: first {n} documents, {mb:.1f} MB of text -> {path.name}")
            train, extra = str(path), []
            if args.sp_sample_sentences:
                extra += ["--sp_sample_sentences", str(args.sp_sample_sentences)]
        metrics, wall, tree_peak = run_stage(args, train, tmp / "out", extra)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    split = metrics["splits"]["train"]
    print(f"input:       {args.file}" + (f" (slice of {split['mb']:.1f} MB)" if train != args.file else ""))
    print(f"tokenizer:   {args.tokenizer}, workers {metrics['workers']}"
          + (" (small input: one process)" if metrics["workers"] < args.workers else ""))
    print(f"documents:   {split['docs']}  tokens: {split['tokens']}  vocab: {metrics['vocab_size']}")
    print(f"throughput:  {split['mb_per_s']:.2f} MB/s ({split['mb']:.1f} MB of text in {split['seconds']:.1f} s, "
          f"reading included)")
    if args.tokenizer == "sentencepiece":
        print(f"prepare:     {metrics['prepare_seconds']:.1f} s (SentencePiece training)")
    print(f"wall time:   {wall:.1f} s for the whole command")
    print(f"peak RSS:    {tree_peak / 2**30:.2f} GiB summed over the process tree (sampled); "
          f"{usage.ru_maxrss / 2**20:.2f} GiB largest single process (getrusage)")
    cpu = usage.ru_utime + usage.ru_stime
    estimate = ""
    if args.tokenizer == "spacy":  # SentencePiece's CPU time is mostly training, not tokenizing
        estimate = (f" = {split['mb'] / cpu:.2f} MB per CPU-second (on an idle machine with "
                    f"{os.cpu_count()} CPUs at most ~{os.cpu_count() * split['mb'] / cpu:.1f} MB/s)")
    print(f"cpu time:    {cpu:.1f} s user+sys over all processes{estimate}")
    print(f"load avg:    {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after "
          f"(1 min; {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
