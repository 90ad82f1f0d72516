"""`.device` / `.dtype` for modules, read off an empty parameter that moves with the module."""

import torch
import torch.nn as nn


class ModuleAttrMixin(nn.Module):
    """nn.Module that knows its device and dtype.

    Holds an empty `_dummy_variable` parameter (shape [0], present in the state_dict, as in the
    original code) whose device/dtype follow `.to(...)`.
    """

    def __init__(self):
        super().__init__()
        self._dummy_variable = nn.Parameter()

    @property
    def device(self) -> torch.device:
        return self._dummy_variable.device

    @property
    def dtype(self) -> torch.dtype:
        return self._dummy_variable.dtype
