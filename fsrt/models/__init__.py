"""Builders from a ``ModelSpec`` to an ``nn.Module``."""

from __future__ import annotations

from fsrt.spec import ModelSpec


def build_model(spec: ModelSpec, *, zero_init_last_bn: bool = False, device=None, in_channels: int = 3):
    """Build the ``nn.Module`` a spec describes, with pycls weight init.

    ``device="meta"`` builds without allocating memory (for shape and complexity checks).
    """
    import contextlib

    import torch

    from fsrt.models.net import Net, init_weights

    with torch.device(device) if device is not None else contextlib.nullcontext():
        model = Net(spec, in_channels=in_channels)
        if str(device) != "meta":
            init_weights(model, zero_init_last_bn=zero_init_last_bn)
    return model


__all__ = ["build_model"]
