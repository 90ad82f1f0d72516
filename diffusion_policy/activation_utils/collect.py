"""Record every cacheable block's output at every denoising step of one `predict_action`."""

from __future__ import annotations

import numpy as np
import torch

from diffusion_policy.acceleration.hooks import decoder_blocks, install_registry, remove_registry


@torch.no_grad()
def record_block_outputs(policy, obs_dict: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """Run one uncached `predict_action` and return {block name: (N, B, T, E) float32 outputs}.

    Step index 0 is the first (noisiest) denoising step. The sampling noise comes from a generator
    seeded with `seed`, so calibration is reproducible. The hooks are removed afterwards (also on
    error) and the policy is left unchanged.
    """
    remove_registry(policy)  # record the uncached model, whatever was applied before
    registry = install_registry(policy, {"mode": "record"})
    records: dict[str, list[torch.Tensor]] = {}
    try:
        for name, block in decoder_blocks(policy.model).items():
            outputs = records.setdefault(name, [])

            def wrap(original, outputs=outputs):
                def recording_forward(x, ctx):
                    out = original(x, ctx)
                    outputs.append(out.detach().to("cpu", torch.float32))
                    return out

                return recording_forward

            registry.override(block, "forward", wrap)
        generator = torch.Generator(device=policy.device).manual_seed(seed)
        policy.predict_action(obs_dict, generator=generator)
    finally:
        remove_registry(policy)
    return {name: torch.stack(outputs).numpy() for name, outputs in records.items()}
