"""Exponential moving average of a policy's weights, with Diffusion Policy's warm-up schedule.

decay(step) = clamp(1 - (1 + step / inv_gamma) ** -power, min_value, max_value),
step = optimization_step - update_after_step - 1, and decay = 0 while step <= 0 (the first updates
copy the weights). With the shipped config (inv_gamma 1, power 0.75) the decay reaches 0.999 after
about 10k steps and is capped at 0.9999.
"""

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class EMAModel:
    """Keeps `model` (the averaged copy, e.g. a deepcopy of the trained policy) up to date.

    `step(new_model)` must be called once per optimizer step with the trained model, which has the
    same module tree as `model`. BatchNorm parameters and parameters that do not require grad (e.g.
    the normalizer) are copied rather than averaged. Buffers are not touched.
    """

    def __init__(
        self,
        model: nn.Module,
        update_after_step: int = 0,
        inv_gamma: float = 1.0,
        power: float = 2 / 3,
        min_value: float = 0.0,
        max_value: float = 0.9999,
    ):
        self.averaged_model = model
        self.averaged_model.eval()
        self.averaged_model.requires_grad_(False)
        self.update_after_step = update_after_step
        self.inv_gamma = inv_gamma
        self.power = power
        self.min_value = min_value
        self.max_value = max_value
        self.decay = 0.0
        self.optimization_step = 0

    def get_decay(self, optimization_step: int) -> float:
        step = max(0, optimization_step - self.update_after_step - 1)
        if step <= 0:
            return 0.0
        value = 1 - (1 + step / self.inv_gamma) ** -self.power
        return max(self.min_value, min(value, self.max_value))

    @torch.no_grad()
    def step(self, new_model: nn.Module) -> None:
        self.decay = self.get_decay(self.optimization_step)
        modules = zip(new_model.modules(), self.averaged_model.modules(), strict=True)
        for module, ema_module in modules:
            params = zip(module.parameters(recurse=False), ema_module.parameters(recurse=False), strict=True)
            for param, ema_param in params:
                new_value = param.detach().to(dtype=ema_param.dtype)
                if isinstance(module, _BatchNorm) or not param.requires_grad:
                    ema_param.copy_(new_value)
                else:
                    ema_param.mul_(self.decay).add_(new_value, alpha=1 - self.decay)
        self.optimization_step += 1
