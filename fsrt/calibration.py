"""BatchNorm statistics for networks that were never trained (docs/architecture.md, "Export and parity").

A freshly built network has the BatchNorm defaults (running mean 0, variance 1), so in eval
mode nothing keeps activations at a sane scale: they shrink or grow layer after layer (a fresh
EfficientNet-B0 outputs ~1e-14, below every half precision's normal range). Export and the
benchmark therefore give such a network statistics from seeded random inputs before anything is
exported, timed or checked; a trained network's statistics are never touched.

The statistics set the scale only: each BatchNorm divides its input by the channel's root mean
square (running mean 0, running variance = the mean of the squared input), and does not
subtract the channel's mean. Subtracting the mean of random ReLU features (what training-mode
statistics would do) makes a random network chaotic: a relative perturbation grows about 1.2x
per layer, so the rounding of one early activation reaches the logits ~30x larger. On ResNet-50
at 64 px with random weights, bf16 rounding then moves the logits by 27% (relative L2) instead
of 1.4%, and no output comparison can tell honest rounding from a broken kernel.
"""

from __future__ import annotations

CALIBRATION = "bn-rms1"  # names this calibration in file names and measurement keys; change it with the method


def batchnorms(model) -> list:
    """The model's BatchNorm layers, in module order."""
    import torch

    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def never_trained(model) -> bool:
    """Whether every BatchNorm still has its initial statistics (mean 0, variance 1): the network
    has never seen data, so its activations have no meaningful scale."""
    import torch

    bns = batchnorms(model)
    return bool(bns) and all(bool(torch.all(bn.running_mean == 0)) and bool(torch.all(bn.running_var == 1))
                             for bn in bns if bn.running_mean is not None)


def calibrate_batchnorm(model, resolution: int, seed: int, batch_size: int = 16) -> None:
    """Give every BatchNorm scale-only statistics from one seeded batch of random normal inputs,
    in place, and leave the model in eval mode.

    One forward pass in eval mode: a hook sets each BatchNorm's statistics from its own input
    just before it runs, so every layer is calibrated on the activations the calibrated layers
    before it produce (running mean 0, running variance = mean of the squared input per channel).
    """
    import torch

    def set_stats(bn, args):
        x = args[0].detach()
        bn.running_mean.zero_()
        bn.running_var.copy_(x.double().pow(2).mean(dim=(0, 2, 3)).to(bn.running_var.dtype))
        if bn.num_batches_tracked is not None:
            bn.num_batches_tracked.fill_(1)

    model.eval()
    hooks = [bn.register_forward_pre_hook(set_stats) for bn in batchnorms(model)]
    gen = torch.Generator().manual_seed(seed)
    try:
        with torch.no_grad():
            model(torch.randn(batch_size, 3, resolution, resolution, generator=gen))
    finally:
        for h in hooks:
            h.remove()
