"""Time a whole zoo model with fsrt's Triton grouped convs patched in against the same model on cuDNN.

Both copies run in one half precision for every tensor (``model.half()``: the patched op takes x
and weight in one dtype, which autocast does not give it), channels-last, eval mode, inference.
The patched copy has every grouped conv swapped for ``fsrt::group_conv2d`` with its BatchNorm and
activation folded into the kernel's epilogue (``fsrt.kernels.patch_model(fuse_bn=True)``), which
is how the kernels are meant to be deployed. Timing alternates between the two copies in rounds,
in a fresh random order each round (fsrt's harness: CUDA events around each call, warm L2,
median per round), so a drift of the device reaches both; a figure is the median over rounds and
the speedup (cuDNN time / patched time, > 1: the patched model is faster) comes with the range
of the per-round ratios. The two outputs are compared (max error over the output's scale).

    python dev/patched_model_speed.py                                    # RegNetY-4.0GF, fp16, batch 32
    python dev/patched_model_speed.py --model RegNetY-400MF --batch 32,128 --json
    TRITON_INTERPRET=1 python dev/patched_model_speed.py --device cpu --quick   # smoke run on CPU
"""

from __future__ import annotations

import random
import statistics
import sys

from devcli import emit, fail, parser
from kernel_speed import _device_problem, add_device_option

TOLERANCE = {"fp16": 5e-2, "bf16": 1e-1, "fp32": 1e-3}  # max error over the output scale, whole network


def build_pair(name: str, resolution: int, precision: str, device: str):
    """(cuDNN model, patched model, patched layer count): one seeded, BN-calibrated zoo model twice."""
    import copy

    import torch

    from fsrt.calibration import calibrate_batchnorm
    from fsrt.kernels import patch_model
    from fsrt.models import build_model
    from fsrt.precision import get_precision, torch_dtype
    from fsrt.zoo import zoo_spec

    torch.manual_seed(0)
    model = build_model(zoo_spec(name)).eval()
    calibrate_batchnorm(model, resolution, 0)
    patched = copy.deepcopy(model)
    count = patch_model(patched, fuse_bn=True)
    dtype = torch_dtype(get_precision(precision))
    model, patched = (m.to(device=device, dtype=dtype, memory_format=torch.channels_last) for m in (model, patched))
    return model, patched, count


def output_error(model, patched, x) -> float:
    """Max absolute difference of the two outputs over the cuDNN output's largest magnitude."""
    import torch

    with torch.inference_mode():
        ref, got = model(x).float(), patched(x).float()
    return ((got - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()


def time_rounds(calls: dict, device: str, rounds: int, measure_s: float, quick: bool = False) -> dict[str, list[float]]:
    """Median ms per round of each callable, the callables visited in a fresh random order each round."""
    from fsrt.bench.timing import TimingConfig, measure

    cfg = TimingConfig(warmup_s=0.0, min_warmup=1, measure_s=0.0, min_runs=1, retries=0) if quick else \
        TimingConfig(warmup_s=min(0.2, measure_s), min_warmup=2, measure_s=measure_s, min_runs=5, retries=0)
    rng, out = random.Random(0), {name: [] for name in calls}
    for _ in range(rounds):
        order = list(calls)
        rng.shuffle(order)
        for name in order:
            out[name].append(measure(calls[name], cfg, device).stats.median_ms)
    return out


def measure_model(args) -> dict:
    """Every batch of ``args``: both copies timed, the speedup with its per-round range, the error."""
    import torch

    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    model, patched, count = build_pair(args.model, args.resolution, args.dtype, args.device)
    rows = []
    for batch in args.batches:
        x = torch.randn(batch, 3, args.resolution, args.resolution, generator=torch.Generator().manual_seed(batch))
        x = x.to(device=args.device, dtype=next(model.parameters()).dtype, memory_format=torch.channels_last)
        err = output_error(model, patched, x)

        def call(m, x=x):
            def run():
                with torch.inference_mode():
                    m(x)
            return run

        times = time_rounds({"cudnn": call(model), "patched": call(patched)}, args.device, args.rounds, args.measure_s,
                            args.quick)
        ratios = [a / b for a, b in zip(times["cudnn"], times["patched"])]
        rows.append(dict(batch=batch, cudnn_ms=statistics.median(times["cudnn"]),
                         patched_ms=statistics.median(times["patched"]), speedup=statistics.median(ratios),
                         speedup_min=min(ratios), speedup_max=max(ratios), rounds=args.rounds, rel_err=err,
                         ok=err <= TOLERANCE[args.dtype]))  # fmt: skip
        print(f"batch {batch}: speedup {rows[-1]['speedup']:.3f} ({min(ratios):.3f}-{max(ratios):.3f})",
              file=sys.stderr)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu (Triton interpreter)"
    return dict(device=name, torch=torch.__version__, model=args.model, resolution=args.resolution, dtype=args.dtype,
                layout="channels_last", patched_layers=count, results=rows)  # fmt: skip


def _table(doc: dict) -> None:
    print(f"{doc['model']} on {doc['device']}, {doc['dtype']}, {doc['resolution']} px, channels-last; "
          f"{doc['patched_layers']} grouped convs patched (BN and activation fused)")
    print(f"{'batch':>5} {'cuDNN ms':>10} {'patched ms':>10} {'speedup':>8} {'range':>13} {'rel err':>8}")
    for r in doc["results"]:
        print(f"{r['batch']:>5} {r['cudnn_ms']:>10.3f} {r['patched_ms']:>10.3f} {r['speedup']:>8.3f} "
              f"{r['speedup_min']:>6.3f}-{r['speedup_max']:<6.3f} {r['rel_err']:>8.1e}")


def _args(argv):
    ap = parser(__doc__, out=True)
    ap.add_argument("--model", default=None, help="zoo model (default RegNetY-4.0GF; --quick: RegNetX-200MF at 32 px)")
    ap.add_argument("--batch", default=None, help="batch sizes (default 32; --quick: 1)")
    ap.add_argument("--dtype", default=None, choices=sorted(TOLERANCE), help="precision (default fp16; --quick: fp32)")
    ap.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 7; --quick: 1)")
    ap.add_argument("--measure-s", type=float, default=None, help="timed seconds per round and copy (default 0.3)")
    add_device_option(ap)
    args = ap.parse_args(argv)
    args.model = args.model or ("RegNetX-200MF" if args.quick else "RegNetY-4.0GF")
    args.batch = args.batch or ("1" if args.quick else "32")
    args.dtype = args.dtype or ("fp32" if args.quick else "fp16")
    args.rounds = args.rounds or (1 if args.quick else 7)
    args.measure_s = args.measure_s if args.measure_s is not None else 0.3
    args.resolution = 32 if args.quick else 224
    return args


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: ``python dev/patched_model_speed.py``; exit 1 when the outputs disagree."""
    args = _args(argv)
    problem = _device_problem(args.device)
    if problem:
        return fail(problem)
    try:
        args.batches = [int(b) for b in args.batch.split(",")]
        if any(b < 1 for b in args.batches) or args.rounds < 1:
            raise ValueError
    except ValueError:
        return fail(f"bad --batch {args.batch!r} or --rounds {args.rounds} (e.g. --batch 32,128 --rounds 7)")
    doc = measure_model(args)
    emit(doc, args.json, _table, args.out)
    bad = [r for r in doc["results"] if not r["ok"]]
    if bad:
        return fail(f"{len(bad)} batches' patched outputs differ from cuDNN's beyond {TOLERANCE[args.dtype]:g}", 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
