"""The checkpoint contract: the one place that writes and reads fsrt checkpoints.

A checkpoint is a ``torch.save`` dict, loadable with ``weights_only=True`` (tensors, numbers,
strings, lists and dicts only), holding at least:

- ``spec``: ``ModelSpec.to_dict()`` of the trained network (its ``resolution`` is the size it
  was trained at, ``num_classes`` the data's);
- ``model``: the ``Net`` state dict; ``ema``: the EMA model's state dict or ``None``.

Checkpoints written by ``fsrt train`` also hold ``swa``, ``optimizer``, ``scaler``,
``scheduler`` (``{"step": n}``), ``epoch`` (epochs completed), ``rng``, ``config`` (the resolved
recipe and run settings), ``history`` (the per-epoch log rows) and ``best``.

Weights from wrapped modules (``module.`` from DDP / ``AveragedModel``, ``_orig_mod.`` from
``torch.compile``) are accepted, since trainers save such dicts in practice. Every failure
(missing, empty, truncated or foreign file, weights that do not fit the spec, a full disk)
is a one-line ``FsrtError`` saying what is wrong and what to do.
"""

from __future__ import annotations

import errno
import warnings
import zipfile
from pathlib import Path

from fsrt.errors import FsrtError, first_line
from fsrt.spec import ModelSpec

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".pyth", ".ckpt")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_WRAPPER_KEYS = ("n_averaged",)


def is_checkpoint_path(source) -> bool:
    """True when ``source`` names a checkpoint file by its suffix (.pt/.pth/.pyth/.ckpt)."""
    return isinstance(source, (str, Path)) and Path(str(source)).suffix.lower() in CHECKPOINT_SUFFIXES


# -- writing ---------------------------------------------------------------------------------
def write_error(path: str | Path, e: OSError) -> FsrtError:
    """A one-line error for a failed write to ``path`` (disk full, read-only, no permission)."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "the disk is full (no space left on device)"
        todo = "free some space and run again"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        what = "it is not writable"
        todo = "choose a writable --out"
    else:
        what, todo = first_line(e), "check the path and the disk"
    return FsrtError(f"cannot write {path}: {what}; {todo} (nothing partial was left behind)")


def save_checkpoint(obj: dict, path: str | Path) -> Path:
    """Write ``obj`` with ``torch.save`` so that ``path`` is replaced whole or not at all; a
    failed write (e.g. disk full) raises a one-line ``FsrtError`` and leaves ``path`` as it was."""
    import torch

    from fsrt.io import atomic_writer

    try:
        with atomic_writer(path) as f:
            torch.save(obj, f)
    except OSError as e:
        raise write_error(path, e) from None
    return Path(path)


# -- reading ---------------------------------------------------------------------------------
def _unreadable(p: Path, e: BaseException) -> FsrtError:
    """Why ``torch.load`` failed on ``p``, said without torch's advice to unpickle unsafely."""
    import pickle

    if isinstance(e, OSError):
        return FsrtError(f"cannot read checkpoint {p}: {e.strerror or first_line(e)}")
    with open(p, "rb") as f:
        zip_magic = f.read(4) == b"PK\x03\x04"
    if not zip_magic:
        return FsrtError(f"cannot read checkpoint {p}: it is not a torch checkpoint (not a zip archive); "
                         "use a file written by 'fsrt train' or torch.save")
    if not zipfile.is_zipfile(p) or not isinstance(e, pickle.UnpicklingError):
        return FsrtError(f"cannot read checkpoint {p}: it is corrupt or truncated (its archive cannot be read); "
                         "use another copy, e.g. the run's best.pt")
    return FsrtError(f"cannot read checkpoint {p}: it holds Python objects other than tensors and plain values; fsrt "
                     "loads only those (unpickling anything else could run code from the file)")


def load_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict at ``path`` (on CPU, ``weights_only``), or a one-line ``FsrtError``
    for a missing, empty, truncated, foreign or non-fsrt file."""
    import torch

    p = Path(path)
    if p.is_dir():
        raise FsrtError(f"checkpoint {p} is a folder; give a checkpoint file such as {p / 'last.pt'}")
    if not p.exists():
        raise FsrtError(f"checkpoint {p} does not exist")
    if p.stat().st_size == 0:
        raise FsrtError(f"cannot read checkpoint {p}: it is empty (0 bytes); it was never written completely")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols on foreign files
            ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt archives
        raise _unreadable(p, e) from None
    if not isinstance(ckpt, dict) or "spec" not in ckpt:
        raise FsrtError(f"{p} is not an fsrt checkpoint (no 'spec' entry); train with 'fsrt train'")
    return ckpt


def checkpoint_spec(ckpt: dict, where: str | Path) -> ModelSpec:
    """The spec stored in a loaded checkpoint (``where`` names it in errors)."""
    try:
        return ModelSpec.from_dict(ckpt["spec"])
    except FsrtError as e:
        raise FsrtError(f"checkpoint {where}: {e}") from None


def load_checkpoint_spec(path: str | Path) -> ModelSpec:
    """The spec stored in the fsrt checkpoint at ``path``."""
    return checkpoint_spec(load_checkpoint(path), path)


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


def checkpoint_weights(ckpt: dict, where: str | Path, *, ema: bool = False) -> dict:
    """The ``model`` (or, with ``ema``, the ``ema``) state dict of a loaded checkpoint, cleaned of
    wrapper prefixes; a one-line error when that entry is missing."""
    key = "ema" if ema else "model"
    state = ckpt.get(key)
    if state is None:
        hint = " (train with EMA enabled, or drop --ema)" if ema else ""
        raise FsrtError(f"checkpoint {where} has no '{key}' weights{hint}")
    if not isinstance(state, dict):
        raise FsrtError(f"checkpoint {where} ['{key}'] holds no state dict (got {type(state).__name__})")
    return clean_state_dict(state)


def weights_mismatch(own: dict, state: dict) -> str:
    """How the (cleaned) ``state`` fails to fit a network whose state dict is ``own`` (tensors or
    meta tensors: only names and shapes are compared); "" when it fits."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        detail = f"{len(missing)} missing (e.g. {missing[:2]})" if missing else ""
        if unexpected:
            detail += ("; " if detail else "") + f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        return detail
    bad = [k for k, v in own.items() if tuple(getattr(state[k], "shape", ())) != tuple(v.shape)]
    if bad:
        return f"shape of {bad[0]} is {tuple(getattr(state[bad[0]], 'shape', ()))}, expected {tuple(own[bad[0]].shape)}"
    return ""


def load_weights(model, state: dict, where: str) -> None:
    """Load ``state`` into ``model`` strictly, turning key/shape mismatches into one-line errors."""
    if not isinstance(state, dict):
        raise FsrtError(f"{where} holds no state dict (got {type(state).__name__})")
    state = clean_state_dict(state)
    problem = weights_mismatch(model.state_dict(), state)
    if problem:
        raise FsrtError(f"weights in {where} do not match the spec's network: {problem}")
    model.load_state_dict(state, strict=True)


def load_checkpoint_model(path: str | Path, *, ema: bool = False):
    """``(Net with the checkpoint's weights, ModelSpec)``; ``ema`` picks the EMA weights."""
    from fsrt.models import build_model

    ckpt = load_checkpoint(path)
    spec = checkpoint_spec(ckpt, path)
    model = build_model(spec)
    key = "ema" if ema else "model"
    load_weights(model, checkpoint_weights(ckpt, path, ema=ema), f"checkpoint {path} ['{key}']")
    return model, spec
