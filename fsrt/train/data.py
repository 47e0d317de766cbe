"""Training data: ImageNet-style folders, scikit-learn's digits and a synthetic source.

Every source yields CPU batches ``(x, y)`` for one epoch and one DDP rank; the augmentation
that can run batched (random-resized crop and flip of in-memory images, AutoAugment /
RandAugment, normalization) runs on the training device in ``fsrt.train.augment``.

- ``folder``: ``ROOT/train/<class>/*`` and ``ROOT/val/<class>/*`` decoded with PIL in loader
  workers (random-resized crop + flip for training, resize + center crop for eval, done per
  image at the target resolution; uint8 batches, pinned on GPU). Unreadable images are
  skipped and counted, never fatal.
- ``digits``: the 1,797 8x8 digits bundled with scikit-learn (real data, offline), split
  80/20 with a fixed permutation; cropped and upsampled on the device.
- ``synthetic``: random images and labels already at the resolution, for throughput.

Data order is a pure function of (seed, epoch), so a resumed run sees the same batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fsrt.errors import FsrtError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".pgm", ".tif", ".tiff", ".gif")


@dataclass
class DataSource:
    """Common interface; ``kind`` tells the device-side pipeline what the batches hold:
    ``small`` (float [0,1] images to crop and upsample), ``crops`` (uint8 crops at the
    resolution) or ``ready`` (float [0,1] images at the resolution)."""

    name: str
    kind: str
    num_classes: int
    n_train: int
    n_val: int
    recipe_defaults: dict = field(default_factory=dict)
    note: str = ""
    skipped: dict = field(default_factory=lambda: {"train": 0, "val": 0})

    def steps_per_epoch(self, batch: int, world: int) -> int:
        """Optimizer steps per epoch for per-rank batch ``batch`` (last partial batch dropped)."""
        per_rank = self.n_train // world
        return max(1, per_rank // batch)


def shard_order(n: int, seed: int, epoch: int, rank: int, world: int, shuffle: bool = True) -> torch.Tensor:
    """Indices this rank reads in ``epoch``: a seeded permutation, truncated to a multiple of
    ``world`` and strided by rank (every rank gets the same count)."""
    if shuffle:
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=g)
    else:
        order = torch.arange(n)
    if shuffle:
        order = order[: n // world * world]
    return order[rank::world]


# -- in-memory sources ----------------------------------------------------------------------
class TensorSource(DataSource):
    """Images held in memory as float tensors in [0, 1] (N, C, h, w) with int64 labels."""

    def __init__(self, name: str, kind: str, x_train, y_train, x_val, y_val, num_classes: int, **kw):
        super().__init__(name, kind, num_classes, len(x_train), len(x_val), **kw)
        self.x_train, self.y_train, self.x_val, self.y_val = x_train, y_train, x_val, y_val

    def train_batches(self, epoch: int, batch: int, seed: int, rank: int = 0, world: int = 1, **_):
        """The (x, y) batches of one training epoch for this rank."""
        order = shard_order(self.n_train, seed, epoch, rank, world)
        steps = self.steps_per_epoch(batch, world)
        for s in range(steps):
            idx = order[s * batch:(s + 1) * batch]
            yield self.x_train.index_select(0, idx), self.y_train.index_select(0, idx)

    def val_batches(self, batch: int, rank: int = 0, world: int = 1, **_):
        """The (x, y) evaluation batches of this rank (every image exactly once over ranks)."""
        order = shard_order(self.n_val, 0, 0, rank, world, shuffle=False)
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            yield self.x_val.index_select(0, idx), self.y_val.index_select(0, idx)


def digits_source() -> TensorSource:
    """scikit-learn's 8x8 digits (1,797 images, 10 classes), 80/20 fixed split, gray in [0, 1]."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise FsrtError("--data digits needs scikit-learn: pip install scikit-learn") from None
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.int64)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(12345))
    n_val = len(x) // 5
    val, train = order[:n_val], order[n_val:]
    defaults = {"hflip": 0.0, "crop_min_scale": 1.0, "eval_crop": 1.0, "batch_size": 128}
    note = ("digits: batch 128, no flip, no random-resized crop, eval without crop "
            "(1,438 8x8 images that fill their frame and are not mirror-symmetric)")
    return TensorSource("digits", "small", x[train], y[train], x[val], y[val], 10,
                        recipe_defaults=defaults, note=note)


def synthetic_source(num_classes: int, resolution: int, n_train: int = 1024, n_val: int = 256,
                     seed: int = 0) -> TensorSource:
    """Random images at ``resolution`` and random labels (throughput only; nothing to learn)."""
    g = torch.Generator().manual_seed(seed)
    pool = min(n_train, 256)
    x = torch.rand(pool, 3, resolution, resolution, generator=g)
    xt = x.repeat((n_train + pool - 1) // pool, 1, 1, 1)[:n_train]
    yt = torch.randint(num_classes, (n_train,), generator=g)
    xv = x[: min(n_val, pool)]
    yv = torch.randint(num_classes, (len(xv),), generator=g)
    return TensorSource("synthetic", "ready", xt, yt, xv, yv, num_classes,
                        recipe_defaults={"hflip": 0.0, "crop_min_scale": 1.0})


# -- image folders ---------------------------------------------------------------------------
def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def scan_split(root: Path, split: str, classes: list[str] | None = None) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names and (path, label) samples of ``root/split``; clear errors for a missing
    split, no class folders, empty class folders or val classes unknown to train."""
    folder = root / split
    if not folder.is_dir():
        raise FsrtError(f"data folder {folder} does not exist "
                        f"(expected {root}/train/<class>/* and {root}/val/<class>/*)")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise FsrtError(f"{folder} has no class folders (expected {split}/<class>/<image files>)")
    if classes is None:
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise FsrtError(f"{folder} has class folder(s) not in train: {', '.join(unknown[:5])}")
    index = {c: i for i, c in enumerate(classes)}
    samples, empty = [], []
    for c in found:
        files = _images(folder / c)
        if not files:
            empty.append(c)
        samples += [(str(f), index[c]) for f in files]
    if empty:
        raise FsrtError(f"empty class folder(s) in {folder}: {', '.join(empty[:5])}"
                        f"{' ...' if len(empty) > 5 else ''} (every class needs at least one image)")
    return classes, samples


def rrc_box(rng: np.random.Generator, width: int, height: int, min_scale: float,
            ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """Random-resized-crop box (left, top, right, bottom): area fraction in [min_scale, 1],
    log-uniform aspect ratio, 10 tries, then a central crop with the ratio clamped."""
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(min_scale, 1.0)
        r = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = int(round(math.sqrt(target * r))), int(round(math.sqrt(target / r)))
        if 0 < w <= width and 0 < h <= height:
            x0, y0 = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            return x0, y0, x0 + w, y0 + h
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    x0, y0 = (width - w) // 2, (height - h) // 2
    return x0, y0, x0 + w, y0 + h


def center_box(width: int, height: int, crop: float) -> tuple[float, float, float, float]:
    """Box equal to 'resize the shorter side to R/crop, then center-crop R' in source pixels."""
    side = min(width, height) * crop
    x0, y0 = (width - side) / 2, (height - side) / 2
    return x0, y0, x0 + side, y0 + side


class FolderDataset(torch.utils.data.Dataset):
    """Decodes one image per item with PIL and crops it to ``resolution`` (uint8 CHW).

    Returns ``None`` for an unreadable image; ``collate_skip`` drops and counts those.
    Per-image randomness is seeded by (seed, epoch, index), so workers do not matter.
    """

    def __init__(self, samples, resolution: int, train: bool, min_scale: float = 0.08, hflip: float = 0.5,
                 eval_crop: float = 0.875, seed: int = 0):
        self.samples, self.resolution, self.train = samples, resolution, train
        self.min_scale, self.hflip, self.eval_crop, self.seed, self.epoch = min_scale, hflip, eval_crop, seed, 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        from PIL import Image

        path, label = self.samples[i]
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                w, h = im.size
                if self.train:
                    rng = np.random.default_rng([self.seed, self.epoch, i])
                    box = rrc_box(rng, w, h, self.min_scale)
                    im = im.resize((self.resolution,) * 2, Image.BILINEAR, box=box)
                    if rng.random() < self.hflip:
                        im = im.transpose(Image.FLIP_LEFT_RIGHT)
                else:
                    im = im.resize((self.resolution,) * 2, Image.BILINEAR, box=center_box(w, h, self.eval_crop))
                arr = np.asarray(im, dtype=np.uint8).copy()
        except Exception:  # corrupt, truncated or not an image: skip and count
            return None
        return torch.from_numpy(arr).permute(2, 0, 1), label


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    import os

    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def collate_skip(items):
    """Stack the readable items; returns (x uint8, y int64, number skipped)."""
    good = [it for it in items if it is not None]
    skipped = len(items) - len(good)
    if not good:
        return torch.zeros(0, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64), skipped
    x = torch.stack([g[0] for g in good])
    y = torch.tensor([g[1] for g in good], dtype=torch.int64)
    return x, y, skipped


class FolderSource(DataSource):
    """ImageNet-style ``train/`` and ``val/`` folders decoded by DataLoader workers."""

    def __init__(self, root: str | Path):
        root = Path(root)
        if not root.is_dir():
            raise FsrtError(f"data folder {root} does not exist")
        classes, train = scan_split(root, "train")
        _, val = scan_split(root, "val", classes)
        super().__init__(str(root), "crops", len(classes), len(train), len(val))
        self.classes, self.train_samples, self.val_samples = classes, train, val

    def _loader(self, ds, batch, sampler, workers, pin, drop_last):
        # More decoding processes than usable cores only adds contention (and a PyTorch warning).
        workers = min(workers, usable_cpus())
        return torch.utils.data.DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers,
                                           pin_memory=pin, drop_last=drop_last, collate_fn=collate_skip,
                                           persistent_workers=False)

    def train_batches(self, epoch: int, batch: int, seed: int, rank: int = 0, world: int = 1, *, resolution: int,
                      recipe, pin: bool = False):
        """One epoch of (x uint8 crops, y) for this rank; skipped images are counted."""
        ds = FolderDataset(self.train_samples, resolution, True, recipe.crop_min_scale, recipe.hflip,
                           recipe.eval_crop, seed)
        ds.epoch = epoch
        order = shard_order(self.n_train, seed, epoch, rank, world)
        steps = self.steps_per_epoch(batch, world)
        order = order[: steps * batch].tolist()
        self.skipped["train"] = 0
        for x, y, skipped in self._loader(ds, batch, order, recipe.workers, pin, False):
            self.skipped["train"] += skipped
            if len(y):
                yield x, y

    def val_batches(self, batch: int, rank: int = 0, world: int = 1, *, resolution: int, recipe, pin: bool = False):
        """Evaluation batches (resize + center crop) of this rank."""
        ds = FolderDataset(self.val_samples, resolution, False, eval_crop=recipe.eval_crop)
        order = shard_order(self.n_val, 0, 0, rank, world, shuffle=False).tolist()
        self.skipped["val"] = 0
        for x, y, skipped in self._loader(ds, batch, order, recipe.workers, pin, False):
            self.skipped["val"] += skipped
            if len(y):
                yield x, y


def no_readable_images(source: DataSource, split: str) -> FsrtError:
    """The error for a split none of whose images (read so far) could be decoded."""
    what = "training" if split == "train" else "validation"
    return FsrtError(f"no readable {what} image in {source.name}: all {source.skipped[split]} read failed to "
                     f"decode (corrupt or not images); replace them")


def open_source(data: str, *, num_classes: int, resolution: int, seed: int = 0) -> DataSource:
    """``digits``, ``synthetic[:N]`` or a folder path as a ``DataSource``."""
    if data == "digits":
        return digits_source()
    if data == "synthetic" or data.startswith("synthetic:"):
        n = 1024
        if ":" in data:
            try:
                n = int(data.split(":", 1)[1])
            except ValueError:
                raise FsrtError(f"--data synthetic:N takes an image count, got {data!r}") from None
            if n < 1:
                raise FsrtError(f"--data synthetic:N needs N >= 1, got {n}")
        return synthetic_source(num_classes, resolution, n_train=n, seed=seed)
    return FolderSource(data)
