"""Random-number state saved in checkpoints, so ``--resume`` continues the same random stream."""

from __future__ import annotations

import random

import torch


def rng_state() -> dict:
    """Torch CPU/CUDA and Python RNG states (loadable with ``weights_only=True``)."""
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` captured (missing parts are left alone)."""
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "python" in state:
        random.setstate((3, tuple(state["python"]), None))
