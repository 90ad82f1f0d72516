"""Small torch helpers shared by datasets, policies and workspaces."""

from typing import Any, Callable

import torch


def dict_apply(x: dict, func: Callable[[Any], Any]) -> dict:
    """Apply `func` to every leaf of a (possibly nested) dict, keeping the nesting."""
    result = dict()
    for key, value in x.items():
        if isinstance(value, dict):
            result[key] = dict_apply(value, func)
        else:
            result[key] = func(value)
    return result


def optimizer_to(optimizer: torch.optim.Optimizer, device: torch.device | str) -> torch.optim.Optimizer:
    """Move an optimizer's state tensors (e.g. Adam moments) to `device`, in place."""
    for state in optimizer.state.values():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                state[name] = value.to(device=device)
    return optimizer


def host_to_device(value, device: torch.device | str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """An array or tensor on the host -> a tensor on `device`. To a CUDA device the copy goes through
    pinned memory and does not block the host (stream-ordered: kernels queued after it see the data;
    the caching host allocator keeps the pinned buffer until the copy is done)."""
    tensor = torch.as_tensor(value)
    device = torch.device(device)
    if device.type != "cuda" or tensor.device.type != "cpu":
        return tensor.to(device=device, dtype=dtype)
    return tensor.pin_memory().to(device=device, dtype=dtype, non_blocking=True)
