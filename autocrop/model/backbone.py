"""MobileNetV2 with torchvision-compatible ``state_dict`` keys (``features.N...``), written from the paper.

Only ``features`` is used by autocrop; ``classifier`` exists so ImageNet weights load with ``strict=True``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

# (expansion t, output channels c, repeats n, first stride s) -- Sandler et al. 2018, Table 2.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)
)


class ConvBNReLU6(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> ReLU6; keys ``0.weight``, ``1.*``."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise 3x3 -> project (1x1, linear); residual when shapes match."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_ch * expand
        self.use_residual = stride == 1 and in_ch == out_ch
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNReLU6(in_ch, hidden, kernel=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0). ``features[i]`` strides: 0->2, 1->2, 2-3->4, 4-6->8, 7-13->16, 14-18->32."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        in_ch = 32
        layers: list[nn.Module] = [ConvBNReLU6(3, in_ch, stride=2)]
        for expand, out_ch, repeats, stride in INVERTED_RESIDUAL_SETTING:
            for i in range(repeats):
                layers.append(InvertedResidual(in_ch, out_ch, stride if i == 0 else 1, expand))
                in_ch = out_ch
        layers.append(ConvBNReLU6(in_ch, 1280, kernel=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x).mean(dim=(2, 3))
        return self.classifier(x)


def load_imagenet_features(weights: str | Path) -> nn.Sequential:
    """``features`` of a MobileNetV2 initialised from torchvision's ImageNet file (strict load).

    ``torch.load(weights_only=True)`` is used, so no arbitrary pickle code runs. Training only:
    the packaged model ships its own safetensors weights.
    """
    state = torch.load(str(weights), map_location="cpu", weights_only=True)
    net = MobileNetV2()
    net.load_state_dict(state, strict=True)
    return net.features
