"""Mixed precision: which autocast dtype a run uses, and its gradient scaler."""

from __future__ import annotations

import contextlib

import torch

from fsrt.train.recipe import Recipe


def amp_setup(recipe: Recipe, device: torch.device):
    """(autocast dtype or None, GradScaler). ``amp: on`` uses bf16 autocast on CPU and, on GPU,
    bf16 where supported unless ``amp_dtype`` is fp16 (fp16 gets a gradient scaler).
    ``amp: auto`` is on for GPU and off for CPU: on the 2-core EPYC used here bf16 autocast made
    a small RegNetX step 5x slower than fp32 (grouped convs have no fast bf16 CPU kernel)."""
    off = torch.amp.GradScaler(device.type, enabled=False)
    if recipe.amp == "off" or (recipe.amp == "auto" and device.type == "cpu"):
        return None, off
    if device.type == "cpu":
        return torch.bfloat16, off
    if recipe.amp_dtype == "fp16" or (recipe.amp_dtype == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16, torch.amp.GradScaler(device.type, enabled=True)
    return torch.bfloat16, off


def autocast(device: torch.device, dtype):
    """Autocast context for ``dtype`` (a no-op context when AMP is off)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
