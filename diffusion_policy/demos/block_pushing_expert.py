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

`BlockPushExpert(style="memoryless")` goes further (the fourth training recipe): the fixed style, and every
decision read from the current observation alone, so the action is a function of the observation,
which is all a policy sees. Which block goes to which target first is the clear assignment of least
travel (ties: the lower block index); a block within the delivery tolerance of a target is done (no
memory of deliveries); the pusher pushes while it is in the corridor behind its block (no push/approach
hysteresis) and backs away from a done block it is still next to (no back-off phase).

`BlockPushExpert(style="smooth")` (the fifth recipe) keeps the memoryless choice of block and target and
replaces its switches by a velocity field continuous in the observation, which a network fits better
(`bac-learnability --episodes 250` on 500-episode DART sets, noise 0.006: 8.1 % of held-out actions more than
60 degrees off, vs 15.1 % for memoryless and 18.0 % for nominal): the pusher moves along the push
direction, steered back onto the line through block and target, blended (by how far behind the block
and how near its line the pusher is) with an approach toward the point behind the block, around every
other block (and the current one, from the side or front) by a radial and tangential field.
"""

from dataclasses import dataclass

import numpy as np

from diffusion_policy.demos.expert import ScriptedExpert

BLOCK_XY = (slice(0, 2), slice(3, 5))  # obs slices of block 0 / block 1 position
EFFECTOR_XY = slice(6, 8)
EFFECTOR_TARGET_XY = slice(8, 10)
TARGET_XY = (slice(10, 12), slice(13, 15))
BLOCK_CLEARANCE = 0.06  # m between the pusher and a block centre while moving around it
# the "smooth" style's field
OBSTACLE_RADIUS = 0.075  # m from a block centre inside which the field pushes the pusher out at full strength
OBSTACLE_BAND = 0.05  # m over which that strength falls to zero outside OBSTACLE_RADIUS
ALIGNED_LATERAL = 0.012  # m off the push line up to which the pusher counts as fully aligned (then 1 cm to none)
LATERAL_GAIN = 1.0  # share of the pusher's distance from the push line corrected per step while pushing
PATH_CLEARANCE = 0.07  # m a pushed block's straight path must keep from the other block
STAY_DELIVERED = 0.04  # m: a delivered block that drifts farther from its target is pushed again


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-9)


def _push_frame(effector, block, target) -> tuple[np.ndarray, float, float]:
    """The push direction (unit, block -> target) and the pusher's place on the push line: `along` it
    (< 0: behind the block) and `lateral` to it (> 0: left of it)."""
    direction = _unit(target - block)
    relative = effector - block
    return direction, float(relative @ direction), float(relative @ np.array([-direction[1], direction[0]]))


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
    OBSERVATION_ONLY_STYLES = ("memoryless", "smooth")  # the action is a function of the observation alone
    STYLES = ("random", "nominal", *OBSERVATION_ONLY_STYLES)

    def __init__(self, rng: np.random.Generator | None = None, style: str = "random"):
        if style not in self.STYLES:
            raise ValueError(f"unknown block pushing expert style {style!r}; use one of {', '.join(self.STYLES)}")
        self.style_kind = style
        super().__init__(rng)

    def reset(self, rng: np.random.Generator | None = None) -> None:
        super().reset(rng)  # draws a random style (keeps the generator's stream the same for both kinds)
        if self.style_kind != "random":
            self.style = BlockPushStyle.nominal()

    def start_episode(self) -> None:
        self.plan = None  # [(block index, target index)] in pushing order
        self.delivered = set()  # indices into plan of the blocks already in their targets
        self.stage = 0  # index into plan of the block being handled
        self.phase = "approach"  # approach -> push -> back_off, per block
        self.back_off_from = None
        self.back_off_direction = None

    # ----- planning -----
    def _clear_plans(self, obs: np.ndarray) -> list[list[tuple[int, int]]]:
        """The assignments [(first block, its target), (second block, its target)] whose straight push
        paths keep clear of the other block."""
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
        return plans

    def _fallback_plan(self, obs: np.ndarray) -> list[tuple[int, int]]:
        """The uncrossed assignment (blocks and targets matched in x order), nearer block first."""
        blocks = [obs[s] for s in BLOCK_XY]
        by_x = np.argsort([b[0] for b in blocks]), np.argsort([obs[t][0] for t in TARGET_XY])
        pairs = list(zip(by_x[0].tolist(), by_x[1].tolist()))
        pairs.sort(key=lambda bt: np.linalg.norm(blocks[bt[0]] - obs[EFFECTOR_XY]))
        return pairs

    def _choose_plan(self, obs: np.ndarray) -> list[tuple[int, int]]:
        plans = self._clear_plans(obs)
        if not plans:
            return self._fallback_plan(obs)
        return plans[int(self.rng.integers(len(plans)))]

    def _least_travel_plan(self, obs: np.ndarray) -> list[tuple[int, int]]:
        """The clear assignment with the shortest pusher travel: to behind the first block, its push,
        on to behind the second block, its push (the first clear one on ties)."""
        effector = obs[EFFECTOR_XY]

        def travel(plan) -> float:
            total, position = 0.0, effector
            for block_idx, target_idx in plan:
                block, target = obs[BLOCK_XY[block_idx]], obs[TARGET_XY[target_idx]]
                direction = _unit(target - block)
                total += np.linalg.norm(block - direction * self.style.behind - position)
                total += np.linalg.norm(target - block)
                position = target - direction * self.style.aim_depth
            return float(total)

        plans = self._clear_plans(obs)
        return min(plans, key=travel) if plans else self._fallback_plan(obs)

    # ----- control -----
    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        if self.style_kind in self.OBSERVATION_ONLY_STYLES:
            if self.style_kind == "memoryless":
                desired = self._memoryless_desired_effector(obs)
            else:
                desired = self._smooth_desired_effector(obs)
            return (desired - obs[EFFECTOR_TARGET_XY]).astype(np.float32)  # the nominal style has no action noise
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
        remaining = np.linalg.norm(target - block)
        direction, along, lateral = _push_frame(effector, block, target)

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

        if self.phase == "push" and (along > -0.015 or abs(lateral) > 0.025):
            self.phase = "approach"  # the block slipped away from the pusher: line up again
        if self.phase == "approach":
            behind = block - direction * style.behind
            if np.linalg.norm(effector - behind) < 0.01:
                self.phase = "push"
            else:
                return self._step_toward(effector, self._next_waypoint(obs, effector, behind), style.transit_speed)
        return self._push_step(effector, block, direction)

    def _push_step(self, effector, block, direction) -> np.ndarray:
        """Toward a point `aim_depth` behind the block's centre plus two pushes, at push speed."""
        aim = block - direction * self.style.aim_depth
        return self._step_toward(effector, aim + direction * self.style.push_speed * 2, self.style.push_speed)

    def _delivered(self, obs: np.ndarray) -> dict[int, int]:
        """{block index: target index} of the blocks within the delivery tolerance of a target."""
        return {b: t for b in (0, 1) for t in (0, 1)
                if np.linalg.norm(obs[BLOCK_XY[b]] - obs[TARGET_XY[t]]) < self.style.target_tolerance}

    def _next_push(self, obs: np.ndarray, done: dict[int, int]) -> tuple[int, int]:
        """(block, target) to push now: the other pair once one block is delivered, else the first
        push of the clear plan of least travel."""
        if len(done) == 1:
            (done_block, done_target), = done.items()
            return 1 - done_block, 1 - done_target
        return self._least_travel_plan(obs)[0]

    def _smooth_desired_effector(self, obs: np.ndarray) -> np.ndarray:
        """The next effector position from this observation alone, continuous in it except where the
        plan of least travel changes (style "smooth")."""
        style = self.style
        effector = obs[EFFECTOR_XY]
        done = self._delivered(obs)
        if len(done) == 2 and len(set(done.values())) == 2:
            return effector  # both delivered: the episode ends
        block_idx, target_idx = self._next_push(obs, done)
        block, target = obs[BLOCK_XY[block_idx]], obs[TARGET_XY[target_idx]]
        direction, along, lateral = _push_frame(effector, block, target)
        normal = np.array([-direction[1], direction[0]])

        # pushing: along the push direction, steered back onto the line through block and target
        push = direction * style.push_speed - normal * np.clip(lateral * LATERAL_GAIN, -0.01, 0.01)
        # approaching: toward the point behind the block, around blocks by a radial + tangential field
        behind = block - direction * style.behind
        approach = _unit(behind - effector)
        for other_idx, block_slice in enumerate(BLOCK_XY):
            offset = effector - obs[block_slice]
            strength = np.clip((OBSTACLE_RADIUS + OBSTACLE_BAND - np.linalg.norm(offset)) / OBSTACLE_BAND, 0.0, 1.0)
            if other_idx == block_idx:  # the block to push is no obstacle from behind, where the push starts
                strength *= np.clip((along + 0.015) / 0.02, 0.0, 1.0)
            if strength > 0:
                radial = _unit(offset)
                tangent = np.array([-radial[1], radial[0]])
                # circle the block on the side that leads to the goal (a soft sign: no jump where the
                # goal lies straight across the block)
                tangent = tangent * np.clip(tangent @ _unit(behind - effector) / 0.2, -1.0, 1.0)
                approach = approach + strength * (0.8 * radial + 1.2 * tangent)
        # full speed unless attraction and repulsion nearly cancel (slower there instead of a jump in direction)
        approach = approach / max(float(np.linalg.norm(approach)), 1.0) * style.transit_speed

        # push weight: 1 from 3.5 cm behind the block back to `behind` (0 at 1.5 cm and at behind + 2 cm),
        # times 1 within ALIGNED_LATERAL of its line (0 at 1 cm more)
        weight_along = np.clip((-along - 0.015) / 0.02, 0.0, 1.0) * np.clip((style.behind + 0.02 + along) / 0.02, 0.0, 1.0)
        weight_lateral = np.clip(1.0 - (abs(lateral) - ALIGNED_LATERAL) / 0.01, 0.0, 1.0)
        weight = weight_along * weight_lateral
        return effector + weight * push + (1.0 - weight) * approach

    def _memoryless_desired_effector(self, obs: np.ndarray) -> np.ndarray:
        """The next effector position from this observation alone (style "memoryless")."""
        style = self.style
        effector = obs[EFFECTOR_XY]
        blocks = [obs[s] for s in BLOCK_XY]
        targets = [obs[s] for s in TARGET_XY]
        done = self._delivered(obs)
        if len(done) == 2 and len(set(done.values())) == 2:
            return effector  # both delivered: the episode ends
        for block_idx in done:  # step away from a delivered block before heading on
            offset = effector - blocks[block_idx]
            if np.linalg.norm(offset) < BLOCK_CLEARANCE:
                away = offset / max(np.linalg.norm(offset), 1e-9)
                return self._step_toward(effector, blocks[block_idx] + away * BLOCK_CLEARANCE * 1.2,
                                         style.transit_speed)
        block_idx, target_idx = self._next_push(obs, done)
        block, target = blocks[block_idx], targets[target_idx]
        direction, along, lateral = _push_frame(effector, block, target)
        behind_block = -(style.behind + 0.01) < along < -0.015 and abs(lateral) < 0.02
        if not behind_block:
            behind = block - direction * style.behind
            return self._step_toward(effector, self._next_waypoint(obs, effector, behind), style.transit_speed)
        return self._push_step(effector, block, direction)

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
