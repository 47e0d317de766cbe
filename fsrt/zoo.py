"""Named reference specs: every model of ``fsrt/data/zoo.json`` as a ``ModelSpec``.

The JSON holds each model's published parameters (RegNet's six numbers, EfficientNet's
per-stage lists, ResNet's bottleneck and group widths) and its training hints; this module
turns one record into a spec. Names are looked up case-insensitively, ignoring ``-``/``_``.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from importlib import resources

from fsrt.errors import FsrtError
from fsrt.regnet import RegNetParams
from fsrt.spec import HeadSpec, ModelSpec, StageSpec, StemSpec, regnet_stages

RESNET_DEPTHS = {
    50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3), 200: (3, 24, 36, 3),
    270: (4, 29, 53, 4), 350: (4, 36, 72, 4), 420: (4, 44, 87, 4),
}
RESNET_WIDTHS = (256, 512, 1024, 2048)
# EfficientNet head dropout from the EfficientNet paper's B0..B7 recipe.
EFFNET_DROPOUT = {"B0": 0.2, "B1": 0.2, "B2": 0.3, "B3": 0.3, "B4": 0.4, "B5": 0.4}


@functools.lru_cache(maxsize=1)
def zoo_records() -> dict[str, dict]:
    """The raw zoo records, keyed by canonical name (e.g. ``RegNetY-400MF``)."""
    text = resources.files("fsrt").joinpath("data/zoo.json").read_text()
    return json.loads(text)


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name.lower())


@functools.lru_cache(maxsize=1)
def _index() -> dict[str, str]:
    idx = {}
    for name in zoo_records():
        idx[_key(name)] = name
        if name.endswith("-32x4d"):  # ResNeXt-50 is unambiguous without its cardinality suffix
            idx.setdefault(_key(name[: -len("-32x4d")]), name)
    return idx


def canonical_name(name: str) -> str:
    """The zoo's spelling of ``name`` (case- and separator-insensitive), or a clear error
    that suggests the closest names."""
    found = _index().get(_key(name))
    if found:
        return found
    close = difflib.get_close_matches(_key(name), list(_index()), n=3, cutoff=0.6)
    hint = ", ".join(dict.fromkeys(_index()[c] for c in close))
    msg = f"unknown model {name!r}"
    msg += f"; did you mean {hint}?" if hint else "; run 'fsrt models' for the list"
    raise FsrtError(msg)


def zoo_names() -> list[str]:
    """All zoo names, in file order."""
    return list(zoo_records())


def zoo_spec(name: str) -> ModelSpec:
    """The reference spec of a zoo model (case-insensitive name)."""
    canon = canonical_name(name)
    return _spec_from_record(canon, zoo_records()[canon])


def _spec_from_record(name: str, r: dict) -> ModelSpec:
    family = r["family"]
    act = r.get("activation", "relu")
    res, eval_res = r["train_im"], r.get("test_im")
    if family in ("regnetx", "regnety", "regnetz"):
        block = family[-1]
        params = RegNetParams(depth=r["depth"], w0=r["w0"], wa=r["wa"], wm=r["wm"], group_w=r["group_w"],
                              bot_mul=r["bot_mul"], block=block, se_r=r["se_r"], activation=act)
        return ModelSpec(family=family, name=name, resolution=res, eval_resolution=eval_res,
                         stem=StemSpec("simple", (r["stem_w"],), "none", act), stages=regnet_stages(params),
                         head=HeadSpec(width=r.get("head_w", 0), activation=act))
    if family == "effnet":
        stages = tuple(
            StageSpec(depth=d, width=w, stride=s, block="mbconv", kernel=k, exp_r=float(e), se_r=r["se_r"],
                      activation=act)
            for d, w, s, k, e in zip(r["depths"], r["widths"], r["strides"], r["kernels"], r["exp_ratios"])
        )
        return ModelSpec(family=family, name=name, resolution=res, eval_resolution=eval_res,
                         stem=StemSpec("simple", (r["stem_w"],), "none", act), stages=stages,
                         head=HeadSpec(r["head_w"], EFFNET_DROPOUT.get(name.split("-")[-1], 0.0), act))
    if family in ("resnet", "resnet_rs"):
        depth = int(re.search(r"-(\d+)", name).group(1))
        rs = family == "resnet_rs"
        block, se_r = ("rs", r["se_r"]) if rs else ("x", 0.0)
        stages = tuple(
            StageSpec(depth=d, width=w, stride=1 if i == 0 else 2, block=block, bot_mul=b, group_w=g,
                      se_r=se_r, activation=act, shortcut=r.get("shortcut", "conv"))
            for i, (d, w, b, g) in enumerate(zip(RESNET_DEPTHS[depth], RESNET_WIDTHS, r["bot_muls"], r["group_ws"]))
        )
        if r.get("stem") == "deep":
            stem = StemSpec("deep", tuple(r["stem_w"]), "conv" if rs else "max", act)
        else:
            stem = StemSpec("res", (r["stem_w"],), "max", act)
        fam = "resnext" if name.startswith("ResNeXt") else family
        return ModelSpec(family=fam, name=name, resolution=res, eval_resolution=r.get("test_im"),
                         stem=stem, stages=stages, head=HeadSpec(activation=act))
    raise FsrtError(f"zoo record {name!r} has unknown family {family!r}")
