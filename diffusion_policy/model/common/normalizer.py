"""Per-field affine normalizers, stored as module parameters so they travel inside policy weights.

A field's parameters are a ParameterDict
    {'scale': (D,), 'offset': (D,), 'input_stats': {'min', 'max', 'mean', 'std'}: (D,) each}
and normalization is `x * scale + offset` over the last D elements (flattened) of `x`.
`LinearNormalizer` holds one such dict per field in `params_dict`, which gives the original
Diffusion Policy state_dict layout `params_dict.<field>.{scale,offset,input_stats.{min,max,mean,std}}`.
"""

from typing import Union

import numpy as np
import torch
import torch.nn as nn

from diffusion_policy.common.pytorch_util import dict_apply

ArrayLike = Union[torch.Tensor, np.ndarray]
DEFAULT_KEY = "_default"  # the field used when a LinearNormalizer is fit on a single array


def _as_tensor(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    return torch.from_numpy(np.asarray(x))


def _frozen_params(scale, offset, input_stats: dict) -> nn.ParameterDict:
    """Build a field's ParameterDict; normalizer parameters never receive gradients."""
    params = nn.ParameterDict(
        {
            "scale": scale,
            "offset": offset,
            "input_stats": nn.ParameterDict(input_stats),
        }
    )
    params.requires_grad_(False)
    return params


def _fit(
    data: ArrayLike,
    last_n_dims: int = 1,
    dtype: torch.dtype = torch.float32,
    mode: str = "limits",
    output_max: float = 1.0,
    output_min: float = -1.0,
    range_eps: float = 1e-4,
    fit_offset: bool = True,
) -> nn.ParameterDict:
    """Fit scale/offset over all leading dims of `data`; statistics are per element of the last
    `last_n_dims` dims (flattened), or one global scalar when `last_n_dims == 0`.

    mode 'limits' maps [min, max] to [output_min, output_max]; dims whose range is below
    `range_eps` are only shifted (to the output midpoint), not scaled. With `fit_offset=False` the
    map is symmetric around 0 (scale = min(|output_min|, output_max) / max|x|, offset 0).
    mode 'gaussian' maps to zero mean (if `fit_offset`) and unit std; dims with std below
    `range_eps` keep scale 1.
    """
    data = _as_tensor(data[:] if not isinstance(data, (torch.Tensor, np.ndarray)) else data)
    if dtype is not None:
        data = data.type(dtype)
    dim = int(np.prod(data.shape[-last_n_dims:])) if last_n_dims > 0 else 1
    data = data.reshape(-1, dim)  # (N, D)

    input_min = data.min(dim=0).values
    input_max = data.max(dim=0).values
    input_mean = data.mean(dim=0)
    input_std = data.std(dim=0)  # unbiased, as torch.std defaults to

    if mode == "limits":
        if fit_offset:
            input_range = input_max - input_min
            ignore_dim = input_range < range_eps
            input_range[ignore_dim] = output_max - output_min
            scale = (output_max - output_min) / input_range
            offset = output_min - scale * input_min
            offset[ignore_dim] = (output_max + output_min) / 2 - input_min[ignore_dim]
        else:
            if not (output_max > 0 and output_min < 0):
                raise ValueError("fit_offset=False needs output_min < 0 < output_max")
            output_abs = min(abs(output_min), abs(output_max))
            input_abs = torch.maximum(input_min.abs(), input_max.abs())
            ignore_dim = input_abs < range_eps
            input_abs[ignore_dim] = output_abs
            scale = output_abs / input_abs
            offset = torch.zeros_like(input_mean)
    elif mode == "gaussian":
        ignore_dim = input_std < range_eps
        std = input_std.clone()
        std[ignore_dim] = 1
        scale = 1 / std
        offset = -input_mean * scale if fit_offset else torch.zeros_like(input_mean)
    else:
        raise ValueError(f"unknown normalizer mode {mode!r}; use 'limits' or 'gaussian'")

    stats = {"min": input_min, "max": input_max, "mean": input_mean, "std": input_std}
    return _frozen_params(scale, offset, stats)


def _normalize(x: ArrayLike, params: nn.ParameterDict, forward: bool = True) -> torch.Tensor:
    """Apply (forward) or invert the affine map of one field; returns a tensor shaped like `x`."""
    scale = params["scale"]
    offset = params["offset"]
    x = _as_tensor(x).to(device=scale.device, dtype=scale.dtype)
    src_shape = x.shape
    x = x.reshape(-1, scale.shape[0])  # (N, D)
    if forward:
        x = x * scale + offset
    else:
        x = (x - offset) / scale
    return x.reshape(src_shape)


def _load_params_dict(state_dict: dict, prefix: str) -> nn.ParameterDict:
    """Rebuild a nested ParameterDict from flat `prefix.a.b.c` keys (values cloned)."""
    root = nn.ParameterDict()
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        path = key[len(prefix) :].split(".")
        node = root
        for name in path[:-1]:
            if name not in node:
                node[name] = nn.ParameterDict()
            node = node[name]
        node[path[-1]] = value.clone()
    root.requires_grad_(False)
    return root


class _ParamsDictModule(nn.Module):
    """Holds `params_dict` and loads it from any state_dict, whatever fields the checkpoint has."""

    def __init__(self, params_dict: nn.ParameterDict | None = None):
        super().__init__()
        self.params_dict = nn.ParameterDict() if params_dict is None else params_dict

    @property
    def device(self) -> torch.device:
        first = next(iter(self.parameters()), None)
        return torch.device("cpu") if first is None else first.device

    @property
    def dtype(self) -> torch.dtype:
        first = next(iter(self.parameters()), None)
        return torch.float32 if first is None else first.dtype

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        # Replace the (possibly empty) ParameterDict by one shaped like the checkpoint; the default
        # loader then copies the same values into it when it recurses into the child module.
        self.params_dict = _load_params_dict(state_dict, prefix + "params_dict.")


class SingleFieldLinearNormalizer(_ParamsDictModule):
    """Normalizer for one field: `params_dict = {scale, offset, input_stats: {min,max,mean,std}}`."""

    @torch.no_grad()
    def fit(self, data: ArrayLike, **kwargs) -> None:
        """Fit on `data`; kwargs as `_fit` (last_n_dims, dtype, mode, output_max/min, range_eps, fit_offset)."""
        self.params_dict = _fit(data, **kwargs)

    @classmethod
    def create_fit(cls, data: ArrayLike, **kwargs) -> "SingleFieldLinearNormalizer":
        normalizer = cls()
        normalizer.fit(data, **kwargs)
        return normalizer

    @classmethod
    def create_manual(
        cls, scale: ArrayLike, offset: ArrayLike, input_stats_dict: dict
    ) -> "SingleFieldLinearNormalizer":
        """Normalizer from explicit (D,) scale/offset and a {min,max,mean,std} stats dict."""
        scale = _as_tensor(scale).flatten()
        offset = _as_tensor(offset).flatten()
        if scale.shape != offset.shape or scale.dtype != offset.dtype:
            raise ValueError(
                f"scale {tuple(scale.shape)} {scale.dtype} and offset {tuple(offset.shape)} "
                f"{offset.dtype} must have the same shape and dtype"
            )
        stats = {name: _as_tensor(value).flatten() for name, value in input_stats_dict.items()}
        for name, value in stats.items():
            if value.shape != scale.shape or value.dtype != scale.dtype:
                raise ValueError(
                    f"input_stats[{name!r}] {tuple(value.shape)} {value.dtype} does not match "
                    f"scale {tuple(scale.shape)} {scale.dtype}"
                )
        return cls(_frozen_params(scale, offset, stats))

    @classmethod
    def create_identity(cls, dtype: torch.dtype = torch.float32) -> "SingleFieldLinearNormalizer":
        """x -> x for any width (scale/offset have one element that broadcasts)."""
        scale = torch.tensor([1], dtype=dtype)
        offset = torch.tensor([0], dtype=dtype)
        stats = {
            "min": torch.tensor([-1], dtype=dtype),
            "max": torch.tensor([1], dtype=dtype),
            "mean": torch.tensor([0], dtype=dtype),
            "std": torch.tensor([1], dtype=dtype),
        }
        return cls.create_manual(scale, offset, stats)

    def normalize(self, x: ArrayLike) -> torch.Tensor:
        return _normalize(x, self.params_dict, forward=True)

    def unnormalize(self, x: ArrayLike) -> torch.Tensor:
        return _normalize(x, self.params_dict, forward=False)

    def get_input_stats(self) -> nn.ParameterDict:
        return self.params_dict["input_stats"]

    def get_output_stats(self) -> dict:
        return dict_apply(dict(self.get_input_stats()), self.normalize)

    def forward(self, x: ArrayLike) -> torch.Tensor:
        return self.normalize(x)


class LinearNormalizer(_ParamsDictModule):
    """One affine normalizer per field (`obs`, `action`, or each image/low-dim key).

    Fit on a dict to get one field per key, or on a single array for the `_default` field.
    `normalize` / `unnormalize` take the same kind of input: a dict of arrays (each key must be a
    fitted field) or a single array.
    """

    @torch.no_grad()
    def fit(
        self,
        data: Union[dict, ArrayLike],
        last_n_dims: int = 1,
        dtype: torch.dtype = torch.float32,
        mode: str = "limits",
        output_max: float = 1.0,
        output_min: float = -1.0,
        range_eps: float = 1e-4,
        fit_offset: bool = True,
    ) -> None:
        fit_args = (last_n_dims, dtype, mode, output_max, output_min, range_eps, fit_offset)
        if isinstance(data, dict):
            for key, value in data.items():
                self.params_dict[key] = _fit(value, *fit_args)
        else:
            self.params_dict[DEFAULT_KEY] = _fit(data, *fit_args)

    def __getitem__(self, key: str) -> SingleFieldLinearNormalizer:
        """A view of one field; it shares this normalizer's parameters."""
        return SingleFieldLinearNormalizer(self.params_dict[key])

    def __setitem__(self, key: str, value: SingleFieldLinearNormalizer) -> None:
        self.params_dict[key] = value.params_dict

    def _field_params(self, key: str) -> nn.ParameterDict:
        if key not in self.params_dict:
            raise KeyError(
                f"normalizer has no field {key!r} (fitted fields: {list(self.params_dict.keys())}); "
                "fit it on data containing that key"
            )
        return self.params_dict[key]

    def _normalize_fields(self, x, forward: bool):
        if isinstance(x, dict):
            return {key: _normalize(value, self._field_params(key), forward) for key, value in x.items()}
        if DEFAULT_KEY not in self.params_dict:
            raise RuntimeError("normalizer was fit on a dict (or not at all); pass a dict of fields, not one array")
        return _normalize(x, self.params_dict[DEFAULT_KEY], forward)

    def normalize(self, x: Union[dict, ArrayLike]) -> Union[dict, torch.Tensor]:
        return self._normalize_fields(x, forward=True)

    def unnormalize(self, x: Union[dict, ArrayLike]) -> Union[dict, torch.Tensor]:
        return self._normalize_fields(x, forward=False)

    def forward(self, x: Union[dict, ArrayLike]) -> Union[dict, torch.Tensor]:
        return self.normalize(x)

    def get_input_stats(self) -> Union[nn.ParameterDict, dict]:
        """{min,max,mean,std} for a single-array normalizer, else {field: {min,max,mean,std}}."""
        if len(self.params_dict) == 0:
            raise RuntimeError("normalizer is empty; fit it or load a state_dict first")
        if len(self.params_dict) == 1 and DEFAULT_KEY in self.params_dict:
            return self.params_dict[DEFAULT_KEY]["input_stats"]
        return {key: params["input_stats"] for key, params in self.params_dict.items()}

    def get_output_stats(self) -> dict:
        """The input stats pushed through the normalizer (same nesting as `get_input_stats`)."""
        input_stats = self.get_input_stats()
        if "min" in input_stats:
            return dict_apply(dict(input_stats), self.normalize)
        return {
            key: {name: _normalize(value, self.params_dict[key]) for name, value in stats.items()}
            for key, stats in input_stats.items()
        }
