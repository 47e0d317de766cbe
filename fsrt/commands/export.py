"""``fsrt export``: a model to ONNX (BN folded, simplified, parity-checked) and optionally a TensorRT engine."""

from __future__ import annotations

import click

from fsrt.commands.common import console, err_console, json_option, print_json, resolution_px

TRT_ONLY_OPTIONS = ("engine", "workspace", "timing_cache", "opt_level")  # meaningless without --trt


def default_output(spec, source: str, precision: str, resolution: int | None):
    """``<name>[-<res>px][-<precision>].onnx`` in the current folder."""
    from pathlib import Path

    from fsrt.names import slug

    base = slug((spec.name or Path(str(source)).stem or spec.family).lower())
    if resolution and resolution != spec.resolution:
        base += f"-{resolution}px"
    if precision != "fp32":
        base += f"-{precision}"
    return Path(f"{base}.onnx")


def _parity_memory(spec, bspec, resolution: int | None) -> None:
    """Refuse before building when the float64 parity reference at its largest batch cannot fit."""
    from fsrt.memory_estimate import check_fits, inference_memory

    batch = max(bspec.parity_batches())
    check_fits(inference_memory(spec, batch, resolution, bytes_per_value=8), "cpu",
               f"{spec.name or spec.family} at {resolution or spec.resolution} px, batch {batch} (float64 parity "
               "reference)", "lower --resolution or the batch, or pass --no-parity")


def _export_memory(spec, bspec, resolution: int | None) -> None:
    """Refuse before building when the model and one fp32 example batch cannot fit."""
    from fsrt.memory_estimate import check_fits, inference_memory

    check_fits(inference_memory(spec, bspec.example, resolution), "cpu",
               f"{spec.name or spec.family} at {resolution or spec.resolution} px, batch {bspec.example}",
               "lower --resolution or the batch")


def summary_table(result, engine=None):
    """A rich table describing an export (and the engine, when one was built)."""
    from rich.table import Table

    from fsrt.sizes import human

    table = Table(title=f"{result.spec.name or result.spec.family} -> {result.path}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("file", f"{result.path} ({human(result.size_bytes)}B)")
    table.add_row("opset / precision", f"{result.opset} / {result.precision}")
    shape = "x".join(str(d) for d in result.input_shape)
    if result.dynamic_batch:
        shape += "  (batch {}:{}:{})".format(*result.dynamic_batch)
    table.add_row("input", shape)
    cx = result.complexity
    table.add_row("complexity", f"{human(cx['flops'])} flops, {human(cx['params'])} params, {human(cx['acts'])} acts "
                                f"at {cx['resolution']}px")
    folded = str(result.bn_folded)
    if result.bn_calibrated:
        folded += " (a never-trained network: BatchNorm statistics calibrated on seeded random inputs first)"
    table.add_row("BN folded", folded)
    p = result.parity
    if p.skipped:
        table.add_row("parity", f"[yellow]skipped[/]: {p.skipped}")
    else:
        verdict = "[green]passed[/]" if p.passed else "[red]FAILED[/]"
        expected = f", expected {p.expected:.2g} from {result.precision} rounding" if p.expected is not None else ""
        table.add_row("parity", f"{verdict} relative L2 error {p.rel_l2:.3g}{expected}, accepted {p.accepted()} "
                                f"(max abs {p.max_abs:.3g}, max rel {p.max_rel:.3g}; {p.runtime}, batches "
                                f"{list(p.batches)}, seed {p.seed})")
        if p.note:
            table.add_row("", f"[dim]{p.note}[/]")
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in result.stage_seconds.items())
    table.add_row("time", f"{result.seconds:.1f}s ({stages})")
    if engine is not None:
        info = engine.info
        table.add_row("engine", f"{engine.engine_path} ({human(info['engine_bytes'])}B, TensorRT "
                                f"{info['tensorrt_version']}, {info['gpu']}, {info['build_seconds']:.1f}s)")
        table.add_row("timing cache", str(engine.timing_cache))
    return table


@click.command("export")
@click.argument("source")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="ONNX file to write (default: <model name>.onnx here).")
@click.option("--batch", "-b", type=int, default=None, help="Static batch size (default 1).")
@click.option("--dynamic-batch", default=None, metavar="MIN:OPT:MAX",
              help="Symbolic batch; MIN:OPT:MAX also sets the TensorRT optimization profile.")
@click.option("--resolution", "-r", type=int, default=None, callback=resolution_px("--resolution"),
              help="Input size in pixels (default: the spec's).")
@click.option("--precision", "-p", default="fp32", show_default=True, metavar="fp32|fp16|bf16",
              help="Graph precision; fp16/bf16 give real half-precision graphs (TensorRT takes its precision "
                   "from the graph).")
@click.option("--opset", type=int, default=None, help="ONNX opset, 18 up to the installed onnx's maximum "
              "(default 20; 22 for bf16).")
@click.option("--no-parity", is_flag=True, help="Skip the parity check against PyTorch.")
@click.option("--seed", type=int, default=None, help="Seed of the parity inputs (default: fresh each run).")
@click.option("--ema", is_flag=True, help="Export a checkpoint's EMA weights instead of its model weights.")
@click.option("--force", "-f", is_flag=True, help="Replace existing output files.")
@click.option("--trt", is_flag=True, help="Also build a TensorRT engine (needs TensorRT and an NVIDIA GPU).")
@click.option("--engine", type=click.Path(dir_okay=False), default=None,
              help="Engine file (default: the ONNX path with .engine); a .engine.json sidecar goes beside it.")
@click.option("--workspace", default="4G", show_default=True, metavar="SIZE",
              help="TensorRT workspace limit in binary units: 4G = 4GiB = 4 * 2^30 bytes, 512M = 512 MiB.")
@click.option("--timing-cache", type=click.Path(dir_okay=False), default=None,
              help="TensorRT timing cache to load and update (default: per GPU and TensorRT version in "
                   "~/.cache/fsrt/trt).")
@click.option("--opt-level", type=click.IntRange(0, 5), default=3, show_default=True,
              help="TensorRT builder optimization level (0 fastest build .. 5 most tactics).")
@click.option("--triton-group-conv", is_flag=True,
              help="Swap grouped convs for the fsrt Triton kernel (custom ONNX node for a TensorRT plugin).")
@json_option
@click.pass_context
def command(ctx, source, output, batch, dynamic_batch, resolution, precision, opset, no_parity, seed, ema, force, trt,
            engine, workspace, timing_cache, opt_level, triton_group_conv, as_json):
    """Export SOURCE (zoo name, spec file or checkpoint) to ONNX, checked against PyTorch.

    The graph comes from a BatchNorm-folded copy of the model via the dynamo exporter,
    simplified by onnxslim, validated by the ONNX checker and shape inference, and carries
    the spec and its flops/params/acts as metadata. A parity check on fresh random inputs
    compares ONNX Runtime with the fp32 PyTorch model in float64: the relative L2 error must be
    below 1e-4 at fp32, and at fp16/bf16 within 1/4 to 3x of the error the precision's rounding
    gives this very model (computed by emulating that rounding in float64); a failure exits 1 with
    the numbers and writes nothing. A never-trained network (zoo name or spec file) first gets
    BatchNorm statistics from seeded random inputs, so its activations have a sane scale.
    --trt then builds a strongly typed TensorRT engine from that ONNX file.

    \b
    Examples:
      fsrt export RegNetY-400MF                           regnety-400mf.onnx, batch 1
      fsrt export RegNetY-400MF --dynamic-batch 1:8:32 -o y400.onnx
      fsrt export runs/exp1/last.pt --ema --precision fp16
      fsrt export RegNetY-4.0GF --precision fp16 --trt --workspace 8G
      fsrt export my_spec.yaml -r 160 --json
    """
    from fsrt.errors import FsrtError
    from fsrt.exporters import trt_config
    from fsrt.exporters.model_source import load_model
    from fsrt.exporters.onnx_export import check_opset, export_onnx
    from fsrt.io import refuse_existing
    from fsrt.precision import get_precision
    from fsrt.sizes import parse_bytes
    from fsrt.source import get_spec, is_checkpoint_path

    # Cheap checks first, so bad input fails before any work and leaves no files.
    prec = get_precision(precision)
    check_opset(opset, prec.name)
    bspec = trt_config.batch_spec(batch, dynamic_batch)
    if trt:
        parse_bytes(workspace, "--workspace")
    else:
        given = [f"--{n.replace('_', '-')}" for n in TRT_ONLY_OPTIONS
                 if ctx.get_parameter_source(n) is not click.core.ParameterSource.DEFAULT]
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            raise FsrtError(f"{', '.join(given)} only {verb} to a TensorRT engine; add --trt to build one")
    need = _parity_memory if not no_parity else _export_memory
    checkpoint = is_checkpoint_path(source)
    if not checkpoint:  # refuse before the model is built
        need(get_spec(source), bspec, resolution)
    model, spec = load_model(source, ema=ema)
    if checkpoint:  # its weights are loaded already, the activations are not
        need(spec, bspec, resolution)
    out = default_output(spec, source, prec.name, resolution) if output is None else click.format_filename(output)
    out = refuse_existing(out, force)
    from pathlib import Path

    engine_path = Path(engine) if engine else trt_config.default_engine_path(out)
    if trt:
        from fsrt.exporters.trt_engine import check_outputs_free

        check_outputs_free(engine_path, force)

    with err_console().status(f"exporting {spec.name or source} to {out} ..."):
        result = export_onnx(model, out, batch=batch or 1, dynamic_batch=dynamic_batch, resolution=resolution,
                             precision=prec.name, opset=opset, parity=not no_parity, force=force,
                             triton_group_conv=triton_group_conv, seed=seed)
    built = None
    if trt:
        missing = trt_config.trt_missing()
        if missing:
            raise FsrtError(f"{out} written, but no TensorRT engine: {missing}")
        from fsrt.exporters.trt_engine import build_and_save

        settings = trt_config.make_settings(out, engine_path=engine_path, batch=bspec, precision=prec.name,
                                            workspace=workspace, timing_cache=timing_cache, opt_level=opt_level)
        with err_console().status(f"building TensorRT engine {engine_path} ..."):
            built = build_and_save(settings, force=force)
    if as_json:
        doc = result.to_dict()
        doc["engine"] = None if built is None else {"path": str(built.engine_path), "sidecar": str(built.sidecar_path),
                                                    **built.info}
        print_json(doc)
        return
    console().print(summary_table(result, built))
