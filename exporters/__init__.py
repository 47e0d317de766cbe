"""fsrt.exporters: ONNX export with parity checks, and TensorRT engines.

Flat modules (imported lazily; importing this package loads nothing heavy):

- ``onnx_export``: ``export_onnx(model_or_spec, path, ...) -> ExportResult``, ``read_metadata(path)``.
- ``model_source``: ``load_model(source, ema=False) -> (eval module, ModelSpec)`` (zoo name, spec
  file, checkpoint, spec or built module).
- ``parity``: ONNX Runtime vs the float64 PyTorch model on fresh random inputs.
- ``trt_config``: batch profiles, sizes, cache paths, build settings and sidecar (no TensorRT needed).
- ``trt_engine``: build flow around TensorRT (prerequisites, timing cache, atomic writes).
- ``trt_build``: the only module importing ``tensorrt``.
"""
