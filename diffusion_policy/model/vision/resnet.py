"""ResNet-18 convolutional trunk, laid out like torchvision's resnet18.

Built without torchvision. Attribute names, child order and initialisation
follow torchvision, so the state_dict keys of `ResNet18Conv` are exactly those
of robomimic 0.2.0's ResNet18Conv (`nets.0` = conv1, `nets.1` = bn1,
`nets.4`..`nets.7` = layer1..layer4, each a Sequential of BasicBlocks).
"""
import math

import torch
import torch.nn as nn


def make_norm(num_channels: int, group_norm: bool) -> nn.Module:
    """BatchNorm2d, or GroupNorm with one group per 16 channels (Diffusion Policy's swap)."""
    if group_norm:
        return nn.GroupNorm(num_groups=num_channels // 16, num_channels=num_channels)
    return nn.BatchNorm2d(num_channels)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (torchvision's BasicBlock)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, group_norm: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = make_norm(out_channels, group_norm)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = make_norm(out_channels, group_norm)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                make_norm(out_channels, group_norm),
            )
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def resnet18_trunk(input_channel: int = 3, group_norm: bool = False) -> nn.Sequential:
    """torchvision resnet18's children minus avgpool and fc: (B, C, H, W) -> (B, 512, ceil(H/32), ceil(W/32))."""
    layers = [
        nn.Conv2d(input_channel, 64, kernel_size=7, stride=2, padding=3, bias=False),  # conv1
        make_norm(64, group_norm),                                                     # bn1
        nn.ReLU(inplace=True),                                                         # relu
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),                              # maxpool
    ]
    in_channels = 64
    for out_channels, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:  # layer1..layer4
        layers.append(nn.Sequential(
            BasicBlock(in_channels, out_channels, stride, group_norm),
            BasicBlock(out_channels, out_channels, 1, group_norm),
        ))
        in_channels = out_channels
    trunk = nn.Sequential(*layers)

    # torchvision's initialisation (zero_init_residual=False)
    for m in trunk.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return trunk


class ResNet18Conv(nn.Module):
    """robomimic's ResNet18Conv: the resnet18 trunk held in `nets` (randomly initialised, no pretrained weights)."""

    def __init__(self, input_channel: int = 3, group_norm: bool = False):
        super().__init__()
        self.input_channel = input_channel
        self.nets = resnet18_trunk(input_channel, group_norm)

    def output_shape(self, input_shape) -> list[int]:
        """(C, H, W) -> [512, ceil(H/32), ceil(W/32)]."""
        _, h, w = input_shape
        return [512, math.ceil(h / 32), math.ceil(w / 32)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) -> (B, 512, h, w)
        return self.nets(x)
