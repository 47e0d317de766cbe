#!/usr/bin/env bash
# The GPU run: every GPU path of fsrt and the figures of the GPU issue, as one prepared script for
# one device call. Run from the repository root on a machine with an NVIDIA GPU:
#
#   OUT=/some/dir bash dev/gpu_check.sh                 # every phase, within DEADLINE seconds
#   PHASES="kernels patched" OUT=... bash dev/gpu_check.sh   # some phases (a later call resumes)
#   REHEARSAL=1 OUT=/tmp/r bash dev/gpu_check.sh       # the same orchestration on this CPU, tiny sizes
#
# Phases, most important first (each time-boxed; a failing phase is logged and the next one runs):
#   setup    versions, nvidia-smi; installs carried wheels (.whl/*.whl, see below) and fsrt itself
#   tests    tests/test_gpu.py: CUDA paths against independent ones (CPU float64, eager vs graph replay)
#   fig2     Figure 2 of the scaling paper on the GPU: RegNetY-400MF, EfficientNet-B0, RegNetZ-500MF
#            x dwr/dWr/w x s=1..16, fp16, batch 64, eager
#   graphs   the same sweep with CUDA-graph replay (reuses fig2's prepared models)
#   l2cold   RegNetY-400MF's sweep with L2 flushed before every call
#   kernels  Triton grouped conv vs cuDNN on every grouped/depthwise layer shape of RegNetY-400MF (group
#            width 8), RegNetY-1.6GF (24), RegNetY-4.0GF (64) and EfficientNet-B0 (depthwise), fp16,
#            batch 32 and 128, direct and GEMM paths timed apart (the data for GEMM_MIN_GROUP_WIDTH)
#   compile  torch.compile (Inductor) on RegNetY-400MF, dwr/dWr/w at s=1 and 16
#   patched  RegNetY-4.0GF with the Triton kernels patched in vs unpatched, fp16, batch 32 and 128
#   others   the runtimes this machine cannot run (ort, ort-trt, trt, openvino) beside eager: each
#            must give a parity-checked point or an "unavailable" reason
#   train    training steps (forward, loss, backward, SGD) of RegNetY-400MF's sweep, batch 64
#   aoti     AOTInductor at s=1 (export and a C++ build per model: last, it is the slowest)
# then a side-by-side report of fig2 and graphs. Everything lands in $WORK (default /tmp/fsrt-gpu,
# kept between calls on one machine so PHASES can continue) and, after every phase, in
# $OUT/gpu-results.tgz (databases, reports, JSON, logs: no model files), plus $OUT/status.txt.
#
# The device's Python (PYTHON, default python3) must have CUDA torch and triton; fsrt is installed
# editable without dependencies. Packages fsrt needs that the device lacks travel as wheels in .whl
# (ignored by git): fetch them here first with  bash dev/gpu_check.sh --fetch-wheels  (onnxslim), and
# have the device call carry the folder .whl. On this workplace's device tool the whole GPU run is
#   run(command="bash dev/gpu_check.sh", carry=[".whl"], timeout_s=600)   ($OUT is set there)
# and a second call on the still-warm machine can finish what the deadline cut: PHASES="..." again.
# Back here: mkdir R; tar xzf gpu-results.tgz -C R; python dev/gpu_tables.py R  prints the note's tables.
set -uo pipefail
if [ "${1:-}" = "--fetch-wheels" ]; then
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl "onnxslim==0.1.98"
  exit $?
fi

OUT="${OUT:-./gpu_out}"
WORK="${WORK:-/tmp/fsrt-gpu}"
DEADLINE="${DEADLINE:-560}"          # seconds for the whole script (a device call may run 600)
REHEARSAL="${REHEARSAL:-0}"
ALL="setup tests fig2 graphs l2cold kernels compile patched others train aoti report"
PHASES="${PHASES:-$ALL}"
PY="${PYTHON:-}"
[ -z "$PY" ] && { if [ "$REHEARSAL" = 1 ] && [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi; }
START=$(date +%s)
RUNS="$WORK/runs" LOGS="$WORK/logs" DB="$WORK/runs/fsrt.db"
mkdir -p "$OUT" "$RUNS" "$LOGS"
# fsrt's machine settings, Triton's and Inductor's compiled kernels: kept in $WORK, so a later call
# on the same machine (PHASES=...) starts warm
export FSRT_CACHE_DIR="$WORK/cache" TRITON_CACHE_DIR="$WORK/cache/triton" \
  TORCHINDUCTOR_CACHE_DIR="$WORK/cache/inductor" PYTHONUNBUFFERED=1

if [ "$REHEARSAL" = 1 ]; then  # the same phases on a CPU: checks the script, not the GPU
  DEV=cpu; MODELS="RegNetX-200MF EfficientNet-B0"; ONE=RegNetX-200MF; SWEEP="s=1,2"; BATCH=2
  PREC=fp32; SIZE=(--resolution 32); THREADS=1; GRAPHS=(); COLD=(); COMPILE=eager
  KERNELS=(--device cpu --quick); PATCHED=(--device cpu --quick)
  export TRITON_INTERPRET=1
else
  DEV=cuda; MODELS="RegNetY-400MF EfficientNet-B0 RegNetZ-500MF"; ONE=RegNetY-400MF; SWEEP="s=1..16"; BATCH=64
  PREC=fp16; SIZE=(); THREADS=4; GRAPHS=(--cuda-graphs); COLD=(--l2 cold); COMPILE=compile
  KERNELS=(--models RegNetY-400MF,RegNetY-1.6GF,RegNetY-4.0GF,EfficientNet-B0 --batch 32,128 --dtype fp16 --paths
           --measure-s 0.2)
  PATCHED=(--model RegNetY-4.0GF --batch 32,128)
fi
left() { echo $(( DEADLINE - ($(date +%s) - START) )); }
pack() {  # everything small that a reader needs, as one file (the device returns at most 8)
  (cd "$WORK" && tar czf "$OUT/gpu-results.tgz.part" --exclude='*/work' logs runs 2>/dev/null \
    && mv "$OUT/gpu-results.tgz.part" "$OUT/gpu-results.tgz")
  cp "$LOGS/status.txt" "$OUT/status.txt" 2>/dev/null || true
}
share_models() {  # a run folder reuses fig2's prepared models (same variants, same files)
  mkdir -p "$RUNS/$1/work" "$RUNS/gpu-fig2/work/models"
  [ -e "$RUNS/$1/work/models" ] || ln -s "$RUNS/gpu-fig2/work/models" "$RUNS/$1/work/models"
}
bench() { "$PY" -m fsrt bench --device "$DEV" --threads "$THREADS" --db "$DB" --budget-s 20 --warmup-s 0.2 "${SIZE[@]}" "$@"; }
sweep() {  # fig2's sweep of the given models, plus the given options
  local models="$1"; shift
  bench $models --strategy dwr,dWr,w --sweep "$SWEEP" --batch "$BATCH" --precision "$PREC" --runtimes eager "$@"
}
setup() {
  nvidia-smi || true
  echo "nproc $(nproc); gcc $(command -v gcc); g++ $(command -v g++); nvcc $(command -v nvcc); CUDA_HOME ${CUDA_HOME:-}"
  "$PY" -c "import sys, torch; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda,
    'available', torch.cuda.is_available()); import triton; print('triton', triton.__version__)"
  if ls .whl/*.whl > /dev/null 2>&1 && [ "$REHEARSAL" != 1 ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" .whl/*.whl
  fi
  export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
  if ! "$PY" -c "import fsrt.bench, fsrt.kernels" 2> /dev/null; then
    "$PY" -m pip install -q --no-deps --no-build-isolation -e .
  fi
  "$PY" -c "import fsrt, fsrt.bench, fsrt.kernels, onnxslim; print('fsrt', fsrt.__version__, 'imports')"
}
body() {  # the commands of one phase (run as  bash dev/gpu_check.sh --body NAME  under timeout)
  case "$1" in
    setup) setup ;;
    tests) "$PY" -m pytest -q -p no:cacheprovider tests/test_gpu.py ;;
    fig2) sweep "$MODELS" --out "$RUNS/gpu-fig2" --json ;;
    graphs) sweep "$MODELS" "${GRAPHS[@]}" --out "$RUNS/gpu-graphs" --json ;;
    l2cold) sweep "$ONE" "${COLD[@]}" --out "$RUNS/gpu-l2cold" --json ;;
    kernels) "$PY" dev/kernel_speed.py "${KERNELS[@]}" --out "$LOGS/kernels.json" ;;
    compile) bench "$ONE" --strategy dwr,dWr,w --sweep s=1,16 --batch "$BATCH" --precision "$PREC" \
      --runtimes "$COMPILE" --out "$RUNS/gpu-compile" --json ;;
    patched) "$PY" dev/patched_model_speed.py "${PATCHED[@]}" --out "$LOGS/patched.json" ;;
    others) bench "$ONE" --strategy dWr --sweep s=1 --batch "$BATCH" --precision "$PREC" \
      --runtimes eager,ort,ort-trt,trt,openvino --out "$RUNS/gpu-others" --json ;;
    aoti) bench "$ONE" --strategy dWr --sweep s=1 --batch "$BATCH" --precision "$PREC" \
      --runtimes aoti --out "$RUNS/gpu-aoti" --json ;;
    train) bench "$ONE" --strategy dwr,dWr,w --sweep "$SWEEP" --batch "$BATCH" --mode train --runtimes eager \
      --out "$RUNS/gpu-train" --json ;;
    report) "$PY" -m fsrt report gpu-fig2 gpu-graphs --db "$DB" --out "$RUNS/gpu-fig2-vs-graphs/report" ;;
    *) echo "unknown phase $1" >&2; return 2 ;;
  esac
}
[ -d "$WORK/site" ] && export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
if [ "${1:-}" = "--body" ]; then body "$2"; exit $?; fi

phase() {  # name, cap seconds: the phase's body under a time limit, logged, then packed
  local name="$1" cap="$2"
  case " $PHASES " in *" $name "*) ;; *) return 0 ;; esac
  local budget; budget=$(( $(left) - 15 ))
  [ "$budget" -lt "$cap" ] && cap="$budget"
  if [ "$cap" -lt 20 ]; then echo "$name skipped (no time left)" | tee -a "$LOGS/status.txt"; return 0; fi
  local t0; t0=$(date +%s)
  timeout -k 5 "$cap" bash "$0" --body "$name" > "$LOGS/$name.txt" 2> "$LOGS/$name.log"
  local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - t0 ))s (cap ${cap}s)" | tee -a "$LOGS/status.txt"
  pack
}
echo "gpu_check $(date -u +%FT%TZ) phases: $PHASES (deadline ${DEADLINE}s, rehearsal $REHEARSAL)" >> "$LOGS/status.txt"
for m in gpu-graphs gpu-l2cold gpu-compile gpu-others gpu-train gpu-aoti; do share_models "$m"; done
declare -A CAP=([setup]=60 [tests]=60 [fig2]=170 [graphs]=90 [l2cold]=45 [kernels]=140 [compile]=110 [patched]=60
                [others]=40 [train]=75 [aoti]=90
                [report]=30)
for name in $ALL; do phase "$name" "${CAP[$name]}"; done
pack
echo "done in $(( $(date +%s) - START ))s" | tee -a "$LOGS/status.txt"
cp "$LOGS/status.txt" "$OUT/status.txt"
