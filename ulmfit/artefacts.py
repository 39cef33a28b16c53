"""The names of the files the stages leave on disk, each written down once.

A tokenized folder (``ulmfit tokenize``)::

    config.json, metrics.json          the TokenizeConfig and the corpus statistics
    vocab.json, tokenizer.json (+ spm.model)   the vocabulary and how text becomes tokens
    classes.json                       class names of labelled data (index = label id)
    <split>_ids.npy, <split>_offsets.npy (+ <split>_labels.npy)   see ulmfit.text.corpus

A language-model folder (``pretrain``, ``finetune``) and a classifier folder (``train``)::

    config.json, metrics.json          the run's config and summary
    vocab.json, tokenizer.json (+ spm.model)   copied from the tokenized folder trained on
    model.pt                           the weights (a state_dict, loads with weights_only=True)
    encoder.pt                         language models: the encoder's weights, for a classifier
    classes.json                       classifiers: the class names
    log.jsonl, best.pt, last.pt        the trainer's per-epoch log, best weights and full state
    curve.jsonl                        language models with --curve_every_s
    eval_<split>.json, confusion_<split>.png, probs_<split>.npy   classifiers, by ``evaluate``
    ensemble_<split>.json, ensemble_probs_<split>.npy             ``ensemble``'s output folder

An ``lr_find`` folder: config.json (the sweep and the stage's run config), lr_find.json, lr_find.png.

This module imports nothing of the package, so that every layer (text, training, output folders,
stages) can name the files from here; reading and checking a model folder is
:mod:`ulmfit.model_folder`.
"""
from __future__ import annotations

CONFIG = "config.json"
METRICS = "metrics.json"
VOCAB = "vocab.json"
TOKENIZER = "tokenizer.json"
SPM_MODEL = "spm.model"
CLASSES = "classes.json"
MODEL = "model.pt"
ENCODER = "encoder.pt"
LOG = "log.jsonl"               # one JSON object per epoch
BEST_WEIGHTS = "best.pt"        # weights of the epoch with the best monitored metric
LAST_CHECKPOINT = "last.pt"     # full training state, for resume
CURVE = "curve.jsonl"           # --curve_every_s: validation perplexity against training time
LR_FIND_REPORT = "lr_find.json"  # lr_find's folder: the suggested rate, the rates and losses
LR_FIND_PLOT = "lr_find.png"     # ... and the loss against the rate

# Per split: name.format(split=...)
EVAL_REPORT = "eval_{split}.json"
EVAL_PROBS = "probs_{split}.npy"
CONFUSION_PLOT = "confusion_{split}.png"
ENSEMBLE_REPORT = "ensemble_{split}.json"
ENSEMBLE_PROBS = "ensemble_probs_{split}.npy"
