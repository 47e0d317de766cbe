"""Machine ceilings for roofline floors: peak matmul throughput and copy bandwidth.

Measured once per machine, device, dtype and thread count and stored. Throughput is in FLOP/s
with one multiply-add counted as 2 FLOP; bandwidth counts bytes read plus bytes written.
"""

from __future__ import annotations

from dataclasses import dataclass

from fsrt.bench.timing import best_of
from fsrt.precision import get_precision, torch_dtype


@dataclass(frozen=True)
class Ceilings:
    """Peak compute (FLOP/s) and copy bandwidth (bytes/s) of one device and dtype."""

    peak_flops: float
    copy_bytes_per_s: float


def _best_seconds(fn, repeats: int, device: str) -> float:
    fn()  # warm-up (allocations, kernel selection)
    return best_of(fn, repeats, device)


def _torch_gemm_flops(n: int, dtype: str, device: str, repeats: int) -> float:
    import torch

    tdtype = torch_dtype(get_precision(dtype))
    mats = [torch.randn(n, n, device=device).to(tdtype) for _ in range(2)]
    out = torch.empty(n, n, device=device, dtype=tdtype)
    return 2.0 * n**3 / _best_seconds(lambda: torch.mm(mats[0], mats[1], out=out), repeats, device)


def _openvino_gemm_flops(n: int, dtype: str, repeats: int) -> float | None:
    """GEMM throughput of OpenVINO's CPU plugin at a precision hint (its own kernels)."""
    try:
        import numpy as np
        import openvino as ov
        import openvino.opset13 as ops
    except ImportError:
        return None
    import torch

    a, b = (ops.parameter([n, n], np.float32, name=x) for x in "ab")
    hint = get_precision(dtype).openvino_hint
    try:
        compiled = ov.Core().compile_model(ov.Model([ops.matmul(a, b, False, False)], [a, b]), "CPU",
                                           {"INFERENCE_PRECISION_HINT": hint,
                                            "INFERENCE_NUM_THREADS": torch.get_num_threads()})
    except RuntimeError:  # precision not supported by this CPU plugin
        return None
    req = compiled.create_infer_request()
    feeds = [np.random.rand(n, n).astype(np.float32) for _ in range(2)]
    return 2.0 * n**3 / _best_seconds(lambda: req.infer(feeds), repeats, "cpu")


def measure_ceilings(device: str = "cpu", dtype: str = "fp32", size: int | None = None,
                     copy_mib: int | None = None, repeats: int = 5) -> Ceilings:
    """Measure peak matmul FLOP/s (square GEMM, best of ``repeats``) and copy bytes/s.

    Sizes default to a 2048 GEMM and a 256 MiB copy on CPU (well beyond cache), 8192 and
    2 GiB on GPU. Bandwidth does not depend on dtype and is measured with an fp32 copy. On CPU
    the half-precision peak is the best of torch and OpenVINO at that precision hint: torch's
    CPU bf16/fp16 GEMM can be an emulated slow path (a small probe decides whether to try it
    at full size) while OpenVINO has native kernels where the CPU has the units.
    """
    import torch

    gpu = device.startswith("cuda")
    n = size or (8192 if gpu else 2048)
    if gpu or dtype == "fp32":
        peak = _torch_gemm_flops(n, dtype, device, repeats)
    else:
        probe = _torch_gemm_flops(256, dtype, device, 2)
        candidates = [probe if probe < 5e9 else _torch_gemm_flops(n, dtype, device, repeats)]
        candidates.append(_openvino_gemm_flops(n, dtype, repeats) or 0.0)
        peak = max(candidates)
    numel = (copy_mib or (2048 if gpu else 256)) * 2**20 // 4
    src = torch.ones(numel, device=device, dtype=torch.float32)
    dst = torch.empty_like(src)
    bw = 2.0 * numel * 4 / _best_seconds(lambda: dst.copy_(src), repeats, device)
    return Ceilings(peak, bw)


def roofline_floors(flops: int, params: int, acts: int, batch: int, in_elems: int, out_elems: int, dtype: str,
                    ceil: Ceilings) -> tuple[float, float]:
    """Roofline floors in milliseconds: ``max(work/peak, bytes/bandwidth)`` for two byte counts.

    ``flops`` are multiply-adds per image (2 FLOP each). Compulsory bytes: weights once plus
    the batch's input and output. Layer-wise bytes: weights plus every activation written and
    read back once (2 x acts per image). Returns ``(compulsory_ms, layer_ms)``.
    """
    e = get_precision(dtype).element_bytes
    compute_s = 2.0 * flops * batch / ceil.peak_flops
    compulsory = (params + batch * (in_elems + out_elems)) * e
    layer = (params + 2 * acts * batch) * e
    return (1e3 * max(compute_s, compulsory / ceil.copy_bytes_per_s),
            1e3 * max(compute_s, layer / ceil.copy_bytes_per_s))
