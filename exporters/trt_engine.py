"""Build a TensorRT engine next to an exported ONNX file and save it with its sidecar.

The TensorRT calls live in ``trt_build``; this module checks prerequisites, reads and writes
the timing cache, and writes engine + sidecar atomically. ``build`` can be swapped for a fake
in tests, so the whole flow around TensorRT is exercised without it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fsrt.errors import FsrtError
from fsrt.io import atomic_write_bytes, atomic_write_text

from .trt_config import TrtBuildSettings, gpu_name, sidecar, sidecar_path, timing_cache_path, trt_missing


@dataclass(frozen=True)
class EngineResult:
    """Where the engine, its sidecar and the timing cache went, and the sidecar content."""

    engine_path: Path
    sidecar_path: Path
    timing_cache: Path | None
    info: dict


def check_outputs_free(engine_path: Path, force: bool) -> None:
    """Refuse to overwrite an engine or its sidecar unless ``force``."""
    for p in (Path(engine_path), sidecar_path(engine_path)):
        if p.exists() and not force:
            raise FsrtError(f"{p} exists; pass --force to replace it")


def register_plugins(domains) -> None:
    """Register the TensorRT plugins for custom ONNX domains before parsing (``fsrt``: the
    Triton grouped conv from ``fsrt.kernels``); unknown domains are a clear error."""
    for domain in domains:
        if domain != "fsrt":
            raise FsrtError(f"the graph has nodes of custom domain {domain!r}, for which fsrt knows no TensorRT plugin")
        try:
            from fsrt.kernels.trt_plugin import register_trt_plugin
        except Exception as e:
            raise FsrtError(f"the graph needs the fsrt TensorRT plugin, which failed to import: {e}") from None
        register_trt_plugin()


def installed_trt_version() -> str:
    """Version of the installed TensorRT Python package (without importing it), or ``unknown``."""
    import importlib.metadata as md

    for dist in ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt_cu12_bindings"):
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            continue
    return "unknown"


def build_and_save(settings: TrtBuildSettings, *, force: bool = False, build=None, gpu: str | None = None,
                   trt_version: str | None = None, use_timing_cache: bool = True) -> EngineResult:
    """Build the engine described by ``settings`` and write engine, sidecar and timing cache.

    Without TensorRT or a GPU (and no ``build`` injected) this raises a one-line ``FsrtError``
    saying what is missing and how to install it; nothing is written then.
    """
    check_outputs_free(settings.engine_path, force)
    if build is None:
        missing = trt_missing()
        if missing:
            raise FsrtError(missing)
        register_plugins(settings.plugin_domains)
        from .trt_build import build_engine as build
    gpu = gpu or gpu_name() or "unknown-gpu"
    trt_version = trt_version or installed_trt_version()
    cache_file = timing_cache_path(settings.timing_cache, gpu, trt_version) if use_timing_cache else None
    cache_in = cache_file.read_bytes() if cache_file is not None and cache_file.is_file() else None
    built = build(settings, cache_in)
    atomic_write_bytes(settings.engine_path, built.engine)
    if cache_file is not None and built.timing_cache:
        atomic_write_bytes(cache_file, built.timing_cache)
    info = sidecar(settings, trt_version=built.trt_version, gpu=gpu, build_seconds=built.seconds,
                   engine_bytes=len(built.engine), timing_cache_used=str(cache_file) if cache_file else None)
    side = sidecar_path(settings.engine_path)
    atomic_write_text(side, json.dumps(info, indent=2) + "\n")
    return EngineResult(settings.engine_path, side, cache_file, info)
