"""Benchmark fsrt's Triton grouped conv against cuDNN (``F.conv2d``) on real RegNet/EfficientNet layers.

Layer shapes come from the zoo architectures at 224 px (every distinct stride-1 grouped/depthwise
conv, one per stage, plus the first stride-2 one), so the group widths are the published ones
(RegNetX-200MF: 8, RegNetY-1.6GF: 24, RegNetY-8.0GF: 56, RegNetY-4.0GF: 64, EfficientNet-B0: 1).
For each (layer, batch, dtype) it reports median time of both, the ratio cuDNN/Triton (> 1: we
win), achieved memory bandwidth (minimum traffic: input + weight + output bytes, once) and that
bandwidth as a % of the GPU's measured device-to-device copy bandwidth, plus the max error of
Triton relative to cuDNN (exit 1 if any exceeds ``TOLERANCE``), after a self-check of the
compiled kernels (both paths, all dtypes, both layouts, fused epilogue) against float64.
Timing: ``triton.testing.do_bench`` (CUDA events, L2 flushed before every run, i.e. L2 cold),
median; Triton autotunes before timing. fp32 uses TF32 on both sides exactly when
``torch.backends.cudnn.allow_tf32`` (PyTorch's default: on).

    python -m fsrt.bench.kernels                       # default grid, rich table
    python -m fsrt.bench.kernels --batch 32 --dtype fp16 --paths   # also time direct vs gemm
    python -m fsrt.bench.kernels --json --out kernels.json

CUDA only: on a machine without a GPU it prints an error and exits 2.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import click
import torch
import torch.nn.functional as F

DEFAULT_MODELS = ("RegNetX-200MF", "RegNetY-1.6GF", "RegNetY-8.0GF", "RegNetY-4.0GF", "EfficientNet-B0")
DTYPES = {"fp16": torch.float16, "fp32": torch.float32, "bf16": torch.bfloat16}


def layer_shapes(model_name: str, resolution: int = 224) -> list[dict]:
    """Distinct grouped-conv layers of a zoo model: one stride-1 layer per (C, H) plus the first stride-2 one."""
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


def copy_bandwidth(nbytes: int = 1 << 30) -> float:
    """Device-to-device copy bandwidth in GB/s (bytes read + bytes written per second), median."""
    from triton.testing import do_bench

    src = torch.empty(nbytes // 4, dtype=torch.float32, device="cuda").uniform_()
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), warmup=50, rep=300, return_mode="median")
    return 2 * nbytes / (ms * 1e-3) / 1e9


def _bench_case(layer: dict, batch: int, dtype: torch.dtype, paths: tuple[str, ...], layout: str,
                device: str = "cuda") -> dict:  # fmt: skip
    from triton.testing import do_bench

    from fsrt.kernels import choose_path, triton_group_conv2d

    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(batch, layer["c"], layer["h"], layer["w"], device=device, generator=g).to(dtype)
    fan_in = layer["c"] // layer["groups"] * layer["k"] ** 2
    weight = torch.randn(layer["c_out"], layer["c"] // layer["groups"], layer["k"], layer["k"], device=device,
                         generator=g).mul(fan_in**-0.5).to(dtype)  # fmt: skip
    if layout == "cl":
        x = x.to(memory_format=torch.channels_last)
        weight = weight.to(memory_format=torch.channels_last)
    s, p, grp = layer["stride"], layer["padding"], layer["groups"]
    cudnn = lambda: F.conv2d(x, weight, None, s, p, 1, grp)
    ref = cudnn()
    nbytes = (x.numel() + weight.numel() + ref.numel()) * x.element_size()
    t_cudnn = do_bench(cudnn, warmup=25, rep=100, return_mode="median")
    cin_g = layer["c"] // grp
    row = dict(layer, batch=batch, dtype=str(dtype).replace("torch.", ""), layout=layout, group_width=cin_g,
               auto_path=choose_path(cin_g), bytes=nbytes, cudnn_ms=t_cudnn,
               cudnn_gbs=nbytes / (t_cudnn * 1e-3) / 1e9)  # fmt: skip
    for path in paths:
        fn = lambda path=path: triton_group_conv2d(x, weight, None, s, p, grp, path=path)
        y = fn()  # autotunes on first call for this shape
        err = ((y.float() - ref.float()).abs().max() / ref.float().abs().max().clamp_min(1e-12)).item()
        ms = do_bench(fn, warmup=25, rep=100, return_mode="median")
        row[f"{path}_ms"] = ms
        row[f"{path}_gbs"] = nbytes / (ms * 1e-3) / 1e9
        row[f"{path}_rel_err"] = err
        row[f"{path}_ratio"] = t_cudnn / ms
    return row


# Max error relative to the output scale accepted against cuDNN / float64 (fp32 uses TF32 by default).
TOLERANCE = {"float16": 2e-2, "bfloat16": 5e-2, "float32": 1e-2}


def gpu_selfcheck(device: str = "cuda") -> list[dict]:
    """Compiled kernels vs a float64 reference on the GPU: both paths, all dtypes, both layouts, fused
    epilogue (scale, bias, SiLU), odd sizes and stride 2. The CPU tests cover the same code interpreted."""
    from fsrt.kernels import reference, triton_group_conv2d

    rows = []
    g = torch.Generator(device=device).manual_seed(1)
    cases = [(32, 32, 3, 1, "direct"), (64, 8, 3, 2, "direct"), (64, 8, 5, 1, "gemm"), (128, 4, 3, 1, "gemm"),
             (96, 3, 3, 2, "gemm"), (48, 6, 5, 2, "direct")]  # (C, groups, k, stride, path)  # fmt: skip
    for cin, groups, k, stride, path in cases:
        for dtype in (torch.float16, torch.bfloat16, torch.float32):
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
                name = str(dtype).replace("torch.", "")
                rows.append(dict(cin=cin, groups=groups, k=k, stride=stride, path=path, dtype=name, channels_last=cl,
                                 rel_err=err, ok=err <= TOLERANCE[name] / 2))  # fmt: skip
    return rows


def _summary(rows: list[dict]) -> dict:
    """The issue's goal: ratio > 1 on RegNet group widths 8..64 at batch >= 32 in fp16."""
    goal = [r for r in rows if 8 <= r["group_width"] <= 64 and r["batch"] >= 32 and r["dtype"] == "float16"]
    ratios = [r["auto_ratio"] for r in rows]
    goal_ratios = [r["auto_ratio"] for r in goal]
    geo = lambda v: statistics.geometric_mean(v) if v else None
    return dict(cases=len(rows), geomean_ratio=geo(ratios), goal_cases=len(goal),
                goal_wins=sum(r > 1 for r in goal_ratios), goal_geomean_ratio=geo(goal_ratios))  # fmt: skip


def _table(doc: dict):
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
    return t


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--models", default=",".join(DEFAULT_MODELS), show_default=True, help="Zoo models to take layers from.")
@click.option("--batch", "batches", default="1,32,64", show_default=True, help="Batch sizes.")
@click.option("--dtype", "dtypes", default="fp16,fp32", show_default=True, help="fp16, fp32, bf16.")
@click.option("--layout", type=click.Choice(["cl", "nchw"]), default="cl", show_default=True,
              help="Memory format of input and weight (channels-last is what fast inference uses).")  # fmt: skip
@click.option("--paths", "all_paths", is_flag=True, help="Also time the direct and GEMM kernels separately.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the JSON document to this file (atomically).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document to stdout instead of the table.")
def main(models, batches, dtypes, layout, all_paths, out, as_json):
    """Time the Triton grouped conv against cuDNN on RegNet/EfficientNet layers (CUDA only).

    \b
    Examples:
      python -m fsrt.bench.kernels
      python -m fsrt.bench.kernels --batch 32 --dtype fp16 --paths --json
    """
    if not torch.cuda.is_available():
        click.echo("error: no CUDA GPU here; fsrt.bench.kernels times GPU kernels (run bench/gpu_check.sh on a GPU)",
                   err=True)  # fmt: skip
        sys.exit(2)
    from fsrt.kernels import HAVE_TRITON

    if not HAVE_TRITON:
        click.echo("error: triton is not installed: pip install 'fsrt[gpu]'", err=True)
        sys.exit(2)
    try:
        dts = [DTYPES[d.strip()] for d in dtypes.split(",")]
        bs = [int(b) for b in batches.split(",")]
    except (KeyError, ValueError):
        click.echo(f"error: bad --dtype {dtypes!r} or --batch {batches!r} (e.g. --dtype fp16,fp32 --batch 1,32)",
                   err=True)  # fmt: skip
        sys.exit(2)
    torch.backends.cudnn.benchmark = True
    paths = ("auto", "direct", "gemm") if all_paths else ("auto",)
    layers = [layer for name in models.split(",") for layer in layer_shapes(name.strip())]
    checks = gpu_selfcheck()
    bad = [c for c in checks if not c["ok"]]
    click.echo(f"self-check vs float64: {len(checks) - len(bad)}/{len(checks)} ok", err=True)
    copy_gbs = copy_bandwidth()
    rows, start = [], time.time()
    for i, layer in enumerate(layers):
        for b in bs:
            for dt in dts:
                use = tuple(pth for pth in paths if not (pth == "gemm" and layer["c"] // layer["groups"] < 8))
                rows.append(_bench_case(layer, b, dt, use, layout))
        click.echo(f"[{i + 1}/{len(layers)}] {layer['model']} {layer['c']}x{layer['h']} done "
                   f"({time.time() - start:.0f}s)", err=True)  # fmt: skip
    doc = dict(device=torch.cuda.get_device_name(), torch=torch.__version__, copy_gbs=copy_gbs, l2="cold",
               layout=layout, tf32=torch.backends.cudnn.allow_tf32, results=rows, summary=_summary(rows),
               selfcheck=checks)  # fmt: skip
    bad += [r for r in rows if r["auto_rel_err"] > TOLERANCE[r["dtype"]]]
    text = json.dumps(doc, indent=1)
    if out:
        from fsrt.io import atomic_write_text

        atomic_write_text(out, text)
    if as_json:
        click.echo(text)
    else:
        from rich.console import Console

        Console().print(_table(doc))
        Console().print(f"copy bandwidth {copy_gbs:.0f} GB/s; summary {doc['summary']}")
    if bad:
        click.echo(f"error: {len(bad)} results exceed the error tolerance (see 'selfcheck' / rel_err in the JSON)",
                   err=True)  # fmt: skip
        sys.exit(1)


if __name__ == "__main__":
    main()
