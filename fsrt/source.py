"""Resolve a model argument: a zoo name, a spec file (YAML/JSON) or a training checkpoint."""

from __future__ import annotations

from pathlib import Path

from fsrt.errors import FsrtError, first_line
from fsrt.spec import ModelSpec

SPEC_SUFFIXES = (".yaml", ".yml", ".json")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".pyth", ".ckpt")


def is_checkpoint_path(source) -> bool:
    """True when ``source`` names a checkpoint file by its suffix (.pt/.pth/.pyth/.ckpt)."""
    return isinstance(source, (str, Path)) and Path(str(source)).suffix.lower() in CHECKPOINT_SUFFIXES


def get_spec(source: str | Path | ModelSpec) -> ModelSpec:
    """The spec named by ``source``: a ``ModelSpec``, a zoo name, a spec file or a checkpoint.

    Checkpoints are dicts saved by ``torch.save`` holding the spec as a dict under ``"spec"``.
    """
    if isinstance(source, ModelSpec):
        return source
    text = str(source)
    path = Path(text)
    suffix = path.suffix.lower()
    if suffix in SPEC_SUFFIXES:
        if not path.exists():
            raise FsrtError(f"spec file {text} does not exist")
        return ModelSpec.load(path)
    if suffix in CHECKPOINT_SUFFIXES:
        return load_checkpoint_spec(path)
    if path.is_file():
        raise FsrtError(f"cannot tell what {text} is: spec files end in .yaml/.yml/.json and "
                        "checkpoints in .pt/.pth/.ckpt")
    from fsrt.zoo import zoo_spec

    return zoo_spec(text)


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint dict on CPU, turning unreadable or truncated files into clear errors."""
    import torch

    p = Path(path)
    if not p.exists():
        raise FsrtError(f"checkpoint {p} does not exist")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt archives
        raise FsrtError(f"cannot read checkpoint {p} (corrupt or truncated?): {first_line(e)[:200]}") from None
    if not isinstance(ckpt, dict) or "spec" not in ckpt:
        raise FsrtError(f"{p} is not an fsrt checkpoint (no 'spec' entry); train with 'fsrt train'")
    return ckpt


def load_checkpoint_spec(path: str | Path) -> ModelSpec:
    """The spec stored in an fsrt checkpoint."""
    return ModelSpec.from_dict(load_checkpoint(path)["spec"])
