"""The ``train``, ``evaluate``, ``predict`` and ``ensemble`` stages: the ULMFiT text classifier.

``train`` writes a classifier folder::

    model.pt      weights of the epoch with the lowest validation error (a TextClassifier state_dict)
    config.json   the ClassifierConfig, with the encoder's AWDLSTMConfig nested under "model"
    vocab.json, tokenizer.json (+ spm.model)   copied from the tokenized data folder
    classes.json  class names, index = label id
    log.jsonl     one line of metrics per epoch (valid loss, accuracy, error, trainable groups)
    metrics.json  best and final validation error and accuracy, time, peak memory (peak_rss_mb)
    best.pt, last.pt   the trainer's best weights and full state (for --resume)

``evaluate`` adds ``eval_<split>.json``, ``confusion_<split>.png`` and ``probs_<split>.npy``.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..classifier.head import (PoolingClassifierHead, TextClassifier, gradual_unfreezing_schedule,
                               set_trainable_groups)
from ..classifier.metrics import average_probabilities, classification_report, plot_confusion_matrix
from ..classifier.sampling import pad_batch, sorted_batches, sortish_batches, unsort
from ..classifier.tta import tta_neighbours, tta_probs
from ..classifier.selection import VALID_FRAC, check_labels, labelled_docs
from ..config import load_config
from ..errors import UlmfitError
from ..files import atomic_path, save_npy, write_json
from ..model.awd_lstm import AWDLSTM, make_config
from ..precision import resolve_precision
from ..schedules import default_arg, discriminative_lrs, restarted
from ..text.corpus import (CLASSES_FILE, UNLABELLED, TokenizedSplit, load_classes, load_split, require_classes,
                           save_classes)
from ..text.readers import DocumentSource, ReadOptions
from ..text.special import PAD_ID
from ..text.tokenizers import load_tokenizer
from ..text.vocab import Vocab
from ..training import BEST_WEIGHTS, Callback, Trainer
from ..tricks import build_callbacks, parse_tricks
from ..tricks.pseudo_label import pseudo_label_accuracy, select_pseudo_labels
from .common import (CONFIG, ENCODER, METRICS, MODEL, VOCAB, TrainConfig, first_line, given_options, peak_rss_mb,
                     prepare_out, preset_options, require, resolve_device, save_weights)
from .lm import CHECKPOINT_INTERVAL_S, LM_PRESETS, LMTrainConfig, check_same_tokenizer

PREDICT_CHUNK_DOCS = 4096  # documents tokenized and classified at a time by ``predict``


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
    head_hidden: int = 50
    head_dropout: float = 0.1           # before the last linear layer (the first is the encoder's output_p)
    betas: tuple[float, float] = (0.7, 0.99)
    schedule: str = "stlr"
    cycle_per_epoch: bool = False       # restart the schedule each epoch (each unfreezing stage)
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


# Overrides of the ClassifierConfig defaults per preset; a classifier takes its encoder's preset.
CLF_PRESETS: dict[str, dict] = {
    "paper": {},
    "cpu": {},
    "tiny": {"bs": 32, "bptt": 20, "max_len": 200, "lr": 2e-2, "epochs": 4, "min_steps": 0},
}


# -- data ---------------------------------------------------------------------------------------

class ClassBatch(NamedTuple):
    """Right-padded documents, their lengths and labels (the trainer's batch contract)."""

    tokens: Tensor   # [B, T] int64
    lengths: Tensor  # [B] int64
    labels: Tensor   # [B] int64

    @property
    def inputs(self) -> tuple[Tensor, Tensor]:
        return self.tokens, self.lengths

    @property
    def target(self) -> Tensor:
        return self.labels

    @property
    def n_tokens(self) -> int:
        return int(self.lengths.sum())

    def to(self, device: torch.device | str) -> "ClassBatch":
        return ClassBatch(*(t.to(device, non_blocking=True) for t in self))


class ClassificationData:
    """Batches of labelled documents of a split: sortish and reshuffled per epoch for training
    (``shuffle``), sorted by length for evaluation. The batches depend only on (seed, epoch).

    Args:
        split: the tokenized split, with labels.
        docs: indices of the documents to use.
        bs: documents per batch.
        seed: with the epoch, fixes the training order.
        shuffle: training order (sortish) instead of evaluation order (sorted).
        backwards: reverse every document (BOS included), as the backward LM read it.
        max_tokens: keep only the first ``max_tokens`` tokens of every document (None: all).
    """

    def __init__(self, split: TokenizedSplit, docs: np.ndarray, bs: int, seed: int = 0,
                 shuffle: bool = False, backwards: bool = False, max_tokens: int | None = None):
        if split.labels is None:
            raise ValueError("ClassificationData needs a labelled split")
        self.split, self.docs = split, np.asarray(docs, dtype=np.int64)
        self.lengths = np.minimum(np.diff(split.offsets)[self.docs], max_tokens or np.iinfo(np.int64).max)
        self.bs, self.seed, self.shuffle, self.backwards = bs, seed, shuffle, backwards
        self.max_tokens = max_tokens

    def __len__(self) -> int:
        return len(self.docs)

    def _index_batches(self, epoch: int) -> list[np.ndarray]:
        if self.shuffle:
            return sortish_batches(self.lengths, self.bs, np.random.default_rng([self.seed, epoch]))
        return sorted_batches(self.lengths, self.bs)

    def n_batches(self, epoch: int = 0) -> int:
        return len(self._index_batches(epoch))

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[ClassBatch]:
        for index in self._index_batches(epoch)[start:]:
            docs = self.docs[index]
            tokens, lengths = pad_batch([self.split.doc(i)[:self.max_tokens] for i in docs], PAD_ID,
                                        reverse=self.backwards)
            yield ClassBatch(tokens, lengths, torch.from_numpy(np.asarray(self.split.labels[docs], dtype=np.int64)))


# -- model --------------------------------------------------------------------------------------

def build_classifier(cfg: ClassifierConfig, n_classes: int) -> TextClassifier:
    """The encoder of ``cfg.model`` with the pooling head; ULMFiT's head dropouts are the encoder's
    output dropout and ``head_dropout``."""
    head = PoolingClassifierHead(3 * cfg.model.emb_size, n_classes, cfg.head_hidden,
                                 (cfg.model.dropouts()["output_p"], cfg.head_dropout))
    return TextClassifier(AWDLSTM(cfg.model), head, cfg.bptt, cfg.max_len)


def classification_loss(logits: Tensor, target: Tensor) -> Tensor:
    return nn.functional.cross_entropy(logits.float(), target)


class Accuracy(Callback):
    """Adds ``accuracy`` and ``error`` (1 - accuracy) to every evaluation's metrics."""

    def __init__(self) -> None:
        self.correct = self.total = 0

    def on_eval_start(self, trainer: Trainer) -> None:
        self.correct = self.total = 0

    def after_loss(self, trainer: Trainer) -> None:
        if not trainer.training:
            self.correct += int((trainer.output.argmax(-1) == trainer.target).sum())
            self.total += trainer.target.numel()

    def on_eval_end(self, trainer: Trainer) -> None:
        accuracy = self.correct / max(self.total, 1)
        trainer.eval_metrics.update(accuracy=accuracy, error=1.0 - accuracy)


class GradualUnfreezing(Callback):
    """Before each epoch, lets only the top ``gradual_unfreezing_schedule`` layer groups train.

    Frozen parameters get no gradient, so the optimizer leaves them (and their state) alone.
    Depends only on the epoch, so a resumed run freezes the same groups.
    """

    def __init__(self, groups: Sequence[Sequence[nn.Parameter]]):
        self.groups = groups
        self.trainable = len(groups)

    def on_epoch_start(self, trainer: Trainer) -> None:
        self.trainable = gradual_unfreezing_schedule(len(self.groups), trainer.epoch)
        set_trainable_groups(self.groups, self.trainable)

    def on_epoch_end(self, trainer: Trainer) -> None:
        trainer.metrics["trainable_groups"] = self.trainable


@torch.no_grad()
def predict_probs(model: TextClassifier, docs: Sequence[np.ndarray], bs: int, backwards: bool,
                  device: torch.device, max_tokens: int | None = None) -> np.ndarray:
    """[N, classes] float32 class probabilities of ``docs`` in their given order.

    Documents are read in length-sorted batches (little padding) and put back in order; only
    their first ``max_tokens`` tokens when given (as the classifier was trained).
    """
    docs = [doc[:max_tokens] for doc in docs]
    if len(docs) == 0:
        return np.zeros((0, model.head[-1].out_features), dtype=np.float32)
    was_training = model.training
    model.eval()
    batches = sorted_batches([len(d) for d in docs], bs)
    probs = []
    for index in batches:
        tokens, lengths = pad_batch([docs[i] for i in index], PAD_ID, reverse=backwards)
        logits = model(tokens.to(device), lengths.to(device))
        probs.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
    model.train(was_training)
    return unsort(np.concatenate(probs), np.concatenate(batches))


# -- model folders ------------------------------------------------------------------------------

def check_same_vocab(model_dir: Path, data_dir: Path, hint: str) -> Vocab:
    """The data's vocabulary, refused unless it is the model folder's, id for id."""
    model_vocab, data_vocab = Vocab.load(require(model_dir / VOCAB)), Vocab.load(require(data_dir / VOCAB))
    if model_vocab.itos != data_vocab.itos:
        first = next((i for i, (a, b) in enumerate(zip(model_vocab.itos, data_vocab.itos)) if a != b),
                     min(len(model_vocab), len(data_vocab)))
        raise UlmfitError(f"{data_dir / VOCAB}: not the vocabulary of {model_dir / VOCAB} ({len(data_vocab)} vs "
                          f"{len(model_vocab)} tokens, first difference at id {first}); {hint}")
    return data_vocab


def load_encoder(encoder_dir: Path, data_dir: Path, backwards: bool) -> tuple[LMTrainConfig, dict[str, Tensor]]:
    """A fine-tuned LM folder's config and ``encoder.pt``, checked against the data and direction."""
    cfg = load_config(LMTrainConfig, require(encoder_dir / CONFIG))
    if cfg.backwards != backwards:
        want, have = ("backward", "forward") if backwards else ("forward", "backward")
        raise UlmfitError(f"{encoder_dir}: is a {have} language model; a {want} classifier needs a {want} encoder")
    check_same_tokenizer(encoder_dir, data_dir)
    check_same_vocab(encoder_dir, data_dir, hint=f"fine-tune the language model on {data_dir} first")
    path = require(encoder_dir / ENCODER)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        AWDLSTM(cfg.model).load_state_dict(state)
    except Exception as e:  # unpickling or shape errors: the file does not fit the config
        raise UlmfitError(f"{path}: does not match the architecture in {encoder_dir / CONFIG} "
                          f"({first_line(e)})") from None
    return cfg, state


def load_classifier(model_dir: Path) -> tuple[ClassifierConfig, list[str], TextClassifier]:
    """A classifier folder's config, class names and model (weights loaded, on the CPU)."""
    cfg = load_config(ClassifierConfig, require(model_dir / CONFIG))
    classes = require_classes(model_dir, "a classifier folder written by ulmfit train has one")
    vocab = Vocab.load(require(model_dir / VOCAB))
    if len(vocab) != cfg.model.vocab_size:
        raise UlmfitError(f"{model_dir / VOCAB}: {len(vocab)} tokens, but {model_dir / CONFIG} says "
                          f"vocab_size={cfg.model.vocab_size}")
    path = require(model_dir / MODEL)
    model = build_classifier(cfg, len(classes))
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as e:
        raise UlmfitError(f"{path}: does not match the classifier in {model_dir / CONFIG} and "
                          f"{model_dir / CLASSES_FILE} ({first_line(e)})") from None
    return cfg, classes, model


def check_data_fits(model_dir: Path, classes: list[str], data_dir: Path) -> None:
    """Refuse data tokenized differently from the model's, or with other classes."""
    check_same_tokenizer(model_dir, data_dir)
    check_same_vocab(model_dir, data_dir, hint=f"tokenize the data with --vocab_from {model_dir}")
    data_classes = load_classes(data_dir)
    if data_classes is not None and list(data_classes) != list(classes):
        raise UlmfitError(f"{data_dir / CLASSES_FILE}: classes {data_classes} differ from the model's "
                          f"{model_dir / CLASSES_FILE} {classes}")


def _model_probs(model_dir: Path, data_dir: Path, split: str, bs: int | None, device: torch.device,
                 tta: int = 0) -> tuple[ClassifierConfig, list[str], TokenizedSplit, np.ndarray]:
    """Load a classifier, check it fits the data and return its probabilities on ``split``
    (averaged over ``tta`` augmented copies too)."""
    cfg, classes, model = load_classifier(model_dir)
    check_data_fits(model_dir, classes, data_dir)
    data = load_split(data_dir, split)
    check_labels(data, len(classes), data_dir, split)
    probs = _tta_predict(model.to(device), list(data), cfg, bs, device, tta, tta_neighbours(model, tta))
    return cfg, classes, data, probs


def _tta_predict(model: TextClassifier, docs: Sequence[np.ndarray], cfg: ClassifierConfig, bs: int | None,
                 device: torch.device, tta: int, neighbours: np.ndarray | None, first: int = 0) -> np.ndarray:
    """Class probabilities of ``docs`` read as in training (first max_tokens tokens, then augmented),
    averaged with ``tta`` augmented copies (see ulmfit.classifier.tta); ``first``: index of docs[0]."""
    predict = functools.partial(predict_probs, model, bs=bs or cfg.bs, backwards=cfg.backwards, device=device)
    return tta_probs(predict, [doc[:cfg.max_tokens] for doc in docs], tta, neighbours, first)


def _report(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    labelled = labels != UNLABELLED
    if not labelled.any():
        raise UlmfitError("no labelled documents to score")
    report = classification_report(labels[labelled], probs[labelled].argmax(1), classes)
    return {**report, "unlabelled": int((~labelled).sum())}


def format_report(report: dict) -> str:
    """A few readable lines: overall scores, then precision and recall per class."""
    lines = [f"n {report['n']}  accuracy {report['accuracy']:.4f}  error {report['error_rate']:.4f}  "
             f"macro-F1 {report['macro_f1']:.4f}"]
    for name, scores in report["per_class"].items():
        lines.append(f"  {name:>12}  precision {scores['precision']:.3f}  recall {scores['recall']:.3f}  "
                     f"f1 {scores['f1']:.3f}  support {scores['support']}")
    return "\n".join(lines)


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
          resume: bool = False, device: str = "auto", precision: str = "auto") -> dict:
    """Train a text classifier on a fine-tuned language model's encoder (ULMFiT stage 3).

    Gradual unfreezing (the head alone in the first epoch, one more layer group in each next
    one), discriminative learning rates (each lower group's divided by 2.6) and the slanted
    triangular schedule, each of which can be turned off. The weights of the epoch with the
    lowest validation error are kept. Options left out take the preset's values (``CLF_PRESETS``).

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
        resume: continue an interrupted run in ``out`` (same options) from its last checkpoint.
        device: "cpu", "cuda" or "auto" (cuda if available).
        precision: of training: auto (bf16 where the device computes it natively, else fp32), fp32,
            bf16 or fp16 (GPU only). Evaluation and prediction run in fp32.

    Returns:
        The run's summary, as written to metrics.json.
    """
    if not data or not out:
        raise UlmfitError("--data (a labelled tokenized folder) and --out are required")
    if head_only and from_scratch:
        raise UlmfitError("--head_only trains on a pretrained encoder; it cannot be combined with --from_scratch")
    data_dir, out_dir = Path(data), Path(out)
    vocab = Vocab.load(require(data_dir / VOCAB))
    classes = require_classes(data_dir, "tokenize labelled data to train a classifier")

    weights = None
    if encoder:
        if from_scratch:  # the encoder's architecture only
            enc_cfg = load_config(LMTrainConfig, require(Path(encoder) / CONFIG))
        else:
            enc_cfg, weights = load_encoder(Path(encoder), data_dir, backwards)
        preset = preset or enc_cfg.preset
        model_cfg = dataclasses.replace(enc_cfg.model, vocab_size=len(vocab), **given_options(drop_mult=drop_mult))
    elif from_scratch:
        preset = preset or ClassifierConfig.preset
        model_overrides = {**LM_PRESETS.get(preset, {}).get("model", {}), **given_options(drop_mult=drop_mult)}
        model_cfg = make_config(preset, len(vocab), **model_overrides)
    else:
        raise UlmfitError("--encoder (a fine-tuned language-model folder) is required unless --from_scratch")

    dev = resolve_device(device)
    fields = preset_options(CLF_PRESETS, preset, epochs=epochs, max_steps=max_steps, min_steps=min_steps,
                            schedule=schedule, lr=lr, optimizer=optimizer, bs=bs, seed=seed, max_train=max_train,
                            max_tokens=max_tokens)
    cfg = ClassifierConfig(**fields, preset=preset, model=model_cfg, data=str(data_dir),
                           encoder=str(encoder) if encoder else None,
                           from_scratch=from_scratch, backwards=backwards,
                           gradual_unfreezing=not (no_gradual_unfreezing or from_scratch or head_only),
                           head_only=head_only, cycle_per_epoch=cycle_per_epoch,
                           discriminative=not (no_discriminative or from_scratch),
                           tricks=parse_tricks(tricks, "classifier"), precision=resolve_precision(precision, dev))

    train_data, valid_data = _training_data(cfg, data_dir, len(classes))
    pool = _pseudo_label_pool(cfg, train_data, valid_data, resume)
    resume = prepare_out(out_dir, cfg, data_dir, resume)  # after the data checks: no half-made folder
    save_classes(out_dir, classes)
    metrics = _fit(cfg, out_dir, len(classes), weights, train_data, valid_data, resume, dev)
    if pool is None:
        return metrics
    return _pseudo_label_rounds(cfg, out_dir, len(classes), weights, train_data, valid_data, pool, metrics, dev)


def _training_data(cfg: ClassifierConfig, data_dir: Path,
                   n_classes: int) -> tuple[ClassificationData, ClassificationData]:
    """Training and validation batches of the documents ``labelled_docs`` chooses."""
    chosen = labelled_docs(data_dir, n_classes, cfg.seed, cfg.max_train, cfg.valid_frac)
    return (ClassificationData(chosen.train, chosen.train_docs, cfg.bs, cfg.seed, shuffle=True,
                               backwards=cfg.backwards, max_tokens=cfg.max_tokens),
            ClassificationData(chosen.valid, chosen.valid_docs, cfg.bs, backwards=cfg.backwards,
                               max_tokens=cfg.max_tokens))


def _fit(cfg: ClassifierConfig, out_dir: Path, n_classes: int, weights: dict | None,
         train_data: ClassificationData, valid_data: ClassificationData, resume: bool,
         device: torch.device) -> dict:
    torch.manual_seed(cfg.seed)
    model = build_classifier(cfg, n_classes)
    if weights is not None:
        model.encoder.load_state_dict(weights)
    model.to(device)
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
    trainer = Trainer(model, classification_loss, optimizer, schedule, callbacks,
                      train_data=source, valid_data=valid_data, epochs=cfg.epochs, max_steps=cfg.max_steps,
                      clip=cfg.clip, out_dir=out_dir, device=device, monitor="valid_error",
                      checkpoint_interval_s=CHECKPOINT_INTERVAL_S, precision=cfg.precision)
    history = trainer.fit(resume=resume)
    if not history:
        raise UlmfitError("the run trained no epoch (epochs or max_steps is 0)")
    save_weights(out_dir / MODEL, torch.load(out_dir / BEST_WEIGHTS, map_location="cpu", weights_only=True))
    final, best = history[-1], min(history, key=lambda m: m["valid_error"])
    metrics = {
        "best_valid_error": best["valid_error"], "best_valid_accuracy": best["valid_accuracy"],
        "best_valid_loss": best["valid_loss"], "best_epoch": best["epoch"],
        "final_valid_error": final["valid_error"], "final_valid_loss": final["valid_loss"],
        "epochs": final["epoch"], "steps": final["step"], "train_docs": len(train_data),
        "valid_docs": len(valid_data), "train_time_s": sum(m["train_time_s"] for m in history),
        "time_s": sum(m["time_s"] for m in history), "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    write_json(out_dir / METRICS, metrics)
    return metrics


# -- pseudo-labelling (the pseudo_label trick, see ulmfit.tricks.pseudo_label) --------------------

def _pseudo_label_pool(cfg: ClassifierConfig, train_data: ClassificationData, valid_data: ClassificationData,
                       resume: bool) -> np.ndarray | None:
    """The training-split documents to pseudo-label, or None without the pseudo_label trick: those
    neither trained nor validated on, i.e. the unlabelled ones (-1) and, with --max_train, the
    labelled ones left out of the sample (their labels hidden)."""
    if "pseudo_label" not in cfg.tricks:
        return None
    if resume:
        raise UlmfitError("--resume: a run with the pseudo_label trick cannot be resumed; start it again")
    used = [train_data.docs]
    if valid_data.split is train_data.split:  # the validation documents were held out of train
        used.append(valid_data.docs)
    pool = np.setdiff1d(np.arange(len(train_data.split)), np.concatenate(used))
    if len(pool) == 0:
        raise UlmfitError(f"{cfg.data}: pseudo_label: every training document is labelled and trained on; "
                          f"it needs unlabelled (-1) training documents or --max_train")
    return pool


def _pseudo_label_rounds(cfg: ClassifierConfig, out_dir: Path, n_classes: int, weights: dict | None,
                         train_data: ClassificationData, valid_data: ClassificationData, pool: np.ndarray,
                         metrics: dict, device: torch.device) -> dict:
    """After the first training, each round labels ``pool`` with the latest classifier's confident
    predictions and trains again, from the same starting weights, on the labelled and those
    pseudo-labelled documents (validation unchanged). The last round's files are kept; metrics.json
    adds a record per round (round 0: the first training)."""
    params = cfg.tricks["pseudo_label"]
    true_labels = np.asarray(train_data.split.labels)[pool]
    rounds = [{"round": 0, "pseudo_labelled": 0, "pseudo_accuracy": None, "valid_error": metrics["best_valid_error"]}]
    for r in range(1, params["rounds"] + 1):
        _, _, model = load_classifier(out_dir)
        probs = predict_probs(model.to(device), [train_data.split.doc(i) for i in pool], cfg.bs, cfg.backwards,
                              device, cfg.max_tokens)
        chosen, labels = select_pseudo_labels(probs, params["threshold"])
        metrics = _fit(cfg, out_dir, n_classes, weights, _with_labels(train_data, pool[chosen], labels),
                       valid_data, False, device)
        rounds.append({"round": r, "pseudo_labelled": len(chosen),
                       "pseudo_accuracy": pseudo_label_accuracy(true_labels[chosen], labels),
                       "valid_error": metrics["best_valid_error"]})
    metrics = {**metrics, "pseudo_label_rounds": rounds}
    write_json(out_dir / METRICS, metrics)
    return metrics


def _with_labels(data: ClassificationData, docs: np.ndarray, labels: np.ndarray) -> ClassificationData:
    """``data`` plus ``docs`` of its split trained on as ``labels`` (set in a copy of the split's labels)."""
    split_labels = np.array(data.split.labels, dtype=np.int64)
    split_labels[docs] = labels
    return ClassificationData(dataclasses.replace(data.split, labels=split_labels), np.concatenate([data.docs, docs]),
                              data.bs, data.seed, shuffle=data.shuffle, backwards=data.backwards,
                              max_tokens=data.max_tokens)


def evaluate(model: str, data: str, split: str = "test", bs: int | None = None, tta: int = 0,
             device: str = "auto") -> dict:
    """Score a classifier on a labelled split: accuracy, error rate, macro-F1, per-class precision
    and recall, confusion matrix.

    Writes ``<model>/eval_<split>.json`` (the report), ``<model>/confusion_<split>.png`` and
    ``<model>/probs_<split>.npy`` (float32 [documents, classes], in the split's order; unlabelled
    documents get probabilities too but are not scored). Prints a summary to stderr.

    Args:
        model: classifier folder written by ``ulmfit train``.
        data: tokenized folder with the same tokenizer, vocabulary and classes as the model's.
        split: train, valid or test.
        bs: documents per batch (default: the training batch size).
        tta: test-time augmentation: average the probabilities of every document and of this many
            copies of it changed by EDA operations (see ulmfit.classifier.tta; averaging forward and
            backward classifiers is ``ulmfit ensemble``).
        device: "cpu", "cuda" or "auto" (cuda if available).

    Returns:
        The report, as written to eval_<split>.json.
    """
    model_dir, data_dir = Path(model), Path(data)
    _, classes, split_data, probs = _model_probs(model_dir, data_dir, split, bs, resolve_device(device), tta)
    report = {"model": str(model_dir), "data": str(data_dir), "split": split, "tta": tta,
              **_report(np.asarray(split_data.labels), probs, classes)}
    save_npy(model_dir / f"probs_{split}.npy", probs.astype(np.float32))
    plot_confusion_matrix(np.array(report["confusion_matrix"]), classes, model_dir / f"confusion_{split}.png")
    write_json(model_dir / f"eval_{split}.json", report)
    print(format_report(report), file=sys.stderr)
    return report


def predict(model: str, input: str, output: str, format: str | None = None, encoding: str = "utf-8",
            text_field: str = ReadOptions.text_field, doc_per: str = ReadOptions.doc_per,
            output_format: str | None = None, bs: int | None = None, tta: int = 0, device: str = "auto") -> dict:
    """Classify raw text with a trained classifier, its own tokenizer and vocabulary.

    The input is streamed in chunks of documents; the output has one row per document, in the
    input's order: the predicted label and the probability of every class. Empty documents are
    skipped, as in ``ulmfit tokenize``.

    Args:
        model: classifier folder written by ``ulmfit train``.
        input: a file in any format ``ulmfit tokenize`` reads (txt, csv, tsv, jsonl, trec, a
            folder or tar tree, possibly compressed), or "-" for standard input (one document
            per line; write ``--input=-``, fire reads a lone "-" as a separator).
        output: CSV (columns ``label``, ``prob_<class>``...) or JSONL (``{"label", "probs"}``) file,
            written only once complete.
        format: the input's format; default: inferred from its name.
        encoding: text encoding of the input.
        text_field: CSV/TSV column or JSONL key holding the text.
        doc_per: txt: "line" (one document per line) or "file".
        output_format: "csv" or "jsonl"; default: from the output's name.
        bs: documents per batch (default: the training batch size).
        tta: test-time augmentation with this many augmented copies of every document (see evaluate).
        device: "cpu", "cuda" or "auto" (cuda if available).

    Returns:
        ``{"documents", "output", "counts", "tta"}``: how many documents went to which label.
    """
    model_dir = Path(model)
    out_format = output_format or _output_format(output)
    cfg, classes, clf = load_classifier(model_dir)
    tokenizer = load_tokenizer(model_dir)
    dev = resolve_device(device)
    clf.to(dev)
    neighbours = tta_neighbours(clf, tta)
    counts = np.zeros(len(classes), dtype=np.int64)
    with atomic_path(output) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = _row_writer(f, out_format, classes)
        for texts in _chunks(_input_texts(input, ReadOptions(format=format, encoding=encoding, text_field=text_field,
                                                                  doc_per=doc_per)), PREDICT_CHUNK_DOCS):
            probs = _tta_predict(clf, tokenizer.encode_docs(texts), cfg, bs, dev, tta, neighbours,
                                 first=int(counts.sum()))
            for row in probs:
                writer(row)
            counts += np.bincount(probs.argmax(1), minlength=len(classes))
    return {"documents": int(counts.sum()), "output": str(output),
            "counts": {name: int(n) for name, n in zip(classes, counts)}, "tta": tta}


def ensemble(models: str | Sequence[str], data: str, split: str = "test", out: str | None = None,
             bs: int | None = None, device: str = "auto") -> dict:
    """Average the class probabilities of several classifiers (e.g. forward and backward, or
    several seeds) and score each model and the average on a labelled split.

    Each model reads the documents in its own direction. Writes ``ensemble_<split>.json`` and
    ``ensemble_probs_<split>.npy`` to ``out``.

    Args:
        models: classifier folders, comma-separated (or a list).
        data: tokenized folder with the models' tokenizer, vocabulary and classes.
        split: train, valid or test.
        out: folder for the results; default: the first model's folder.
        bs: documents per batch (default: each model's training batch size).
        device: "cpu", "cuda" or "auto" (cuda if available).

    Returns:
        ``{"models": [per-model summary], "ensemble": full report}``, as written to the JSON.
    """
    names = [m.strip() for m in models.split(",")] if isinstance(models, str) else [str(m) for m in models]
    names = [n for n in names if n]
    if not names:
        raise UlmfitError("--models: give at least one classifier folder")
    data_dir, dev = Path(data), resolve_device(device)
    members, all_probs, classes, labels = [], [], None, None
    for name in names:
        cfg, model_classes, split_data, probs = _model_probs(Path(name), data_dir, split, bs, dev)
        if classes is not None and model_classes != classes:
            raise UlmfitError(f"{Path(name) / CLASSES_FILE}: classes {model_classes} differ from "
                              f"{Path(names[0]) / CLASSES_FILE} {classes}")
        classes, labels = model_classes, np.asarray(split_data.labels)
        report = _report(labels, probs, classes)
        members.append({"model": name, "backwards": cfg.backwards,
                        **{k: report[k] for k in ("accuracy", "error_rate", "macro_f1")}})
        all_probs.append(probs)
    averaged = average_probabilities(all_probs)
    result = {"data": str(data_dir), "split": split, "models": members,
              "ensemble": _report(labels, averaged, classes)}
    out_dir = Path(out) if out else Path(names[0])
    save_npy(out_dir / f"ensemble_probs_{split}.npy", averaged.astype(np.float32))
    write_json(out_dir / f"ensemble_{split}.json", result)
    for member in members:
        print(f"{member['model']}: error {member['error_rate']:.4f}", file=sys.stderr)
    print(f"ensemble: error {result['ensemble']['error_rate']:.4f}", file=sys.stderr)
    return result


# -- predict's input and output -----------------------------------------------------------------

def _input_texts(spec: str, options: ReadOptions) -> Iterator[str]:
    if spec == "-":
        return (line.strip() for line in sys.stdin if line.strip())
    return (text for text, _ in DocumentSource(spec, options))


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


OUTPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}


def _output_format(output: str) -> str:
    fmt = OUTPUT_FORMATS.get(Path(output).suffix.lower())
    if fmt is None:
        raise UlmfitError(f"{output}: cannot tell the output format from the name; use .csv or .jsonl "
                          f"or pass --output_format")
    return fmt


def _row_writer(f, out_format: str, classes: list[str]):
    """A function writing one document's probabilities as a CSV row or a JSON line."""
    if out_format == "csv":
        writer = csv.writer(f)
        writer.writerow(["label"] + [f"prob_{name}" for name in classes])
        return lambda probs: writer.writerow([classes[int(probs.argmax())]] + [f"{p:.6g}" for p in probs])
    if out_format == "jsonl":
        return lambda probs: f.write(json.dumps({"label": classes[int(probs.argmax())],
                                                 "probs": {n: float(p) for n, p in zip(classes, probs)}}) + "\n")
    raise UlmfitError(f"unknown output format {out_format!r}; choose csv or jsonl")
