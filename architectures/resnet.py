"""ResNet (He et al., "Deep Residual Learning for Image Recognition", 2016), V1.5.

V1.5, as torchvision and timm's ``resnet50``: in a bottleneck block the stride sits on
the 3x3 convolution, not on the first 1x1 as in the paper's original. ResNet has no
tokens; its cost grows with the number of pixels, and it takes any input size (global
average pooling before the head).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from .layers import check_sizes


@dataclass(frozen=True)
class ResNetConfig:
    block: str  # "basic" (two 3x3 convs) or "bottleneck" (1x1, 3x3, 1x1 with 4x expansion)
    layers: tuple[int, int, int, int]  # blocks per stage (conv2_x ... conv5_x in the paper's Table 1)
    img_size: int = 224  # only used to build example inputs: the network takes any size
    in_chans: int = 3
    num_classes: int = 1000
    width: int = 64  # channels of the first stage; doubled at each following stage

    def __post_init__(self):
        if self.block not in ("basic", "bottleneck"):
            raise ValueError(f"block must be 'basic' or 'bottleneck', got {self.block!r}")
        if self.img_size <= 0:
            raise ValueError(f"img_size must be positive, got {self.img_size}")
        check_sizes(self, ("img_size", "in_chans", "width"), ("num_classes",))
        if len(self.layers) != 4 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in self.layers):
            raise ValueError(f"layers must be four positive block counts, got {self.layers!r}")


# He et al. 2016, Table 1. Parameter counts with the 1000-class head.
PRESETS: dict[str, ResNetConfig] = {
    "resnet18": ResNetConfig(block="basic", layers=(2, 2, 2, 2)),  # 11.7M
    "resnet34": ResNetConfig(block="basic", layers=(3, 4, 6, 3)),  # 21.8M
    "resnet50": ResNetConfig(block="bottleneck", layers=(3, 4, 6, 3)),  # 25.6M
    "resnet101": ResNetConfig(block="bottleneck", layers=(3, 4, 23, 3)),  # 44.5M
    "resnet152": ResNetConfig(block="bottleneck", layers=(3, 8, 36, 3)),  # 60.2M
}


def conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False)
    return conv, nn.BatchNorm2d(out_ch)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(in_ch, width, 3, stride)
        self.conv2, self.bn2 = conv_bn(width, width, 3)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample(in_ch, width * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        x += shortcut  # in place, as torchvision and timm do: no new activation-sized tensor
        return self.relu(x)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(in_ch, width, 1)
        self.conv2, self.bn2 = conv_bn(width, width, 3, stride)  # V1.5: the stride is here, not on conv1
        self.conv3, self.bn3 = conv_bn(width, width * self.expansion, 1)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample(in_ch, width * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.bn3(self.conv3(x))
        if self.downsample is not None:  # after the main path, as timm does: fewer large tensors alive at once
            shortcut = self.downsample(shortcut)
        x += shortcut  # in place, as torchvision and timm do: no new activation-sized tensor
        return self.relu(x)


def downsample(in_ch: int, out_ch: int, stride: int) -> nn.Sequential | None:
    """Projection shortcut (paper option B) where the shape changes, identity elsewhere."""
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(*conv_bn(in_ch, out_ch, 1, stride))


class ResNet(nn.Module):
    num_tokens = None  # no tokens: cost scales with pixels

    def __init__(self, config: ResNetConfig):
        super().__init__()
        self.config = config
        block = BasicBlock if config.block == "basic" else Bottleneck
        self.conv1, self.bn1 = (
            nn.Conv2d(config.in_chans, config.width, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(config.width),
        )
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_ch = config.width
        stages = []
        for i, num_blocks in enumerate(config.layers):
            width = config.width * 2**i
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(num_blocks):
                blocks.append(block(in_ch, width, stride if j == 0 else 1))
                in_ch = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.num_features = in_ch
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, config.num_classes) if config.num_classes > 0 else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 3, H, W) -> (B, 64, H/4, W/4)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)  # (B, 512 * expansion, H/32, W/32)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.global_pool(x).flatten(1))  # (B, C, h, w) -> (B, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build(
    name: str, img_size: int = 224, patch_size: int | None = None, num_classes: int = 1000, **overrides
) -> ResNet:
    if patch_size is not None:
        raise ValueError(f"{name} is a convolutional network and takes no patch_size (got {patch_size})")
    config = dataclasses.replace(PRESETS[name], img_size=img_size, num_classes=num_classes, **overrides)
    return ResNet(config)
