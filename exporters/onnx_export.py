"""Export a model to ONNX: BN folded, dynamo exporter, onnxslim, checks, metadata, parity.

``export_onnx`` is the one entry point (the CLI and the benchmark call it). The graph is
exported from a BN-folded copy of the model in the requested precision (fp16/bf16 graphs
are real half-precision graphs, which TensorRT's strongly typed builder needs), simplified
with onnxslim, validated by the ONNX checker and strict shape inference, stamped with the
spec and its complexity as metadata props, checked for parity against the fp32 PyTorch
model, and only then moved atomically into place.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from fsrt.errors import CheckFailed, FsrtError, first_line, interrupt_in_chain
from fsrt.io import atomic_write_bytes
from fsrt.precision import Precision, get_precision, torch_dtype
from fsrt.spec import ModelSpec

from .parity import Parity, check_parity, skipped
from .trt_config import BatchSpec, batch_spec

MIN_OPSET = 18  # the dynamo exporter emits opset 18+ natively; older targets silently fall back
DEFAULT_OPSET = 20
BF16_MIN_OPSET = 22  # Conv, Gemm, pools etc. accept bfloat16 from opset 22 on
INPUT_NAME, OUTPUT_NAME = "input", "logits"
META_SPEC, META_COMPLEXITY, META_PRECISION, META_INPUT, META_VERSION = (
    "fsrt.spec", "fsrt.complexity", "fsrt.precision", "fsrt.input", "fsrt.version")
_QUIET_LOGGERS = ("torch.onnx", "torch.export", "torch._export", "onnxscript", "onnx_ir", "torch.fx")


@dataclass(frozen=True)
class ExportResult:
    """What ``export_onnx`` produced."""

    path: Path
    opset: int
    precision: str
    input_shape: tuple  # ("batch" or N, C, H, W)
    dynamic_batch: tuple[int, int, int] | None
    nodes_by_type: dict[str, int]
    parity: Parity
    seconds: float
    size_bytes: int
    spec: ModelSpec
    complexity: dict
    bn_folded: int
    stage_seconds: dict = field(default_factory=dict)
    bn_calibrated: bool = False  # a never-trained network got BatchNorm statistics (fsrt.calibration)

    @property
    def node_count(self) -> int:
        """Total number of graph nodes."""
        return sum(self.nodes_by_type.values())

    def to_dict(self) -> dict:
        """JSON-ready dict (the CLI's ``--json`` document)."""
        return {
            "path": str(self.path), "name": self.spec.name, "opset": self.opset, "precision": self.precision,
            "input_shape": list(self.input_shape),
            "dynamic_batch": list(self.dynamic_batch) if self.dynamic_batch else None,
            "nodes": self.node_count, "nodes_by_type": self.nodes_by_type, "parity": self.parity.to_dict(),
            "seconds": round(self.seconds, 3), "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
            "size_bytes": self.size_bytes, "bn_folded": self.bn_folded, "bn_calibrated": self.bn_calibrated,
            "complexity": self.complexity,
        }


def max_opset() -> int:
    """Highest opset the installed ``onnx`` package defines."""
    import onnx

    return int(onnx.defs.onnx_opset_version())


def check_opset(opset: int | None, precision: str = "fp32") -> int:
    """The opset to export (``DEFAULT_OPSET`` when ``None``, 22 for bf16); a clear error outside
    18..max, or below 22 for bf16 (earlier opsets do not allow bfloat16 convolutions)."""
    low = BF16_MIN_OPSET if precision == "bf16" else MIN_OPSET
    if opset is None:
        return max(DEFAULT_OPSET, low)
    if precision == "bf16" and isinstance(opset, int) and MIN_OPSET <= opset < low:
        raise FsrtError(f"opset {opset} cannot hold a bf16 graph: ONNX allows bfloat16 Conv from opset {low} on")
    hi = max_opset()
    if not isinstance(opset, int) or isinstance(opset, bool) or not MIN_OPSET <= opset <= hi:
        raise FsrtError(f"opset {opset} is not supported: the dynamo exporter writes opsets {MIN_OPSET}..{hi} "
                        f"(default {DEFAULT_OPSET})")
    return opset


@contextlib.contextmanager
def _quiet():
    """Silence exporter chatter (warnings, INFO/WARNING logs, stdout prints) so --json stays clean."""
    saved = {name: logging.getLogger(name).level for name in _QUIET_LOGGERS}
    try:
        for name in _QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _first_line(e: BaseException) -> str:
    return first_line(e)[:300]


def _export_graph(model, example, batch: BatchSpec, opset: int, translation_table=None):
    """Run the dynamo exporter and return the ONNX ModelProto."""
    import torch

    kwargs = {}
    if batch.dynamic:
        kwargs["dynamic_shapes"] = {"x": {0: torch.export.Dim("batch", min=batch.min, max=batch.max)}}
    if translation_table:
        kwargs["custom_translation_table"] = translation_table
    with _quiet():
        try:
            program = torch.onnx.export(model, (example,), dynamo=True, opset_version=opset, verbose=False,
                                        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], optimize=True,
                                        **kwargs)
        except Exception as e:
            interrupt = interrupt_in_chain(e)
            if interrupt is not None:  # Ctrl-C while tracing is an interruption, not an exporter failure
                raise interrupt from None
            raise FsrtError(f"the ONNX exporter failed: {_first_line(e)}") from e
    return program.model_proto


def _slim(proto):
    """Simplify the graph with onnxslim (constant folding, dead-node and redundancy removal)."""
    import onnxslim

    with _quiet():
        try:
            return onnxslim.slim(proto)
        except Exception as e:
            raise FsrtError(f"onnxslim failed to simplify the graph: {_first_line(e)}") from e


def _set_metadata(proto, spec: ModelSpec, cx: dict, precision: str, input_shape: tuple, batch: BatchSpec) -> None:
    """Write the spec, its complexity, precision and input description as metadata props."""
    from fsrt import __version__

    props = {
        META_SPEC: spec.to_json(),
        META_COMPLEXITY: json.dumps(cx),
        META_PRECISION: precision,
        META_INPUT: json.dumps({"name": INPUT_NAME, "shape": list(input_shape),
                                "dynamic_batch": [batch.min, batch.opt, batch.max] if batch.dynamic else None}),
        META_VERSION: __version__,
    }
    keep = [p for p in proto.metadata_props if p.key not in props]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "fsrt"
    proto.producer_version = __version__
    proto.doc_string = f"{spec.name or spec.family} exported by fsrt {__version__}"


def _validate(proto, custom_domains: bool) -> None:
    """ONNX checker (full check) and strict shape inference; custom-domain graphs get the basic check."""
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=not custom_domains)
        if not custom_domains:
            onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    except Exception as e:
        raise CheckFailed(f"the exported graph failed the ONNX checker: {_first_line(e)}") from e


def nodes_by_type(proto) -> dict[str, int]:
    """Node counts by op type (custom domains prefixed, e.g. ``fsrt::group_conv2d``), largest first."""
    counts = Counter(f"{n.domain}::{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
                     for n in proto.graph.node)
    return dict(counts.most_common())


def _patch_kernels(model) -> dict:
    """Swap grouped convs for the fsrt Triton kernel op; returns the exporter translation table."""
    try:  # lazily: loads Triton where it is installed
        from fsrt.kernels import onnx_custom_translation_table, patch_model
    except ImportError as e:  # a broken or partial install: one line saying what is missing
        raise FsrtError("--triton-group-conv needs fsrt.kernels.patch_model and onnx_custom_translation_table, "
                        f"which failed to import: {_first_line(e)}") from None
    patch_model(model)
    return onnx_custom_translation_table()


@contextlib.contextmanager
def _timed(stages: dict[str, float], name: str):
    """Record the wall time of the ``with`` body as ``stages[name]`` (seconds)."""
    t = time.perf_counter()
    yield
    stages[name] = time.perf_counter() - t


def check_writable(path: Path) -> None:
    """Fail early (before any export work) when ``path`` cannot be created."""
    folder = path.absolute().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise FsrtError(f"cannot write {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FsrtError(f"cannot write {path}: no write permission in {folder}")


def _check_request(path, *, batch: int, dynamic_batch, resolution: int | None, precision: str, opset: int | None,
                   force: bool) -> tuple[Path, Precision, int, BatchSpec]:
    """Everything checkable before loading a model: ``(path, precision, opset, batch spec)``."""
    prec = get_precision(precision)
    opset = check_opset(opset, prec.name)
    bspec = batch_spec(None if dynamic_batch is not None and batch == 1 else batch, dynamic_batch)
    if resolution is not None and (not isinstance(resolution, int) or resolution < 8):
        raise FsrtError(f"resolution must be an integer >= 8 pixels, got {resolution!r}")
    path = Path(path)
    if path.is_dir():
        raise FsrtError(f"{path} is a folder; give a file name such as model.onnx")
    if path.exists() and not force:
        raise FsrtError(f"{path} exists; pass --force (force=True) to replace it")
    check_writable(path)
    return path, prec, opset, bspec


def with_statistics(model, res: int):
    """``(model, calibrated)``: a never-trained network (every BatchNorm at mean 0, variance 1) is
    replaced by a copy with calibrated statistics, so the exported graph and its parity check see
    activations of a sane scale (docs/architecture.md, "Export and parity"); a trained one is
    returned as it is."""
    import copy

    from fsrt.calibration import calibrate_batchnorm, never_trained

    if not never_trained(model):
        return model, False
    calibrated = copy.deepcopy(model).cpu()
    calibrate_batchnorm(calibrated, res, seed=0)
    return calibrated, True


def _export_ready(model, prec: Precision, triton_group_conv: bool):
    """``(module, BN pairs folded, translation table)``: a BN-folded CPU copy of ``model`` in
    ``prec`` (the caller's module keeps its device and weights), grouped convs swapped for the
    fsrt kernel op when asked (then with the exporter's translation table for it)."""
    from fsrt.kernels.bn_fold import count_batchnorm, fold_batchnorm

    folded, n_folded = fold_batchnorm(model)
    folded = folded.cpu()
    table = _patch_kernels(folded) if triton_group_conv else None
    left = count_batchnorm(folded)
    if left:
        raise CheckFailed(f"{left} BatchNorm layers could not be folded into a conv")
    return folded.to(torch_dtype(prec)), n_folded, table


def _graph(module, spec: ModelSpec, res: int, prec: Precision, opset: int, bspec: BatchSpec, table,
           stages: dict[str, float]):
    """``(proto, input shape, complexity)``: the exported graph, simplified, stamped with metadata
    and validated (stage times go to ``stages``)."""
    import torch

    from fsrt.complexity import complexity

    with _timed(stages, "export"):
        example = torch.randn(bspec.example, 3, res, res).to(torch_dtype(prec))
        proto = _export_graph(module, example, bspec, opset, table)
    with _timed(stages, "slim"):
        proto = _slim(proto)
    left = nodes_by_type(proto).get("BatchNormalization")
    if left:
        raise CheckFailed(f"{left} BatchNormalization nodes remain after folding")
    input_shape = ("batch" if bspec.dynamic else bspec.opt, 3, res, res)
    cx = {**complexity(spec, res).to_dict(), "resolution": res}
    _set_metadata(proto, spec, cx, prec.name, input_shape, bspec)
    with _timed(stages, "check"):
        _validate(proto, _has_custom_nodes(proto))
    if proto.ByteSize() >= 2**31 - 1:
        raise FsrtError(f"the graph is {proto.ByteSize() / 2**30:.1f} GiB, over protobuf's 2 GiB limit; fsrt does not "
                        "write ONNX external-data files yet: export at fp16/bf16 or a smaller model")
    return proto, input_shape, cx


def _has_custom_nodes(proto) -> bool:
    """Whether the graph holds nodes outside the ONNX domain (fsrt kernel ops)."""
    return any(n.domain not in ("", "ai.onnx") for n in proto.graph.node)


def _parity(data: bytes, model, *, enabled: bool, custom: bool, prec: Precision, bspec: BatchSpec, res: int,
            seed: int | None) -> Parity:
    """The parity check of the serialized graph against ``model``, or why it was skipped."""
    if not enabled:
        return skipped("disabled (--no-parity)")
    if custom:
        return skipped("the graph has custom-domain nodes (fsrt kernels) that ONNX Runtime cannot run; "
                       "check the engine with 'fsrt bench' instead")
    return check_parity(data, model, batches=bspec.parity_batches(), chw=(3, res, res), precision=prec, seed=seed)


def export_onnx(model_or_spec, path, *, batch: int = 1, dynamic_batch=None, resolution: int | None = None,
                precision: str = "fp32", opset: int | None = None, parity: bool = True, force: bool = False,
                ema: bool = False, triton_group_conv: bool = False, seed: int | None = None) -> ExportResult:
    """Export ``model_or_spec`` to ONNX at ``path`` and return an ``ExportResult``.

    ``model_or_spec``: a ``ModelSpec``, a zoo name / spec file / checkpoint path, or a module
    from ``fsrt.build_model``. ``dynamic_batch``: ``"MIN:OPT:MAX"`` or a triple (the graph's
    batch is then symbolic). ``precision``: fp32, fp16 or bf16 (a real half-precision graph).
    ``parity`` runs the check against PyTorch; failing it raises ``CheckFailed`` with the
    numbers and leaves nothing at ``path``. An existing ``path`` is replaced only with ``force``.
    """
    from .model_source import load_model

    start = time.perf_counter()
    path, prec, opset, bspec = _check_request(path, batch=batch, dynamic_batch=dynamic_batch, resolution=resolution,
                                              precision=precision, opset=opset, force=force)
    stages: dict[str, float] = {}
    with _timed(stages, "prepare"):
        model, spec = load_model(model_or_spec, ema=ema)
        res = resolution or spec.resolution
        model, calibrated = with_statistics(model, res)
        module, n_folded, table = _export_ready(model, prec, triton_group_conv)
    proto, input_shape, cx = _graph(module, spec, res, prec, opset, bspec, table, stages)
    data = proto.SerializeToString()
    with _timed(stages, "parity"):
        result_parity = _parity(data, model, enabled=parity, custom=_has_custom_nodes(proto), prec=prec, bspec=bspec,
                                res=res, seed=seed)
    if result_parity.passed is False:
        raise CheckFailed(f"{result_parity.summary()}; {path} not written")
    try:
        atomic_write_bytes(path, data)
    except OSError as e:
        raise FsrtError(f"cannot write {path}: {e.strerror or e}") from None
    return ExportResult(path=path, opset=opset, precision=prec.name, input_shape=input_shape,
                        dynamic_batch=(bspec.min, bspec.opt, bspec.max) if bspec.dynamic else None,
                        nodes_by_type=nodes_by_type(proto), parity=result_parity, seconds=time.perf_counter() - start,
                        size_bytes=len(data), spec=spec, complexity=cx, bn_folded=n_folded, stage_seconds=stages,
                        bn_calibrated=calibrated)


def read_metadata(onnx_path) -> dict:
    """The fsrt metadata of an exported graph: ``spec`` (a ``ModelSpec``), ``complexity`` (flops,
    params, acts, resolution), ``precision``, ``input``, ``fsrt_version`` and ``opset``."""
    import onnx

    p = Path(onnx_path)
    if not p.is_file():
        raise FsrtError(f"ONNX file {p} does not exist")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:
        raise FsrtError(f"cannot read ONNX file {p}: {_first_line(e)}") from None
    props = {entry.key: entry.value for entry in model.metadata_props}
    if META_SPEC not in props:
        raise FsrtError(f"{p} carries no fsrt metadata (not exported by 'fsrt export')")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    return {
        "spec": ModelSpec.from_json(props[META_SPEC]),
        "complexity": json.loads(props.get(META_COMPLEXITY, "{}")),
        "precision": props.get(META_PRECISION),
        "input": json.loads(props.get(META_INPUT, "{}")),
        "fsrt_version": props.get(META_VERSION),
        "opset": opset,
    }
