"""The thin TensorRT layer: the only fsrt module that imports ``tensorrt``.

Builds a serialized engine from an ONNX file with the TensorRT 10/11 Python API (OnnxParser,
strongly typed network, workspace limit, timing cache load/save, optimization profile,
builder optimization level). Everything it needs is decided in ``trt_config`` first, so this
file holds TensorRT calls only. Untested in CI (no TensorRT or GPU there).
"""

from __future__ import annotations

import time

import tensorrt as trt

from fsrt.errors import FsrtError

from .trt_config import BuiltEngine, TrtBuildSettings, network_flag_names


def build_engine(settings: TrtBuildSettings, cache_in: bytes | None = None) -> BuiltEngine:
    """Parse ``settings.onnx_path`` and build an engine; ``cache_in`` seeds the timing cache.

    Returns the engine bytes and the (possibly grown) serialized timing cache for the caller to
    save atomically. Parser and builder failures become one-line ``FsrtError``s. Plugins for the
    graph's custom domains (``settings.plugin_domains``, read from the graph once by
    ``trt_config.make_settings``) must be registered first: ``trt_engine.build_and_save`` does.
    """
    start = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    available = set(trt.NetworkDefinitionCreationFlag.__members__)
    flags = 0
    for name in network_flag_names(trt.__version__, available):
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(settings.onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise FsrtError(f"TensorRT could not parse {settings.onnx_path}: {errors[0] if errors else 'unknown error'}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_bytes)
    config.builder_optimization_level = settings.opt_level
    cache = config.create_timing_cache(cache_in or b"")
    config.set_timing_cache(cache, False)

    profile = builder.create_optimization_profile()
    shapes = settings.shapes
    profile.set_shape(settings.input_name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise FsrtError(f"TensorRT failed to build an engine from {settings.onnx_path} (see its log above)")
    new_cache = config.get_timing_cache()
    cache_bytes = bytes(new_cache.serialize()) if new_cache is not None else None
    return BuiltEngine(bytes(serialized), cache_bytes, trt.__version__, time.perf_counter() - start)
