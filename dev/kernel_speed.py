"""Time fsrt's Triton grouped conv against cuDNN (``F.conv2d``) on real RegNet/EfficientNet layers.

Layer shapes come from the zoo architectures at 224 px (every distinct stride-1 grouped or
depthwise conv, one per stage, plus the first stride-2 one), so the group widths are the
published ones (RegNetX-200MF: 8, RegNetY-1.6GF: 24, RegNetY-8.0GF: 56, RegNetY-4.0GF: 64,
EfficientNet-B0: 1). For each (layer, batch, precision) it reports the median time of both, the
ratio cuDNN/Triton (> 1: the kernel wins), the achieved memory bandwidth (minimum traffic: input,
weight and output bytes once) and that bandwidth as a share of the device's copy bandwidth
(``fsrt.bench.ceilings``), plus the error of Triton relative to cuDNN (exit 1 if any exceeds
``TOLERANCE``), after a self-check of the compiled kernels (both paths, all precisions, both
layouts, fused epilogue) against float64. Timing: fsrt's harness (``fsrt.bench.timing.measure``:
CUDA events, L2 flushed before every timed call, median); Triton autotunes during the warm-up.
fp32 uses TF32 on both sides exactly when ``torch.backends.cudnn.allow_tf32`` (PyTorch's
default: on).

    python dev/kernel_speed.py                                   # default grid, table
    python dev/kernel_speed.py --batch 32 --dtype fp16 --paths   # also time direct vs gemm
    python dev/kernel_speed.py --json --out kernels.json
    TRITON_INTERPRET=1 python dev/kernel_speed.py --device cpu --quick   # smoke run, interpreted on CPU

CUDA by default: without a GPU it prints an error and exits 2. ``--device cpu`` runs the kernels
in Triton's interpreter (``TRITON_INTERPRET=1``), which only checks that the script works.
"""

from __future__ import annotations

import statistics
import sys
import time

from devcli import emit, fail, parser

DEFAULT_MODELS = "RegNetX-200MF,RegNetY-1.6GF,RegNetY-8.0GF,RegNetY-4.0GF,EfficientNet-B0"
# Max error relative to the output scale accepted against cuDNN / float64 (fp32 uses TF32 by default).
TOLERANCE = {"fp16": 2e-2, "bf16": 5e-2, "fp32": 1e-2}
SELFCHECK = [(32, 32, 3, 1, "direct"), (64, 8, 3, 2, "direct"), (64, 8, 5, 1, "gemm"), (128, 4, 3, 1, "gemm"),
             (96, 3, 3, 2, "gemm"), (48, 6, 5, 2, "direct")]  # (C, groups, k, stride, path)


def layer_shapes(model_name: str, resolution: int = 224) -> list[dict]:
    """Distinct grouped-conv layers of a zoo model: one stride-1 layer per (C, H) plus the first stride-2 one."""
    import torch

    from fsrt.models import build_model
    from fsrt.zoo import zoo_spec

    model = build_model(zoo_spec(model_name), device="meta").eval()
    seen: list[dict] = []

    def hook(mod, inputs, _out):
        _, c, h, w = inputs[0].shape
        seen.append(dict(model=model_name, c=c, h=h, w=w, c_out=mod.out_channels, groups=mod.groups,
                         k=mod.kernel_size[0], stride=mod.stride[0], padding=mod.padding[0]))  # fmt: skip

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, torch.nn.Conv2d) and m.groups > 1]  # fmt: skip
    with torch.no_grad():
        model(torch.empty(1, 3, resolution, resolution, device="meta"))
    for h in handles:
        h.remove()
    picked, keys = [], set()
    for layer in seen:
        key = (layer["c"], layer["h"], layer["k"], layer["stride"])
        if key in keys:
            continue
        if layer["stride"] == 1 or not any(p["stride"] == 2 for p in picked):
            keys.add(key)
            picked.append(layer)
    return picked


def _median_ms(fn, device: str, quick: bool, measure_s: float = 1.0) -> float:
    from fsrt.bench.timing import TimingConfig, measure

    cfg = TimingConfig(warmup_s=0.0, min_warmup=1, measure_s=0.0, min_runs=3, retries=0) if quick else \
        TimingConfig(warmup_s=min(0.3, measure_s), measure_s=measure_s, min_runs=25, l2="cold")
    return measure(fn, cfg, device).stats.median_ms


def _inputs(layer: dict, batch: int, dtype, layout: str, device: str):
    import torch

    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(batch, layer["c"], layer["h"], layer["w"], device=device, generator=g).to(dtype)
    fan_in = layer["c"] // layer["groups"] * layer["k"] ** 2
    weight = torch.randn(layer["c_out"], layer["c"] // layer["groups"], layer["k"], layer["k"], device=device,
                         generator=g).mul(fan_in**-0.5).to(dtype)  # fmt: skip
    if layout == "cl":
        x, weight = x.to(memory_format=torch.channels_last), weight.to(memory_format=torch.channels_last)
    return x, weight


def bench_case(layer: dict, batch: int, precision: str, paths: tuple[str, ...], layout: str, device: str,
               quick: bool = False, measure_s: float = 1.0) -> dict:  # fmt: skip
    """One (layer, batch, precision) row: cuDNN and each Triton path, time, bandwidth and error."""
    import torch.nn.functional as F

    from fsrt.kernels import choose_path, triton_group_conv2d
    from fsrt.precision import get_precision, torch_dtype

    x, weight = _inputs(layer, batch, torch_dtype(get_precision(precision)), layout, device)
    s, p, grp = layer["stride"], layer["padding"], layer["groups"]
    cudnn = lambda: F.conv2d(x, weight, None, s, p, 1, grp)
    ref = cudnn()
    nbytes = (x.numel() + weight.numel() + ref.numel()) * x.element_size()
    t_cudnn = _median_ms(cudnn, device, quick, measure_s)
    cin_g = layer["c"] // grp
    row = dict(layer, batch=batch, dtype=precision, layout=layout, group_width=cin_g, auto_path=choose_path(cin_g),
               bytes=nbytes, cudnn_ms=t_cudnn, cudnn_gbs=nbytes / (t_cudnn * 1e-3) / 1e9)  # fmt: skip
    for path in paths:
        fn = lambda path=path: triton_group_conv2d(x, weight, None, s, p, grp, path=path)
        y = fn()  # autotunes on first call for this shape
        err = ((y.float() - ref.float()).abs().max() / ref.float().abs().max().clamp_min(1e-12)).item()
        ms = _median_ms(fn, device, quick, measure_s)
        row.update({f"{path}_ms": ms, f"{path}_gbs": nbytes / (ms * 1e-3) / 1e9, f"{path}_rel_err": err,
                    f"{path}_ratio": t_cudnn / ms})
    return row


def gpu_selfcheck(device: str = "cuda", cases=SELFCHECK, precisions=("fp16", "bf16", "fp32")) -> list[dict]:
    """Compiled kernels vs a float64 reference: both paths, the given precisions, both layouts, fused
    epilogue (scale, bias, SiLU), odd sizes and stride 2. The CPU tests cover the same code interpreted."""
    import torch

    from fsrt.kernels import reference, triton_group_conv2d
    from fsrt.precision import get_precision, torch_dtype

    rows = []
    g = torch.Generator(device=device).manual_seed(1)
    for cin, groups, k, stride, path in cases:
        for name in precisions:
            dtype = torch_dtype(get_precision(name))
            for cl in (False, True):
                x = torch.randn(3, cin, 13, 11, device=device, generator=g)
                w = torch.randn(cin, cin // groups, k, k, device=device, generator=g) * (cin // groups * k * k) ** -0.5
                b, sc = torch.randn(cin, device=device, generator=g), torch.rand(cin, device=device, generator=g) + 0.5
                xd, wd, bd, sd = (t.to(dtype) for t in (x, w, b, sc))
                if cl:
                    xd = xd.to(memory_format=torch.channels_last)
                y = triton_group_conv2d(xd, wd, bd, stride, k // 2, groups, scale=sd, activation="silu", path=path)
                ref = reference(*(t.double() for t in (xd, wd, bd)), (stride, stride), (k // 2, k // 2), groups,
                                sd.double(), "silu")  # fmt: skip
                err = ((y.double() - ref).abs().max() / ref.abs().max()).item()
                rows.append(dict(cin=cin, groups=groups, k=k, stride=stride, path=path, dtype=name, channels_last=cl,
                                 rel_err=err, ok=err <= TOLERANCE[name] / 2))  # fmt: skip
    return rows


def _summary(rows: list[dict]) -> dict:
    """The kernel's goal: ratio > 1 on RegNet group widths 8..64 at batch >= 32 in fp16."""
    goal = [r for r in rows if 8 <= r["group_width"] <= 64 and r["batch"] >= 32 and r["dtype"] == "fp16"]
    ratios = [r["auto_ratio"] for r in rows]
    goal_ratios = [r["auto_ratio"] for r in goal]
    geo = lambda v: statistics.geometric_mean(v) if v else None
    return dict(cases=len(rows), geomean_ratio=geo(ratios), goal_cases=len(goal),
                goal_wins=sum(r > 1 for r in goal_ratios), goal_geomean_ratio=geo(goal_ratios))  # fmt: skip


def _table(doc: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    where = f"{doc['device']}, layout {doc.get('layout', '?')}"
    t = Table(title=f"fsrt Triton group conv vs cuDNN on {where} (L2 cold, median)")
    split = any("direct_ms" in r for r in doc["results"])
    for col in ("model", "layer CxHxW", "g.w.", "k/s", "N", "dtype", "path", "triton us", "cuDNN us",
                "ratio", "GB/s", "% copy", "rel err") + (("direct us", "gemm us") if split else ()):  # fmt: skip
        t.add_column(col, justify="right" if col not in ("model", "path", "dtype") else "left")
    for r in doc["results"]:
        ratio = r["auto_ratio"]
        extra = [f"{r[f'{k}_ms'] * 1e3:.1f}" if f"{k}_ms" in r else "-" for k in ("direct", "gemm")] if split else []
        t.add_row(r["model"], f"{r['c']}x{r['h']}x{r['w']}", str(r["group_width"]), f"{r['k']}/{r['stride']}",
                  str(r["batch"]), r["dtype"], r["auto_path"], f"{r['auto_ms'] * 1e3:.1f}",
                  f"{r['cudnn_ms'] * 1e3:.1f}",
                  f"[{'green' if ratio > 1 else 'red'}]{ratio:.2f}[/]", f"{r['auto_gbs']:.0f}",
                  f"{100 * r['auto_gbs'] / doc['copy_gbs']:.0f}", f"{r['auto_rel_err']:.1e}", *extra)  # fmt: skip
    Console().print(t)
    Console().print(f"copy bandwidth {doc['copy_gbs']:.0f} GB/s; summary {doc['summary']}")


def add_device_option(ap) -> None:
    """``--device``: cuda, or cpu in Triton's interpreter (the scripts that time fsrt's kernels)."""
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                    help="cuda (default), or cpu in Triton's interpreter (TRITON_INTERPRET=1; a smoke check)")


def _device_problem(device: str) -> str | None:
    """Why the kernels cannot be timed on ``device`` (one line with the fix), or ``None``."""
    import torch

    from fsrt.kernels import HAVE_TRITON, interpret_enabled

    if not HAVE_TRITON:
        return "triton is not installed: pip install 'fsrt[gpu]'"
    if device == "cuda" and not torch.cuda.is_available():
        return "no CUDA GPU here; dev/kernel_speed.py times GPU kernels (run dev/gpu_check.sh on a GPU)"
    if device == "cpu" and not interpret_enabled():
        return "--device cpu runs the kernels in Triton's interpreter: set TRITON_INTERPRET=1"
    return None


def measure_grid(args) -> dict:
    """Self-check, copy bandwidth and every (layer, batch, precision) row, as one JSON-able document."""
    import torch

    from fsrt.bench.ceilings import measure_ceilings

    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    paths = ("auto", "direct", "gemm") if args.paths else ("auto",)
    layers = [lay for name in args.models.split(",") for lay in layer_shapes(name.strip(), args.resolution)]
    layers = layers[:1] if args.quick else layers
    checks = gpu_selfcheck(args.device, SELFCHECK[:1], ("fp32",)) if args.quick else \
        gpu_selfcheck(args.device, precisions=tuple(args.precisions))  # the precisions it times
    bad = sum(not c["ok"] for c in checks)
    print(f"self-check vs float64: {len(checks) - bad}/{len(checks)} ok", file=sys.stderr)
    ceil = measure_ceilings(args.device, size=64, copy_mib=4, repeats=2) if args.quick else \
        measure_ceilings(args.device)
    rows, start = [], time.time()
    for i, layer in enumerate(layers):
        for b in args.batches:
            for prec in args.precisions:
                use = tuple(pth for pth in paths if not (pth == "gemm" and layer["c"] // layer["groups"] < 8))
                rows.append(bench_case(layer, b, prec, use, args.layout, args.device, args.quick, args.measure_s))
        print(f"[{i + 1}/{len(layers)}] {layer['model']} {layer['c']}x{layer['h']} done ({time.time() - start:.0f}s)",
              file=sys.stderr)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu (Triton interpreter)"
    return dict(device=name, torch=torch.__version__, copy_gbs=ceil.copy_bytes_per_s / 1e9, l2="cold",
                layout=args.layout, tf32=torch.backends.cudnn.allow_tf32, results=rows, summary=_summary(rows),
                selfcheck=checks)  # fmt: skip


def _args(argv):
    ap = parser(__doc__, out=True)
    ap.add_argument("--models", default=None, help=f"zoo models to take layers from (default {DEFAULT_MODELS}; "
                                                   "--quick: the first layer of RegNetX-200MF at 32 px)")
    ap.add_argument("--batch", default=None, help="batch sizes (default 1,32,64; --quick: 1)")
    ap.add_argument("--dtype", default=None, help="precisions: fp16, fp32, bf16 (default fp16,fp32; --quick: fp32)")
    ap.add_argument("--layout", choices=["cl", "nchw"], default="cl",
                    help="memory format of input and weight (channels-last is what fast inference uses)")
    ap.add_argument("--paths", action="store_true", help="also time the direct and GEMM kernels separately")
    add_device_option(ap)
    ap.add_argument("--measure-s", type=float, default=1.0,
                    help="seconds of timed calls per kernel and shape (default 1.0; GPU medians settle in 0.2)")
    args = ap.parse_args(argv)
    args.models = args.models or ("RegNetX-200MF" if args.quick else DEFAULT_MODELS)
    args.batch = args.batch or ("1" if args.quick else "1,32,64")
    args.dtype = args.dtype or ("fp32" if args.quick else "fp16,fp32")
    args.resolution = 32 if args.quick else 224
    return args


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: ``python dev/kernel_speed.py``; exit 1 when an error exceeds its tolerance."""
    args = _args(argv)
    problem = _device_problem(args.device)
    if problem:
        return fail(problem)
    try:
        args.batches = [int(b) for b in args.batch.split(",")]
        args.precisions = [d.strip() for d in args.dtype.split(",")]
        if any(b < 1 for b in args.batches) or not set(args.precisions) <= set(TOLERANCE):
            raise ValueError
    except ValueError:
        return fail(f"bad --dtype {args.dtype!r} or --batch {args.batch!r} (e.g. --dtype fp16,fp32 --batch 1,32)")
    doc = measure_grid(args)
    emit(doc, args.json, _table, args.out)
    bad = [c for c in doc["selfcheck"] if not c["ok"]] + [r for r in doc["results"]
                                                            if r["auto_rel_err"] > TOLERANCE[r["dtype"]]]
    if bad:
        return fail(f"{len(bad)} results exceed the error tolerance (see 'selfcheck' / rel_err in the JSON)", 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
