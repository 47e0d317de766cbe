"""``load_model``: checkpoints per the trainer contract (incl. wrapped state dicts), specs, modules."""

from __future__ import annotations

import pytest
import torch
from export_helpers import randomized_model, shallow

from fsrt.errors import FsrtError
from fsrt.exporters.model_source import clean_state_dict, load_model


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_checkpoint_model_and_ema(tmp_path):
    spec = shallow("RegNetZ-500MF")
    model, ema = randomized_model(spec, 1), randomized_model(spec, 2)
    path = tmp_path / "c.pth"
    torch.save({"spec": spec.to_dict(), "model": model.state_dict(), "ema": ema.state_dict(), "epoch": 3}, path)
    loaded, loaded_spec = load_model(path)
    assert loaded_spec == spec and not loaded.training and same_weights(loaded, model)
    loaded_ema, _ = load_model(str(path), ema=True)
    assert same_weights(loaded_ema, ema)


def test_wrapped_state_dicts_are_accepted(tmp_path):
    spec = shallow("RegNetX-200MF")
    model = randomized_model(spec, 3)
    wrapped = {f"module._orig_mod.{k}": v for k, v in model.state_dict().items()}
    wrapped["n_averaged"] = torch.tensor(5)  # torch.optim.swa_utils.AveragedModel counter
    assert clean_state_dict(wrapped).keys() == model.state_dict().keys()
    path = tmp_path / "w.pt"
    torch.save({"spec": spec.to_dict(), "model": model.state_dict(), "ema": wrapped}, path)
    loaded, _ = load_model(path, ema=True)
    assert same_weights(loaded, model)


def test_module_and_spec_sources():
    spec = shallow("ResNet-RS-50")
    model = randomized_model(spec).train()
    got, got_spec = load_model(model)
    assert got is model and got_spec == spec and not got.training
    built, built_spec = load_model(spec)
    assert built_spec == spec and isinstance(built, torch.nn.Module)
    with pytest.raises(FsrtError, match="no .spec"):
        load_model(torch.nn.Linear(2, 2))
    with pytest.raises(FsrtError, match="needs a checkpoint"):
        load_model(spec, ema=True)
