"""GPU-only checks: they run where PyTorch sees a CUDA device (``dev/gpu_check.sh`` runs this file
first on a GPU machine) and are skipped elsewhere, where no CUDA code path can run at all.

Each compares a CUDA path with an independent one: the float64 references a GPU sweep computes
against the same computation on the CPU, a replayed CUDA graph against the eager call it
captured, and the allocator's peak against the bytes the weights must occupy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (dev/gpu_check.sh runs it)")


def _model(name: str = "RegNetY-400MF", res: int = 64, batch: int = 4):
    from fsrt.calibration import calibrate_batchnorm
    from fsrt.models import build_model
    from fsrt.zoo import zoo_spec

    spec = zoo_spec(name).replace(resolution=res)
    torch.manual_seed(0)
    model = build_model(spec)
    calibrate_batchnorm(model, res, 0)
    x = np.random.default_rng(0).standard_normal((batch, 3, res, res)).astype(np.float32)
    return spec, model.eval(), x


@pytest.mark.parametrize("name", ["RegNetY-400MF", "EfficientNet-B0"])
def test_float64_references_on_the_gpu_equal_the_cpu_ones(name):
    from fsrt.accuracy import expected_error, reference_outputs
    from fsrt.precision import get_precision

    _, model, x = _model(name)
    wide = [x.astype(np.float64)]
    (cpu,), (gpu,) = reference_outputs(model, wide), reference_outputs(model, wide, "cuda")
    assert np.max(np.abs(gpu - cpu)) <= 1e-10 * np.max(np.abs(cpu))
    fp16 = get_precision("fp16")
    e_cpu, e_gpu = (expected_error(model, wide, [cpu], fp16, device=d) for d in ("cpu", "cuda"))
    assert e_gpu == pytest.approx(e_cpu, rel=1e-3)


def test_float64_training_step_on_the_gpu_equals_the_cpu_one():
    from fsrt.bench.train_step import make_labels, reference

    spec, model, x = _model("RegNetX-200MF", 32, 8)
    y = make_labels(0, len(x), spec.num_classes)
    cpu, gpu = reference(model, x, y, spec.family), reference(model, x, y, spec.family, device="cuda")
    assert np.allclose(gpu[0], cpu[0], rtol=1e-9, atol=0)  # loss, gradient norm, update norm
    assert np.allclose(gpu[1], cpu[1], rtol=1e-2, atol=1e-12)  # sensitivities (ratios of tiny moves)


def _eager_output(spec, model, x, precision: str, cuda_graphs: bool) -> tuple[np.ndarray, str]:
    from fsrt.bench.runners import EagerRunner, PrepareContext

    runner = EagerRunner()
    runner.prepare(PrepareContext(spec=spec, batch=len(x), precision=precision, device="cuda", threads=1,
                                  workdir=Path("."), onnx_path=lambda p: None, load_model=lambda: model,
                                  cuda_graphs=cuda_graphs))  # fmt: skip
    fn = runner.bind(x)
    fn()
    fn()  # a replay reruns the captured kernels into the same output tensor
    out, note = runner.output(), runner.precision_note()
    runner.close()
    return out, note


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_graph_replay_computes_what_the_eager_call_computes(precision):
    from fsrt.accuracy import reference_outputs

    spec, model, x = _model(batch=8)
    eager, note = _eager_output(spec, model, x, precision, cuda_graphs=False)
    replayed, graph_note = _eager_output(spec, model, x, precision, cuda_graphs=True)
    assert "CUDA graph" in graph_note and "CUDA graph" not in note
    (ref,) = reference_outputs(model, [x.astype(np.float64)])
    scale = np.max(np.abs(ref))
    tol = 1e-2 if precision == "fp16" else 1e-4  # fp32 is fp32: TF32 convs would be ~5e-3 off
    assert ("TF32 off" in note) == (precision == "fp32") and "cuDNN autotuned" in note
    assert np.max(np.abs(eager - ref)) <= tol * scale and np.max(np.abs(replayed - ref)) <= tol * scale
    assert np.max(np.abs(replayed - eager)) <= tol * scale / 10  # the same kernels, captured


def test_cuda_peak_memory_counts_at_least_the_weights_moved_in():
    from fsrt.bench.memory import CUDA_KIND, ResidentPeak

    _, model, _ = _model()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    with ResidentPeak("cuda") as peak:
        on_gpu = model.to("cuda")
    assert peak.kind == CUDA_KIND and weight_bytes <= peak.peak_bytes < 4 * weight_bytes + 2**22
    del on_gpu


def test_a_gpu_index_past_the_visible_ones_is_a_one_line_error():
    from fsrt.device import resolve_device
    from fsrt.errors import FsrtError

    n = torch.cuda.device_count()
    assert resolve_device(f"cuda:{n - 1}") == torch.device(f"cuda:{n - 1}")
    with pytest.raises(FsrtError, match=f"torch sees {n} CUDA GPU"):
        resolve_device(f"cuda:{n}")
