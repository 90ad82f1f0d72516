"""Time one training step (forward, backward, AdamW) of a checkpoint's policy in float32 and under
bfloat16 autocast (`training.mixed_precision=bf16`), alternating rounds in one run; prints the medians
and their ratio.

    python scripts/benchmark_training_step.py -c training_state/blockpush_lowdim/checkpoints/latest.ckpt \\
        --batch_size 64 --steps 10 --rounds 2 --threads 1

The batch is random data of the policy's shapes (the step's cost does not depend on the values); the
weights are copied, so the checkpoint is not touched.
"""

import argparse
import statistics
import sys
import time

import torch

from diffusion_policy.common.checkpoint import CheckpointError, load_checkpoint
from diffusion_policy.common.threads import add_threads_argument, set_threads


def time_steps(policy, batch: dict, steps: int, bf16: bool) -> list[float]:
    """Seconds per training step, `steps` of them after one warm-up step."""
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-6)
    seconds = []
    for i in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = policy.compute_loss(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if i:
            seconds.append(time.perf_counter() - start)
    return seconds


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-c", "--checkpoint", required=True, help="a training or exported checkpoint (lowdim policy)")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=2, help="alternating float32 / bf16 rounds")
    add_threads_argument(p)
    args = p.parse_args(argv)
    set_threads(args.threads)
    try:
        policy, cfg = load_checkpoint(args.checkpoint)
    except (CheckpointError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    if "obs_dim" not in cfg:
        sys.exit(f"error: {args.checkpoint} holds an image policy; this benchmark times lowdim policies")
    policy.train()
    batch = {"obs": torch.randn(args.batch_size, cfg.horizon, cfg.obs_dim),  # (B, T, Do)
             "action": torch.randn(args.batch_size, cfg.horizon, cfg.action_dim)}  # (B, T, Da)
    times = {"float32": [], "bf16": []}
    for _ in range(args.rounds):
        for name in times:
            times[name] += time_steps(policy, batch, args.steps, bf16=name == "bf16")
    medians = {name: statistics.median(t) * 1000 for name, t in times.items()}
    for name, ms in medians.items():
        print(f"{name:8s} {ms:8.1f} ms per step (median of {len(times[name])})")
    print(f"bf16 speedup {medians['float32'] / medians['bf16']:.2f}x")
    return medians


if __name__ == "__main__":
    main()
