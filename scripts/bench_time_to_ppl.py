"""Time to perplexity: validation perplexity against training time for language-model settings.

Each variant is one `ulmfit pretrain --curve_every_s S` run on the same tokenized corpus (so the
same vocabulary), into OUT/VARIANT; a finished run is kept and an interrupted one resumed, so a
rerun only adds what is missing. The curves (perplexity on the first 100,000 validation tokens,
see --curve_every_s) go to OUT/curves.jsonl and OUT/time_to_ppl.png; the table printed at the end
gives, per variant, the training minutes until the curve first reached --target and the run's
final perplexity on the whole valid split (metrics.json).

    python scripts/bench_time_to_ppl.py --data runs/cpu/wiki/tok --out runs/bench/ttp
    python scripts/bench_time_to_ppl.py --data runs/cpu/wiki/tok --out runs/bench/ttp \\
        --variant "cpu-3ep=--epochs 3" --variant "cpu-lr2e-2=--lr 0.02"

Built-in variants (--variants): ``round1`` is the `cpu` preset as it was before the adaptive
softmax and bf16 (full softmax, float32, one epoch); ``cpu`` is the `cpu` preset as it is now.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

BUILT_IN = {
    "round1": "--preset cpu --softmax_cutoffs 0 --precision fp32 --epochs 1",
    "cpu": "--preset cpu",
}


def run_variant(data: Path, folder: Path, options: str, every_s: float) -> None:
    """``ulmfit pretrain`` into ``folder`` unless it finished; resumed when it was interrupted."""
    if (folder / "metrics.json").exists():
        return
    resume = ["--resume"] if (folder / "last.pt").exists() else []
    command = ["ulmfit", "pretrain", "--data", str(data), "--out", str(folder), "--curve_every_s", str(every_s),
               *shlex.split(options), *resume]
    print("$ " + shlex.join(command), file=sys.stderr)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def minutes_to(points: list[dict], target: float) -> float | None:
    """Training minutes at the first curve point at or below ``target`` (None: never reached)."""
    return next((p["train_s"] / 60 for p in points if p["valid_ppl"] <= target), None)


def plot(curves: dict[str, list[dict]], target: float, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in curves.items():
        ax.plot([p["train_s"] / 60 for p in points], [p["valid_ppl"] for p in points], marker=".", label=name)
    ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:g}")
    ax.set_yscale("log")
    ax.set_xlabel("training time (minutes, evaluation excluded)")
    ax.set_ylabel("validation perplexity (first 100k tokens)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="tokenized corpus with a valid split")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", default="round1,cpu", help="built-in variants, comma-separated")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=OPTIONS",
                        help="an extra variant: a name and `ulmfit pretrain` options")
    parser.add_argument("--every_s", type=float, default=60.0, help="seconds of training between curve points")
    parser.add_argument("--target", type=float, default=124.9,
                        help="perplexity to reach (default: the round-1 default's after its epoch)")
    args = parser.parse_args()

    variants = {name: BUILT_IN[name] for name in args.variants.split(",") if name}
    for spec in args.variant:
        name, _, options = spec.partition("=")
        variants[name] = options
    for name, options in variants.items():
        run_variant(args.data, args.out / name, options, args.every_s)

    curves = {name: read_jsonl(args.out / name / "curve.jsonl") for name in variants}
    lines = [json.dumps({"variant": name, **point}) for name, points in curves.items() for point in points]
    (args.out / "curves.jsonl").write_text("\n".join(lines) + "\n")
    plot(curves, args.target, args.out / "time_to_ppl.png")
    print(f"{'variant':<16} {'min to target':>13} {'train min':>9} {'tok/s':>7} {'valid ppl':>9}   options")
    for name, points in curves.items():
        metrics = json.loads((args.out / name / "metrics.json").read_text())
        reached = minutes_to(points, args.target)
        print(f"{name:<16} {'never' if reached is None else f'{reached:.1f}':>13} "
              f"{metrics['train_time_s'] / 60:>9.1f} {metrics['tokens_per_s']:>7.0f} "
              f"{metrics['final_valid_ppl']:>9.1f}   {variants[name]}")
    print(f"curves: {args.out / 'curves.jsonl'}, plot: {args.out / 'time_to_ppl.png'}")


if __name__ == "__main__":
    main()
