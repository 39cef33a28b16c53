"""The AWD-LSTM regularizers: embedding dropout, locked dropout and a weight-dropped LSTM.

All three draw their masks only in training mode and are the identity in eval mode (or
when their probability is 0), so a model behaves deterministically at evaluation time.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _keep_mask(like: Tensor, shape: tuple[int, ...], p: float) -> Tensor:
    """Bernoulli(1 - p) mask already scaled by 1 / (1 - p), so expectations are unchanged."""
    return like.new_empty(shape).bernoulli_(1.0 - p).div_(1.0 - p)


def embedding_dropout(
    tokens: Tensor, weight: Tensor, p: float, training: bool, padding_idx: int | None = None
) -> Tensor:
    """Embed ``tokens`` with whole words (rows of ``weight``) dropped.

    A dropped word is zero at every position of the batch and kept rows are scaled by
    1/(1-p). Instead of masking the whole [V, E] matrix, the looked-up vectors are scaled
    by their word's mask value: the same result and gradients without copying the weight.
    """
    embedded = F.embedding(tokens, weight, padding_idx)
    if not training or p == 0:
        return embedded
    word_mask = _keep_mask(weight, (weight.size(0),), p)
    return embedded * word_mask[tokens].unsqueeze(-1)


def locked_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Variational dropout on ``x`` [B, T, H]: one mask per sequence, shared by all time steps."""
    if not training or p == 0:
        return x
    return x * _keep_mask(x, (x.size(0), 1, x.size(2)), p)


class LockedDropout(nn.Module):
    """Module form of :func:`locked_dropout`, so the probability shows in the model's repr."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return locked_dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def views_of_one_buffer(tensors: list[Tensor]) -> list[Tensor]:
    """Copies of ``tensors`` as consecutive views of one new buffer (differentiable)."""
    flat = torch.cat([t.reshape(-1) for t in tensors])
    return [view.view_as(t) for view, t in zip(flat.split([t.numel() for t in tensors]), tensors)]


class WeightDropLSTM(nn.LSTM):
    """A one-layer, batch-first LSTM with DropConnect on its hidden-to-hidden weight.

    The parameters are exactly those of ``nn.LSTM`` (so checkpoints hold only the raw
    weights under the usual names). Each training forward draws a new dropout mask on
    ``weight_hh_l0`` and hands the dropped copy to the same fused op ``nn.LSTM`` uses
    (oneDNN on CPU, cuDNN on GPU); gradients reach the raw weight through the mask.

    cuDNN wants all weights of a call in one contiguous buffer; given separate tensors
    it copies them itself and warns on every call. On GPU the four weights are therefore
    concatenated into one fresh buffer (cuDNN's layout for a single-layer LSTM) and passed
    as views of it, which costs the same copy without the warning.
    """

    def __init__(self, input_size: int, hidden_size: int, weight_p: float):
        super().__init__(input_size, hidden_size, num_layers=1, batch_first=True)
        self.weight_p = weight_p

    def _call_weights(self) -> list[Tensor]:
        weight_hh = self.weight_hh_l0
        if self.training and self.weight_p > 0:
            weight_hh = F.dropout(weight_hh, self.weight_p, training=True)
        weights = [self.weight_ih_l0, weight_hh, self.bias_ih_l0, self.bias_hh_l0]
        return views_of_one_buffer(weights) if weight_hh.is_cuda else weights

    def forward(
        self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        if hx is None:
            zeros = input.new_zeros(1, input.size(0), self.hidden_size)
            hx = (zeros, zeros)
        output, h, c = torch._VF.lstm(
            input, hx, self._call_weights(), True, 1, 0.0, self.training, False, True
        )
        return output, (h, c)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, weight_p={self.weight_p}"
