"""Observation encoder of the hybrid image policy, re-implemented with robomimic 0.2.0's module layout.

Diffusion Policy builds this encoder through robomimic (a BC-RNN config, then takes the policy's
`ObservationEncoder`). This module builds the same network directly, with identical state_dict
keys, so `obs_encoder.*` tensors of original hybrid checkpoints load with strict=True:

    obs_nets.<rgb_key>.backbone.nets.{0..7}.*     ResNet18 trunk (1 = bn1, 4..7 = layer1..layer4)
    obs_nets.<rgb_key>.pool.nets.{weight,bias}    SpatialSoftmax 1x1 conv 512 -> 32
    obs_nets.<rgb_key>.pool.{temperature,pos_x,pos_y}
    obs_nets.<rgb_key>.nets.0.* / nets.1.*        the same backbone / pool, listed again via VisualCore.nets
    obs_nets.<rgb_key>.nets.3.{weight,bias}       Linear(64, 64)

Low-dim keys, the crop randomizers and the ReLU own no tensors.
"""
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn as nn
from omegaconf import DictConfig, OmegaConf

from diffusion_policy.model.vision.crop_randomizer import CropRandomizer
from diffusion_policy.model.vision.resnet import ResNet18Conv
from diffusion_policy.model.vision.spatial_softmax import SpatialSoftmax


class VisualCore(nn.Module):
    """ResNet18 trunk -> SpatialSoftmax -> Flatten -> Linear: (B, C, H, W) -> (B, feature_dim).

    Like robomimic, `backbone` and `pool` are registered both as attributes and inside `nets`.
    """

    def __init__(self, input_shape, group_norm: bool = True, num_kp: int = 32, feature_dim: int = 64):
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        self.feature_dim = feature_dim
        self.backbone = ResNet18Conv(input_channel=self.input_shape[0], group_norm=group_norm)
        feature_map_shape = self.backbone.output_shape(self.input_shape)   # [512, h, w]
        self.pool = SpatialSoftmax(feature_map_shape, num_kp=num_kp, temperature=1.0,
                                   learnable_temperature=False, noise_std=0.0)
        keypoint_dim = int(np.prod(self.pool.output_shape(feature_map_shape)))  # num_kp * 2
        self.nets = nn.Sequential(self.backbone, self.pool, nn.Flatten(start_dim=1),
                                  nn.Linear(keypoint_dim, feature_dim))

    def output_shape(self, input_shape=None) -> list[int]:
        return [self.feature_dim]

    def __repr__(self) -> str:
        # `backbone` and `pool` also sit inside `nets`; print each once
        norm = type(self.backbone.nets[1]).__name__
        return (f"VisualCore(input_shape={self.input_shape}, backbone=ResNet18Conv(norm={norm}), "
                f"pool=SpatialSoftmax(num_kp={self.pool.num_kp}), linear={self.nets[3]})")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if tuple(images.shape[1:]) != self.input_shape:
            raise ValueError(f"VisualCore expects (B, {', '.join(map(str, self.input_shape))}) inputs, "
                             f"got {tuple(images.shape)}")
        return self.nets(images)


def parse_obs_shape_meta(shape_meta) -> dict[str, tuple[str, tuple[int, ...]]]:
    """shape_meta (dict or OmegaConf) -> {obs_key: (type, shape)} in shape_meta['obs'] order."""
    if isinstance(shape_meta, DictConfig):
        shape_meta = OmegaConf.to_container(shape_meta, resolve=True)
    if not isinstance(shape_meta, Mapping) or not isinstance(shape_meta.get("obs"), Mapping):
        raise ValueError("shape_meta must be a mapping with an 'obs' mapping of {key: {'shape': [...], 'type': ...}}")
    parsed = {}
    for key, attr in shape_meta["obs"].items():
        if not isinstance(attr, Mapping) or "shape" not in attr:
            raise ValueError(f"shape_meta obs '{key}' needs a 'shape' entry, e.g. {{'shape': [3, 84, 84], 'type': 'rgb'}}")
        obs_type = attr.get("type", "low_dim")
        shape = tuple(int(s) for s in attr["shape"])
        if obs_type not in ("rgb", "low_dim"):
            raise ValueError(f"shape_meta obs '{key}' has unsupported type '{obs_type}'; use 'rgb' or 'low_dim'")
        if obs_type == "rgb" and len(shape) != 3:
            raise ValueError(f"shape_meta rgb obs '{key}' must have shape [C, H, W], got {list(shape)}")
        parsed[key] = (obs_type, shape)
    return parsed


class RobomimicObsEncoder(nn.Module):
    """Encodes one observation step per sample: {key: (N, C, H, W) or (N, D)} -> (N, feature_dim).

    rgb: crop -> ResNet18 -> SpatialSoftmax(32 kp) -> Flatten -> Linear(64, 64) -> ReLU (64 features);
    low_dim: passed through flattened. Features are concatenated in shape_meta['obs'] order.
    Images must already be normalized (the policy's normalizer maps [0, 1] -> [-1, 1]).
    """

    def __init__(
        self,
        shape_meta,
        crop_shape=(76, 76),
        obs_encoder_group_norm: bool = True,
        eval_fixed_crop: bool = True,
    ):
        """crop_shape=None disables cropping; eval_fixed_crop=False keeps random crops at eval (robomimic)."""
        super().__init__()
        obs_meta = parse_obs_shape_meta(shape_meta)
        self.obs_types = {key: obs_type for key, (obs_type, _) in obs_meta.items()}  # shape_meta order
        self.obs_shapes = {key: shape for key, (_, shape) in obs_meta.items()}
        self.rgb_keys = [key for key, obs_type in self.obs_types.items() if obs_type == "rgb"]
        self.low_dim_keys = [key for key, obs_type in self.obs_types.items() if obs_type == "low_dim"]

        self.obs_nets = nn.ModuleDict()
        self.obs_randomizers = nn.ModuleDict()
        for key in self.rgb_keys:
            image_shape = self.obs_shapes[key]
            core_input_shape = image_shape
            if crop_shape is not None:
                if len(crop_shape) != 2:
                    raise ValueError(f"crop_shape must be (height, width) or None, got {crop_shape}")
                crop_h, crop_w = (int(s) for s in crop_shape)
                randomizer = CropRandomizer(image_shape, crop_h, crop_w, num_crops=1, pos_enc=False,
                                            center_crop_at_eval=eval_fixed_crop)
                self.obs_randomizers[key] = randomizer
                core_input_shape = randomizer.output_shape_in(image_shape)
            self.obs_nets[key] = VisualCore(core_input_shape, group_norm=obs_encoder_group_norm)
        self.activation = nn.ReLU()

    @property
    def feature_dim(self) -> int:
        return self.output_shape()[0]

    def output_shape(self) -> list[int]:
        dim = 0
        for key, shape in self.obs_shapes.items():
            dim += self.obs_nets[key].feature_dim if key in self.obs_nets else int(np.prod(shape))
        return [dim]

    def encode_image(self, key: str, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) normalized images of one camera -> (N, 64) features."""
        randomizer = self.obs_randomizers[key] if key in self.obs_randomizers else None
        x = images if randomizer is None else randomizer.forward_in(images)
        x = self.activation(self.obs_nets[key](x))
        return x if randomizer is None else randomizer.forward_out(x)

    def forward(self, obs_dict: Mapping[str, torch.Tensor]) -> torch.Tensor:
        features = []
        for key, shape in self.obs_shapes.items():
            if key not in obs_dict:
                raise KeyError(f"obs_dict lacks '{key}' (has {sorted(obs_dict)}); pass every shape_meta obs key")
            x = obs_dict[key]
            if tuple(x.shape[1:]) != shape:
                raise ValueError(f"obs '{key}' must have shape (N, {', '.join(map(str, shape))}), "
                                 f"got {tuple(x.shape)}")
            if self.obs_types[key] == "rgb":
                x = self.encode_image(key, x)
            features.append(x.flatten(start_dim=1))
        return torch.cat(features, dim=-1)  # (N, feature_dim)
