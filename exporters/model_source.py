"""Turn what the user names (spec, zoo name, spec file, checkpoint, built module) into an eval module.

Checkpoints follow the fsrt contract: a dict with ``"spec"`` (``ModelSpec.to_dict()``),
``"model"`` (the ``Net`` state dict) and ``"ema"`` (a state dict or ``None``). Weights from
wrapped modules (``module.`` from DDP / ``AveragedModel``, ``_orig_mod.`` from
``torch.compile``) are accepted too, since trainers save such dicts in practice.
"""

from __future__ import annotations

from fsrt.errors import FsrtError
from fsrt.source import get_spec, is_checkpoint_path, load_checkpoint
from fsrt.spec import ModelSpec

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_WRAPPER_KEYS = ("n_averaged",)


def clean_state_dict(state: dict) -> dict:
    """A state dict without DDP/AveragedModel/torch.compile wrapper prefixes and counters."""
    out = {}
    for key, value in state.items():
        if key in _WRAPPER_KEYS:
            continue
        changed = True
        while changed:
            changed = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        out[key] = value
    return out


def load_weights(model, state: dict, where: str) -> None:
    """Load ``state`` into ``model`` strictly, turning key/shape mismatches into one-line errors."""
    if not isinstance(state, dict):
        raise FsrtError(f"{where} holds no state dict (got {type(state).__name__})")
    state = clean_state_dict(state)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        detail = f"{len(missing)} missing (e.g. {missing[:2]})" if missing else ""
        if unexpected:
            detail += ("; " if detail else "") + f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        raise FsrtError(f"weights in {where} do not match the spec's network: {detail}")
    bad = [k for k, v in own.items() if tuple(getattr(state[k], "shape", ())) != tuple(v.shape)]
    if bad:
        raise FsrtError(f"weights in {where} do not match the spec's network: shape of {bad[0]} is "
                        f"{tuple(state[bad[0]].shape)}, expected {tuple(own[bad[0]].shape)}")
    model.load_state_dict(state, strict=True)


def load_model(source, *, ema: bool = False):
    """``(module in eval mode, ModelSpec)`` for ``source``.

    ``source`` is an ``nn.Module`` built by ``fsrt.build_model`` (returned itself, switched to
    eval mode), a ``ModelSpec``, a zoo name or spec file (freshly initialized weights), or a
    checkpoint (weights from its
    ``"model"`` entry, or from ``"ema"`` when ``ema=True``). Errors are one-line ``FsrtError``.
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
        ckpt = load_checkpoint(source)
        try:
            spec = ModelSpec.from_dict(ckpt["spec"])
        except FsrtError as e:
            raise FsrtError(f"checkpoint {source}: {e}") from None
        key = "ema" if ema else "model"
        if ckpt.get(key) is None:
            hint = " (train with EMA enabled, or drop --ema)" if ema else ""
            raise FsrtError(f"checkpoint {source} has no '{key}' weights{hint}")
        model = build_model(spec)
        load_weights(model, ckpt[key], f"checkpoint {source} ['{key}']")
        return model.eval(), spec
    if ema:
        raise FsrtError(f"--ema needs a checkpoint; {source} is not one")
    spec = get_spec(source)
    return build_model(spec).eval(), spec
