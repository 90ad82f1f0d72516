"""Spatial softmax keypoint pooling (Finn et al., "Deep Spatial Autoencoders"), as in robomimic 0.2.0.

State_dict: `nets.{weight,bias}` (1x1 conv C -> num_kp), and the buffers `temperature` (1,),
`pos_x`, `pos_y` (1, H*W). Output keypoints are (B, num_kp, 2) in [-1, 1], ordered (x, y).
"""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class SpatialSoftmax(nn.Module):
    def __init__(
        self,
        input_shape,
        num_kp: int | None = 32,
        temperature: float = 1.0,
        learnable_temperature: bool = False,
        noise_std: float = 0.0,
    ):
        """input_shape: (C, H, W) of the feature map; num_kp=None keeps the C channels as keypoints."""
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"SpatialSoftmax input_shape must be (C, H, W), got {tuple(input_shape)}")
        self.in_c, self.in_h, self.in_w = (int(s) for s in input_shape)
        self.nets = nn.Conv2d(self.in_c, num_kp, kernel_size=1) if num_kp is not None else None
        self.num_kp = num_kp if num_kp is not None else self.in_c
        self.noise_std = noise_std

        temperature = torch.ones(1) * temperature
        if learnable_temperature:
            self.temperature = nn.Parameter(temperature)
        else:
            self.register_buffer("temperature", temperature)

        # pixel coordinates spread over [-1, 1] (first pixel -1, last +1); x runs along the width, y along the height
        pos_x, pos_y = np.meshgrid(np.linspace(-1.0, 1.0, self.in_w), np.linspace(-1.0, 1.0, self.in_h))
        self.register_buffer("pos_x", torch.from_numpy(pos_x.reshape(1, -1)).float())  # (1, H*W)
        self.register_buffer("pos_y", torch.from_numpy(pos_y.reshape(1, -1)).float())  # (1, H*W)

    def output_shape(self, input_shape=None) -> list[int]:
        return [self.num_kp, 2]

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        # feature: (B, C, H, W) -> keypoints (B, K, 2)
        if tuple(feature.shape[1:]) != (self.in_c, self.in_h, self.in_w):
            raise ValueError(
                f"SpatialSoftmax expects feature maps of shape (B, {self.in_c}, {self.in_h}, {self.in_w}), "
                f"got {tuple(feature.shape)}"
            )
        if self.nets is not None:
            feature = self.nets(feature)                                   # (B, K, H, W)
        logits = feature.reshape(-1, self.in_h * self.in_w)                # (B*K, H*W)
        attention = F.softmax(logits / self.temperature, dim=-1)
        expected_x = torch.sum(self.pos_x * attention, dim=1, keepdim=True)
        expected_y = torch.sum(self.pos_y * attention, dim=1, keepdim=True)
        keypoints = torch.cat([expected_x, expected_y], dim=1).view(-1, self.num_kp, 2)
        if self.training and self.noise_std > 0:
            keypoints = keypoints + torch.randn_like(keypoints) * self.noise_std
        return keypoints
