"""Resolve a model argument: a zoo name, a spec file (YAML/JSON) or a training checkpoint."""

from __future__ import annotations

from pathlib import Path

from fsrt.checkpoint import CHECKPOINT_SUFFIXES, is_checkpoint_path, load_checkpoint, load_checkpoint_spec
from fsrt.errors import FsrtError
from fsrt.spec import ModelSpec

SPEC_SUFFIXES = (".yaml", ".yml", ".json")

__all__ = ["CHECKPOINT_SUFFIXES", "SPEC_SUFFIXES", "get_spec", "is_checkpoint_path", "load_checkpoint",
           "load_checkpoint_spec", "source_kind"]


def source_kind(source: str | Path) -> str:
    """``spec`` (a .yaml/.yml/.json file), ``checkpoint`` (.pt/.pth/.pyth/.ckpt) or ``zoo``."""
    suffix = Path(str(source)).suffix.lower()
    if suffix in SPEC_SUFFIXES:
        return "spec"
    return "checkpoint" if suffix in CHECKPOINT_SUFFIXES else "zoo"


def _folder_error(path: Path) -> FsrtError:
    """A folder given as the model: point at the run's checkpoint when it holds one."""
    for name in ("last.pt", "best.pt"):
        if (path / name).is_file():
            return FsrtError(f"{path} is a folder, not a model; to use the run it holds, give its "
                             f"checkpoint: {path / name}")
    return FsrtError(f"{path} is a folder, not a model; give a zoo name (see 'fsrt models'), "
                     "a spec file (.yaml/.json) or a checkpoint (.pt)")


def get_spec(source: str | Path | ModelSpec) -> ModelSpec:
    """The spec named by ``source``: a ``ModelSpec``, a zoo name, a spec file or a checkpoint
    (read through ``fsrt.checkpoint``, which owns the checkpoint format)."""
    if isinstance(source, ModelSpec):
        return source
    text = str(source)
    path = Path(text)
    kind = source_kind(path)
    if path.is_dir() and kind != "zoo":
        raise _folder_error(path)
    if kind == "spec":
        if not path.exists():
            raise FsrtError(f"spec file {text} does not exist")
        return ModelSpec.load(path)
    if kind == "checkpoint":
        return load_checkpoint_spec(path)
    if path.is_file():
        raise FsrtError(f"cannot tell what {text} is: spec files end in .yaml/.yml/.json and "
                        "checkpoints in .pt/.pth/.ckpt")
    from fsrt.zoo import zoo_spec

    try:
        return zoo_spec(text)
    except FsrtError:
        if path.is_dir():  # not a zoo name but a folder, e.g. a training run
            raise _folder_error(path) from None
        raise
