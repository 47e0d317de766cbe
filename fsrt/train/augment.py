"""Batched, on-device image pipeline: crop/flip of in-memory images, AutoAugment or
RandAugment (kornia), conversion to float and ImageNet normalization."""

from __future__ import annotations

import torch
import torch.nn.functional as F

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class DevicePipeline:
    """Turns a source's CPU batch into the normalized float batch the model sees.

    ``kind`` comes from the data source: ``small`` (images below the resolution: random-resized
    crop, or a plain resize when ``crop_min_scale`` is 1, here with kornia), ``crops`` (uint8
    crops already at the resolution from the loader workers) or ``ready`` (float images at the
    resolution). Then flip and AutoAugment/RandAugment.
    """

    def __init__(self, kind: str, resolution: int, recipe, device: torch.device, channels_last: bool = False):
        import kornia.augmentation as K

        self.kind, self.resolution, self.recipe, self.device = kind, resolution, recipe, device
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
        crop = kind in ("small", "ready") and recipe.crop_min_scale < 1
        self.crop = K.RandomResizedCrop((resolution, resolution), scale=(recipe.crop_min_scale, 1.0)) if crop else None
        self.flip = K.RandomHorizontalFlip(p=recipe.hflip) if recipe.hflip > 0 and kind != "crops" else None
        self.auto = None
        if recipe.augment == "autoaugment":
            from kornia.augmentation.auto import AutoAugment

            self.auto = AutoAugment("imagenet")
        elif recipe.augment == "randaugment":
            from kornia.augmentation.auto import RandAugment

            self.auto = RandAugment(recipe.randaugment_n, recipe.randaugment_m)

    def _to_float(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=self.memory_format)

    def train(self, x: torch.Tensor) -> torch.Tensor:
        """Augmented, normalized training batch."""
        x = self._to_float(x)
        with torch.no_grad():
            if self.crop is not None:
                x = self.crop(x)
            elif x.shape[-1] != self.resolution or x.shape[-2] != self.resolution:
                x = F.interpolate(x, size=(self.resolution,) * 2, mode="bilinear", align_corners=False)
            if self.flip is not None:
                x = self.flip(x)
            if self.auto is not None:
                if x.shape[1] == 1:
                    x = x.expand(-1, 3, -1, -1).contiguous()
                x = self.auto(x.clamp_(0, 1))
            return self._finish(x)

    def eval(self, x: torch.Tensor) -> torch.Tensor:
        """Resize + center-crop (for in-memory images) and normalize an evaluation batch."""
        x = self._to_float(x)
        r = self.resolution
        if self.kind != "crops" and x.shape[-1] != r:
            size = max(r, int(round(r / self.recipe.eval_crop)))
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=size < x.shape[-1])
            off = (size - r) // 2
            x = x[:, :, off:off + r, off:off + r]
        return self._finish(x)
