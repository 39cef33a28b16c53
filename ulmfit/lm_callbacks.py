"""The language-model side of the training loop, as :class:`Trainer` callbacks: carrying the hidden
state across BPTT windows (with perplexities in the metrics), AWD-LSTM's AR/TAR penalty, and a
validation curve against training time."""
from __future__ import annotations

import json
import time
from pathlib import Path

from . import distributed
from .files import write_text
from .model.awd_lstm import ar_tar_penalty, detach_state
from .training import Callback, Trainer, perplexity


class LMWindows(Callback):
    """What reading a token stream in windows needs (AWD-LSTM):

    * the hidden state is carried from window to window of the same rows and detached between
      them (a fresh state at the start of every epoch and every evaluation);
    * each training window's learning rates are scaled by ``seq_len / bptt``, so a short window
      does not weigh as much as a full one;
    * perplexities join the metrics.
    """

    def __init__(self, bptt: int):
        self.bptt = bptt
        self.state = None        # carried across training windows
        self.eval_state = None   # carried across evaluation windows

    def before_batch(self, trainer: Trainer) -> None:
        if trainer.training:
            if trainer.batch_index == 0:
                self.state = None
            scale = trainer.batch.seq_len / self.bptt
            for group in trainer.optimizer.param_groups:
                group["lr"] *= scale
        state = self.state if trainer.training else self.eval_state
        trainer.inputs = (*trainer.inputs, state)

    def after_forward(self, trainer: Trainer) -> None:
        state = detach_state(trainer.output.state)
        if trainer.training:
            self.state = state
        else:
            self.eval_state = state

    def before_eval(self, trainer: Trainer) -> None:
        self.eval_state = None

    def after_eval(self, trainer: Trainer) -> None:
        self.eval_state = None
        trainer.eval_metrics["ppl"] = perplexity(trainer.eval_metrics["loss"])

    def after_epoch(self, trainer: Trainer) -> None:
        trainer.metrics["train_ppl"] = perplexity(trainer.metrics["train_loss"])

    def state_dict(self) -> dict:
        if self.state is None:
            return {}
        return {"h": [h for h, _ in self.state], "c": [c for _, c in self.state]}

    def load_state_dict(self, state: dict) -> None:
        self.state = list(zip(state["h"], state["c"])) if state else None


class ARTAR(Callback):
    """Adds AWD-LSTM's activation (AR) and temporal activation (TAR) penalties to training losses.

    Needs ``trainer.output.last_raw`` and ``last_dropped``; the reported losses stay pure.
    """

    def __init__(self, alpha: float, beta: float):
        self.alpha, self.beta = alpha, beta

    def after_loss(self, trainer: Trainer) -> None:
        if trainer.training and (self.alpha or self.beta):
            out = trainer.output
            trainer.loss = trainer.loss + ar_tar_penalty(out.last_raw, out.last_dropped, self.alpha, self.beta)


class ValidationCurve(Callback):
    """Validation perplexity against training time: every ``every_s`` seconds of training (evaluation
    excluded) and at the end, the loss on ``data`` (a few validation windows, so that it is quick)
    as a JSON line ``{"train_s", "step", "tokens", "valid_loss", "valid_ppl"}`` of ``path``. For
    comparing how fast settings learn (``scripts/bench_time_to_ppl.py``)."""

    def __init__(self, data, every_s: float, path: Path):
        self.data, self.every_s, self.path = data, every_s, path
        self.train_s, self.tokens, self.points = 0.0, 0, []
        self.clock = time.perf_counter()

    def before_epoch(self, trainer: Trainer) -> None:
        self.clock = time.perf_counter()

    def after_step(self, trainer: Trainer) -> None:
        now = time.perf_counter()
        self.train_s += now - self.clock
        self.tokens += trainer.batch.n_tokens
        if distributed.main_decides(self.train_s >= (len(self.points) + 1) * self.every_s):
            self.record(trainer)
        self.clock = time.perf_counter()

    def after_fit(self, trainer: Trainer) -> None:
        self.record(trainer)

    def record(self, trainer: Trainer) -> None:
        loss = trainer.evaluate(self.data)["loss"]
        self.points.append({"train_s": round(self.train_s, 2), "step": trainer.step, "tokens": self.tokens,
                            "valid_loss": loss, "valid_ppl": perplexity(loss)})
        if distributed.is_main():
            write_text(self.path, "".join(json.dumps(point) + "\n" for point in self.points))

    def state_dict(self) -> dict:
        return {"train_s": self.train_s, "tokens": self.tokens, "points": self.points}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.train_s, self.tokens, self.points = state["train_s"], state["tokens"], state["points"]
