"""Native TensorRT runner: build an engine from the variant's ONNX and run it on torch CUDA
buffers. The only bench module that imports ``tensorrt`` (lazily); everything it needs around
the engine build comes from ``fsrt.exporters``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fsrt.bench.runners import PrepareContext, Runner, module_available


class TensorRtRunner(Runner):
    """TensorRT engine executed with ``execute_async_v3`` on torch's current CUDA stream."""

    name = "trt"
    devices = ("cuda",)
    needs_onnx = True

    def unavailable_reason(self, device: str) -> str | None:
        if not module_available("tensorrt"):
            return "TensorRT is not installed (pip install tensorrt from NVIDIA's index; needs an NVIDIA GPU)"
        if not device.startswith("cuda"):
            return "TensorRT needs a CUDA GPU"
        return super().unavailable_reason(device)

    def prepare(self, ctx: PrepareContext) -> None:
        import tensorrt as trt
        import torch

        from fsrt.exporters.trt_config import batch_spec, make_settings
        from fsrt.exporters.trt_engine import build_and_save
        from fsrt.precision import get_precision, torch_dtype

        onnx = ctx.onnx_path(ctx.precision)
        engine_path = ctx.workdir / f"{onnx.stem}-b{ctx.batch}.engine"
        settings = make_settings(onnx, engine_path=engine_path, batch=batch_spec(ctx.batch), precision=ctx.precision)
        build_and_save(settings, force=True)
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
        self.engine = self.runtime.deserialize_cuda_engine(engine_path.read_bytes())
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inp = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.out = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        self.tdtype = torch_dtype(get_precision(ctx.precision))
        self.stream = torch.cuda.current_stream()  # the timing harness records its events on this stream
        self._precision_note = f"{ctx.precision} strongly typed engine, TensorRT {trt.__version__}"

    def _bind(self, x: np.ndarray):
        import torch

        xin = torch.from_numpy(x).to("cuda", self.tdtype).contiguous()
        self.context.set_input_shape(self.inp, tuple(xin.shape))
        out = torch.empty(tuple(self.context.get_tensor_shape(self.out)), device="cuda", dtype=self.tdtype)
        self.context.set_tensor_address(self.inp, xin.data_ptr())
        self.context.set_tensor_address(self.out, out.data_ptr())
        return xin, out

    def bind(self, x: np.ndarray) -> Callable[[], object]:
        self._bound = self._bind(x)  # keep buffers alive: the engine reads and writes them
        handle = self.stream.cuda_stream
        return lambda: self.context.execute_async_v3(handle)

    def output(self) -> np.ndarray:
        self.stream.synchronize()
        return self._bound[1].double().cpu().numpy()

    def close(self) -> None:
        self.context = self.engine = self.runtime = self._bound = None
