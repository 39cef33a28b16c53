"""Numeric precision of a run: float32, or bfloat16/float16 forwards under autocast.

Weights, optimizer state, losses and AR/TAR stay float32 in every setting. bf16 needs no loss
scaling (it has float32's exponent range); fp16 does, and a GradScaler then scales the loss and
skips steps whose gradients overflowed (see ``Trainer``). On a CPU, bf16 pays only where the
cores have native bf16 instructions (AVX512-BF16 or AMX); elsewhere it is emulated and slower.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch

from .errors import UlmfitError

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU advertises bf16 instructions (Linux; elsewhere False: fp32 is the safe bet)."""
    try:
        flags = set(Path(cpuinfo).read_text().split())
    except OSError:
        return False
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def fast_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


def resolve_precision(precision: str, device: torch.device) -> str:
    """``precision`` as a run uses it: ``auto`` is bf16 where the device computes it natively,
    else fp32; fp16 needs a GPU (CPU kernels of fp16 LSTMs are missing or slow)."""
    if precision == "auto":
        return "bf16" if fast_bf16(device) else "fp32"
    if precision not in PRECISIONS:
        raise UlmfitError(f"--precision {precision!r}: choose auto, {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise UlmfitError(f"--precision fp16 needs a CUDA device, not {device.type}; use bf16 or fp32")
    return precision


def autocast(precision: str, device: torch.device) -> torch.autocast:
    """The autocast context of ``precision`` on ``device`` (disabled for fp32)."""
    dtype = PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)
