"""Class probabilities of documents by a trained classifier, in their given order.

Used by the inference stages and by the pseudo_label trick inside ``ulmfit train``; it lives
below both (not in ``ulmfit.stages.infer``) so that the train stage needs no inference stage.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..text.special import PAD_ID
from .head import TextClassifier
from .sampling import pad_batch, sorted_batches, unsort


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
