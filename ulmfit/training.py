"""One training loop for every stage, extended through callbacks.

:class:`Trainer` runs epochs of batches and owns checkpoints, logs and resume; everything specific
to a task or a training trick is a :class:`Callback` that reads and changes the trainer's state at
named hook points, ``before_*``/``after_*``. A run goes ``before_fit -> [before_epoch -> batches
-> before_eval -> evaluation batches -> after_eval -> after_epoch] x epochs -> after_fit``, and a
training batch through::

    before_batch -> forward -> after_forward -> loss -> after_loss -> before_backward
    -> backward -> after_backward -> before_step -> [clip -> optimizer step -> zero grads]
    -> after_step

and an evaluation batch through ``before_batch``, ``after_forward`` and ``after_loss`` only
(``trainer.training`` tells which). In training, the forward, the loss and the hooks between them
run under the run's precision (autocast for bf16/fp16, see :mod:`ulmfit.precision`); backward and
step run outside it. Evaluation is always float32, so validation losses compare across
precisions. Callbacks may replace ``trainer.inputs`` (before the forward), ``trainer.output`` or
``trainer.loss``, scale the learning rates set for the batch, set ``trainer.skip_step`` in
``before_step`` (gradients then keep accumulating into the next batch) or
``trainer.stop_training`` anywhere. Callbacks run in the order given unless one states an
``order`` (ascending, stable) because it must run before or after others at the same hook.

``trainer.backward(loss)`` backpropagates a loss; tricks that add a loss call it too. The trainer
owns the two things that change every backward and step: precision (under fp16 the loss is
scaled, the gradients unscaled before clipping and a step whose gradients overflowed is skipped;
a GradScaler, saved in checkpoints) and gradient accumulation (``accumulate`` batches per
optimizer step, every loss divided by the size of its group, see :func:`accumulation_group`).
``export_weights`` lets a callback choose the weights that are evaluated and saved as the best
(e.g. an exponential average).

Data sources give batches with ``inputs`` (the model's positional arguments), ``target``,
``n_tokens`` and ``to(device)``, and have ``n_batches(epoch)`` and ``batches(epoch, start)``; the
batches of an epoch must depend only on the epoch, which makes resuming exact.

Under torchrun (:mod:`ulmfit.distributed`) every rank runs this loop on its share of each batch:
gradients are averaged over the ranks before each step, evaluation and epoch sums are summed over
them, and rank 0 alone writes files and shows progress.

One module of ~500 lines on purpose: the loop, checkpoints, resume, precision and accumulation
read and write the same trainer state; the task- and trick-specific parts are already callbacks elsewhere.
"""
from __future__ import annotations

import json
import math
import pickle
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import torch
from torch import Tensor, nn
from tqdm import tqdm

from . import distributed
from .artefacts import BEST_WEIGHTS, LAST_CHECKPOINT, LOG
from .errors import UlmfitError
from .files import atomic_path, write_text
from .precision import PRECISIONS, autocast
from .progress import progress_bar
from .optim import Lamb
from .schedules import Schedule



class Batch(Protocol):
    inputs: tuple
    target: Tensor
    n_tokens: int

    def to(self, device: torch.device | str) -> "Batch": ...


class BatchSource(Protocol):
    def n_batches(self, epoch: int) -> int: ...

    def batches(self, epoch: int, start: int = 0) -> Iterator[Batch]: ...


class RepeatedPasses:
    """A training source whose every epoch chains ``passes`` passes over ``source`` (each one its
    own shuffle), so that a tiny training set still gets enough steps per epoch while the epochs
    (and gradual unfreezing, which counts them) keep their meaning. Pass ``p`` of epoch ``e`` is
    the source's epoch ``e * passes + p``; with one pass it is the source itself."""

    def __init__(self, source: BatchSource, passes: int):
        if passes < 1:
            raise ValueError(f"passes must be at least 1, got {passes}")
        self.source, self.passes = source, passes

    def _source_epochs(self, epoch: int) -> range:
        return range(epoch * self.passes, (epoch + 1) * self.passes)

    def n_batches(self, epoch: int = 0) -> int:
        return sum(self.source.n_batches(e) for e in self._source_epochs(epoch))

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[Batch]:
        for source_epoch in self._source_epochs(epoch):
            n = self.source.n_batches(source_epoch)
            if start < n:
                yield from self.source.batches(source_epoch, start)
            start = max(start - n, 0)


def passes_for(min_steps: int, epochs: int, batches_per_pass: int) -> int:
    """Passes over the data per epoch so that ``epochs`` epochs take at least ``min_steps`` steps."""
    if epochs < 1 or batches_per_pass < 1:
        return 1
    return max(1, math.ceil(min_steps / (epochs * batches_per_pass)))


def accumulation_group(batch_index: int, n_batches: int, steps: int, batches_left: int) -> tuple[int, int]:
    """``[start, end)``: the batches of the epoch whose gradients are summed into one step with
    batch ``batch_index``'s. Groups of ``steps`` batches from the start of the epoch; the last one
    ends with the epoch, or with the run (``batches_left`` counts this batch too), so that no
    gradient is left behind."""
    start = batch_index - batch_index % steps
    return start, min(start + steps, n_batches, batch_index + batches_left)


class Callback:
    """Base class: override the hooks you need; each receives the trainer and may change it.

    ``state_dict``/``load_state_dict`` let a callback with state (a carried hidden state, averaged
    weights) survive a resume; they must return and take plain tensors, numbers, lists and dicts.
    """

    order: int = 0  # callbacks run in ascending order; ties keep the order they were given in

    def before_fit(self, trainer: "Trainer") -> None: ...
    def before_epoch(self, trainer: "Trainer") -> None: ...
    def before_batch(self, trainer: "Trainer") -> None: ...
    def after_forward(self, trainer: "Trainer") -> None: ...
    def after_loss(self, trainer: "Trainer") -> None: ...
    def before_backward(self, trainer: "Trainer") -> None: ...
    def after_backward(self, trainer: "Trainer") -> None: ...
    def before_step(self, trainer: "Trainer") -> None: ...
    def after_step(self, trainer: "Trainer") -> None: ...
    def before_eval(self, trainer: "Trainer") -> None: ...
    def after_eval(self, trainer: "Trainer") -> None: ...
    def after_epoch(self, trainer: "Trainer") -> None: ...
    def after_fit(self, trainer: "Trainer") -> None: ...

    def export_weights(self, trainer: "Trainer", state: dict) -> dict:
        """The weights to save as the best (``state`` is the model's, or the previous callback's)."""
        return state

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None: ...


OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "lamb": Lamb}


def optimizer_class(kind: str) -> type[torch.optim.Optimizer]:
    """The optimizer called ``kind`` (configs check theirs early, before any work)."""
    if kind not in OPTIMIZERS:
        raise UlmfitError(f"unknown optimizer {kind!r} (--optimizer); choose one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[kind]


def make_optimizer(groups: Sequence[Sequence[nn.Parameter]], lrs: Sequence[float], kind: str = "adamw",
                   betas: tuple[float, float] = (0.9, 0.99), wd: float = 0.0) -> torch.optim.Optimizer:
    """Adam, AdamW or LAMB with one parameter group per layer group, each with its own base rate.

    ``base_lr`` is stored in every group; the trainer sets ``lr = base_lr * schedule(step)``.
    AdamW decouples weight decay from the adaptive step; Adam adds it to the gradient; LAMB
    decouples it too and scales each tensor's step by its trust ratio (:mod:`ulmfit.optim`).
    """
    cls = optimizer_class(kind)
    if len(groups) != len(lrs):
        raise ValueError(f"{len(groups)} parameter groups but {len(lrs)} learning rates")
    param_groups = [{"params": list(g), "lr": lr, "base_lr": lr} for g, lr in zip(groups, lrs)]
    return cls(param_groups, betas=tuple(betas), weight_decay=wd)


def perplexity(loss: float) -> float:
    try:
        return math.exp(loss)
    except OverflowError:
        return float("inf")


class Trainer:
    """Trains ``model`` on ``train_data``, evaluating on ``valid_data`` after every epoch.

    State that callbacks read or change (attributes):
        model, optimizer, loss_fn, device, callbacks;
        epoch (0-based index of the epoch being trained), n_batches (batches in it),
        batch_index (batches of it done), step (training batches done in the whole run),
        total_steps (length of the schedule: all epochs, bounded by ``max_steps``);
        training (False while evaluating); batch, inputs, target, output, loss (current batch);
        skip_step, stop_training (flags callbacks may set);
        eval_metrics (dict filled while evaluating: ``loss``, plus what callbacks add in
        ``after_eval``); metrics (this epoch's log entry, callbacks may add to it in
        ``after_epoch``); history (all epochs' entries); best (best monitored value so far).

    Args:
        model: called as ``model(*batch.inputs)``.
        loss_fn: ``loss_fn(output, target)`` -> mean loss over the batch's targets. Its value
            (before callbacks add penalties) is what train/valid losses report.
        optimizer: groups carry ``base_lr`` (see :func:`make_optimizer`); None for a trainer
            that only evaluates (as do ``schedule``, ``train_data`` and ``valid_data``).
        schedule: ``schedule(step, total_steps)`` -> multiplier of every group's base rate.
        callbacks: called in this order at every hook.
        train_data, valid_data: batch sources (see the module docstring); without valid_data
            there is no evaluation and no best.pt.
        epochs: number of passes over ``train_data``.
        max_steps: stop after this many training batches; the schedule is compressed to fit.
        clip: clip the gradient norm to this value (None: no clipping).
        out_dir: where ``last.pt``, ``best.pt`` and ``log.jsonl`` go (None: nothing written).
        device: where batches are moved; the model must already be there.
        monitor: key of ``metrics`` that decides the best epoch (lower is better).
        checkpoint_interval_s: also save ``last.pt`` during an epoch once this many seconds have
            passed since the last save (None: only after epochs; 0: after every batch).
        progress: show a progress bar on stderr (once a minute when not a terminal) and a line per epoch.
        precision: fp32, bf16 or fp16 (see :mod:`ulmfit.precision`); fp16 scales the loss.
        accumulate: batches per optimizer step (gradient accumulation). The optimizer steps at
            the last batch of each group (:func:`accumulation_group`) on the mean gradient over
            the group's batches, as one large batch would; reported losses stay per batch, and
            ``max_steps`` and the schedule still count batches. Gradients summed so far go into
            checkpoints, so a run resumed inside a group ends exactly as an uninterrupted one.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable[[Any, Tensor], Tensor],
                 optimizer: torch.optim.Optimizer | None = None, schedule: Schedule | None = None,
                 callbacks: Iterable[Callback] = (), *, train_data: BatchSource | None = None,
                 valid_data: BatchSource | None = None, epochs: int = 1, max_steps: int | None = None,
                 clip: float | None = None, out_dir: str | Path | None = None,
                 device: torch.device | str = "cpu", monitor: str = "valid_loss",
                 checkpoint_interval_s: float | None = None, progress: bool = True, precision: str = "fp32",
                 accumulate: int = 1):
        self.model, self.loss_fn, self.optimizer, self.schedule = model, loss_fn, optimizer, schedule
        self.callbacks = sorted(callbacks, key=lambda cb: cb.order)
        self.train_data, self.valid_data = train_data, valid_data
        self.epochs, self.max_steps, self.clip = epochs, max_steps, clip
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.device, self.monitor = torch.device(device), monitor
        self.checkpoint_interval_s = checkpoint_interval_s
        self.progress = progress and distributed.is_main()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        self.precision = precision
        self.scaler = torch.amp.GradScaler(self.device.type) if precision == "fp16" else None
        if not isinstance(accumulate, int) or accumulate < 1:
            raise ValueError(f"accumulate must be a positive integer, got {accumulate!r}")
        self.accumulate = accumulate
        self.group = (0, 1)  # the training batches whose gradients go into this batch's step
        for group in optimizer.param_groups if optimizer is not None else ():
            group.setdefault("base_lr", group["lr"])
        self.epoch = self.batch_index = self.step = self.n_batches = 0
        self.total_steps = self._step_targets = 0  # targets the gradients average over since the last step
        self.training = False
        self.batch = self.inputs = self.target = self.output = self.loss = None
        self.skip_step = self.stop_training = False
        self.eval_metrics: dict[str, float] = {}
        self.metrics: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self.best = math.inf
        self._reset_epoch_sums()

    # -- public API ---------------------------------------------------------------------------

    def fit(self, resume: bool = False) -> list[dict[str, Any]]:
        """Train (or continue from ``out_dir/last.pt`` when ``resume``); returns the history."""
        self.optimizer.zero_grad(set_to_none=True)
        if resume:
            self.load_checkpoint(self._path(LAST_CHECKPOINT))
        total = sum(self.train_data.n_batches(e) for e in range(self.epochs))
        self.total_steps = min(total, self.max_steps) if self.max_steps is not None else total
        self.stop_training = False
        self._call("before_fit")
        while self.epoch < self.epochs and self.step < self.total_steps and not self.stop_training:
            self._train_epoch()
            self._end_epoch()
        self._call("after_fit")
        return self.history

    @torch.no_grad()
    def evaluate(self, data: BatchSource) -> dict[str, float]:
        """Mean loss per target over all batches of ``data`` (epoch 0), plus callbacks' metrics."""
        was_training = self.model.training, self.training
        self.model.eval()
        self.training = False
        self.eval_metrics = {}
        self._call("before_eval")
        loss_sum, count = torch.zeros((), dtype=torch.float64, device=self.device), 0
        for batch in data.batches(0):
            self._forward(batch)
            loss_sum += self.loss.detach().double() * self.target.numel()
            count += self.target.numel()
        loss_sum, count = distributed.sum_across(loss_sum, count)  # the whole set, over all ranks
        self.eval_metrics["loss"] = float(loss_sum) / max(count, 1)
        self._call("after_eval")
        self.model.train(was_training[0])
        self.training = was_training[1]
        return dict(self.eval_metrics)

    def backward(self, loss: Tensor) -> None:
        """Backpropagate ``loss`` as its share of the accumulation group's mean (scaled under fp16);
        tricks that add a loss call this too."""
        start, end = self.group
        if end - start > 1:
            loss = loss / (end - start)
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def exported_weights(self) -> dict[str, Tensor]:
        """The model's weights as callbacks choose to export them (see ``Callback.export_weights``)."""
        state = self.model.state_dict()
        for cb in self.callbacks:
            state = cb.export_weights(self, state)
        return state

    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to continue exactly: plain tensors, numbers, lists and dicts."""
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return distributed.gather_rank_state({
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch, "batch_index": self.batch_index, "step": self.step,
            "epoch_sums": {k: v.cpu() if isinstance(v, Tensor) else v for k, v in self._sums.items()},
            "history": self.history, "best": self.best, "rng": rng,
            "callbacks": {self._callback_key(i, cb): cb.state_dict() for i, cb in enumerate(self.callbacks)},
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "accumulated": self._accumulated_state(),
        })

    def load_checkpoint(self, path: Path) -> None:
        if not path.exists():
            raise UlmfitError(f"{path}: no checkpoint to resume from")
        try:
            ckpt = torch.load(path, map_location=self.device, weights_only=True)
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, KeyError, ValueError, pickle.UnpicklingError) as e:
            raise UlmfitError(f"{path}: does not match this model/optimizer ({e})") from None
        ckpt = distributed.rank_state(ckpt, str(path))
        self.epoch, self.batch_index, self.step = ckpt["epoch"], ckpt["batch_index"], ckpt["step"]
        self._sums = {k: v.to(self.device) if isinstance(v, Tensor) else v
                      for k, v in ckpt["epoch_sums"].items()}
        self.history, self.best = ckpt["history"], ckpt["best"]
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())
        if "cuda" in ckpt["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in ckpt["rng"]["cuda"]])
        for i, cb in enumerate(self.callbacks):
            cb.load_state_dict(ckpt["callbacks"].get(self._callback_key(i, cb), {}))
        self._load_accumulated_state(ckpt.get("accumulated", {}))
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])

    # -- the loop -----------------------------------------------------------------------------

    def _train_epoch(self) -> None:
        self.model.train()
        self.training = True
        self.n_batches = self.train_data.n_batches(self.epoch)
        self._call("before_epoch")
        total = min(self.n_batches, self.batch_index + self.total_steps - self.step)  # max_steps may end it early
        bar = progress_bar(self.progress, total=total, initial=self.batch_index,
                           desc=f"epoch {self.epoch + 1}/{self.epochs}", leave=False)
        start = last_save = time.perf_counter()
        for batch in self.train_data.batches(self.epoch, start=self.batch_index):
            self._train_batch(batch)
            bar.update(1)
            if bar.n % 20 == 0 and not bar.disable:
                bar.set_postfix(loss=f"{self._sums['loss'].item() / max(self._sums['count'], 1):.3f}")
            if self.step >= self.total_steps or self.stop_training:
                break
            now = time.perf_counter()
            if (self.checkpoint_interval_s is not None
                    and distributed.main_decides(now - last_save >= self.checkpoint_interval_s)):
                self._sums["seconds"] += now - start
                self._save(LAST_CHECKPOINT, self.checkpoint())
                start = last_save = time.perf_counter()
        self._sums["seconds"] += time.perf_counter() - start
        bar.close()

    def _forward(self, batch: Batch) -> None:
        """The part shared by training and evaluation: batch -> output -> loss."""
        self.batch = batch.to(self.device)
        self.inputs, self.target = self.batch.inputs, self.batch.target
        self._call("before_batch")
        with autocast(self.precision if self.training else "fp32", self.device):
            self.output = self.model(*self.inputs)
            self._call("after_forward")
            self.loss = self.loss_fn(self.output, self.target)
            if self.training:
                self._sums["loss"] += self.loss.detach().double() * self.target.numel()
                self._sums["count"] += self.target.numel()
                self._step_targets += self.target.numel()
                self._sums["tokens"] += self.batch.n_tokens
            self._call("after_loss")

    def _train_batch(self, batch: Batch) -> None:
        self.group = accumulation_group(self.batch_index, self.n_batches, self.accumulate,
                                        self.total_steps - self.step)
        multiplier = self.schedule(self.step, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * multiplier
        self._forward(batch)
        self._call("before_backward")
        self.backward(self.loss)
        self._call("after_backward")
        self.skip_step = self.batch_index + 1 < self.group[1]  # inside a group: accumulate
        self._call("before_step")
        if not self.skip_step:
            self._optimizer_step()
            self.optimizer.zero_grad(set_to_none=True)
            self._step_targets = 0
        self.step += 1
        self.batch_index += 1
        self._call("after_step")

    def _optimizer_step(self) -> None:
        """Clip and step; under fp16 on unscaled gradients, skipping a step that overflowed.
        Under torchrun the gradients are first averaged over the ranks."""
        distributed.average_gradients(self.model, self._step_targets)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        if self.scaler is None:
            self.optimizer.step()
            return
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def _end_epoch(self) -> None:
        sums = self._sums
        loss_sum, count, tokens = distributed.sum_across(sums["loss"], sums["count"], sums["tokens"])
        train_loss = float(loss_sum) / max(count, 1)
        eval_start = time.perf_counter()
        valid = self.evaluate(self.valid_data) if self.valid_data is not None else {}
        self.metrics = {
            "epoch": self.epoch + 1, "step": self.step, "train_loss": train_loss,
            **{f"valid_{k}": v for k, v in valid.items()},
            "tokens_per_s": tokens / max(sums["seconds"], 1e-9),
            "train_time_s": sums["seconds"],
            "time_s": sums["seconds"] + time.perf_counter() - eval_start,
            "lr": self.optimizer.param_groups[-1]["lr"],
        }
        self._call("after_epoch")
        self.history.append(self.metrics)
        improved = self.valid_data is not None and self.metrics[self.monitor] < self.best
        if improved:
            self.best = self.metrics[self.monitor]
        self.epoch += 1
        self.batch_index = 0
        self._reset_epoch_sums()
        if improved:
            self._save(BEST_WEIGHTS, self.exported_weights())
        self._save(LAST_CHECKPOINT, self.checkpoint())
        if self.out_dir is not None and distributed.is_main():
            write_text(self._path(LOG), "".join(json.dumps(m) + "\n" for m in self.history))
        if self.progress:
            tqdm.write(format_metrics(self.metrics), file=sys.stderr)

    # -- helpers ------------------------------------------------------------------------------

    def _call(self, hook: str) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self)

    def _accumulated_state(self) -> dict:
        """Gradients summed since the last step, and the targets they cover (empty right after a step)."""
        if not self._step_targets:
            return {}
        return {"grads": [p.grad for p in self.model.parameters()], "targets": self._step_targets}

    def _load_accumulated_state(self, state: dict) -> None:
        for p, grad in zip(self.model.parameters(), state.get("grads", [])):
            p.grad = grad
        self._step_targets = state.get("targets", 0)

    def _reset_epoch_sums(self) -> None:
        self._sums = {"loss": torch.zeros((), dtype=torch.float64, device=self.device),
                      "count": 0, "tokens": 0, "seconds": 0.0}

    @staticmethod
    def _callback_key(index: int, cb: Callback) -> str:
        return f"{index}:{type(cb).__name__}"

    def _path(self, name: str) -> Path:
        if self.out_dir is None:
            raise UlmfitError("this trainer has no out_dir to keep checkpoints in")
        return self.out_dir / name

    def _save(self, name: str, obj: Any) -> None:
        if self.out_dir is None or not distributed.is_main():
            return
        with atomic_path(self._path(name)) as tmp:
            torch.save(obj, tmp)


def format_metrics(metrics: dict[str, Any]) -> str:
    return "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
