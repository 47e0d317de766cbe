"""Which half precisions each runtime really computes in on this machine, and what it ran.

``--precision auto`` (the default of ``fsrt bench``) measures fp32 and every half precision a
runtime executes natively here (docs/architecture.md, "Precisions"):

- **bf16** on CPUs with bf16 units (``avx512_bf16`` or ``amx_bf16``): PyTorch (oneDNN) and
  OpenVINO (when it lists BF16 among its CPU capabilities). Elsewhere bf16 is emulated, slower
  than fp32 and not what a deployment would run, so it is skipped with that reason.
- **fp16** on CPUs with fp16 units (``avx512_fp16`` or ``amx_fp16``): PyTorch and OpenVINO
  (FP16 capability). ONNX Runtime's CPU provider has no fp16 convolutions: it runs an fp16
  graph in fp32 between two casts it inserts, so its "fp16" is fp32 arithmetic and is skipped.
- On CUDA: fp16 everywhere, bf16 where the GPU supports it; ONNX Runtime has no bf16 kernels.

A skipped (runtime, precision) is recorded like an unavailable runtime, under the name
``"<runtime> <precision>"``. What a runtime actually ran is recorded in each point's note; for
OpenVINO it is read from the compiled model, and a precision hint it does not honour (the f16
hint running bf16 on a CPU without fp16 units) is refused rather than timed under the wrong name.
"""

from __future__ import annotations

from collections import Counter

from fsrt.errors import FsrtError

HALF = ("fp16", "bf16")
BF16_UNITS, FP16_UNITS = ("avx512_bf16", "amx_bf16"), ("avx512_fp16", "amx_fp16")
TORCH_RUNTIMES = ("eager", "compile", "aoti")
OV_NAMES = {"f32": "fp32", "f16": "fp16", "bf16": "bf16"}


def parse_precisions(text: str | None) -> tuple[str, ...] | None:
    """``--precision``: ``None`` for ``auto`` (decided per machine), else the validated names.

    ``auto`` mixed with other names and unknown or unsupported precisions are one-line errors.
    """
    from fsrt.precision import get_precision

    items = [p.strip() for p in (text or "auto").split(",") if p.strip()]
    if not items:
        raise FsrtError("--precision names no precision; give auto or a list such as fp32,bf16")
    if any(p.lower() == "auto" for p in items):
        if len(items) > 1:
            raise FsrtError(f"--precision auto cannot be combined with other precisions (got {text!r}); "
                            "give auto alone or a list such as fp32,bf16")
        return None
    return tuple(dict.fromkeys(get_precision(p).name for p in items))


def _cpu_units(precision: str) -> str | None:
    """Why this CPU has no arithmetic units for ``precision``, or None."""
    from fsrt.bench.fingerprint import cpu_flags

    units = BF16_UNITS if precision == "bf16" else FP16_UNITS
    if set(units) & cpu_flags():
        return None
    return (f"{precision} is emulated on this CPU (no {' or '.join(units)} units): slower than fp32, not what a "
            f"deployment would run; ask for it by name to measure it anyway")


def openvino_capabilities() -> set[str]:
    """OpenVINO's CPU optimization capabilities (e.g. FP32, BF16, FP16); empty without OpenVINO."""
    try:
        import openvino as ov

        return {str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")}
    except Exception:  # noqa: BLE001 - not installed or no CPU plugin: nothing is native
        return set()


def _cuda_reason(runtime: str, precision: str) -> str | None:
    import torch

    if missing := missing_kernels(runtime, precision):
        return missing
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        return "this GPU has no bf16 arithmetic"
    return None


def native_reason(runtime: str, precision: str, device: str) -> str | None:
    """None when ``runtime`` computes in ``precision`` natively on ``device`` here, else why not."""
    if precision not in HALF:
        return None
    if device.startswith("cuda"):
        return _cuda_reason(runtime, precision)
    if missing := missing_kernels(runtime, precision):
        return missing
    if runtime == "ort":
        return ("ONNX Runtime's CPU provider runs an fp16 graph in fp32 (it casts the input and the output): "
                "not fp16 arithmetic")
    units = _cpu_units(precision)
    if units or runtime in TORCH_RUNTIMES:
        return units
    if runtime == "openvino":
        cap = precision.upper()
        if cap not in openvino_capabilities():
            return f"OpenVINO lists no {cap} among its CPU capabilities here"
        return None
    return f"{runtime} has no {precision} kernels on CPU"


def missing_kernels(runtime: str, precision: str) -> str | None:
    """Why ``runtime`` cannot run ``precision`` at all (on any device), or None. Unlike a
    non-native precision (emulated, or computed in fp32), such a pair is skipped even when asked
    for by name: there is nothing to measure."""
    if precision == "bf16" and runtime in ("ort", "ort-trt"):
        return "ONNX Runtime has no bf16 convolution kernels"
    return None


def auto_precisions(runtimes: list[str], device: str) -> tuple[tuple[str, ...], dict[tuple[str, str], str]]:
    """``(precisions, skipped)`` for ``--precision auto``: fp32 plus every half precision at least
    one runtime runs natively, and ``{(runtime, precision): reason}`` for the pairs left out."""
    skipped = {(rt, p): why for p in HALF for rt in runtimes if (why := native_reason(rt, p, device))}
    precisions = ("fp32", *(p for p in HALF if any((rt, p) not in skipped for rt in runtimes)))
    return precisions, skipped


def skipped_label(runtime: str, precision: str) -> str:
    """How a skipped (runtime, precision) is named among the run's unavailable runtimes."""
    return f"{runtime} {precision}"


def openvino_ran(compiled) -> Counter:
    """How many of the compiled model's convolution and matmul nodes run in each precision."""
    counts: Counter = Counter()
    for node in compiled.get_runtime_model().get_ordered_ops():
        info = node.get_rt_info()
        if str(info["layerType"].astype(str)) in ("Convolution", "FullyConnected", "MatMul"):
            counts[OV_NAMES.get(info["runtimePrecision"].astype(str), info["runtimePrecision"].astype(str))] += 1
    return counts


def openvino_note(hint: str, precision: str, compiled) -> str:
    """The note of an OpenVINO point: the hint and what its convolutions run; ``FsrtError`` when
    most of them run another precision than asked (the figure would carry the wrong label)."""
    ran = openvino_ran(compiled)
    total = sum(ran.values())
    runs = ", ".join(f"{p} {n} of {total}" for p, n in ran.most_common()) or "no convolutions"
    main = ran.most_common(1)[0][0] if ran else precision
    if main != precision:
        raise FsrtError(f"OpenVINO runs {main} for the {hint} hint on this CPU (convolutions: {runs}); a {precision} "
                        f"figure would be {main}'s: measure --precision {main} instead")
    return f"hint {hint}, convolutions run {runs}"


def ort_ran_in_fp32(optimized_model_path) -> bool:
    """Whether ONNX Runtime wrapped the whole graph in casts to fp32 (its CPU provider does this
    for fp16 graphs it has no kernels for): read from the optimized model it saved."""
    import onnx

    graph = onnx.load(str(optimized_model_path), load_external_data=False).graph
    return any(n.op_type == "Cast" and n.name.startswith("InsertedPrecisionFreeCast") for n in graph.node)


def resolve_precisions(plan, requested: tuple[str, ...] | None, runtimes: list[str]):
    """``(plan, skipped)``: the plan with its precisions set, and ``{label: reason}`` for each
    (runtime, precision) ``auto`` leaves out. ``requested`` is ``parse_precisions``'s answer: a
    list is measured as asked at every point; ``None`` (auto) measures fp32 at every point and
    each native half precision at the sweep's smallest s, enough for its speedup and accuracy."""
    import dataclasses

    if requested is not None:  # as asked, except pairs no kernel exists for (they would only fail)
        skipped = {(rt, p): why for p in requested for rt in runtimes if (why := missing_kernels(rt, p))}
        plan = dataclasses.replace(plan, precisions=requested, skip=tuple(sorted(skipped)))
        return plan, {skipped_label(rt, p): why for (rt, p), why in skipped.items()}
    precisions, skipped = auto_precisions(runtimes, plan.device)
    plan = dataclasses.replace(plan, precisions=precisions, half_at_s=min(plan.s_values), skip=tuple(sorted(skipped)))
    return plan, {skipped_label(rt, p): why for (rt, p), why in skipped.items()}
