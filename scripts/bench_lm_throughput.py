"""Training throughput of the AWD-LSTM language model: output layers, precisions, and fastai.

Each row is a model in training mode with all its dropouts and AR/TAR, trained on the same random
batches (token ids drawn from a Zipf law over the vocabulary, as word frequencies in text are, which
matters for the adaptive softmax): forward + loss + backward + Adam step, the hidden state carried (detached) between steps.
The rows alternate step by step in one process, so load from other processes hits all alike and
the ratios hold even on a busy machine. Rows:

* ``full fp32``: ``ulmfit.model.LanguageModel`` with the full softmax in float32 (the round-1 default);
* ``adaptive fp32`` / ``adaptive bf16``: the adaptive softmax (``--cutoffs``), without and with
  bf16 autocast (``--precision``'s bf16);
* ``full bf16``;
* ``adaptive bf16 compiled``: the same under ``torch.compile`` (its compilation runs in the warmup
  steps, which need to be enough for it);
* ``fastai fp32`` / ``fastai bf16``: fastai's ``get_language_model(AWD_LSTM, ...)`` with the same
  sizes, when fastai is importable (install it in a separate venv; it is never a dependency).

    python scripts/bench_lm_throughput.py --preset cpu --steps 20
    python scripts/bench_lm_throughput.py --preset paper --vocab 60000 --steps 5 --warmup 2
    python scripts/bench_lm_throughput.py --preset cpu --device cuda --steps 50
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import time
from typing import Callable

import torch
import torch.nn.functional as F

from ulmfit.model import LanguageModel, ar_tar_penalty, detach_state, make_config
from ulmfit.presets import PRESETS


def ulmfit_row(cfg, bf16: bool, compiled: bool = False) -> tuple[torch.nn.Module, Callable, bool]:
    model = LanguageModel(cfg)
    forward = torch.compile(model) if compiled else model

    def step(tokens, targets, state):
        out = forward(tokens, state)
        loss = model.loss(out, targets) + ar_tar_penalty(out.last_raw, out.last_dropped, cfg.ar_alpha, cfg.tar_beta)
        return loss, detach_state(out.state)

    return model, step, bf16


def fastai_row(cfg, bf16: bool) -> tuple[torch.nn.Module, Callable, bool]:
    from fastai.text.models import AWD_LSTM, awd_lstm_lm_config, get_language_model
    config = {**awd_lstm_lm_config, "emb_sz": cfg.emb_size, "n_hid": cfg.hidden_size, "n_layers": cfg.n_layers}
    model = get_language_model(AWD_LSTM, cfg.vocab_size, config=config, drop_mult=cfg.drop_mult)

    def step(tokens, targets, state):  # fastai's encoder carries and detaches its hidden state itself
        logits, raw, dropped = model(tokens)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        loss = loss + ar_tar_penalty(raw, dropped, cfg.ar_alpha, cfg.tar_beta)
        return loss, None

    return model, step, bf16


def fastai_available() -> bool:
    try:
        import fastai.text.models  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    parser.add_argument("--vocab", type=int, default=30000)
    parser.add_argument("--cutoffs", default="2000,10000", help="adaptive softmax cutoffs, comma-separated")
    parser.add_argument("--bs", type=int, default=64)
    parser.add_argument("--bptt", type=int, default=70)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per row first")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--rows", default=None, help="comma-separated row names (default: all available)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    full = make_config(args.preset, args.vocab, softmax_cutoffs=())
    adaptive = dataclasses.replace(full, softmax_cutoffs=tuple(int(c) for c in args.cutoffs.split(",")))
    builders = {
        "full fp32": lambda: ulmfit_row(full, False),
        "full bf16": lambda: ulmfit_row(full, True),
        "adaptive fp32": lambda: ulmfit_row(adaptive, False),
        "adaptive bf16": lambda: ulmfit_row(adaptive, True),
        "adaptive bf16 compiled": lambda: ulmfit_row(adaptive, True, compiled=True),
    }
    if fastai_available():
        builders["fastai fp32"] = lambda: fastai_row(full, False)
        builders["fastai bf16"] = lambda: fastai_row(full, True)
    names = args.rows.split(",") if args.rows else [name for name in builders if "compiled" not in name]
    rows = {name: builders[name]() for name in names}
    for model, _, _ in rows.values():
        model.to(device).train()
    optimizers = {name: torch.optim.Adam(model.parameters(), lr=1e-3) for name, (model, _, _) in rows.items()}
    states = dict.fromkeys(rows)
    seconds = dict.fromkeys(rows, 0.0)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    zipf = 1.0 / torch.arange(1, args.vocab + 1, dtype=torch.float64)
    for i in range(args.warmup + args.steps):
        batch = torch.multinomial(zipf, args.bs * (args.bptt + 1), replacement=True).view(args.bs, -1).to(device)
        tokens, targets = batch[:, :-1], batch[:, 1:]
        for name, (model, step, bf16) in rows.items():
            sync()
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss, states[name] = step(tokens, targets, states[name])
            optimizers[name].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[name].step()
            sync()
            if i >= args.warmup:
                seconds[name] += time.perf_counter() - start

    n_tokens = args.steps * args.bs * args.bptt
    rates = {name: n_tokens / s for name, s in seconds.items()}
    reference = rates.get("fastai fp32", rates[names[0]])
    print(f"preset={args.preset} emb={full.emb_size} hidden={full.hidden_size} layers={full.n_layers} "
          f"vocab={args.vocab} cutoffs={list(adaptive.softmax_cutoffs)} batch={args.bs}x{args.bptt} "
          f"device={args.device} threads={torch.get_num_threads()} steps={args.steps} (+{args.warmup} warmup) "
          f"loadavg={' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'row':<24} {'tokens/s':>10} {'ratio':>6}   (ratio to {'fastai fp32' if 'fastai fp32' in rates else names[0]})")
    for name, rate in rates.items():
        print(f"{name:<24} {rate:>10.0f} {rate / reference:>6.2f}")


if __name__ == "__main__":
    main()
