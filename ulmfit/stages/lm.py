"""The ``pretrain`` and ``finetune`` stages: train an AWD-LSTM language model.

Both produce a language-model folder::

    model.pt      final weights, or a trick's average (state_dict, loads with torch.load(weights_only=True))
    encoder.pt    the encoder's weights alone (keys of ulmfit.model.AWDLSTM), for the classifier
    config.json   the LMTrainConfig, with the model's AWDLSTMConfig nested under "model"
    vocab.json, tokenizer.json (+ spm.model)   copied from the tokenized data folder
    metrics.json  final and best validation loss and perplexity, tokens/s, time
    log.jsonl     one line of metrics per epoch
    curve.jsonl   with --curve_every_s: validation perplexity against training time
    best.pt       weights of the epoch with the lowest validation loss
    last.pt       full training state, for --resume
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .. import distributed
from ..artefacts import CONFIG, CURVE, ENCODER, METRICS, MODEL, VOCAB
from ..classifier.selection import labelled_docs
from ..config import load_config
from ..errors import UlmfitError
from ..files import write_json
from ..lm_data import LMStream
from ..model_folder import (check_direction, check_same_tokenizer, check_vocab_size, load_weights, prepare_out,
                            require, save_weights)
from ..model.awd_lstm import LanguageModel, make_config
from ..text.corpus import TokenizedSplit, available_splits, load_split, require_classes
from ..text.vocab import Vocab
from ..lm_callbacks import ARTAR, LMWindows, ValidationCurve
from ..precision import resolve_precision
from ..training import Trainer, perplexity
from ..tricks import build_callbacks, parse_tricks
from .common import TrainConfig, TrainingParts, given_options, peak_rss_mb, preset_options, resolve_device

CHECKPOINT_INTERVAL_S = 600  # an interrupted run loses at most ten minutes
HOLD_OUT_EVERY = 10  # without a valid split, every 10th training document validates
CURVE_TOKENS = 100_000  # ... on the first documents of the valid split that hold this many tokens


@dataclass
class LMTrainConfig(TrainConfig):
    """Everything that determines a language-model training run (saved as ``config.json``).

    The defaults are for pretraining (see ``TrainConfig``); presets and the fine-tuning overrides
    change them. ``bs`` is the number of parallel rows of the token stream, ``bptt`` the mean
    window length, ``max_train`` reads only the text of a classifier's low-shot training documents.
    """

    pretrained: str | None = None       # fine-tuning: the pretrained LM folder; import_fastai: the weights file
    curve_every_s: float | None = None  # log a validation curve (curve.jsonl) every this many seconds


def pretrain(data: str, out: str, preset: str = LMTrainConfig.preset, epochs: int | None = None,
             max_steps: int | None = None, min_steps: int | None = None, bs: int | None = None,
             bptt: int | None = None, lr: float | None = None, drop_mult: float | None = None,
             seed: int | None = None, backwards: bool = LMTrainConfig.backwards, schedule: str | None = None,
             optimizer: str | None = None, tricks: str | Sequence[str] | None = None, resume: bool = False,
             device: str = "auto", precision: str = "auto", softmax_cutoffs: int | Sequence[int] | None = None,
             curve_every_s: float | None = None, accumulate: int | None = None) -> dict:
    """Train a language model from scratch on a tokenized corpus (e.g. Wikipedia).

    Options left out take the preset's value (``ulmfit.presets``).

    Args:
        data: tokenized folder (output of ``ulmfit tokenize``); without a valid split, every
            10th training document is held out for validation.
        out: output folder for the language model; must be new or empty unless resuming.
        preset: model and training size: "paper" (ULMFiT), "cpu" (small, 2-core CPU) or "tiny".
        epochs: passes over the training split.
        max_steps: stop after this many batches (the learning-rate schedule is fitted to it).
        min_steps: train at least this many batches: on a tiny training set each epoch makes
            several passes over it.
        bs: batch size (parallel rows of the token stream).
        bptt: mean window length in tokens.
        lr: peak learning rate.
        drop_mult: multiplier of all AWD-LSTM dropout probabilities.
        seed: random seed of initialization, dropout and data order.
        backwards: train a backward model (every document reversed).
        schedule: learning-rate schedule: one_cycle, stlr, cosine, constant, warmup_constant, warmup_linear
            or warmup_cosine (these rise linearly from 0 over the first 10% of the steps).
        optimizer: adamw (default), adam or lamb (Adam's step rescaled per tensor by ||w|| / ||step||;
            its steps are relative to the weights' norms, so it wants a larger --lr than Adam).
        tricks: training tricks with their parameters, e.g. "ema(decay=0.999)"; ``ulmfit tricks`` lists them.
        resume: continue an interrupted run in ``out`` (same options) from its last checkpoint.
        device: "cpu", "cuda" or "auto" (cuda if available).
        precision: auto (bf16 where the device computes it natively, else fp32), fp32, bf16 or
            fp16 (GPU only); losses and AR/TAR are float32 in every case.
        softmax_cutoffs: the adaptive softmax's clusters as increasing token ids, e.g. 2000,10000:
            ids below 2000 in the head, then 2000-9999 and the rest (default: the preset's; the
            vocabulary is frequency-sorted); 0 for a full softmax.
        curve_every_s: every this many seconds of training, write the validation perplexity on the
            first 100,000 tokens of the valid split to curve.jsonl (a learning curve against time).
        accumulate: batches per optimizer step (gradient accumulation): each step follows the mean
            gradient of this many batches, as one batch that many times larger would (default 1).

    Returns:
        The run's summary, as written to metrics.json.
    """
    return _train(plan_pretrain(locals()), Path(out), resume)


def finetune(pretrained: str, data: str, out: str, epochs: int | None = None,
             max_steps: int | None = None, min_steps: int | None = None, bs: int | None = None,
             bptt: int | None = None, lr: float | None = None, drop_mult: float | None = None,
             seed: int | None = None, backwards: bool = LMTrainConfig.backwards, schedule: str | None = None,
             optimizer: str | None = None, no_discriminative: bool = False, max_train: int | None = None,
             tricks: str | Sequence[str] | None = None, resume: bool = False, device: str = "auto",
             precision: str = "auto", accumulate: int | None = None) -> dict:
    """Fine-tune a pretrained language model on the target corpus (ULMFiT stage 2).

    The pretrained embedding and decoder rows are mapped onto the target vocabulary (known
    tokens keep their row, new ones start at the mean row), then all layers train with
    discriminative learning rates and a slanted triangular schedule. Options left out take the
    pretrained run's preset values for fine-tuning (``ulmfit.presets``).
    With 0 epochs (or max_steps 0) the folder holds the mapped pretrained model as it is: a
    classifier can then start from an LM that was not fine-tuned.

    Args:
        pretrained: language-model folder written by ``ulmfit pretrain``.
        data: tokenized target corpus, tokenized like the pretrained data; without a valid
            split, every 10th training document is held out for validation.
        out: output folder for the fine-tuned model and ``encoder.pt``; new or empty unless resuming.
        epochs: passes over the training split (0: map the vocabulary only).
        max_steps: stop after this many batches (the learning-rate schedule is fitted to it).
        min_steps: train at least this many batches: on a tiny training set each epoch makes
            several passes over it.
        bs: batch size (parallel rows of the token stream).
        bptt: mean window length in tokens.
        lr: peak learning rate of the top layer group.
        drop_mult: multiplier of all dropout probabilities (default: the pretrained model's).
        seed: random seed of dropout and data order.
        backwards: fine-tune a backward model; the pretrained model must be backward too.
        schedule: learning-rate schedule: stlr (default), one_cycle, cosine, constant, warmup_constant,
            warmup_linear or warmup_cosine (these rise linearly from 0 over the first 10% of the steps).
        no_discriminative: one learning rate for all layer groups instead of dividing by 2.6 per group.
        optimizer: adamw (default), adam or lamb (Adam's step rescaled per tensor by ||w|| / ||step||;
            its steps are relative to the weights' norms, so it wants a larger --lr than Adam).
        max_train: low-shot (supervised ULMFiT): read only the text of the labelled documents that
            ``ulmfit train --max_train N`` with the same seed trains on, and validate on the
            classifier's validation documents.
        tricks: training tricks with their parameters, e.g. "ema(decay=0.999)"; ``ulmfit tricks`` lists them.
        resume: continue an interrupted run in ``out`` (same options) from its last checkpoint.
        device: "cpu", "cuda" or "auto" (cuda if available).
        precision: auto (bf16 where the device computes it natively, else fp32), fp32, bf16 or
            fp16 (GPU only); losses and AR/TAR are float32 in every case.
        accumulate: batches per optimizer step (gradient accumulation): each step follows the mean
            gradient of this many batches, as one batch that many times larger would (default 1).

    Returns:
        The run's summary, as written to metrics.json.
    """
    return _train(plan_finetune(locals()), Path(out), resume)


def plan_pretrain(options: Mapping[str, Any]) -> LMPlan:
    """``pretrain``'s arguments (by name) -> the run it makes, with nothing written yet."""
    o = SimpleNamespace(**options)
    data_dir = Path(o.data)
    vocab = Vocab.load(data_dir)
    fields = preset_options(o.preset, "pretrain", epochs=o.epochs, max_steps=o.max_steps, min_steps=o.min_steps,
                            bs=o.bs, bptt=o.bptt, lr=o.lr, seed=o.seed, backwards=o.backwards, schedule=o.schedule,
                            optimizer=o.optimizer, accumulate=o.accumulate)
    model_overrides = given_options(drop_mult=o.drop_mult)
    if o.softmax_cutoffs is not None:
        model_overrides["softmax_cutoffs"] = parse_cutoffs(o.softmax_cutoffs)
    device = resolve_device(o.device)
    cfg = LMTrainConfig(**fields, preset=o.preset, data=str(data_dir),
                        model=make_config(o.preset, len(vocab), **model_overrides), tricks=parse_tricks(o.tricks, "lm"),
                        precision=resolve_precision(o.precision, device), curve_every_s=o.curve_every_s)
    return LMPlan(cfg, None, device)


def plan_finetune(options: Mapping[str, Any]) -> LMPlan:
    """``finetune``'s arguments (by name) -> the run it makes, with nothing written yet."""
    o = SimpleNamespace(**options)
    pre_dir, data_dir = Path(o.pretrained), Path(o.data)
    pre_cfg, vocab, weights = load_lm_for_data(pre_dir, data_dir)
    check_direction(pre_dir, pre_cfg.backwards, o.backwards, "one", "pretrained model")
    fields = preset_options(pre_cfg.preset, "finetune", epochs=o.epochs,
                            max_steps=o.max_steps, min_steps=o.min_steps, bs=o.bs, bptt=o.bptt, lr=o.lr, seed=o.seed,
                            backwards=o.backwards, schedule=o.schedule, optimizer=o.optimizer, max_train=o.max_train,
                            accumulate=o.accumulate)
    if o.no_discriminative:
        fields["disc_factor"] = 1.0
    model_cfg = dataclasses.replace(pre_cfg.model, vocab_size=len(vocab), **given_options(drop_mult=o.drop_mult))
    device = resolve_device(o.device)
    cfg = LMTrainConfig(**fields, preset=pre_cfg.preset, data=str(data_dir), pretrained=str(pre_dir),
                        model=model_cfg, tricks=parse_tricks(o.tricks, "lm"),
                        precision=resolve_precision(o.precision, device))
    return LMPlan(cfg, weights, device)


def evaluate_lm(model: str, data: str, split: str = "test", device: str = "auto") -> dict:
    """Loss and perplexity of a language-model folder on one split of a tokenized folder.

    Data with another vocabulary (tokenized the same way) is scored by the model with its rows
    mapped as fine-tuning would start (tokens it never saw get the mean row), so a pretrained
    and a fine-tuned model can be compared on the same target text.

    Args:
        model: language-model folder written by ``ulmfit pretrain`` or ``ulmfit finetune``.
        data: tokenized folder.
        split: which split of ``data`` to score: train, valid or test (valid falls back to the
            held-out training documents, as in training).
        device: "cpu", "cuda" or "auto" (cuda if available).

    Returns:
        ``{"loss": mean cross-entropy per token, "ppl": its exponential, "tokens": tokens scored}``.
    """
    cfg, vocab, weights = load_lm_for_data(Path(model), Path(data))
    lm = LanguageModel(dataclasses.replace(cfg.model, vocab_size=len(vocab)))
    lm.load_state_dict(weights)
    dev = resolve_device(device)
    stream = _stream(cfg, Path(data), split, shuffle=False)
    trainer = Trainer(lm.to(dev), lm.loss, callbacks=[LMWindows(cfg.bptt)], device=dev, progress=False)
    result = trainer.evaluate(stream)
    return {**result, "tokens": stream.bs * (stream.row_len - 1)}


# -- pieces -------------------------------------------------------------------------------------

def parse_cutoffs(value: int | str | Sequence[int]) -> tuple[int, ...]:
    """``--softmax_cutoffs`` as fire gives it (2000,10000 is a tuple; 0 an int) -> cutoffs; () is full."""
    items = value if isinstance(value, (list, tuple)) else str(value).replace(",", " ").split()
    try:
        cutoffs = tuple(int(c) for c in items)
    except (TypeError, ValueError):
        raise UlmfitError(f"--softmax_cutoffs {value!r}: expected increasing token ids like 2000,10000, "
                          f"or 0 for a full softmax") from None
    return () if cutoffs == (0,) else cutoffs

def map_vocab_rows(old_itos: Sequence[str], new_itos: Sequence[str], old_weight: torch.Tensor) -> torch.Tensor:
    """Rows of ``old_weight`` (indexed by ``old_itos``) rearranged for ``new_itos``.

    A token known to the old vocabulary keeps its row; a new token gets the mean of the old
    rows, a neutral starting point that fine-tuning moves from. Works for a [V, D] embedding or
    decoder weight and a [V] decoder bias.
    """
    if old_weight.size(0) != len(old_itos):
        raise ValueError(f"{old_weight.size(0)} rows for a vocabulary of {len(old_itos)}")
    old_index = {tok: i for i, tok in enumerate(old_itos)}
    new_weight = old_weight.mean(0, keepdim=True).repeat(len(new_itos), *[1] * (old_weight.dim() - 1))
    pairs = [(new, old_index[tok]) for new, tok in enumerate(new_itos) if tok in old_index]
    if pairs:
        new_rows, old_rows = map(torch.tensor, zip(*pairs))
        new_weight[new_rows] = old_weight[old_rows]
    return new_weight


VOCAB_KEYS = ("encoder.embedding.weight", "decoder.weight", "decoder.bias")  # rows indexed by token id


def map_lm_vocab(state: dict[str, torch.Tensor], old_itos: Sequence[str],
                 new_itos: Sequence[str]) -> dict[str, torch.Tensor]:
    """A language model's state_dict with its vocabulary-indexed tensors mapped to ``new_itos``."""
    return {k: map_vocab_rows(old_itos, new_itos, v) if k in VOCAB_KEYS else v for k, v in state.items()}


def load_lm_for_data(model_dir: Path, data_dir: Path) -> tuple[LMTrainConfig, Vocab, dict[str, torch.Tensor]]:
    """A language-model folder's config, and its weights mapped onto the vocabulary of ``data_dir``.

    Checks first that ``data_dir`` was tokenized the same way and that the weights fit the
    architecture and vocabulary recorded in the folder. Returns ``data_dir``'s vocabulary too.
    """
    cfg = load_config(LMTrainConfig, require(model_dir / CONFIG))
    check_same_tokenizer(model_dir, data_dir)
    old_itos = Vocab.load(require(model_dir / VOCAB)).itos
    vocab = Vocab.load(data_dir)
    check_vocab_size(model_dir, cfg.model.vocab_size, len(old_itos))
    weights = load_weights(model_dir / MODEL, lambda: LanguageModel(cfg.model),
                           f"the architecture in {model_dir / CONFIG}")
    return cfg, vocab, map_lm_vocab(weights, old_itos, vocab.itos)


def untrained_log(valid: dict) -> dict:
    """The log line of a model that trained no step: its validation loss, no time spent."""
    return {"epoch": 0, "step": 0, "valid_loss": valid["loss"], "train_time_s": 0.0, "tokens_per_s": 0.0,
            "time_s": 0.0}


def summarize(history: list[dict]) -> dict:
    """metrics.json: final and best validation loss and perplexity, throughput and time."""
    if not history:
        raise UlmfitError("the run trained no epoch (epochs or max_steps is 0)")
    final, best = history[-1], min(history, key=lambda m: m["valid_loss"])
    train_time = sum(m["train_time_s"] for m in history)
    tokens = sum(m["tokens_per_s"] * m["train_time_s"] for m in history)
    return {
        "final_valid_loss": final["valid_loss"], "final_valid_ppl": perplexity(final["valid_loss"]),
        "best_valid_loss": best["valid_loss"], "best_valid_ppl": perplexity(best["valid_loss"]),
        "best_epoch": best["epoch"], "epochs": final["epoch"], "steps": final["step"],
        "tokens_per_s": tokens / max(train_time, 1e-9), "train_time_s": train_time,
        "time_s": sum(m["time_s"] for m in history),  # training and evaluation, over all sessions
    }


# -- the shared stage body ----------------------------------------------------------------------

@dataclass
class LMPlan:
    """What a pretrain or finetune run starts from: its config, initial weights (None: random)
    and device. The stage trains it; ``lr_find`` sweeps rates on it."""

    cfg: LMTrainConfig
    initial_weights: dict[str, torch.Tensor] | None
    device: torch.device


def lm_parts(plan: LMPlan) -> TrainingParts:
    """The model, optimizer, schedule, callbacks and training batches of a language-model run."""
    cfg = plan.cfg
    torch.manual_seed(cfg.seed)
    model = LanguageModel(cfg.model)
    if plan.initial_weights is not None:
        model.load_state_dict(plan.initial_weights)
    model.to(plan.device)
    distributed.seed_rank(cfg.seed)
    return TrainingParts(
        model, model.loss, cfg.make_optimizer(model.layer_groups()), cfg.make_schedule(),
        [LMWindows(cfg.bptt), ARTAR(cfg.model.ar_alpha, cfg.model.tar_beta), *build_callbacks(cfg.tricks)],
        cfg.training_source(_stream(cfg, Path(cfg.data), "train", shuffle=True)))


def _train(plan: LMPlan, out_dir: Path, resume: bool) -> dict:
    cfg, data_dir = plan.cfg, Path(plan.cfg.data)
    valid_stream = _stream(cfg, data_dir, "valid", shuffle=False)
    parts = lm_parts(plan)
    resume = distributed.run_on_main(prepare_out, out_dir, cfg, data_dir, resume)  # after the data checks
    if cfg.curve_every_s:
        curve_data = _stream(cfg, data_dir, "valid", shuffle=False, max_tokens=CURVE_TOKENS)
        parts.callbacks.append(ValidationCurve(curve_data, cfg.curve_every_s, out_dir / CURVE))
    trainer = Trainer(parts.model, parts.loss_fn, parts.optimizer, parts.schedule, parts.callbacks,
                      train_data=parts.train_data,
                      valid_data=valid_stream, epochs=cfg.epochs, max_steps=cfg.max_steps,
                      out_dir=out_dir, device=plan.device, checkpoint_interval_s=CHECKPOINT_INTERVAL_S,
                      **cfg.trainer_options())
    history = trainer.fit(resume=resume)
    if not history and cfg.pretrained:  # fine-tuning of no steps: the mapped pretrained model as it is
        history = [untrained_log(trainer.evaluate(valid_stream))]

    metrics = {**summarize(history), "peak_rss_mb": round(peak_rss_mb(), 1), **distributed.run_info()}
    if distributed.is_main():
        save_lm_weights(out_dir, trainer.exported_weights())  # the final weights, or a trick's (EMA's average)
        write_json(out_dir / METRICS, metrics)
    return metrics


def save_lm_weights(out_dir: Path, weights: dict[str, torch.Tensor]) -> None:
    """``model.pt`` and, for the classifier, the encoder's part of it as ``encoder.pt``."""
    save_weights(out_dir / MODEL, weights)
    save_weights(out_dir / ENCODER, {k.removeprefix("encoder."): v for k, v in weights.items()
                                     if k.startswith("encoder.")})


def held_out_docs(n_docs: int, valid: bool) -> np.ndarray:
    """Every ``HOLD_OUT_EVERY``-th document (``valid``) or all the others: the validation text of
    a corpus tokenized without a valid split (e.g. TREC), fixed so every run holds out the same."""
    held = np.arange(n_docs) % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1
    return np.flatnonzero(held if valid else ~held)


def _stream(cfg: LMTrainConfig, data_dir: Path, split: str, shuffle: bool,
            max_tokens: int | None = None) -> LMStream:
    """The LM stream of a split's documents (see ``_documents``), or of its first documents that
    hold ``max_tokens`` tokens."""
    tokens, docs = _documents(cfg, data_dir, split)
    if max_tokens is not None:
        docs = np.arange(len(tokens)) if docs is None else docs
        docs = docs[:int(np.searchsorted(np.cumsum(np.diff(tokens.offsets)[docs]), max_tokens)) + 1]
    bs = cfg.bs
    if not shuffle:  # a small evaluation split gets fewer rows so that each spans a few windows
        n_tokens = tokens.n_tokens if docs is None else int(np.diff(tokens.offsets)[docs].sum())
        bs = min(bs, max(1, n_tokens // (4 * cfg.bptt)))
    return LMStream(tokens.ids, tokens.offsets, bs, cfg.bptt, cfg.seed, shuffle=shuffle,
                    backwards=cfg.backwards, docs=docs, part=distributed.part())


def _documents(cfg: LMTrainConfig, data_dir: Path, split: str) -> tuple[TokenizedSplit, np.ndarray | None]:
    """The split a stream reads and which of its documents (None: all).

    With ``max_train``, train and valid are the classifier's documents for the same seed; without
    a valid split, train and valid share the train split (``held_out_docs``).
    """
    if split not in ("train", "valid"):
        return load_split(data_dir, split), None
    if cfg.max_train is not None:
        classes = require_classes(data_dir, "--max_train needs labelled data")
        chosen = labelled_docs(data_dir, len(classes), cfg.seed, cfg.max_train)
        return (chosen.train, chosen.train_docs) if split == "train" else (chosen.valid, chosen.valid_docs)
    if "valid" not in available_splits(data_dir):
        train = load_split(data_dir, "train")
        return train, held_out_docs(len(train), valid=split == "valid")
    return load_split(data_dir, split), None
