#!/usr/bin/env bash
# GPU check for fsrt.kernels: run on a machine with an NVIDIA GPU from the repo root.
#   OUT=/some/dir bash dev/gpu_check.sh
# Needs a Python with CUDA torch + triton (PYTHON, default .venv/bin/python, else python3); fsrt is
# installed editable without dependencies if it is not importable yet. Writes to $OUT:
#   nvidia-smi.txt, kernels.json (auto path: ratio to cuDNN, GB/s, % copy BW, error vs cuDNN),
#   kernels_paths.json (direct vs GEMM at batch 32 fp16: the data for GEMM_MIN_GROUP_WIDTH),
#   kernels_nchw.json (NCHW layout at batch 32), *.log (stderr), and the exit status of each step.
set -uo pipefail
OUT="${OUT:-./gpu_out}"
mkdir -p "$OUT"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
"$PY" -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.is_available())" \
  > "$OUT/versions.txt" 2>&1
if ! "$PY" -c "import fsrt.kernels" 2>/dev/null; then
  "$PY" -m pip install -q --no-deps --no-build-isolation -e . > "$OUT/install.log" 2>&1
fi
run() {  # name, args...
  local name="$1"; shift
  "$PY" dev/kernel_speed.py "$@" --out "$OUT/$name.json" > "$OUT/$name.txt" 2> "$OUT/$name.log"
  echo "$name exit=$?" | tee -a "$OUT/status.txt"
}
run kernels --batch 1,32,64 --dtype fp16,fp32
run kernels_paths --batch 32 --dtype fp16 --paths
run kernels_nchw --batch 32 --dtype fp16 --layout nchw
