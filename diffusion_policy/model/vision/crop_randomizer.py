"""Random-crop augmentation for image observations (Diffusion Policy's CropRandomizer).

Train mode: `num_crops` independent random crops per image. Eval mode: the center crop
(Diffusion Policy's `eval_fixed_crop=True`), or random crops as in robomimic when
`center_crop_at_eval=False`. The module has no parameters or buffers.
"""
import torch
import torch.nn as nn


def position_encoding(images: torch.Tensor) -> torch.Tensor:
    """Append 2 channels (y/H, x/W) of source-pixel coordinates: (..., C, H, W) -> (..., C+2, H, W)."""
    h, w = images.shape[-2:]
    pos_y, pos_x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    enc = torch.stack((pos_y.float() / h, pos_x.float() / w)).to(device=images.device, dtype=images.dtype)
    enc = enc.expand(*images.shape[:-3], 2, h, w)
    return torch.cat((images, enc), dim=-3)


def crop_at(images: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, crop_h: int, crop_w: int) -> torch.Tensor:
    """Crop each image at its own top-left corner: images (M, C, H, W), tops/lefts (M,) -> (M, C, crop_h, crop_w)."""
    m, c, h, w = images.shape
    rows = tops[:, None] + torch.arange(crop_h, device=images.device)          # (M, crop_h)
    cols = lefts[:, None] + torch.arange(crop_w, device=images.device)         # (M, crop_w)
    flat_index = (rows[:, :, None] * w + cols[:, None, :]).reshape(m, 1, -1)  # (M, 1, crop_h*crop_w)
    crops = torch.gather(images.reshape(m, c, h * w), 2, flat_index.expand(m, c, -1))
    return crops.reshape(m, c, crop_h, crop_w)


def random_crops(images: torch.Tensor, crop_h: int, crop_w: int, num_crops: int) -> torch.Tensor:
    """(B, C, H, W) -> (B*num_crops, C, crop_h, crop_w); crop b*num_crops+n is the n-th crop of image b.

    Top-left corners are uniform in [0, H-crop_h) x [0, W-crop_w), drawn as in robomimic
    (CPU `torch.rand` for rows, then for columns), so seeded runs reproduce the original crops.
    """
    b, c, h, w = images.shape
    tops = ((h - crop_h) * torch.rand(b, num_crops)).long().to(images.device)   # (B, N)
    lefts = ((w - crop_w) * torch.rand(b, num_crops)).long().to(images.device)  # (B, N)
    repeated = images.unsqueeze(1).expand(b, num_crops, c, h, w).reshape(b * num_crops, c, h, w)
    return crop_at(repeated, tops.reshape(-1), lefts.reshape(-1), crop_h, crop_w)


def center_crop(images: torch.Tensor, crop_h: int, crop_w: int) -> torch.Tensor:
    """(..., C, H, W) -> (..., C, crop_h, crop_w), offsets rounded like torchvision's center_crop."""
    h, w = images.shape[-2:]
    top = int(round((h - crop_h) / 2.0))
    left = int(round((w - crop_w) / 2.0))
    return images[..., top:top + crop_h, left:left + crop_w]


class CropRandomizer(nn.Module):
    def __init__(
        self,
        input_shape,
        crop_height: int,
        crop_width: int,
        num_crops: int = 1,
        pos_enc: bool = False,
        center_crop_at_eval: bool = True,
    ):
        """input_shape: (C, H, W) of the incoming images; the crop must be strictly smaller than H x W."""
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"CropRandomizer input_shape must be (C, H, W), got {tuple(input_shape)}")
        if not (crop_height < input_shape[1] and crop_width < input_shape[2]):
            raise ValueError(
                f"crop ({crop_height}, {crop_width}) must be smaller than the image {tuple(input_shape[1:])}; "
                f"lower crop_shape"
            )
        self.input_shape = tuple(int(s) for s in input_shape)
        self.crop_height = crop_height
        self.crop_width = crop_width
        self.num_crops = num_crops
        self.pos_enc = pos_enc
        self.center_crop_at_eval = center_crop_at_eval

    def output_shape_in(self, input_shape=None) -> list[int]:
        """Per-crop shape after `forward_in`: [C (+2 with pos_enc), crop_height, crop_width]."""
        channels = self.input_shape[0] + 2 if self.pos_enc else self.input_shape[0]
        return [channels, self.crop_height, self.crop_width]

    def output_shape_out(self, input_shape=None) -> list[int]:
        """`forward_out` only merges the crops in the batch dimension, so the feature shape is unchanged."""
        return list(input_shape)

    def forward_in(self, images: torch.Tensor) -> torch.Tensor:
        # images: (B, C, H, W) -> crops (B*num_crops, C', crop_height, crop_width)
        if images.ndim != 4:
            raise ValueError(f"CropRandomizer expects images of shape (B, C, H, W), got {tuple(images.shape)}")
        if self.pos_enc:
            images = position_encoding(images)
        if self.training or not self.center_crop_at_eval:
            return random_crops(images, self.crop_height, self.crop_width, self.num_crops)
        crops = center_crop(images, self.crop_height, self.crop_width)
        if self.num_crops > 1:
            crops = crops.repeat_interleave(self.num_crops, dim=0)
        return crops

    def forward_out(self, features: torch.Tensor) -> torch.Tensor:
        # features: (B*num_crops, ...) -> mean over the crops of each image, (B, ...)
        if self.num_crops == 1:
            return features
        return features.reshape(-1, self.num_crops, *features.shape[1:]).mean(dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_in(images)

    def extra_repr(self) -> str:
        return (f"input_shape={self.input_shape}, crop_size=[{self.crop_height}, {self.crop_width}], "
                f"num_crops={self.num_crops}, pos_enc={self.pos_enc}, center_crop_at_eval={self.center_crop_at_eval}")
