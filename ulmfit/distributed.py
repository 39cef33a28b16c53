"""Data-parallel training across the processes ``torchrun`` starts (one per device).

``torchrun --nproc_per_node N -m ulmfit pretrain ...`` runs N copies of a stage. Each copy (rank)
holds the whole model, reads its own share of every batch (:func:`share`: a block of the token
stream's rows, or of a classifier batch's documents) and, before each optimizer step, averages
its gradients with the others' (:func:`average_gradients`), so every rank takes the same step a
single process would on the whole batch. Rank 0 alone writes files, logs and progress bars.

Why gradients are averaged here with one ``all_reduce`` per step instead of by
``DistributedDataParallel``: DDP builds its gradient buckets once, from the parameters that
require gradients when it is wrapped, and reduces during every backward. Here gradual unfreezing
changes ``requires_grad`` between epochs, tricks call backward several times per step (FGM, PGD,
R-Drop) or skip steps to accumulate (``--accumulate``), and callbacks reach into the model
(``model.layer_groups()``, ``model.encoder``). Reducing once, after the last backward of a step,
over the parameters that then require gradients, is right in all of these cases without
rebuilding a wrapper or ``no_sync`` contexts; the price is that communication does not overlap
the backward pass (little on CPUs; on GPUs a few percent for the model sizes here).

Without torchrun (no ``RANK``/``WORLD_SIZE`` in the environment) there is no process group and
every function here returns at once, leaving the single-process run exactly as it was.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from .errors import UlmfitError

RANK_KEYS = ("epoch_sums", "rng", "callbacks", "accumulated")  # checkpoint entries that differ between ranks


def launched() -> bool:
    """Whether torchrun (or another launcher setting its variables) started this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


@contextlib.contextmanager
def process_group() -> Iterator[None]:
    """The process group of a torchrun launch for the block (gloo for CPU tensors, NCCL for CUDA
    ones, each rank on the GPU of its ``LOCAL_RANK``); nothing outside torchrun."""
    if not launched() or dist.is_initialized():
        yield
        return
    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        backend = "cpu:gloo,cuda:nccl"
    dist.init_process_group(backend)
    try:
        yield
        dist.barrier()  # leave together: no rank tears its connections down while another still works
    finally:
        dist.destroy_process_group()


def exit_without_finalizing(code: int) -> None:
    """End a rank without Python's finalization. Gloo's worker threads can still hold
    collectives' tensors after ``destroy_process_group``; one released while the interpreter
    finalizes takes the GIL from a dying interpreter and the rank aborts (SIGABRT, "terminate called
    without an active exception"; pytorch/pytorch#179291) after a run that succeeded. Every output
    is written, renamed and closed by now, so only the standard streams need flushing."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0: the process that writes files, logs and progress bars."""
    return rank() == 0


def part() -> tuple[int, int]:
    """``(rank, world_size)``: which share of each batch this process reads."""
    return rank(), world_size()


def share(n: int, part: tuple[int, int]) -> slice:
    """Rank ``part[0]``'s contiguous block of ``n`` items split over ``part[1]`` ranks; the
    blocks differ in size by at most one (the first ``n % world`` ranks get one more)."""
    index, world = part
    if not 0 <= index < world:
        raise ValueError(f"rank {index} is not in a world of {world}")
    size, extra = divmod(n, world)
    start = index * size + min(index, extra)
    return slice(start, start + size + (index < extra))


def run_on_main(fn: Callable[..., Any], *args, **kwargs) -> Any:
    """``fn``'s result, computed by rank 0 alone and given to every rank (e.g. preparing the
    output folder). A ``UlmfitError`` there is raised on every rank, so none waits for ever."""
    if world_size() == 1:
        return fn(*args, **kwargs)
    message = [None, None]
    if is_main():
        try:
            message[0] = fn(*args, **kwargs)
        except UlmfitError as e:
            message[1] = str(e)
    dist.broadcast_object_list(message, src=0)
    if message[1] is not None:
        raise UlmfitError(message[1])
    return message[0]


def main_decides(flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank: for decisions taken on a clock (checkpoint every ten
    minutes, a validation curve point), which must be taken by all ranks at the same step."""
    if world_size() == 1:
        return flag
    value = torch.tensor([int(flag)])
    dist.broadcast(value, src=0)
    return bool(value.item())


def sum_across(*values: Any) -> tuple:
    """Each value (a number or a one-element tensor) summed over the ranks; in one process the
    values themselves. Used for metrics over the whole validation set and all ranks' batches."""
    if world_size() == 1:
        return values
    packed = torch.tensor([float(v) for v in values], dtype=torch.float64)
    dist.all_reduce(packed)
    return tuple(int(round(s)) if isinstance(v, int) else s for v, s in zip(values, packed.tolist()))


def average_gradients(model: nn.Module, weight: float) -> None:
    """Make every rank's gradients the mean over all ranks' targets, in one ``all_reduce``.

    ``weight`` is the number of targets this rank's losses averaged over since the last step, so
    ranks with unequal shares (a batch of 33 documents on 2 ranks) still give the gradient of the
    whole batch's mean loss. Only parameters that require gradients now take part (gradual
    unfreezing changes them between epochs, on every rank alike); one that got no gradient on
    any rank (an adaptive-softmax cluster no target fell in) keeps none, as in one process.
    Floating-point buffers (BatchNorm statistics) are averaged too, so they stay equal on all ranks.
    """
    if world_size() == 1:
        return
    params = [p for p in model.parameters() if p.requires_grad]
    buffers = [b for b in model.buffers() if b.is_floating_point()]
    device = params[0].device if params else next(model.buffers()).device
    pieces = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() * weight for p in params]
    pieces += [b.reshape(-1).float() for b in buffers]
    pieces += [torch.tensor([p.grad is not None for p in params] + [weight], dtype=torch.float32, device=device)]
    flat = torch.cat(pieces)
    dist.all_reduce(flat)
    total, had_grad = flat[-1], flat[-1 - len(params):-1]
    offset = 0
    for p, got in zip(params, had_grad.tolist()):
        values = flat[offset:offset + p.numel()].view_as(p).to(p.dtype) / total
        p.grad = values if got else None
        offset += p.numel()
    with torch.no_grad():
        for b in buffers:
            b.copy_(flat[offset:offset + b.numel()].view_as(b) / world_size())
            offset += b.numel()


def seed_rank(seed: int) -> None:
    """Give each rank its own random stream (dropout) from ``(seed, rank)``, once the model is
    built from ``seed`` alike on every rank; one process keeps the stream it has."""
    if world_size() > 1:
        torch.manual_seed(int(np.random.SeedSequence([seed, rank()]).generate_state(1)[0]))


def gather_rank_state(checkpoint: dict) -> dict:
    """``checkpoint`` with the entries that differ between ranks (``RANK_KEYS``: RNG states, the
    epoch's partial sums, callbacks' state such as the carried hidden state) collected from every
    rank into ``"ranks"``, on rank 0 (the one that saves it). One process: unchanged."""
    if world_size() == 1:
        return checkpoint
    mine = _to_cpu({key: checkpoint[key] for key in RANK_KEYS})
    gathered = [None] * world_size() if is_main() else None
    dist.gather_object(mine, gathered, dst=0)
    shared = {k: v for k, v in checkpoint.items() if k not in RANK_KEYS}
    return {**shared, "ranks": gathered}


def rank_state(checkpoint: dict, source: str) -> dict:
    """This rank's view of a checkpoint saved by :func:`gather_rank_state`; resuming needs the
    world size that saved it, since each rank's share of the data and its RNG depend on it."""
    saved = len(checkpoint["ranks"]) if "ranks" in checkpoint else 1
    if saved != world_size():
        raise UlmfitError(f"{source}: saved by a run of {saved} process(es); resume it with the same number "
                          f"(this run has {world_size()}: torchrun --nproc_per_node x --nnodes)")
    if saved == 1:
        return checkpoint
    return {**checkpoint, **checkpoint["ranks"][rank()]}


def run_info() -> dict:
    """What a summary adds about the launch: the number of processes, when more than one."""
    return {"world_size": world_size()} if world_size() > 1 else {}


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_cpu(v) for v in obj]
    return obj
