"""Exponential moving average of a model's weights *and* BN buffers.

``ema = decay_t * ema + (1 - decay_t) * model`` for every floating parameter and buffer
(integer buffers such as ``num_batches_tracked`` are copied), with the warmup
``decay_t = min(decay, (1 + n) / (10 + n))`` over the number of updates n so that short runs
still get a useful average. The EMA model is what ``ema_top1`` reports and what a checkpoint
stores under ``"ema"``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEma:
    """An EMA copy of ``model`` (kept in eval mode, no gradients)."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.warmup, self.updates = decay, warmup, 0

    def current_decay(self) -> float:
        """Decay used by the next update."""
        n = self.updates
        return min(self.decay, (1.0 + n) / (10.0 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average toward ``model``'s current weights and buffers."""
        d = self.current_decay()
        src = dict(model.state_dict())
        floats_e, floats_m = [], []
        for name, e in self.module.state_dict().items():
            m = src[name]
            if e.is_floating_point():
                floats_e.append(e)
                floats_m.append(m.detach())
            else:
                e.copy_(m)
        if floats_e:
            torch._foreach_lerp_(floats_e, floats_m, 1.0 - d)
        self.updates += 1

    def state_dict(self) -> dict:
        """The EMA model's state_dict (same keys as the model's)."""
        return self.module.state_dict()

    def load_state_dict(self, state: dict, updates: int) -> None:
        """Restore the average and its update count."""
        self.module.load_state_dict(state)
        self.updates = updates
