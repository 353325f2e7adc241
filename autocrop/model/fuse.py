"""Inference-time fusion: fold BatchNorm into the preceding convolution (same outputs up to float rounding, faster)."""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn
from torch.nn.utils import fuse_conv_bn_eval


def _conv_bn_pairs(module: nn.Module, prefix: str = "") -> Iterator[tuple[nn.Sequential, str, str, str]]:
    """(container, conv key, bn key, qualified prefix) of every (Conv2d, BatchNorm2d) pair inside ``nn.Sequential``s."""
    for name, child in module.named_children():
        yield from _conv_bn_pairs(child, f"{prefix}{name}.")
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            if isinstance(module._modules[first], nn.Conv2d) and isinstance(module._modules[second], nn.BatchNorm2d):
                yield module, first, second, prefix


def batchnorm_pairs(module: nn.Module, prefix: str = "") -> list[tuple[str, str, float]]:
    """(conv name, BatchNorm name, eps) of every pair :func:`fold_batchnorm` folds, as ``state_dict`` prefixes.

    E.g. ``("features.0.0", "features.0.1", 1e-05)`` for ``module = net`` (``prefix`` is put before each name).
    The ONNX graph records them, so a runtime without torch can fold the same tensors from a weights file.
    """
    pairs = []
    for container, first, second, path in _conv_bn_pairs(module, prefix):
        bn = container._modules[second]
        assert isinstance(bn, nn.BatchNorm2d)
        pairs.append((f"{path}{first}", f"{path}{second}", float(bn.eps)))
    return pairs


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every (Conv2d, BatchNorm2d) pair inside ``nn.Sequential`` containers, in place; returns ``module``.

    Each pair becomes the convolution computed by ``torch.nn.utils.fuse_conv_bn_eval`` (with a bias)
    followed by ``nn.Identity`` (so ``state_dict`` indices stay where they were). The module must be in
    eval mode: the BatchNorm running statistics are what gets folded.
    """
    for container, first, second, _ in list(_conv_bn_pairs(module)):
        conv, bn = container._modules[first], container._modules[second]
        assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
        container._modules[first] = fuse_conv_bn_eval(conv, bn)
        container._modules[second] = nn.Identity()
    return module
