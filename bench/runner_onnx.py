"""ONNX-based runners: ONNX Runtime (CPU, CUDA with IOBinding, TensorRT EP) and OpenVINO."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fsrt.bench.precision_support import openvino_note, ort_ran_in_fp32
from fsrt.bench.runners import PrepareContext, Runner, module_available
from fsrt.precision import get_precision, ort_numpy_dtype


def _ort_providers() -> list[str]:
    if not module_available("onnxruntime"):
        return []
    import onnxruntime as ort

    return ort.get_available_providers()


class OrtRunner(Runner):
    """ONNX Runtime with the device's provider: CPU EP on CPU, CUDA EP (IOBinding) on GPU."""

    name = "ort"
    needs_onnx = True
    loads_torch = False
    provider_cpu, provider_cuda = "CPUExecutionProvider", "CUDAExecutionProvider"

    def provider(self, device: str) -> str:
        return self.provider_cuda if device.startswith("cuda") else self.provider_cpu

    def unavailable_reason(self, device: str) -> str | None:
        if not module_available("onnxruntime"):
            return "onnxruntime is not installed (pip install onnxruntime, or onnxruntime-gpu for CUDA)"
        want = self.provider(device)
        if want not in _ort_providers():
            return f"ONNX Runtime here has no {want} (install onnxruntime-gpu with a matching CUDA)"
        return super().unavailable_reason(device)

    def session_providers(self, ctx: PrepareContext) -> list:
        return [self.provider(ctx.device)]

    def prepare(self, ctx: PrepareContext) -> None:
        import onnxruntime as ort

        self.dtype = ort_numpy_dtype(get_precision(ctx.precision))  # raises for bf16: no ONNX Runtime kernels
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = ctx.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        path = ctx.onnx_path(ctx.precision)
        inspect = ctx.precision != "fp32" and not ctx.device.startswith("cuda")
        if inspect:  # keep the graph ONNX Runtime really runs, to record its arithmetic
            ctx.workdir.mkdir(parents=True, exist_ok=True)
            opts.optimized_model_filepath = str(ctx.workdir / f"ort-optimized-{path.name}")
        self.session = ort.InferenceSession(str(path), opts, providers=self.session_providers(ctx))
        self.input_name = self.session.get_inputs()[0].name
        self.device = ctx.device
        self._binding = self._out = None
        self._precision_note = f"{ctx.precision} graph, {self.session.get_providers()[0]}"
        if inspect and ort_ran_in_fp32(opts.optimized_model_filepath):
            self._precision_note += " (computed in fp32 between two inserted casts: no fp16 CPU kernels)"

    def bind(self, x: np.ndarray) -> Callable[[], object]:
        feed = {self.input_name: np.ascontiguousarray(x.astype(self.dtype))}
        if not self.device.startswith("cuda"):
            def run():
                self._out = self.session.run(None, feed)[0]

            return run
        import onnxruntime as ort

        binding = self.session.io_binding()
        dev = ort.OrtValue.ortvalue_from_numpy(feed[self.input_name], "cuda", 0)
        binding.bind_ortvalue_input(self.input_name, dev)
        binding.bind_output(self.session.get_outputs()[0].name, "cuda")
        self._binding = binding
        self._precision_note += ", IOBinding"

        def run_bound():
            self.session.run_with_iobinding(binding)

        return run_bound

    def output(self) -> np.ndarray:
        if self._binding is not None:
            return np.asarray(self._binding.copy_outputs_to_cpu()[0], dtype=np.float64)
        return np.asarray(self._out, dtype=np.float64)

    def close(self) -> None:
        self.session = self._binding = self._out = None


class OrtTensorRtRunner(OrtRunner):
    """ONNX Runtime's TensorRT execution provider (falls back to CUDA for unsupported nodes)."""

    name = "ort-trt"
    devices = ("cuda",)

    def unavailable_reason(self, device: str) -> str | None:
        if not device.startswith("cuda"):
            return "the TensorRT execution provider needs a CUDA GPU"
        if "TensorrtExecutionProvider" not in _ort_providers():
            return "ONNX Runtime here has no TensorrtExecutionProvider (onnxruntime-gpu built with TensorRT)"
        return super().unavailable_reason(device)

    def session_providers(self, ctx: PrepareContext) -> list:
        cache = ctx.workdir / "ort-trt-cache"
        cache.mkdir(parents=True, exist_ok=True)
        return [("TensorrtExecutionProvider", {"trt_fp16_enable": ctx.precision == "fp16",
                                               "trt_engine_cache_enable": True,
                                               "trt_engine_cache_path": str(cache)}),
                "CUDAExecutionProvider"]


class OpenVinoRunner(Runner):
    """OpenVINO CPU plugin with an explicit precision hint (it defaults to bf16 on CPUs with
    bf16 units); the precision its convolutions really run is recorded, and a hint it does not
    honour is refused (``fsrt.bench.precision_support``)."""

    name = "openvino"
    devices = ("cpu",)
    needs_onnx = True
    loads_torch = False

    def unavailable_reason(self, device: str) -> str | None:
        if not module_available("openvino"):
            return "openvino is not installed (pip install openvino)"
        return super().unavailable_reason(device)

    def prepare(self, ctx: PrepareContext) -> None:
        import openvino as ov

        core = ov.Core()
        hint = get_precision(ctx.precision).openvino_hint
        self.compiled = core.compile_model(str(ctx.onnx_path("fp32")), "CPU", {
            "INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": ctx.threads, "PERFORMANCE_HINT": "LATENCY"})
        self._precision_note = openvino_note(hint, ctx.precision, self.compiled)  # refuses a hint it ignores
        self.request = self.compiled.create_infer_request()

    def bind(self, x: np.ndarray) -> Callable[[], object]:
        import openvino as ov

        self._input = np.ascontiguousarray(x.astype(np.float32))  # the tensor shares this memory
        self.request.set_input_tensor(ov.Tensor(self._input))
        return self.request.infer

    def output(self) -> np.ndarray:
        return np.asarray(self.request.get_output_tensor(0).data, dtype=np.float64)

    def close(self) -> None:
        self.request = self.compiled = None
