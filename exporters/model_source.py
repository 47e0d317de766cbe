"""Turn what the user names (spec, zoo name, spec file, checkpoint, built module) into an eval module.

Checkpoints are read through ``fsrt.checkpoint``, the core module that owns their format
(spec, model and EMA weights, wrapper prefixes, one-line errors).
"""

from __future__ import annotations

from fsrt.checkpoint import clean_state_dict, is_checkpoint_path, load_checkpoint_model, load_weights
from fsrt.errors import FsrtError
from fsrt.source import get_spec
from fsrt.spec import ModelSpec

__all__ = ["clean_state_dict", "load_model", "load_weights"]


def load_model(source, *, ema: bool = False):
    """``(module in eval mode, ModelSpec)`` for ``source``.

    ``source`` is an ``nn.Module`` built by ``fsrt.build_model`` (returned itself, switched to
    eval mode), a ``ModelSpec``, a zoo name or spec file (freshly initialized weights), or a
    checkpoint (weights from its ``"model"`` entry, or from ``"ema"`` when ``ema=True``).
    Errors are one-line ``FsrtError``.
    """
    import torch

    from fsrt.models import build_model

    if isinstance(source, torch.nn.Module):
        spec = getattr(source, "spec", None)
        if not isinstance(spec, ModelSpec):
            raise FsrtError("the module has no .spec: build it with fsrt.build_model(spec)")
        if ema:
            raise FsrtError("ema=True needs a checkpoint, not a module")
        return source.eval(), spec
    if is_checkpoint_path(source):
        model, spec = load_checkpoint_model(source, ema=ema)
        return model.eval(), spec
    if ema:
        raise FsrtError(f"--ema needs a checkpoint; {source} is not one")
    spec = get_spec(source)
    return build_model(spec).eval(), spec
