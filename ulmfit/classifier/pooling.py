"""Masked concat pooling: [last real output, max over real outputs, mean over real outputs].

Padding must never leak into a document's features, otherwise a document's prediction would
depend on how long its batch-mates are. The pooler is streaming so that BPT3C can read a long
document chunk by chunk without keeping every chunk's outputs around.
"""
from __future__ import annotations

import torch
from torch import Tensor


class ConcatPooler:
    """Accumulates [last, max, mean] over the masked positions of a sequence read in chunks.

    Chunks must be fed in order; "last" is the output at the last ``True`` position seen so far.
    A row with no ``True`` position at all pools to zeros.
    """

    def __init__(self) -> None:
        self._last: Tensor | None = None
        self._max: Tensor | None = None
        self._sum: Tensor | None = None
        self._count: Tensor | None = None

    def update(self, outputs: Tensor, mask: Tensor) -> None:
        """Add one chunk: ``outputs`` [B, T, H], ``mask`` [B, T] bool (True = real token)."""
        if outputs.dim() != 3 or mask.shape != outputs.shape[:2]:
            raise ValueError(f"outputs {tuple(outputs.shape)} and mask {tuple(mask.shape)} do not match")
        mask = mask.to(torch.bool)
        real = mask.unsqueeze(-1)
        chunk_max = outputs.masked_fill(~real, float("-inf")).amax(dim=1)
        chunk_sum = outputs.masked_fill(~real, 0.0).sum(dim=1)
        chunk_count = mask.sum(dim=1, keepdim=True)
        # Index of the last True per row (0 for rows without any; those keep their previous value).
        steps = torch.arange(1, mask.shape[1] + 1, device=mask.device)
        last_index = (mask * steps).argmax(dim=1)
        chunk_last = outputs[torch.arange(outputs.shape[0], device=outputs.device), last_index]
        has_real = chunk_count > 0
        if self._last is None:
            self._last = torch.where(has_real, chunk_last, torch.zeros_like(chunk_last))
            self._max, self._sum, self._count = chunk_max, chunk_sum, chunk_count
        else:
            self._last = torch.where(has_real, chunk_last, self._last)
            self._max = torch.maximum(self._max, chunk_max)
            self._sum = self._sum + chunk_sum
            self._count = self._count + chunk_count

    def result(self) -> Tensor:
        """The pooled features [B, 3H]: last, max and mean concatenated."""
        if self._last is None:
            raise ValueError("ConcatPooler.result() called before any update()")
        has_real = self._count > 0
        max_pool = torch.where(has_real, self._max, torch.zeros_like(self._max))
        mean_pool = self._sum / self._count.clamp(min=1).to(self._sum.dtype)
        return torch.cat([self._last, max_pool, mean_pool], dim=-1)


def masked_concat_pool(outputs: Tensor, mask: Tensor) -> Tensor:
    """[last real output, max, mean] over the ``True`` positions of ``mask``: [B,T,H] -> [B,3H]."""
    pooler = ConcatPooler()
    pooler.update(outputs, mask)
    return pooler.result()
