"""The language model's output layer: a full softmax or an adaptive softmax (Grave et al. 2017).

With a frequency-sorted vocabulary (ids ``0..cutoffs[0]-1`` the most frequent), an adaptive
softmax puts the frequent words in a *head* softmax together with one entry per *cluster* of rarer
words; a rare word's probability is ``p(cluster | h) * p(word | cluster, h)``. Every position pays
for the head, but a cluster's softmax is computed only at the positions whose target lies in it,
so with Zipfian text the output layer costs a fraction of the full ``V``-way product (which is
most of an AWD-LSTM step on a CPU). Log-probabilities stay exact: head and clusters are each
normalized, so perplexities compare with a full-softmax model on the same vocabulary.

Unlike Grave et al., every word keeps a full-width output row (no per-cluster down-projection):
the rows are one ``[V, emb_size]`` matrix, so they can be tied to the embedding and mapped onto a
new vocabulary row by row, exactly as for the full softmax. Only the cluster entries of the head
(``cluster_weight``, ``cluster_bias``: one row per cutoff) are new parameters.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def cluster_bounds(vocab_size: int, cutoffs: Sequence[int]) -> list[int]:
    """``[head_size, end of cluster 1, ..., vocab_size]``: the cutoffs that fall inside the
    vocabulary, then its size. A vocabulary smaller than the first cutoff has a head only."""
    return [c for c in cutoffs if c < vocab_size] + [vocab_size]


class OutputLayer(nn.Module):
    """Scores the next token from the last layer's output: ``nll(hidden, target)``.

    ``weight`` [V, D] and ``bias`` [V] hold one row per word (``weight`` may be the embedding,
    tied); ``cutoffs`` () is the plain softmax over all ``V`` words.
    """

    def __init__(self, emb_size: int, vocab_size: int, cutoffs: Sequence[int] = ()):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, emb_size))
        self.bias = nn.Parameter(torch.empty(vocab_size))
        # drawn as nn.Linear draws them (the decoder used to be one), so a seed gives the same run
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        nn.init.uniform_(self.bias)
        nn.init.zeros_(self.bias)
        # one head entry per cutoff, also those beyond a small vocabulary (then unused), so that
        # the parameter shapes do not depend on the vocabulary a model is fine-tuned on
        self.cluster_weight = nn.Parameter(torch.zeros(len(cutoffs), emb_size)) if cutoffs else None
        self.cluster_bias = nn.Parameter(torch.zeros(len(cutoffs))) if cutoffs else None
        self.bounds = cluster_bounds(vocab_size, cutoffs)
        self.register_buffer("cluster_starts", torch.tensor(self.bounds[:-1]), persistent=False)

    def extra_repr(self) -> str:
        return f"vocab={self.weight.size(0)}, emb={self.weight.size(1)}, clusters={self.bounds}"

    def head_logits(self, hidden: Tensor) -> Tensor:
        """[N, head_size + clusters]: the frequent words, then one entry per cluster."""
        head, n_clusters = self.bounds[0], len(self.bounds) - 1
        if not n_clusters:
            return F.linear(hidden, self.weight, self.bias)
        weight = torch.cat([self.weight[:head], self.cluster_weight[:n_clusters]])
        bias = torch.cat([self.bias[:head], self.cluster_bias[:n_clusters]])
        return F.linear(hidden, weight, bias)

    def nll(self, hidden: Tensor, target: Tensor) -> Tensor:
        """Negative log-probability of each ``target`` [...] given ``hidden`` [..., D], in float32.

        The matrix products run in whatever precision autocast gives; the softmaxes in float32.
        """
        shape = target.shape
        hidden, target = hidden.reshape(-1, hidden.size(-1)), target.reshape(-1).contiguous()
        if len(self.bounds) == 1:
            return F.cross_entropy(self.head_logits(hidden).float(), target, reduction="none").view(shape)
        cluster = torch.bucketize(target, self.cluster_starts, right=True)  # 0: head, k: cluster k
        head_target = torch.where(cluster == 0, target, self.bounds[0] + cluster - 1)
        nll = F.cross_entropy(self.head_logits(hidden).float(), head_target, reduction="none")
        for k in range(1, len(self.bounds)):
            rows = (cluster == k).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            start, end = self.bounds[k - 1], self.bounds[k]
            logits = F.linear(hidden[rows], self.weight[start:end], self.bias[start:end])
            nll = nll.index_add(0, rows, F.cross_entropy(logits.float(), target[rows] - start, reduction="none"))
        return nll.view(shape)
