"""Helpers for the export tests: small models with non-trivial BatchNorm statistics and an
independent ONNX Runtime vs float64-PyTorch comparison (not using fsrt.exporters.parity)."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch

from fsrt import build_model
from fsrt.accuracy import torch_threads
from fsrt.zoo import zoo_spec


def shallow(name: str, resolution: int = 32):
    """A zoo spec cut to one block per stage at a small resolution (same block types, widths, groups)."""
    spec = zoo_spec(name)
    return spec.replace(stages=tuple(dataclasses.replace(s, depth=1) for s in spec.stages), resolution=resolution)


def randomized_model(spec, seed: int = 0):
    """``build_model(spec)`` in eval mode with random BN statistics and affine parameters, so that
    BN folding changes the weights noticeably (fresh init has mean 0, var 1, gamma 1, beta 0)."""
    torch.manual_seed(seed)
    model = build_model(spec).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model


def ort_vs_float64(onnx_path, model, batch: int, resolution: int, feed_dtype=np.float32, seed: int = 123):
    """``(max abs error, max rel error, ORT output)`` of the ONNX file vs ``model`` run in float64."""
    import onnxruntime as ort

    x = np.random.default_rng(seed).standard_normal((batch, 3, resolution, resolution)).astype(feed_dtype)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    y = sess.run(None, {sess.get_inputs()[0].name: x})[0].astype(np.float64)
    ref_model = copy.deepcopy(model).double().eval()
    with torch.no_grad(), torch_threads(1):  # small work: one thread avoids stalls on a shared CPU
        ref = ref_model(torch.from_numpy(x.astype(np.float64))).numpy()
    err = float(np.abs(y - ref).max())
    return err, err / float(np.abs(ref).max()), y
