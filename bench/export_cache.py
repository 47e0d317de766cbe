"""A cache of exported ONNX graphs shared between sweeps, opt-in with ``FSRT_EXPORT_CACHE=DIR``.

Why: the exporter takes seconds per graph, and sweeps into different folders (or machines'
CI runs of the README's examples) export the same variants again. A graph is a function of the
module's weights, its structure, the precision, the batch, the exporter libraries and fsrt's own
code, so its key hashes all of them: the weights file's bytes, the variant's file name (structure,
seed, calibration), precision and batch, the versions of torch, onnx, onnxscript and onnxslim,
and the bytes of every source file of fsrt's model and exporter packages. Opt-in because the
graphs of large variants take hundreds of MB and the folder is the user's to manage.
Files enter and leave the cache atomically (a temporary name, then a rename).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import uuid
from importlib import metadata
from pathlib import Path

ENV = "FSRT_EXPORT_CACHE"
_LIBRARIES = ("torch", "onnx", "onnxscript", "onnxslim")


def cache_dir() -> Path | None:
    """The cache folder (``$FSRT_EXPORT_CACHE``), or None when caching is off."""
    value = os.environ.get(ENV, "").strip()
    return Path(value).expanduser() if value else None


@functools.cache
def code_fingerprint() -> str:
    """Hash of fsrt's model and exporter source (every ``.py`` under the fsrt and exporter packages)."""
    import fsrt
    import fsrt.exporters

    h = hashlib.sha256()
    for root in (Path(fsrt.__file__).parent, Path(fsrt.exporters.__file__).parent):
        for path in sorted(root.rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    for name in _LIBRARIES:
        try:
            h.update(f"{name}={metadata.version(name)}".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{name}=absent".encode())
    return h.hexdigest()


def graph_key(weights: Path, graph_name: str) -> str:
    """The cache key of a graph exported from ``weights`` under ``graph_name`` (variant, precision, batch)."""
    h = hashlib.sha256(code_fingerprint().encode())
    h.update(graph_name.encode())
    with open(weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:32]


def _place(src: Path, dest: Path) -> None:
    """Put a copy of ``src`` at ``dest`` atomically (a hard link where the file system allows)."""
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def fetch(key: str, dest: Path) -> bool:
    """Copy the cached graph ``key`` to ``dest``; False when caching is off or the graph is not cached."""
    folder = cache_dir()
    cached = folder / f"{key}.onnx" if folder else None
    if cached is None or not cached.is_file():
        return False
    _place(cached, dest)
    return True


def keep(key: str, graph: Path) -> None:
    """Add a freshly exported graph to the cache (nothing when caching is off)."""
    folder = cache_dir()
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    _place(graph, folder / f"{key}.onnx")
