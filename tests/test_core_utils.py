"""Small core helpers every command shares: file-name slugs and the --device reading."""

from __future__ import annotations

import pytest
import torch

from fsrt.device import resolve_device
from fsrt.errors import FsrtError
from fsrt.names import slug


@pytest.mark.parametrize("text, expected", [
    ("RegNetX-1.6GF", "RegNetX-1.6GF"),        # already safe: unchanged, case kept
    ("NVIDIA H100 80GB HBM3", "NVIDIA-H100-80GB-HBM3"),
    ("synthetic:64", "synthetic-64"),
    ("../../etc", "etc"),                      # no way out of the folder, no hidden name
    ("my_run.v2", "my_run.v2"),
    ("???", "unknown"),
])
def test_slug(text, expected):
    assert slug(text) == expected


def test_slug_fallback():
    assert slug(" / ", "run") == "run"


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu", "cuda:x", "", "cpu:0"):
        with pytest.raises(FsrtError, match="--device must be auto, cpu, cuda or cuda:N"):
            resolve_device(bad)
    if torch.cuda.is_available():
        assert resolve_device("cuda", local_rank=1) == torch.device("cuda:1")
        assert resolve_device("cuda") == torch.device("cuda")
    else:
        with pytest.raises(FsrtError, match="no CUDA GPU"):
            resolve_device("cuda:0")
