"""The memory estimate against an independent count: the real module built on the meta device
(no memory), its parameters counted by torch and its part outputs read by forward hooks."""

from __future__ import annotations

import pytest

from fsrt.complexity import measure_complexity
from fsrt.errors import FsrtError
from fsrt.memory_estimate import GIB, check_fits, check_training_fits, inference_memory, training_memory
from fsrt.models import build_model
from fsrt.zoo import zoo_spec


def _hooked_sizes(spec, resolution: int) -> tuple[int, int]:
    """(parameter count, largest output of the stem, a stage or the head) of the built module."""
    import torch

    model = build_model(spec, device="meta").eval()
    outputs = []
    parts = [model.stem, *model.stages, model.head]
    handles = [m.register_forward_hook(lambda m, i, o: outputs.append(o[0].numel())) for m in parts]
    with torch.no_grad():
        model(torch.zeros(1, 3, resolution, resolution, device="meta"))
    for h in handles:
        h.remove()
    assert len(outputs) == len(parts)
    return sum(p.numel() for p in model.parameters()), max(outputs)


@pytest.mark.parametrize("name, resolution, batch, nbytes", [
    ("RegNetY-400MF", 224, 1, 4),
    ("RegNetX-200MF", 96, 8, 8),
    ("EfficientNet-B0", 160, 2, 2),
    ("ResNet-50", 224, 4, 4),
])
def test_inference_estimate_matches_the_built_module(name, resolution, batch, nbytes):
    spec = zoo_spec(name)
    params, largest = _hooked_sizes(spec, resolution)
    est = inference_memory(spec, batch, resolution, bytes_per_value=nbytes)
    assert est.weights_bytes == params * nbytes
    assert est.activation_bytes == batch * (3 * resolution**2 + largest) * nbytes
    assert est.total_bytes == est.weights_bytes + est.activation_bytes


@pytest.mark.parametrize("name, resolution", [("RegNetY-400MF", 224), ("EfficientNet-B0", 112)])
def test_training_estimate_matches_hooked_activations(name, resolution):
    spec = zoo_spec(name)
    counted = measure_complexity(build_model(spec, device="meta"), resolution)  # hooks on the real layers
    est = training_memory(spec, 32, resolution, bytes_per_value=2, weight_copies=4)
    assert est.weights_bytes == counted.params * 4 * 4
    assert est.activation_bytes == 32 * (3 * resolution**2 + counted.acts) * 2


def test_published_sizes_give_the_expected_magnitudes():
    # ResNet-50 has 25,557,032 parameters (torchvision): 97.5 MiB of fp32 weights.
    est = inference_memory(zoo_spec("ResNet-50"))
    assert est.weights_bytes == 25_557_032 * 4
    # The stem's output at 100000 px (32 channels at 50000 x 50000) alone is 298 GiB in fp32.
    huge = inference_memory(zoo_spec("RegNetX-200MF"), 1, 100_000)
    assert huge.activation_bytes >= 32 * 50_000**2 * 4 and huge.total_bytes > 298 * GIB
    assert "GiB" in huge.describe()


def test_check_fits_refuses_with_the_numbers(monkeypatch):
    from fsrt import memory_estimate

    est = inference_memory(zoo_spec("RegNetX-200MF"), 1, 100_000)
    monkeypatch.setattr(memory_estimate, "available_memory", lambda device: 16 * GIB)
    with pytest.raises(FsrtError) as info:
        check_fits(est, "cpu", "RegNetX-200MF at 100000 px", "lower --resolution")
    msg = str(info.value)
    assert f"needs at least {est.total_bytes / GIB:.3g} GiB" in msg and "but 16 GiB is available" in msg
    check_fits(inference_memory(zoo_spec("RegNetX-200MF")), "cpu", "x", "y")  # 12 MiB fits in 16 GiB
    monkeypatch.setattr(memory_estimate, "available_memory", lambda device: None)
    check_fits(est, "cpu", "x", "y")  # unknown availability: no refusal


def test_training_helper_refuses_a_huge_batch_and_passes_a_small_one(monkeypatch):
    from fsrt import memory_estimate

    monkeypatch.setattr(memory_estimate, "available_memory", lambda device: 8 * GIB)
    spec = zoo_spec("RegNetX-200MF")
    small = check_training_fits(spec, 32, 32, "cpu")
    assert small.total_bytes < GIB
    with pytest.raises(FsrtError, match=r"training RegNetX-200MF at 100000 px, batch 1 needs at least"):
        check_training_fits(spec, 1, 100_000, "cpu")


def test_available_memory_is_plausible():
    from fsrt.memory_estimate import available_memory

    avail = available_memory("cpu")
    meminfo = dict(line.split(":", 1) for line in open("/proc/meminfo").read().splitlines())
    total = int(meminfo["MemTotal"].split()[0]) * 1024
    assert avail is not None and 0 < avail <= total
