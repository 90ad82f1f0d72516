import math

import torch
from torch import nn


class SinusoidalPosEmb(nn.Module):
    """Diffusion-timestep embedding: (B,) integer steps -> (B, dim) as [sin, cos]."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, device=x.device) * (-math.log(10000) / (half - 1)))
        angles = x[:, None].float() * freqs[None, :]  # (B, half)
        return torch.cat((angles.sin(), angles.cos()), dim=-1)
