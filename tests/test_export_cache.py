"""The shared export cache: a second sweep folder gets the graph without exporting it again, and
anything that changes the graph (other weights, another precision) misses the cache."""

from __future__ import annotations

import dataclasses

import pytest

import fsrt.exporters.onnx_export as onnx_export
from fsrt.bench import export_cache
from fsrt.bench.artifacts import VariantArtifacts
from fsrt.bench.plan import Variant
from fsrt.complexity import complexity
from fsrt.scaling import parse_strategy
from fsrt.zoo import zoo_spec


def _variant() -> Variant:
    spec = zoo_spec("RegNetX-200MF")
    spec = spec.replace(name="tiny", resolution=32, stages=tuple(dataclasses.replace(s, depth=1) for s in spec.stages))
    return Variant("tiny", "tiny", parse_strategy("w"), 1.0, 1.0, spec, complexity(spec))


@pytest.fixture
def exports(monkeypatch):
    """Counts the real exporter's calls."""
    calls = []
    real = onnx_export.export_onnx

    def counting(*args, **kwargs):
        calls.append(kwargs.get("precision"))
        return real(*args, **kwargs)

    monkeypatch.setattr(onnx_export, "export_onnx", counting)
    return calls


def test_a_second_sweep_folder_reuses_the_cached_graph(tmp_path, monkeypatch, exports):
    monkeypatch.setenv(export_cache.ENV, str(tmp_path / "cache"))
    v = _variant()
    first = VariantArtifacts(v, 0, tmp_path / "a").onnx("fp32", 1)
    second = VariantArtifacts(v, 0, tmp_path / "b").onnx("fp32", 1)
    assert exports == ["fp32"]  # exported once
    assert second != first and second.read_bytes() == first.read_bytes()
    VariantArtifacts(v, 1, tmp_path / "c").onnx("fp32", 1)  # other weights (seed 1): exported again
    VariantArtifacts(v, 0, tmp_path / "d").onnx("fp16", 1)  # another precision: exported again
    assert exports == ["fp32", "fp32", "fp16"]
    assert len(list((tmp_path / "cache").glob("*.onnx"))) == 3
    assert not list((tmp_path / "cache").glob("*.tmp")) and not list((tmp_path / "b" / "models").glob("*.tmp"))


def test_without_the_variable_nothing_is_cached(tmp_path, monkeypatch, exports):
    monkeypatch.delenv(export_cache.ENV, raising=False)
    v = _variant()
    VariantArtifacts(v, 0, tmp_path / "a").onnx("fp32", 1)
    VariantArtifacts(v, 0, tmp_path / "b").onnx("fp32", 1)
    assert exports == ["fp32", "fp32"]


def test_the_key_follows_the_weights_bytes_and_the_name(tmp_path):
    w1, w2 = tmp_path / "w1.pt", tmp_path / "w2.pt"
    w1.write_bytes(b"weights")
    w2.write_bytes(b"weight5")
    assert export_cache.graph_key(w1, "g.onnx") == export_cache.graph_key(w1, "g.onnx")
    assert export_cache.graph_key(w1, "g.onnx") != export_cache.graph_key(w2, "g.onnx")
    assert export_cache.graph_key(w1, "g.onnx") != export_cache.graph_key(w1, "h.onnx")
