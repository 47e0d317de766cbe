"""How far honest and broken runtimes land from the error a precision's rounding explains.

For each model (seeded weights, calibrated BatchNorm, as ``fsrt bench`` builds them) and each
precision, the relative L2 error of a runtime's outputs against the float64 model is divided by
the error ``fsrt.accuracy`` expects from that precision's rounding (float64 emulation). Honest
runtimes are fsrt's own runners (eager autocast, OpenVINO, ONNX Runtime); broken ones are the
eager runner on a model with a deliberate bug (tests/faults.py) or in the wrong precision.
These ratios are what the accepted range [1/LOWER_FACTOR, UPPER_FACTOR] is chosen from.

    python dev/precision_check.py                       # every zoo family at 64 px, batch 1
    python dev/precision_check.py --models ResNet-50 --resolution 96 --json
    python dev/precision_check.py --quick               # smoke: RegNetX-200MF at 32 px, eager only
"""

from __future__ import annotations

import copy
import sys
import tempfile
from pathlib import Path

import numpy as np
from devcli import emit, parser

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the deliberate bugs live with the tests

FAMILIES = "RegNetX-200MF,RegNetY-400MF,RegNetZ-500MF,EfficientNet-B0,ResNet-50,ResNet-RS-50"
HALF = ("fp16", "bf16")
WRONG = {"fp32": "bf16", "fp16": "bf16", "bf16": "fp16"}  # what a runtime computes instead of the asked precision


def bugs(quick: bool) -> dict:
    """name -> function(model) applying one deliberate bug in place."""
    import faults

    out = {"weights 1% (first conv)": lambda m: faults.perturb_weights(m, 0.01, 0.0),
           "kernel transposed (middle)": lambda m: faults.transpose_kernel(m, 0.5),
           "padding shifted (middle)": lambda m: faults.shift_padding(m, 0.5)}
    if not quick:
        out.update({"weights 1% (middle conv)": lambda m: faults.perturb_weights(m, 0.01, 0.5),
                    "weights 1% (last conv)": lambda m: faults.perturb_weights(m, 0.01, 1.0),
                    "weights 5% (first conv)": lambda m: faults.perturb_weights(m, 0.05, 0.0),
                    "kernel transposed (last)": lambda m: faults.transpose_kernel(m, 1.0),
                    "padding shifted (last)": lambda m: faults.shift_padding(m, 1.0)})
    return out


def model_and_data(name: str, resolution: int, batch: int):
    """(module, input, float64 reference) as the bench builds them."""
    import torch

    from fsrt.accuracy import reference_outputs
    from fsrt.calibration import calibrate_batchnorm
    from fsrt.models import build_model
    from fsrt.zoo import zoo_spec

    spec = zoo_spec(name).replace(resolution=resolution)
    torch.manual_seed(0)
    model = build_model(spec)
    calibrate_batchnorm(model, resolution, 0)
    x = np.random.default_rng(0).standard_normal((batch, 3, resolution, resolution)).astype(np.float32)
    return model, x, reference_outputs(model, [x.astype(np.float64)])[0]


def run_runner(runner, model, precision: str, x: np.ndarray, graphs: dict) -> np.ndarray:
    """Outputs of one fsrt runner (prepared as in a sweep) on ``x``."""
    from fsrt.bench.runners import PrepareContext

    ctx = PrepareContext(spec=model.spec, batch=x.shape[0], precision=precision, device="cpu", threads=1,
                         workdir=graphs["dir"], onnx_path=lambda p: graphs[p], load_model=lambda: model)
    runner.prepare(ctx)
    try:
        fn = runner.bind(x)
        fn()
        return runner.output()
    finally:
        runner.close()


def graphs_for(model, x: np.ndarray, runtimes: list[str], folder: Path) -> dict:
    """The model's ONNX graphs at each precision an ONNX runner reads."""
    from fsrt.exporters.onnx_export import export_onnx

    out = {"dir": folder}
    if any(r in ("ort", "openvino") for r in runtimes):
        for p in ("fp32", "fp16") if "ort" in runtimes else ("fp32",):
            out[p] = folder / f"{p}.onnx"
            export_onnx(model, out[p], batch=x.shape[0], precision=p, parity=False, force=True)
    return out


def judged(out, ref, precision: str, expected) -> dict:
    from fsrt.accuracy import compare, judge
    from fsrt.precision import get_precision

    err = compare(out, ref).rel_l2
    verdict = judge(err, get_precision(precision), expected)
    return {"rel_l2": err, "ratio": err / expected if expected else None, "passed": verdict.passed}


def audit_model(name: str, resolution: int, batch: int, runtimes: list[str], quick: bool) -> list[dict]:
    """Every honest and broken row for one model."""
    from fsrt.accuracy import expected_error
    from fsrt.bench.runners import EagerRunner, all_runners
    from fsrt.precision import get_precision

    model, x, ref = model_and_data(name, resolution, batch)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        graphs = graphs_for(model, x, runtimes, Path(tmp))
        for precision in ("fp32", *HALF):
            expected = expected_error(model, [x.astype(np.float64)], [ref], get_precision(precision))
            for rt in runtimes:
                row = {"model": name, "precision": precision, "runtime": rt, "kind": "honest", "expected": expected}
                try:
                    rows.append(row | judged(run_runner(all_runners()[rt](), model, precision, x, graphs), ref,
                                             precision, expected))
                except Exception as e:  # noqa: BLE001 - a runtime refusing a precision is a row too
                    rows.append(row | {"error": str(e).splitlines()[0][:160]})
            for bug, apply in bugs(quick).items():
                broken = copy.deepcopy(model)
                apply(broken)
                out = run_runner(EagerRunner(), broken, precision, x, graphs)
                rows.append({"model": name, "precision": precision, "runtime": "eager", "kind": bug,
                             "expected": expected} | judged(out, ref, precision, expected))
            wrong = run_runner(EagerRunner(), model, WRONG[precision], x, graphs)
            rows.append({"model": name, "precision": precision, "runtime": "eager", "expected": expected,
                         "kind": f"computes {WRONG[precision]}"} | judged(wrong, ref, precision, expected))
    return rows


def summary(rows: list[dict]) -> dict:
    """Range of the ratio per (kind, precision) over models and runtimes, and whether all were caught."""
    out = {}
    for r in rows:
        if r.get("ratio") is None:
            continue
        key = f"{r['kind']} | {r['precision']}"
        s = out.setdefault(key, {"min": r["ratio"], "max": r["ratio"], "passed": 0, "failed": 0})
        s["min"], s["max"] = min(s["min"], r["ratio"]), max(s["max"], r["ratio"])
        s["passed" if r["passed"] else "failed"] += 1
    return out


def print_text(doc: dict) -> None:
    from fsrt.accuracy import LOWER_FACTOR, UPPER_FACTOR

    print(f"accepted: error / expected in [1/{LOWER_FACTOR:g}, {UPPER_FACTOR:g}] (fp32: error <= 1e-4)")
    print(f"{'model':16s} {'prec':5s} {'runtime':9s} {'case':28s} {'error':>9s} {'expected':>9s} {'ratio':>8s}  "
          "verdict")
    for r in doc["rows"]:
        if "error" in r:
            print(f"{r['model']:16s} {r['precision']:5s} {r['runtime']:9s} {r['kind']:28s} not run: {r['error']}")
            continue
        exp = f"{r['expected']:.2e}" if r["expected"] else "-"
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
        print(f"{r['model']:16s} {r['precision']:5s} {r['runtime']:9s} {r['kind']:28s} {r['rel_l2']:9.2e} {exp:>9s} "
              f"{ratio:>8s}  {'pass' if r['passed'] else 'FAIL'}")
    print("\nratio range per case (over models and runtimes): min .. max  (passed / failed)")
    for key, s in doc["summary"].items():
        print(f"  {key:40s} {s['min']:8.2f} .. {s['max']:8.2f}  ({s['passed']} / {s['failed']})")


def main(argv=None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--models", default=FAMILIES, help=f"zoo models (default: one per family, {FAMILIES})")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--runtimes", default="eager,openvino,ort")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    models = ["RegNetX-200MF"] if args.quick else [m.strip() for m in args.models.split(",") if m.strip()]
    runtimes = ["eager"] if args.quick else [r.strip() for r in args.runtimes.split(",") if r.strip()]
    resolution = 32 if args.quick else args.resolution
    rows = []
    for name in models:
        print(f"{name} ...", file=sys.stderr)
        rows += audit_model(name, resolution, args.batch, runtimes, args.quick)
    emit({"resolution": resolution, "batch": args.batch, "rows": rows, "summary": summary(rows)}, args.json,
         print_text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
