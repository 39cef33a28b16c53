"""Optimizers torch does not ship: LAMB (You et al. 2019)."""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import Tensor


def trust_ratio(weight: Tensor, update: Tensor) -> Tensor:
    """``||weight|| / ||update||``, or 1 when either norm is 0 (a zero-initialized bias, or nothing to do).

    Scaling each tensor's step by it makes every layer move by about ``lr`` times its own norm,
    whatever the scale of its gradients, which is what lets LAMB train with very large batches.
    """
    w_norm, u_norm = weight.norm(), update.norm()
    return torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))


class Lamb(torch.optim.Optimizer):
    """LAMB: Adam's bias-corrected moments, decoupled weight decay added to the update, and the
    update of every parameter tensor rescaled by its trust ratio (see :func:`trust_ratio`)::

        m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
        u = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) + weight_decay * w
        w = w - lr * trust_ratio(w, u) * u
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.0):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Lamb: need lr, eps, weight_decay >= 0 and betas in [0, 1), got lr={lr}, "
                             f"betas={betas}, eps={eps}, weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
                state["step"] += 1
                m, v, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
                m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                update = (m / (1 - beta1 ** t)) / ((v / (1 - beta2 ** t)).sqrt_() + group["eps"])
                update.add_(p, alpha=group["weight_decay"])
                p.sub_(update * (group["lr"] * trust_ratio(p, update)))
        return loss
