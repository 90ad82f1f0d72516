"""Scripted Block Pushing expert: push each block into its own target.

Reads the env's 16-d observation (`block_pushing_multimodal.OBS_LAYOUT`) and returns the 2-d action:
the xy displacement of the effector target. Per episode it picks which block goes first and which
target each block gets (both at random, among assignments whose straight push paths stay clear
of the other block), so the data shows the task's several modes. For each block:

1. approach: go to a point behind the block on the line from the target through the block,
   detouring around blocks that lie on the way;
2. push: aim just inside the back face of the block and advance toward the target, re-aiming
   every step so the block is steered onto the target;
3. back off along the push line before heading for the next block.

Two options make the data easier to imitate (the second training recipe of Block Pushing):
`BlockPushExpert(style="nominal")` uses one fixed style instead of drawing speeds and distances per
episode (hidden per-episode variables the policy would otherwise have to infer), and
`collect_block_push_episode(..., execution_noise=s)` perturbs the executed action only, recording the
expert's clean action as the label (DART, Laskey et al. 2017): the data then covers the states just
off the expert's path, with the correction the expert makes from each.
"""

from dataclasses import dataclass

import numpy as np

from diffusion_policy.demos.expert import ScriptedExpert

BLOCK_XY = (slice(0, 2), slice(3, 5))  # obs slices of block 0 / block 1 position
EFFECTOR_XY = slice(6, 8)
EFFECTOR_TARGET_XY = slice(8, 10)
TARGET_XY = (slice(10, 12), slice(13, 15))
BLOCK_CLEARANCE = 0.06  # m between the pusher and a block centre while moving around it
PATH_CLEARANCE = 0.07  # m a pushed block's straight path must keep from the other block
STAY_DELIVERED = 0.04  # m: a delivered block that drifts farther from its target is pushed again


def _distance_to_segment(point, start, end) -> float:
    segment = end - start
    t = np.clip(np.dot(point - start, segment) / max(np.dot(segment, segment), 1e-12), 0.0, 1.0)
    return float(np.linalg.norm(point - (start + t * segment)))


@dataclass
class BlockPushStyle:
    """Per-episode variation of the expert."""

    transit_speed: float  # m per step while moving freely
    push_speed: float  # m per step while pushing
    behind: float  # m behind the block centre where the approach ends
    aim_depth: float  # m behind the block centre the pusher aims at while pushing
    target_tolerance: float  # m from the target centre at which a block counts as delivered
    action_noise: float  # std (m) of noise on each action

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "BlockPushStyle":
        return cls(
            transit_speed=rng.uniform(0.02, 0.03),
            push_speed=rng.uniform(0.012, 0.02),
            behind=rng.uniform(0.06, 0.08),
            aim_depth=rng.uniform(0.02, 0.03),
            target_tolerance=rng.uniform(0.01, 0.02),
            action_noise=rng.uniform(0.0, 0.002),
        )

    @classmethod
    def nominal(cls) -> "BlockPushStyle":
        """One fixed style: mid-range distances, a slow push, no noise on the labels."""
        return cls(transit_speed=0.025, push_speed=0.014, behind=0.07, aim_depth=0.025,
                   target_tolerance=0.015, action_noise=0.0)  # fmt: skip


class BlockPushExpert(ScriptedExpert):
    """`act(obs (16,)) -> action (2,)`; call `reset()` at the start of every episode."""

    style_class = BlockPushStyle
    STYLES = ("random", "nominal")

    def __init__(self, rng: np.random.Generator | None = None, style: str = "random"):
        if style not in self.STYLES:
            raise ValueError(f"unknown block pushing expert style {style!r}; use one of {', '.join(self.STYLES)}")
        self.style_kind = style
        super().__init__(rng)

    def reset(self, rng: np.random.Generator | None = None) -> None:
        super().reset(rng)  # draws a random style (keeps the generator's stream the same for both kinds)
        if self.style_kind == "nominal":
            self.style = BlockPushStyle.nominal()

    def start_episode(self) -> None:
        self.plan = None  # [(block index, target index)] in pushing order
        self.delivered = set()  # indices into plan of the blocks already in their targets
        self.stage = 0  # index into plan of the block being handled
        self.phase = "approach"  # approach -> push -> back_off, per block
        self.back_off_from = None
        self.back_off_direction = None

    # ----- planning -----
    def _choose_plan(self, obs: np.ndarray) -> list[tuple[int, int]]:
        blocks = [obs[s] for s in BLOCK_XY]
        targets = [obs[s] for s in TARGET_XY]
        plans = []
        for first in (0, 1):
            for first_target in (0, 1):
                second, second_target = 1 - first, 1 - first_target
                # the first push passes the waiting block; the second passes the delivered one
                clear = (
                    _distance_to_segment(blocks[second], blocks[first], targets[first_target]) > PATH_CLEARANCE
                    and _distance_to_segment(targets[first_target], blocks[second], targets[second_target])
                    > PATH_CLEARANCE
                )
                if clear:
                    plans.append([(first, first_target), (second, second_target)])
        if not plans:  # fall back to the uncrossed assignment, nearer block first
            by_x = np.argsort([b[0] for b in blocks]), np.argsort([t[0] for t in targets])
            pairs = list(zip(by_x[0].tolist(), by_x[1].tolist()))
            pairs.sort(key=lambda bt: np.linalg.norm(blocks[bt[0]] - obs[EFFECTOR_XY]))
            return pairs
        return plans[int(self.rng.integers(len(plans)))]

    # ----- control -----
    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        if self.plan is None:
            self.plan = self._choose_plan(obs)
        if self.phase != "back_off":
            self._update_stage(obs)
        desired = obs[EFFECTOR_XY] if self.stage >= len(self.plan) else self._desired_effector(obs)
        command = obs[EFFECTOR_TARGET_XY]
        action = desired - command + self.rng.normal(0.0, self.style.action_noise, size=2)
        return action.astype(np.float32)

    def _update_stage(self, obs: np.ndarray) -> None:
        """Forget deliveries of blocks that were knocked out of their targets; handle the first
        block not delivered."""
        for i in list(self.delivered):
            block_idx, target_idx = self.plan[i]
            if np.linalg.norm(obs[BLOCK_XY[block_idx]] - obs[TARGET_XY[target_idx]]) > STAY_DELIVERED:
                self.delivered.discard(i)
        undone = [i for i in range(len(self.plan)) if i not in self.delivered]
        stage = undone[0] if undone else len(self.plan)
        if stage != self.stage:
            self.stage, self.phase = stage, "approach"

    def _step_toward(self, effector, goal, speed: float) -> np.ndarray:
        offset = goal - effector
        distance = np.linalg.norm(offset)
        return goal if distance <= speed else effector + offset * speed / distance

    def _desired_effector(self, obs: np.ndarray) -> np.ndarray:
        style = self.style
        block_idx, target_idx = self.plan[self.stage]
        block, target = obs[BLOCK_XY[block_idx]], obs[TARGET_XY[target_idx]]
        effector = obs[EFFECTOR_XY]
        to_target = target - block
        remaining = np.linalg.norm(to_target)
        direction = to_target / max(remaining, 1e-9)

        if self.phase == "back_off":
            if np.linalg.norm(effector - self.back_off_from) > 0.05:
                self.phase = "approach"
                self._update_stage(obs)
                return effector if self.stage >= len(self.plan) else self._desired_effector(obs)
            return self._step_toward(effector, effector - self.back_off_direction * 0.1, style.transit_speed)

        if remaining < style.target_tolerance:
            self.delivered.add(self.stage)
            self.phase = "back_off"
            self.back_off_from = effector.copy()
            self.back_off_direction = direction
            return self._desired_effector(obs)

        # where the pusher is relative to the push line: along < 0 is behind the block
        relative = effector - block
        along = float(np.dot(relative, direction))
        lateral = float(relative[0] * direction[1] - relative[1] * direction[0])
        if self.phase == "push" and (along > -0.015 or abs(lateral) > 0.025):
            self.phase = "approach"  # the block slipped away from the pusher: line up again
        if self.phase == "approach":
            behind = block - direction * style.behind
            if np.linalg.norm(effector - behind) < 0.01:
                self.phase = "push"
            else:
                return self._step_toward(effector, self._next_waypoint(obs, effector, behind), style.transit_speed)
        aim = block - direction * style.aim_depth
        return self._step_toward(effector, aim + direction * style.push_speed * 2, style.push_speed)

    def _next_waypoint(self, obs: np.ndarray, effector, goal) -> np.ndarray:
        """`goal`, or a detour point beside the first block that sits on the straight way there."""
        for block_slice in BLOCK_XY:
            block = obs[block_slice]
            if np.linalg.norm(goal - block) < BLOCK_CLEARANCE * 0.9:
                continue  # the goal itself is next to this block (it is the one being pushed)
            if _distance_to_segment(block, effector, goal) < BLOCK_CLEARANCE:
                path = goal - effector
                side = np.array([-path[1], path[0]]) / max(np.linalg.norm(path), 1e-9)
                if np.dot(effector - block, side) < 0:
                    side = -side  # pass on the side the pusher is already on
                return block + side * BLOCK_CLEARANCE * 1.5
        return goal


def collect_block_push_episode(
    env, expert: BlockPushExpert, seed: int, max_steps: int = 350, execution_noise: float = 0.0
) -> dict | None:
    """One expert episode on `BlockPushMultimodal` from the scene of `seed`; None unless both blocks
    end in different targets within `max_steps`. Returns obs (T, 16) and the expert's action (T, 2),
    float32; the env executes that action plus N(0, execution_noise^2) per coordinate (m)."""
    if execution_noise < 0:
        raise ValueError(f"execution_noise must be >= 0, got {execution_noise}")
    expert.reset(np.random.default_rng(seed))  # the episode depends on `seed` alone
    execution_rng = np.random.default_rng([seed, 1])  # apart, so the expert's own draws do not change
    obs, _ = env.reset(seed=seed)
    observations, actions = [], []
    for _ in range(max_steps):
        action = expert.act(obs)
        observations.append(obs)
        actions.append(action)
        executed = action
        if execution_noise:
            executed = (action + execution_rng.normal(0.0, execution_noise, size=action.shape)).astype(np.float32)
        obs, reward, terminated, _, _ = env.step(executed)
        if terminated:  # success, or two blocks entering targets in the same step (0.98)
            if not np.isclose(reward, 0.51):
                return None
            return {"obs": np.asarray(observations, np.float32), "action": np.asarray(actions, np.float32)}
    return None
