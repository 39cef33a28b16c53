"""A tiny deterministic text classifier and fixed batches, for the tricks that act on the embedding
(fgm, pgd): without dropout two forwards of the same batch give the same result, so the tests can
redo by hand what a trick computes."""
from __future__ import annotations

import copy

import numpy as np
import torch

from ulmfit.classifier.head import TextClassifier
from ulmfit.classifier.sampling import pad_batch
from ulmfit.model.awd_lstm import make_config
from ulmfit.schedules import constant
from ulmfit.classifier.callbacks import classification_loss
from ulmfit.classifier.data import ClassBatch
from ulmfit.stages.classify import ClassifierConfig, build_classifier
from ulmfit.text.special import PAD_ID
from ulmfit.training import Callback, Trainer, make_optimizer

VOCAB, CLASSES = 40, 3


def tiny_classifier(seed: int = 0) -> TextClassifier:
    torch.manual_seed(seed)
    cfg = ClassifierConfig(model=make_config("tiny", VOCAB, drop_mult=0.0), bptt=4, max_len=12,
                           head_hidden=8, head_dropout=0.0)
    return build_classifier(cfg, CLASSES)


class FixedBatches:
    """``n`` batches of random documents (ids 9..VOCAB-1, 3..10 tokens), the same every epoch."""

    def __init__(self, n: int = 3, bs: int = 6, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.items = []
        for _ in range(n):
            docs = [rng.integers(9, VOCAB, rng.integers(3, 11)) for _ in range(bs)]
            tokens, lengths = pad_batch(docs, PAD_ID)
            self.items.append(ClassBatch(tokens, lengths, torch.from_numpy(rng.integers(0, CLASSES, bs))))

    def n_batches(self, epoch: int) -> int:
        return len(self.items)

    def batches(self, epoch: int, start: int = 0):
        return iter(self.items[start:])


def classifier_trainer(callbacks, model=None, data=None, **trainer_args) -> Trainer:
    model = model if model is not None else tiny_classifier()
    opt = make_optimizer([list(model.parameters())], [1e-2])
    return Trainer(model, classification_loss, opt, constant, callbacks, train_data=data or FixedBatches(),
                   progress=False, **trainer_args)


class FirstStepGrads(Callback):
    """Keeps, for the first training batch, the weights before its backward and every gradient
    just before the step, then stops the run (the step is not taken)."""

    order = 100

    def before_backward(self, trainer: Trainer) -> None:
        self.weights = copy.deepcopy(trainer.model.state_dict())

    def before_step(self, trainer: Trainer) -> None:
        self.grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
        self.weights_after = copy.deepcopy(trainer.model.state_dict())
        trainer.skip_step = trainer.stop_training = True


def loss_and_grads(model: TextClassifier, batch: ClassBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of ``batch`` and the gradient of every parameter, on a copy of ``model``."""
    model = copy.deepcopy(model)
    model.zero_grad()
    loss = classification_loss(model(*batch.inputs), batch.target)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
