"""Record cacheable blocks' outputs at the denoising steps of one `predict_action`.

Recording is one more hook ('bac_record', innermost on every block), so it stacks with an applied
cache: a cached policy's recording holds what it really computes, the update steps of each block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diffusion_policy.acceleration.hooks import HookRegistry, RecordHook, decoder_blocks, remove_hooks

RECORD_HOOK = "bac_record"


@dataclass
class BlockRecording:
    steps: list[int]  # denoising steps the block was computed at (0 = noisiest)
    outputs: np.ndarray  # (len(steps), B, T, E) float32


@torch.no_grad()
def record_computed_outputs(policy, obs_dict: dict, seed: int = 0) -> dict[str, BlockRecording]:
    """Run one `predict_action` (sampling noise from a generator seeded with `seed`) and return what
    each block computed. The recording hooks are removed afterwards (also on error); an applied
    cache stays as it was."""
    state = policy.denoising
    hooks = {name: HookRegistry.of(block).register(RECORD_HOOK, RecordHook(state), innermost=True)
             for name, block in decoder_blocks(policy.model).items()}
    try:
        generator = torch.Generator(device=policy.device).manual_seed(seed)
        policy.predict_action(obs_dict, generator=generator)
    finally:
        remove_hooks(policy.model, RECORD_HOOK)
    return {name: BlockRecording([step for step, _ in hook.records], torch.stack([out for _, out in hook.records]).numpy())
            for name, hook in hooks.items()}


def record_block_outputs(policy, obs_dict: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """{block name: (N, B, T, E)}: every block's output at every one of the N denoising steps, from
    one uncached `predict_action` (what schedules are calibrated on)."""
    recordings = record_computed_outputs(policy, obs_dict, seed)
    num_steps = policy.num_inference_steps
    for name, recording in recordings.items():
        if recording.steps != list(range(num_steps)):
            raise ValueError(f"{name} was computed at {len(recording.steps)} of {num_steps} steps: a cache is "
                             "applied; remove_cache(policy) first, or use record_computed_outputs")
    return {name: recording.outputs for name, recording in recordings.items()}
