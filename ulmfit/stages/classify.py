"""The ``train`` stage: the ULMFiT text classifier (its config, presets and training run).

``train`` writes a classifier folder::

    model.pt      weights after the last epoch (a TextClassifier state_dict; --keep_best: of the epoch
                  with the lowest validation error)
    config.json   the ClassifierConfig, with the encoder's AWDLSTMConfig nested under "model"
    vocab.json, tokenizer.json (+ spm.model)   copied from the tokenized data folder
    classes.json  class names, index = label id
    log.jsonl     one line of metrics per epoch (valid loss, accuracy, error, trainable groups)
    metrics.json  validation error of model.pt, best and final validation error and accuracy, time,
                  peak memory (peak_rss_mb)
    best.pt, last.pt   the trainer's best weights and full state (for --resume)

The batches, callbacks and prediction it is made of live in ``ulmfit.classifier``, the
pseudo-labelling rounds in ``ulmfit.tricks.pseudo_label``; applying a trained classifier
(``evaluate``, ``predict``, ``ensemble``) is ``ulmfit.stages.infer``.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from .. import distributed
from ..classifier.callbacks import Accuracy, GradualUnfreezing, classification_loss
from ..classifier.data import ClassificationData, training_data
from ..classifier.head import PoolingClassifierHead, TextClassifier, set_trainable_groups
from ..classifier.predict import predict_probs
from ..classifier.selection import VALID_FRAC
from ..artefacts import BEST_WEIGHTS, CLASSES, CONFIG, ENCODER, METRICS, MODEL, VOCAB
from ..config import load_config
from ..errors import UlmfitError
from ..files import write_json
from ..model.awd_lstm import AWDLSTM, make_config
from ..precision import resolve_precision
from ..schedules import default_arg, discriminative_lrs, restarted
from ..model_folder import (check_direction, check_same_tokenizer, check_same_vocab, check_vocab_size, load_weights,
                            prepare_out, require, save_weights)
from ..text.corpus import require_classes, save_classes
from ..text.vocab import Vocab
from ..training import Callback, Trainer
from ..tricks import build_callbacks, parse_tricks
from ..tricks.pseudo_label import pseudo_label_pool, pseudo_label_rounds
from .common import TrainConfig, TrainingParts, given_options, peak_rss_mb, preset_options, resolve_device
from .lm import CHECKPOINT_INTERVAL_S, LMTrainConfig


@dataclass
class ClassifierConfig(TrainConfig):
    """Everything that determines a classifier training run (saved as ``config.json``).

    The defaults are the ULMFiT paper's (Howard & Ruder 2018, sec. 3.3 and 4): Adam with
    betas (0.7, 0.99), batch 64, rate 0.01 with STLR, discriminative factor 2.6, gradual
    unfreezing, BPT3C with bptt 70 and max_len 1400, a 50-unit head. ``preset`` is the
    encoder's (or the architecture's from scratch), ``model`` the encoder with its dropouts,
    ``lr`` the head's peak rate, ``max_train`` a stratified low-shot sample.
    """

    encoder: str | None = None          # the fine-tuned language-model folder
    epochs: int = 6                     # a 3-layer encoder is fully unfrozen from the 5th epoch on
    min_steps: int = 200                # 100 labelled documents would otherwise train for 12 steps
    max_len: int = 1400                 # last tokens of a document pooled and backpropagated through
    max_tokens: int | None = None       # read only the first max_tokens tokens of every document
    checkpoint_tokens: int = 32768      # a BPT3C window of more tokens is recomputed in backward (0: never)
    head_hidden: int = 50
    head_dropout: float = 0.1           # before the last linear layer (the first is the encoder's output_p)
    betas: tuple[float, float] = (0.7, 0.99)
    schedule: str = "stlr"
    cycle_per_epoch: bool = False       # restart the schedule each epoch (each unfreezing stage)
    keep_best: bool = False             # model.pt: the lowest-validation-error epoch's, not the last one's
    disc_factor: float = default_arg(discriminative_lrs, "factor")
    discriminative: bool = True         # per-group rates divided by disc_factor going down
    gradual_unfreezing: bool = True     # epoch 0 trains the head only, each epoch one group more
    head_only: bool = False             # the encoder stays frozen throughout (the paper's "last")
    from_scratch: bool = False          # random encoder weights instead of the fine-tuned LM's
    valid_frac: float = VALID_FRAC      # held out of train (seeded) when the data has no valid split

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.valid_frac < 1.0:
            raise UlmfitError(f"valid_frac must be in (0, 1), got {self.valid_frac}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise UlmfitError(f"max_tokens must be at least 1, got {self.max_tokens}")


# -- model --------------------------------------------------------------------------------------

def build_classifier(cfg: ClassifierConfig, n_classes: int) -> TextClassifier:
    """The encoder of ``cfg.model`` with the pooling head; ULMFiT's head dropouts are the encoder's
    output dropout and ``head_dropout``."""
    head = PoolingClassifierHead(3 * cfg.model.emb_size, n_classes, cfg.head_hidden,
                                 (cfg.model.dropouts()["output_p"], cfg.head_dropout))
    return TextClassifier(AWDLSTM(cfg.model), head, cfg.bptt, cfg.max_len, cfg.checkpoint_tokens)


# -- model folders ------------------------------------------------------------------------------

def load_encoder(encoder_dir: Path, data_dir: Path, backwards: bool) -> tuple[LMTrainConfig, dict[str, Tensor]]:
    """A fine-tuned LM folder's config and ``encoder.pt``, checked against the data and direction."""
    cfg = load_config(LMTrainConfig, require(encoder_dir / CONFIG))
    check_direction(encoder_dir, cfg.backwards, backwards, "classifier", "encoder")
    check_same_tokenizer(encoder_dir, data_dir)
    check_same_vocab(encoder_dir, data_dir, hint=f"fine-tune the language model on {data_dir} first")
    state = load_weights(encoder_dir / ENCODER, lambda: AWDLSTM(cfg.model), f"the architecture in {encoder_dir / CONFIG}")
    return cfg, state


def load_classifier(model_dir: Path) -> tuple[ClassifierConfig, list[str], TextClassifier]:
    """A classifier folder's config, class names and model (weights loaded, on the CPU)."""
    cfg = load_config(ClassifierConfig, require(model_dir / CONFIG))
    classes = require_classes(model_dir, "a classifier folder written by ulmfit train has one")
    check_vocab_size(model_dir, cfg.model.vocab_size, len(Vocab.load(require(model_dir / VOCAB))))
    model = build_classifier(cfg, len(classes))
    load_weights(model_dir / MODEL, lambda: model,
                 f"the classifier in {model_dir / CONFIG} and {model_dir / CLASSES}")
    return cfg, classes, model


# -- stages -------------------------------------------------------------------------------------

def train(encoder: str | None = None, data: str | None = None, out: str | None = None,
          preset: str | None = None, epochs: int | None = None, max_steps: int | None = None,
          min_steps: int | None = None,
          backwards: bool = ClassifierConfig.backwards, from_scratch: bool = ClassifierConfig.from_scratch,
          no_gradual_unfreezing: bool = False, no_discriminative: bool = False, head_only: bool = False,
          schedule: str | None = None, cycle_per_epoch: bool = ClassifierConfig.cycle_per_epoch,
          max_tokens: int | None = None, optimizer: str | None = None, lr: float | None = None,
          bs: int | None = None, drop_mult: float | None = None,
          seed: int | None = None, max_train: int | None = None, tricks: str | Sequence[str] | None = None,
          keep_best: bool = ClassifierConfig.keep_best, resume: bool = False, device: str = "auto",
          precision: str = "auto", accumulate: int | None = None, checkpoint_tokens: int | None = None) -> dict:
    """Train a text classifier on a fine-tuned language model's encoder (ULMFiT stage 3).

    Gradual unfreezing (the head alone in the first epoch, one more layer group in each next
    one), discriminative learning rates (each lower group's divided by 2.6) and the slanted
    triangular schedule, each of which can be turned off. The weights after the last epoch are
    kept. Options left out take the preset's values (``ulmfit.presets``).

    Args:
        encoder: language-model folder written by ``ulmfit finetune`` on this very tokenized data
            (same tokenizer and vocabulary); not needed with --from_scratch.
        data: labelled tokenized folder (``ulmfit tokenize``); without a valid split a seeded 10% of
            train validates. Documents labelled -1 (unlabelled) are ignored.
        out: output folder for the classifier; must be new or empty unless resuming.
        preset: "paper", "cpu" or "tiny"; default: the encoder's (from scratch: "cpu").
        epochs: passes over the training documents.
        max_steps: stop after this many batches (the learning-rate schedule is fitted to it).
        min_steps: train at least this many batches: on a tiny training set each epoch makes
            several passes over it.
        backwards: read documents reversed; needs a backward encoder.
        from_scratch: random encoder weights instead of the encoder's (same architecture as the
            encoder when one is given, else the preset's); every layer then trains from the start
            at one rate (no gradual unfreezing, no discriminative rates).
        no_gradual_unfreezing: train all layers from the first epoch.
        no_discriminative: one learning rate for all layer groups.
        head_only: train the classifier head only; the encoder stays frozen (the paper's "last").
        schedule: learning-rate schedule: stlr, cosine, constant, one_cycle, warmup_constant, warmup_linear
            or warmup_cosine (these rise linearly from 0 over the first 10% of the steps).
        cycle_per_epoch: run the schedule anew in every epoch, so each stage of gradual unfreezing
            starts at the peak rate (the original ULMFiT scripts); default: one cycle over the run.
        optimizer: adamw (default), adam or lamb (Adam's step rescaled per tensor by ||w|| / ||step||;
            its steps are relative to the weights' norms, so it wants a larger --lr than Adam).
        lr: peak learning rate of the top group.
        bs: documents per batch.
        max_tokens: read only the first this many tokens of every document, in training and later in
            evaluate/predict (default: all; BPT3C still bounds backpropagation to max_len).
        drop_mult: multiplier of all encoder dropouts (default: the encoder's).
        seed: random seed of initialization, dropout, data order and the held-out split.
        max_train: low-shot: train on this many labelled training documents, stratified by class
            (``ulmfit finetune --max_train`` with the same seed reads the same documents).
        tricks: training tricks with their parameters, e.g. "fgm(epsilon=0.5),ema(decay=0.999)";
            ``ulmfit tricks`` lists them.
        keep_best: keep the weights of the epoch with the lowest validation error instead of the
            last epoch's (on the dev suite the last epoch's were as good or better, see README.md).
        resume: continue an interrupted run in ``out`` (same options) from its last checkpoint.
        device: "cpu", "cuda" or "auto" (cuda if available).
        precision: of training: auto (bf16 where the device computes it natively, else fp32), fp32,
            bf16 or fp16 (GPU only). Evaluation and prediction run in fp32.
        accumulate: batches per optimizer step (gradient accumulation): each step follows the mean
            gradient of this many batches, as one batch that many times larger would (default 1).
        checkpoint_tokens: memory bound for long documents: a batch whose BPT3C window (documents x
            window length) holds more tokens than this recomputes the window's activations in the
            backward pass instead of keeping them (same gradients, about 20% more time on those
            batches); 0: never (default 32768).

    Returns:
        The run's summary, as written to metrics.json.
    """
    if not data or not out:
        raise UlmfitError("--data (a labelled tokenized folder) and --out are required")
    plan = plan_train(locals())
    cfg, data_dir, out_dir, classes, dev = plan.cfg, Path(plan.cfg.data), Path(out), plan.classes, plan.device
    train_data, valid_data = training_data(cfg, data_dir, len(classes))
    pool = pseudo_label_pool(cfg.tricks, train_data, valid_data, resume, cfg.data)
    resume = distributed.run_on_main(_prepare_classifier_out, out_dir, cfg, data_dir, resume, classes)
    retrain = functools.partial(_fit, plan, out_dir, valid_data=valid_data)
    metrics = retrain(train_data, resume=resume)
    return pseudo_label_rounds(cfg.tricks, pool, train_data, metrics, _latest_classifier_probs(cfg, out_dir, dev),
                               functools.partial(retrain, resume=False), out_dir / METRICS)


def _prepare_classifier_out(out_dir: Path, cfg: ClassifierConfig, data_dir: Path, resume: bool,
                            classes: Sequence[str]) -> bool:
    resume = prepare_out(out_dir, cfg, data_dir, resume)  # after the data checks: no half-made folder
    save_classes(out_dir, classes)
    return resume


@dataclass
class ClassifierPlan:
    """What a classifier run starts from: its config, class names, encoder weights (None: random)
    and device. ``train`` trains it; ``lr_find`` sweeps rates on it."""

    cfg: ClassifierConfig
    classes: list[str]
    weights: dict[str, Tensor] | None
    device: torch.device


def plan_train(options: Mapping[str, Any]) -> ClassifierPlan:
    """``train``'s arguments (by name) -> the run it makes, with nothing written yet."""
    o = SimpleNamespace(**options)
    if not o.data:
        raise UlmfitError("--data (a labelled tokenized folder) is required")
    if o.head_only and o.from_scratch:
        raise UlmfitError("--head_only trains on a pretrained encoder; it cannot be combined with --from_scratch")
    data_dir = Path(o.data)
    vocab = Vocab.load(require(data_dir / VOCAB))
    classes = require_classes(data_dir, "tokenize labelled data to train a classifier")

    weights = None
    if o.encoder:
        if o.from_scratch:  # the encoder's architecture only
            enc_cfg = load_config(LMTrainConfig, require(Path(o.encoder) / CONFIG))
        else:
            enc_cfg, weights = load_encoder(Path(o.encoder), data_dir, o.backwards)
        preset = o.preset or enc_cfg.preset
        model_cfg = dataclasses.replace(enc_cfg.model, vocab_size=len(vocab), **given_options(drop_mult=o.drop_mult))
    elif o.from_scratch:
        preset = o.preset or ClassifierConfig.preset
        model_cfg = make_config(preset, len(vocab), **given_options(drop_mult=o.drop_mult))
    else:
        raise UlmfitError("--encoder (a fine-tuned language-model folder) is required unless --from_scratch")

    dev = resolve_device(o.device)
    fields = preset_options(preset, "classifier", epochs=o.epochs, max_steps=o.max_steps, min_steps=o.min_steps,
                            schedule=o.schedule, lr=o.lr, optimizer=o.optimizer, bs=o.bs, seed=o.seed, max_train=o.max_train,
                            max_tokens=o.max_tokens, accumulate=o.accumulate,
                            checkpoint_tokens=o.checkpoint_tokens)
    cfg = ClassifierConfig(**fields, preset=preset, model=model_cfg, data=str(data_dir),
                           encoder=str(o.encoder) if o.encoder else None,
                           from_scratch=o.from_scratch, backwards=o.backwards,
                           gradual_unfreezing=not (o.no_gradual_unfreezing or o.from_scratch or o.head_only),
                           head_only=o.head_only, cycle_per_epoch=o.cycle_per_epoch, keep_best=o.keep_best,
                           discriminative=not (o.no_discriminative or o.from_scratch),
                           tricks=parse_tricks(o.tricks, "classifier"), precision=resolve_precision(o.precision, dev))

    return ClassifierPlan(cfg, classes, weights, dev)


def classifier_parts(plan: ClassifierPlan, train_data: ClassificationData) -> TrainingParts:
    """The model, optimizer, schedule, callbacks and training batches of a classifier run."""
    cfg = plan.cfg
    torch.manual_seed(cfg.seed)
    model = build_classifier(cfg, len(plan.classes))
    if plan.weights is not None:
        model.encoder.load_state_dict(plan.weights)
    model.to(plan.device)
    distributed.seed_rank(cfg.seed)
    groups = model.layer_groups()
    optimizer = cfg.make_optimizer(groups, disc_factor=None if cfg.discriminative else 1.0)
    callbacks: list[Callback] = [Accuracy()]
    if cfg.gradual_unfreezing:
        callbacks.append(GradualUnfreezing(groups))
    if cfg.head_only:
        set_trainable_groups(groups, 1)
    callbacks += build_callbacks(cfg.tricks)
    source = cfg.training_source(train_data)
    schedule = cfg.make_schedule()
    if cfg.cycle_per_epoch:
        schedule = restarted(schedule, source.n_batches(0))
    return TrainingParts(model, classification_loss, optimizer, schedule, callbacks, source)


def _latest_classifier_probs(cfg: ClassifierConfig, out_dir: Path,
                             device: torch.device) -> Callable[[Sequence[np.ndarray]], np.ndarray]:
    """Class probabilities by the classifier ``out_dir`` holds when called: each pseudo-labelling
    round predicts with the previous round's."""
    def probs(docs: Sequence[np.ndarray]) -> np.ndarray:
        _, _, model = load_classifier(out_dir)
        return predict_probs(model.to(device), docs, cfg.bs, cfg.backwards, device, cfg.max_tokens)
    return probs


def _fit(plan: ClassifierPlan, out_dir: Path, train_data: ClassificationData, valid_data: ClassificationData,
         resume: bool) -> dict:
    cfg = plan.cfg
    parts = classifier_parts(plan, train_data)
    trainer = Trainer(parts.model, parts.loss_fn, parts.optimizer, parts.schedule, parts.callbacks,
                      train_data=parts.train_data, valid_data=valid_data, epochs=cfg.epochs, max_steps=cfg.max_steps,
                      out_dir=out_dir, device=plan.device, monitor="valid_error",
                      checkpoint_interval_s=CHECKPOINT_INTERVAL_S, **cfg.trainer_options())
    history = trainer.fit(resume=resume)
    if not history:
        raise UlmfitError("the run trained no epoch (epochs or max_steps is 0)")
    final, best = history[-1], min(history, key=lambda m: m["valid_error"])
    metrics = {
        "valid_error": (best if cfg.keep_best else final)["valid_error"],  # of the weights in model.pt
        "best_valid_error": best["valid_error"], "best_valid_accuracy": best["valid_accuracy"],
        "best_valid_loss": best["valid_loss"], "best_epoch": best["epoch"],
        "final_valid_error": final["valid_error"], "final_valid_loss": final["valid_loss"],
        "epochs": final["epoch"], "steps": final["step"], "train_docs": len(train_data),
        "valid_docs": len(valid_data), "train_time_s": sum(m["train_time_s"] for m in history),
        "time_s": sum(m["time_s"] for m in history), "peak_rss_mb": round(peak_rss_mb(), 1),
        **distributed.run_info(),
    }
    if distributed.is_main():
        kept = (torch.load(out_dir / BEST_WEIGHTS, map_location="cpu", weights_only=True) if cfg.keep_best
                else {name: tensor.detach().cpu() for name, tensor in trainer.exported_weights().items()})
        save_weights(out_dir / MODEL, kept)  # on the CPU either way, loadable on a machine without a GPU
        write_json(out_dir / METRICS, metrics)
    return metrics
