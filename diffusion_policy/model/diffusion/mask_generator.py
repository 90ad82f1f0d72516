import torch

from diffusion_policy.model.common.module_attr_mixin import ModuleAttrMixin


class LowdimMaskGenerator(ModuleAttrMixin):
    """Which entries of a (B, T, action_dim + obs_dim) trajectory are given (True) vs generated.

    With observations used as condition (obs_dim=0, action_visible=False) nothing is given and the
    mask is all False; the module is kept for state_dict compatibility (`_dummy_variable`).
    """

    def __init__(self, action_dim: int, obs_dim: int, max_n_obs_steps: int = 2,
                 fix_obs_steps: bool = True, action_visible: bool = False):
        super().__init__()
        self.action_dim = action_dim
        self.obs_dim = obs_dim
        self.max_n_obs_steps = max_n_obs_steps
        self.fix_obs_steps = fix_obs_steps
        self.action_visible = action_visible

    @torch.no_grad()
    def forward(self, shape: tuple, seed=None) -> torch.Tensor:
        B, T, D = shape
        assert D == self.action_dim + self.obs_dim
        rng = torch.Generator(device=self.device)
        if seed is not None:
            rng = rng.manual_seed(seed)
        dim = torch.arange(D, device=self.device)
        is_action_dim = (dim < self.action_dim)[None, None].expand(B, T, D)
        is_obs_dim = ~is_action_dim

        if self.fix_obs_steps:
            obs_steps = torch.full((B,), self.max_n_obs_steps, device=self.device)
        else:
            obs_steps = torch.randint(1, self.max_n_obs_steps + 1, (B,), generator=rng, device=self.device)
        steps = torch.arange(T, device=self.device)[None].expand(B, T)
        obs_time = (steps < obs_steps[:, None])[..., None].expand(B, T, D)
        mask = obs_time & is_obs_dim
        if self.action_visible:
            action_steps = (obs_steps - 1).clamp(min=0)
            action_time = (steps < action_steps[:, None])[..., None].expand(B, T, D)
            mask = mask | (action_time & is_action_dim)
        return mask
