"""Checkpoints: atomic ``torch.save`` (temp file + fsync + rename) and RNG state capture.

Contract (read by ``fsrt export``/``fsrt bench`` through ``fsrt.source.load_checkpoint``):
a dict with ``spec`` (``ModelSpec.to_dict()`` of the trained spec, its ``resolution`` the
size trained at and ``num_classes`` the data's), ``model`` (state_dict of the ``Net``),
``ema`` (state_dict or None), ``swa`` (state_dict or None), ``optimizer``, ``scaler``,
``scheduler`` ({"step": n}), ``epoch`` (epochs completed), ``rng``, ``config`` (the resolved
recipe and run settings) and ``history`` (the per-epoch log rows).
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from fsrt.io import atomic_writer


def save_checkpoint(obj: dict, path: str | Path) -> Path:
    """Write ``obj`` with ``torch.save`` so that ``path`` is replaced whole or not at all."""
    with atomic_writer(path) as f:
        torch.save(obj, f)
    return Path(path)


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
