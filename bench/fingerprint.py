"""Machine fingerprint: what determines a measurement besides the model.

Results are keyed by a short hash of the CPU and GPU model, GPU driver and the versions of
the libraries that run the models, so numbers from different machines (or after an upgrade)
never mix, and a database copied from another machine merges cleanly.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from functools import lru_cache
from importlib import metadata

LIBRARIES = ("torch", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino", "tensorrt", "triton", "numpy")
# Fields that identify the machine; the rest of the fingerprint is descriptive.
IDENTITY_FIELDS = ("cpu", "cpu_count", "gpu", "gpu_driver", "cuda", "libraries")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's instruction-set flags as Linux reports them (empty where /proc/cpuinfo is missing)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def _cpu_flags() -> list[str]:
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16", "amx_fp16", "fma")
    return [w for w in wanted if w in cpu_flags()]


def _versions() -> dict[str, str]:
    out = {}
    for dist in LIBRARIES:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def _gpu() -> dict:
    try:
        import torch

        if not torch.cuda.is_available():
            return {}
        props = torch.cuda.get_device_properties(0)
        info = {"gpu": props.name, "gpu_memory_gb": round(props.total_memory / 2**30, 1), "cuda": torch.version.cuda,
                "gpu_l2_bytes": getattr(props, "L2_cache_size", None)}
        try:
            import subprocess

            drv = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10).stdout.strip().splitlines()
            if drv:
                info["gpu_driver"] = drv[0]
        except (OSError, subprocess.SubprocessError):
            pass
        return info
    except Exception:  # a broken CUDA install must not stop a CPU benchmark
        return {}


@lru_cache(maxsize=1)
def fingerprint() -> dict:
    """This machine's fingerprint: CPU model, core count and flags, GPU, driver, OS, library versions."""
    fp = {"cpu": _cpu_model(), "cpu_count": os.cpu_count(), "cpu_flags": _cpu_flags(), "os": platform.platform(),
          "python": platform.python_version(), "libraries": _versions(), "hostname": platform.node()}
    fp.update(_gpu())
    return fp


def machine_id(fp: dict | None = None) -> str:
    """A 12-hex-digit id from the identity fields of a fingerprint."""
    fp = fingerprint() if fp is None else fp
    ident = {k: fp.get(k) for k in IDENTITY_FIELDS}
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]


def describe(fp: dict) -> str:
    """One line for tables and reports: CPU (cores) and GPU."""
    gpu = f", {fp['gpu']}" if fp.get("gpu") else ""
    return f"{fp.get('cpu', '?')} ({fp.get('cpu_count', '?')} cores){gpu}"
