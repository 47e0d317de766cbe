"""What each half precision buys and costs here: speedup over fp32 beside the accuracy cost.

Runs ``fsrt bench`` on unscaled models (s=1) with the given precisions (default ``auto``: fp32
plus what this machine computes natively), so every precision of a runtime is timed side by
side in the same interleaved rounds, then prints, per model, runtime and half precision: the
fp32 and half-precision figures, the speedup (fp32 / half, paired over rounds, with its 95%
interval), the relative L2 error of the timed call's outputs against the float64 model, the
error the precision's rounding alone gives that model, and what the runtime says it ran.

    python dev/precision_speed.py                                  # RegNetY-400MF at 224 px
    python dev/precision_speed.py --models RegNetY-400MF,EfficientNet-B0 --precision fp32,bf16 --json
    python dev/precision_speed.py --quick                          # smoke: RegNetX-200MF at 32 px, eager
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from devcli import emit, fail, parser

BIN = Path(sys.executable).parent


def bench(args, work: Path) -> dict:
    """One ``fsrt bench`` run; returns its JSON document."""
    cmd = [str(BIN / "fsrt"), "bench", *args.models.split(","), "--strategy", "w", "--sweep", "s=1",
           "--precision", args.precision, "--runtimes", args.runtimes, "--threads", str(args.threads),
           "--measure-s", str(args.measure_s), "--max-rounds", str(args.max_rounds), "--out", str(work / "run"),
           "--db", str(work / "fsrt.db"), "--no-report", "--json"]
    if args.resolution:
        cmd += ["--resolution", str(args.resolution)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "fsrt bench failed")
    return json.loads(proc.stdout)


def costs(doc: dict, db: Path) -> list[dict]:
    """The precision rows of the run (``fsrt.bench.precision_costs``), from its store."""
    from fsrt.bench.precision_costs import precision_costs
    from fsrt.bench.store import Store

    with Store(db) as store:
        points = store.run_points(doc["run_id"])
        windows = store.windows(doc["machine_id"], sorted({p.mkey for p in points if p.mkey}))
    return precision_costs(points, windows)


def print_text(doc: dict) -> None:
    print(f"threads {doc['threads']}; skipped: " + ("; ".join(f"{k}: {v}" for k, v in doc["unavailable"].items())
                                                    or "none"))
    print(f"{'model':16s} {'runtime':9s} {'prec':5s} {'fp32 ms':>8s} {'ms':>8s} {'speedup [95% interval]':>24s} "
          f"{'error':>9s} {'rounding':>9s}  status / ran")
    for r in doc["rows"]:
        sp = r["speedup"]
        speed = "-" if not sp else (f"{sp['value']:.2f}x" + (f" [{sp['lo']:.2f}, {sp['hi']:.2f}]"
                                                             if sp.get("lo") is not None else ""))
        num = (lambda v, f: "-" if v is None else format(v, f))  # noqa: E731
        print(f"{r['model']:16s} {r['runtime']:9s} {r['precision']:5s} {num(r['fp32_ms'], '8.3f')} "
              f"{num(r['latency_ms'], '8.3f')} {speed:>24s} {num(r['rel_l2'], '9.2e')} {num(r['expected'], '9.2e')}  "
              f"{r['reason'] or r['status']} / {r['note'] or '-'}")


def main(argv=None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--models", default="RegNetY-400MF", help="comma list of zoo models (default RegNetY-400MF)")
    ap.add_argument("--resolution", type=int, default=None, help="input size (default: the model's)")
    ap.add_argument("--precision", default="auto", help="auto or a list such as fp32,bf16")
    ap.add_argument("--runtimes", default="eager,ort,openvino")
    ap.add_argument("--threads", default="1", help="threads for every runtime (or auto)")
    ap.add_argument("--measure-s", type=float, default=0.1, help="seconds per timing window")
    ap.add_argument("--max-rounds", type=int, default=30)
    ap.add_argument("--work", type=Path, default=None, help="keep the run and its database here")
    args = ap.parse_args(argv)
    if args.quick:
        args.models, args.resolution, args.precision, args.runtimes = "RegNetX-200MF", 32, "fp32,bf16", "eager"
        args.measure_s, args.max_rounds = 0.02, 6
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        try:
            doc = bench(args, work)
        except RuntimeError as e:
            return fail(str(e))
        emit({"threads": doc["threads"], "unavailable": doc["unavailable"], "rows": costs(doc, work / "fsrt.db")},
             args.json, print_text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
