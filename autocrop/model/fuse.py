"""Inference-time fusion: fold BatchNorm into the preceding convolution (same outputs up to float rounding, faster)."""

from __future__ import annotations

from torch import nn
from torch.nn.utils import fuse_conv_bn_eval


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every (Conv2d, BatchNorm2d) pair inside ``nn.Sequential`` containers, in place; returns ``module``.

    Each pair becomes the convolution computed by ``torch.nn.utils.fuse_conv_bn_eval`` (with a bias)
    followed by ``nn.Identity`` (so ``state_dict`` indices stay where they were). The module must be in
    eval mode: the BatchNorm running statistics are what gets folded.
    """
    for child in module.children():
        fold_batchnorm(child)
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = module._modules[first], module._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module._modules[first] = fuse_conv_bn_eval(conv, bn)
                module._modules[second] = nn.Identity()
    return module
