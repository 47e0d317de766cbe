"""Files a sweep prepares once per model variant, so every runtime's worker reads the same model.

For each variant: its fp32 weights (a seeded initialization with calibrated BatchNorm, or a
checkpoint's trained weights), a seeded input batch per batch size with its float64 reference
logits, the error each half precision's rounding gives those logits (``fsrt.accuracy``: what
the runtimes' outputs are judged against), and ONNX graphs per precision and batch for the
runtimes that read ONNX. Files live in
the run's work folder under names that hash the structure, so a resumed sweep reuses them; each
is written atomically (an interrupted export leaves nothing half-written). Graphs can also come
from a cache shared between sweeps (``fsrt.bench.export_cache``, opt-in).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fsrt.bench.plan import Variant
from fsrt.calibration import CALIBRATION, calibrate_batchnorm, never_trained
from fsrt.io import atomic_write_bytes


def build_variant_model(v: Variant, seed: int):
    """The variant's fp32 eval-mode module: trained weights for a checkpoint's own model, else a
    seeded initialization; a never-trained network gets calibrated BatchNorm statistics
    (``fsrt.calibration``, the same answer ``fsrt export`` gives)."""
    import torch

    from fsrt.models import build_model

    if v.trained_weights:
        from fsrt.exporters.model_source import load_model

        model = load_model(v.source)[0]
    else:
        torch.manual_seed(seed)
        model = build_model(v.spec)
    if never_trained(model):
        calibrate_batchnorm(model, v.spec.resolution, seed)
    return model.eval()


@dataclass(frozen=True)
class VariantFiles:
    """Where one variant's prepared files are."""

    weights: Path
    inputs: dict[int, Path]  # batch -> float32 NCHW input (.npy)
    references: dict[int, Path]  # batch -> float64 reference logits (.npy)
    onnx: dict[tuple[str, int], Path]  # (precision, batch) -> graph
    expected: dict[tuple[str, int], float | None]  # (precision, batch) -> error its rounding gives
    labels: dict[int, Path] = field(default_factory=dict)  # batch -> int64 class labels (train points)
    train_references: dict[int, Path] = field(default_factory=dict)  # batch -> float64 step summary


class VariantArtifacts:
    """Builds (once) and caches the files of one variant in ``workdir``; its float64 references are
    computed on ``device`` (the sweep's, so a GPU sweep does not wait on its CPU for them)."""

    def __init__(self, v: Variant, seed: int, workdir: Path, device: str = "cpu"):
        self.v, self.seed, self.dir, self.device = v, seed, workdir / "models", device
        self._model = None

    @property
    def model(self):
        """The fp32 module, built on first use (only when some file is missing)."""
        if self._model is None:
            self._model = build_variant_model(self.v, self.seed)
        return self._model

    def _path(self, suffix: str) -> Path:
        return self.dir / f"{self.v.artifact_id}-s{self.seed}-{CALIBRATION}{suffix}"

    def file(self, suffix: str) -> Path:
        """Where a file of this variant named by ``suffix`` lives (other modules' per-variant files)."""
        return self._path(suffix)

    def weights(self) -> Path:
        """The module's state dict (torch.save), written once."""
        import torch

        path = self._path(".pt")
        if not path.exists():
            buf = io.BytesIO()
            torch.save(self.model.state_dict(), buf)
            atomic_write_bytes(path, buf.getvalue())
        return path

    def inputs(self, batch: int) -> tuple[Path, Path]:
        """The seeded input batch and its float64 reference logits (``.npy`` files)."""
        x_path, ref_path = self._path(f"-b{batch}-x.npy"), self._path(f"-b{batch}-ref.npy")
        if not (x_path.exists() and ref_path.exists()):
            from fsrt.accuracy import reference_outputs

            r = self.v.spec.resolution
            x = np.random.default_rng(self.seed).standard_normal((batch, 3, r, r)).astype(np.float32)
            (ref,) = reference_outputs(self.model, [x.astype(np.float64)], self.device)
            atomic_write_bytes(x_path, _npy(x))
            atomic_write_bytes(ref_path, _npy(ref))
        return x_path, ref_path

    def onnx(self, precision: str, batch: int) -> Path:
        """The ONNX graph at a precision for a static batch (exported without its own parity check:
        every runtime that reads it is checked against the reference instead)."""
        path = self._path(f"-b{batch}-{precision}.onnx")
        if not path.exists():
            from fsrt.bench import export_cache

            key = export_cache.graph_key(self.weights(), path.name) if export_cache.cache_dir() else None
            if key is None or not export_cache.fetch(key, path):
                from fsrt.exporters.onnx_export import export_onnx

                export_onnx(self.model, path, batch=batch, precision=precision, parity=False, force=True)
                if key is not None:
                    export_cache.keep(key, path)
        return path

    def expected(self, precision: str, batch: int) -> float | None:
        """The relative error ``precision``'s rounding gives the reference logits of ``batch``
        (``fsrt.accuracy.expected_error``; ``None`` for fp32), computed once and kept as JSON."""
        from fsrt.accuracy import expected_error
        from fsrt.precision import get_precision

        path = self._path(f"-b{batch}-{precision}-expected.json")
        if not path.exists():
            x_path, ref_path = self.inputs(batch)
            x = np.load(x_path).astype(np.float64)
            value = expected_error(self.model, [x], [np.load(ref_path)], get_precision(precision),
                                   device=self.device)
            atomic_write_bytes(path, json.dumps({"expected_rel_l2": value}).encode())
        return json.loads(path.read_text())["expected_rel_l2"]

    def files(self, batches: list[int], onnx_keys: list[tuple[str, int]],
              precision_keys: list[tuple[str, int]] = ()) -> VariantFiles:
        """Every file the plan needs for this variant, prepared."""
        inputs, refs = {}, {}
        for b in batches:
            inputs[b], refs[b] = self.inputs(b)
        onnx = {key: self.onnx(*key) for key in onnx_keys}
        expected = {key: self.expected(*key) for key in precision_keys}
        return VariantFiles(self.weights(), inputs, refs, onnx, expected)

    def release(self) -> None:
        """Drop the in-memory module (files stay)."""
        self._model = None


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()
