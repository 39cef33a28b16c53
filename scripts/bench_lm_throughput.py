"""Training throughput of the AWD-LSTM language model against a plain-LSTM bound.

Both models have the same layers (embedding, one LSTM per layer with the preset's sizes,
decoder tied to the embedding); "awd-lstm" is ``ulmfit.model.LanguageModel`` in training
mode with all five dropouts and the AR/TAR penalty, "plain nn.LSTM" uses ``nn.LSTM`` with
no dropout at all. A step is forward + cross-entropy over the vocabulary + backward + Adam,
on random tokens, with the hidden state carried (detached) between steps. The two models
alternate step by step, so load from other processes hits both alike.

    python scripts/bench_lm_throughput.py --preset cpu --steps 20
    python scripts/bench_lm_throughput.py --preset paper --steps 5 --warmup 3
    python scripts/bench_lm_throughput.py --preset paper --device cuda --bf16 --steps 50
"""
from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

from ulmfit.model import LanguageModel, ar_tar_penalty, detach_state, make_config


class PlainLM(nn.Module):
    """The no-regularization bound: the same sizes and tying, stock ``nn.LSTM`` layers."""

    def __init__(self, cfg):
        super().__init__()
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.emb_size)
        self.lstms = nn.ModuleList(nn.LSTM(i, o, batch_first=True) for i, o in cfg.layer_sizes())
        self.decoder = nn.Linear(cfg.emb_size, cfg.vocab_size)
        self.decoder.weight = self.embedding.weight

    def forward(self, tokens, state=None):
        x = self.embedding(tokens)
        new_state = []
        for i, lstm in enumerate(self.lstms):
            x, layer_state = lstm(x, None if state is None else state[i])
            new_state.append(layer_state)
        return self.decoder(x), new_state


def awd_step(model, tokens, targets, state):
    out = model(tokens, state)
    loss = F.cross_entropy(out.logits.flatten(0, 1), targets.flatten())
    loss = loss + ar_tar_penalty(out.last_raw, out.last_dropped, model.cfg.ar_alpha, model.cfg.tar_beta)
    return loss, out.state


def plain_step(model, tokens, targets, state):
    logits, state = model(tokens, state)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten()), state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--vocab", type=int, default=30000)
    parser.add_argument("--bs", type=int, default=64)
    parser.add_argument("--bptt", type=int, default=70)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per model first")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    cfg = make_config(args.preset, args.vocab)
    runs = {
        "awd-lstm (all dropouts)": (LanguageModel(cfg).to(device).train(), awd_step),
        "plain nn.LSTM (no dropout)": (PlainLM(cfg).to(device).train(), plain_step),
    }
    optimizers = {name: torch.optim.Adam(model.parameters(), lr=1e-3) for name, (model, _) in runs.items()}
    states = dict.fromkeys(runs)
    seconds = dict.fromkeys(runs, 0.0)

    def train_step(name, tokens, targets):
        model, step = runs[name]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            loss, state = step(model, tokens, targets, states[name])
        optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        optimizers[name].step()
        states[name] = detach_state(state)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for i in range(args.warmup + args.steps):
        batch = torch.randint(0, cfg.vocab_size, (args.bs, args.bptt + 1), device=device)
        tokens, targets = batch[:, :-1], batch[:, 1:]
        for name in runs:
            sync()
            start = time.perf_counter()
            train_step(name, tokens, targets)
            sync()
            if i >= args.warmup:
                seconds[name] += time.perf_counter() - start

    n_tokens = args.steps * args.bs * args.bptt
    rates = {name: n_tokens / s for name, s in seconds.items()}
    bound = rates["plain nn.LSTM (no dropout)"]
    print(
        f"preset={args.preset} emb={cfg.emb_size} hidden={cfg.hidden_size} layers={cfg.n_layers} "
        f"vocab={cfg.vocab_size} batch={args.bs}x{args.bptt} device={args.device} bf16={args.bf16} "
        f"threads={torch.get_num_threads()} steps={args.steps} (+{args.warmup} warmup) "
        f"loadavg={' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(f"{'model':<28} {'tokens/s':>10} {'ratio':>6}")
    for name, rate in rates.items():
        print(f"{name:<28} {rate:>10.0f} {rate / bound:>6.3f}")


if __name__ == "__main__":
    main()
