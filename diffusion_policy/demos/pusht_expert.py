"""Scripted Push-T expert: a sampling push planner that runs candidate pushes on a copy of the physics.

Push-T is quasi-static: gym-pusht's space damping of 0 removes all block velocity every physics
step, so the block only moves while the agent pushes it, and a push's outcome depends only on the
block pose and where/how the agent pushes. Each decision:

1. candidates: contact points every 8 px along the T's outline, pushed along the inward normal
   or tilted by +-0.5 rad, from a start a few px off the surface; near the goal also short, slow
   "fine" pushes from 1 px off the surface;
2. rank: one long push per candidate on `PushTModel` (a copy of gym-pusht's physics); the pose
   error after every step scores "stop here" (cheap: it ignores the agent's overshoot after stopping);
3. verify: the best few (candidate, length) pairs are re-run exactly as they will be executed (push,
   then hold) and the best score wins: error after the push + `step_cost` per step spent, transit
   included. Only pushes that lower the error count; when none does, the lowest-error pushes are
   tried in random order to leave the local minimum.

The error is the mean distance (px) between the block's 9 keypoints and the goal's. The agent reaches
the start around the block (shortest path on a visibility graph of the inflated T), following a
"carrot" target a few tens of px ahead of it (smooth targets, like a mouse-driven human demo), lines
up behind the start and then follows push targets that advance along the push direction. Success
(coverage > 0.95) ends the episode.
"""

import heapq
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from shapely.geometry import LineString, Point, Polygon

from diffusion_policy.demos.expert import ScriptedExpert
from diffusion_policy.env.pusht.keypoints import BLOCK_LOCAL_KEYPOINTS, keypoints_to_world

GOAL_POSE = np.array([256.0, 256.0, np.pi / 4])  # gym-pusht's goal: block origin x, y, angle
AGENT_RADIUS = 15.0
# Agent centre limits: walls at 5 / 506 (radius 2) plus the agent's radius and a margin.
AGENT_MIN, AGENT_MAX = 24.0, 487.0
# The T in its local frame (gym-pusht add_tee, scale 30): bar 120 x 30, stem 30 x 90; CCW order.
T_OUTLINE = np.array(
    [(-60, 0), (60, 0), (60, 30), (15, 30), (15, 120), (-15, 120), (-15, 30), (-60, 30)], dtype=np.float64
)


def pose_to_world(local_points: np.ndarray, pose) -> np.ndarray:
    return keypoints_to_world(local_points, pose[0], pose[1], pose[2])


def pose_error(block_pose, goal_pose=GOAL_POSE) -> float:
    """Mean distance (px) between the block's keypoints and the goal's."""
    diff = pose_to_world(BLOCK_LOCAL_KEYPOINTS, block_pose) - pose_to_world(BLOCK_LOCAL_KEYPOINTS, goal_pose)
    return float(np.linalg.norm(diff, axis=-1).mean())


def block_polygon(block_pose) -> Polygon:
    return Polygon(pose_to_world(T_OUTLINE, block_pose))


def outline_contacts(spacing: float, corner_margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Contact points along the T's outline (local frame) and their outward normals, (N, 2) each."""
    points, normals = [], []
    for start, end in zip(T_OUTLINE, np.roll(T_OUTLINE, -1, axis=0)):
        edge = end - start
        length = np.linalg.norm(edge)
        normal = np.array([edge[1], -edge[0]]) / length  # CCW outline: outward is to the right
        n_points = max(1, int((length - 2 * corner_margin) // spacing) + 1)
        for s in np.linspace(corner_margin, length - corner_margin, n_points):
            points.append(start + edge * s / length)
            normals.append(normal)
    return np.array(points), np.array(normals)


class PushTModel:
    """gym-pusht's physics (same bodies, PD law and substeps) without its reward/observation work.

    Drives a private gym-pusht env through its pymunk bodies (`agent`, `block`, `space`); the tests
    check that it reproduces the real env step for step."""

    def __init__(self):
        from gym_pusht.envs.pusht import PushTEnv as GymPushTEnv

        self.sim = GymPushTEnv(obs_type="state")
        self.sim.reset(seed=0)
        self.substeps = int(1 / (self.sim.dt * self.sim.control_hz))

    def set_state(self, agent_pos, block_pose, agent_vel=(0.0, 0.0)) -> None:
        self.sim.agent.position = tuple(map(float, agent_pos))
        self.sim.agent.velocity = tuple(map(float, agent_vel))
        # angle first: setting the angle turns the block about its centre of gravity
        self.sim.block.angle = float(block_pose[2])
        self.sim.block.position = (float(block_pose[0]), float(block_pose[1]))
        self.sim.block.velocity = (0.0, 0.0)
        self.sim.block.angular_velocity = 0.0

    def step(self, target) -> None:
        """One control step toward `target` (2,): PD acceleration, then a physics substep, x10."""
        sim = self.sim
        target = np.asarray(target, dtype=np.float64)
        for _ in range(self.substeps):
            position = np.array(sim.agent.position)
            velocity = np.array(sim.agent.velocity)
            acceleration = sim.k_p * (target - position) - sim.k_v * velocity
            sim.agent.velocity = tuple(velocity + acceleration * sim.dt)
            sim.space.step(sim.dt)

    def block_pose(self) -> np.ndarray:
        return np.array([*self.sim.block.position, self.sim.block.angle])


@dataclass
class PushTEpisodeStyle:
    """Per-episode variation of the expert."""

    push_speed: float  # px the push target advances per step (normal pushes)
    carrot: float  # px the transit target leads the agent by
    step_cost: float  # px of error one extra step is worth when choosing a push
    contact_gap: float  # px between the agent and the block before a normal push
    hold_steps: int  # steps the push target is held at its end
    action_noise: float  # std (px) of noise on the transit targets (push targets stay exact)

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "PushTEpisodeStyle":
        return cls(
            push_speed=rng.uniform(6.0, 10.0),
            carrot=rng.uniform(30.0, 45.0),
            step_cost=rng.uniform(0.15, 0.4),
            contact_gap=rng.uniform(4.0, 8.0),
            hold_steps=int(rng.integers(1, 3)),
            action_noise=rng.uniform(0.0, 1.0),
        )


@dataclass(frozen=True)
class PushMode:
    """How a push is executed: target speed, longest push, start gap, and how still the agent must
    be at the start (distance px, speed px/s) before the push begins."""

    speed: float
    max_steps: int
    gap: float
    arrive_distance: float
    arrive_speed: float


# Short, slow pushes from right next to the block that finish the alignment.
FINE_MODE = PushMode(speed=1.5, max_steps=8, gap=1.0, arrive_distance=1.0, arrive_speed=10.0)
FINE_ERROR = 20.0  # px: below this error the fine pushes are considered too
MIN_GAIN = 0.2  # px: a push must lower the error by this much to count as progress
APPROACH_DISTANCE = 10.0  # px: the agent lines up this far behind a push start
N_FALLBACK = 40  # candidates looked at when none of the cheapest pushes is reachable and helps
MAX_STEPS_ON_WAYPOINT = 30  # a transit that has not reached its next waypoint by then is replanned


@dataclass
class Push:
    start: np.ndarray  # (2,) agent position the push starts from
    direction: np.ndarray  # (2,) unit push direction
    mode: PushMode
    targets: list  # (2,) push targets, one per step (the last ones hold still)
    predicted_error: float


class PushTPlanner:
    """Chooses the next push from the block pose; see the module docstring."""

    def __init__(
        self,
        style: PushTEpisodeStyle,
        rng: np.random.Generator,
        n_verify: int = 6,
        tilts=(-0.5, 0.0, 0.5),
        spacing: float = 8.0,
    ):
        self.style = style
        self.rng = rng
        self.n_verify = n_verify
        self.tilts = tilts
        self.model = PushTModel()
        self.contacts, self.normals = outline_contacts(spacing, corner_margin=3.0)
        self.normal_mode = PushMode(
            speed=style.push_speed, max_steps=20, gap=style.contact_gap, arrive_distance=3.0, arrive_speed=50.0
        )

    def _candidates(self, block_pose, modes) -> list[tuple[np.ndarray, np.ndarray, PushMode]]:
        """(start (2,), direction (2,), mode) in world coordinates, for starts the agent can stand on."""
        contacts = pose_to_world(self.contacts, block_pose)
        normals = pose_to_world(self.normals, (0.0, 0.0, block_pose[2]))
        polygon = block_polygon(block_pose)
        candidates = []
        for contact, normal in zip(contacts, normals):
            for tilt in self.tilts:
                cos, sin = np.cos(tilt), np.sin(tilt)
                direction = -np.array([cos * normal[0] - sin * normal[1], sin * normal[0] + cos * normal[1]])
                for mode in modes:
                    start = contact + normal * AGENT_RADIUS - direction * mode.gap
                    if np.any(start < AGENT_MIN) or np.any(start > AGENT_MAX):
                        continue
                    if polygon.distance(Point(start)) < AGENT_RADIUS + 0.5:
                        continue
                    candidates.append((start, direction, mode))
        return candidates

    def _push_targets(self, start, direction, mode: PushMode, n_push: int) -> list:
        targets = [start + direction * mode.speed * (k + 1) for k in range(n_push)]
        targets += [targets[-1]] * self.style.hold_steps
        return [np.clip(t, AGENT_MIN, AGENT_MAX) for t in targets]

    def _transit_steps(self, agent_pos, start) -> float:
        return float(np.linalg.norm(start - agent_pos)) / self.style.carrot + 4

    def _verify(self, candidate, n_push: int, block_pose) -> Push:
        """Run the push exactly as it will be executed."""
        start, direction, mode = candidate
        targets = self._push_targets(start, direction, mode, n_push)
        self.model.set_state(start, block_pose)
        for target in targets:
            self.model.step(target)
        return Push(start, direction, mode, targets, pose_error(self.model.block_pose()))

    def plan(self, agent_pos, block_pose) -> Iterator[Push]:
        """Pushes worth trying from here, best first (none when no push start is free)."""
        current_error = pose_error(block_pose)
        modes = [self.normal_mode] + ([FINE_MODE] if current_error < FINE_ERROR else [])
        candidates = self._candidates(block_pose, modes)
        rollouts = []  # (error, score, candidate index, push steps) of "stop after k steps"
        for idx, (start, direction, mode) in enumerate(candidates):
            transit_steps = self._transit_steps(agent_pos, start)
            self.model.set_state(start, block_pose)
            for k in range(mode.max_steps):
                self.model.step(np.clip(start + direction * mode.speed * (k + 1), AGENT_MIN, AGENT_MAX))
                error = pose_error(self.model.block_pose())
                rollouts.append((error, error + self.style.step_cost * (k + 1 + transit_steps), idx, k + 1))
                if error > current_error + 20.0:  # pushing the wrong way: longer is only worse
                    break

        def score(push: Push) -> float:
            steps = len(push.targets) + self._transit_steps(agent_pos, push.start)
            return push.predicted_error + self.style.step_cost * steps

        def makes_progress(push: Push) -> bool:
            return push.predicted_error < current_error - MIN_GAIN

        by_score = sorted(rollouts, key=lambda r: r[1])[: self.n_verify]
        pushes = [self._verify(candidates[idx], k, block_pose) for _, _, idx, k in by_score]
        yield from sorted(filter(makes_progress, pushes), key=score)
        # The cheap pushes are unreachable or make no progress: go through the lowest-error push of
        # every candidate; when even those do not help, try them in random order to get out of the
        # local minimum.
        tried, stalled = {idx for _, _, idx, _ in by_score}, []
        for _, _, idx, k in sorted(rollouts, key=lambda r: r[0]):
            if idx in tried:
                continue
            tried.add(idx)
            push = self._verify(candidates[idx], k, block_pose)
            if makes_progress(push):
                yield push
            else:
                stalled.append(push)
            if len(tried) >= N_FALLBACK:
                break
        yield from (stalled[i] for i in self.rng.permutation(len(stalled)))


def free_point_near(agent_pos, block: Polygon, clearance: float) -> np.ndarray | None:
    """The nearest point (searching 16 directions, growing radii) that is `clearance` px farther
    from the block than the agent radius and reachable in a straight line without pushing into it."""
    grazed = block.buffer(AGENT_RADIUS - 1.0)
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    for radius in (4.0, 8.0, 12.0, 18.0, 25.0, 35.0, 50.0):
        for angle in angles:
            point = np.clip(agent_pos + radius * np.array([np.cos(angle), np.sin(angle)]), AGENT_MIN, AGENT_MAX)
            if block.distance(Point(point)) < AGENT_RADIUS + clearance:
                continue
            if not LineString([agent_pos, point]).intersects(grazed):
                return point
    return None


def transit_waypoints(agent_pos, goal, block_pose, clearance: float = 6.0) -> list[np.ndarray] | None:
    """Waypoints from the agent to `goal` that keep the agent off the block (None: no way found).

    Shortest path on the visibility graph of the T inflated by the agent radius + `clearance`;
    segments only need to stay clear of the block by the agent radius (+0.3 px), so a push start
    right next to the surface stays reachable. An agent touching the block first steps off it."""
    block = block_polygon(block_pose)
    blocked = block.buffer(AGENT_RADIUS + 0.3, quad_segs=8)  # where the agent's centre cannot go
    agent_pos = np.asarray(agent_pos, dtype=np.float64)
    waypoints = []
    if blocked.contains(Point(agent_pos)):
        agent_pos = free_point_near(agent_pos, block, clearance=2.0)
        if agent_pos is None:
            return None
        waypoints.append(agent_pos)

    def visible(a, b) -> bool:
        return not LineString([a, b]).intersects(blocked)

    # corners of the inflated T, pulled inside the walls (those that then touch the block are dropped)
    ring = np.clip(
        block.buffer(AGENT_RADIUS + clearance, join_style="mitre").exterior.coords[:-1], AGENT_MIN, AGENT_MAX
    )
    nodes = [agent_pos, np.asarray(goal, dtype=np.float64)]
    nodes += [p for p in ring if not blocked.contains(Point(p))]
    # Dijkstra from node 0 (agent) to node 1 (goal)
    dist, previous, done = {0: 0.0}, {}, set()
    queue = [(0.0, 0)]
    while queue:
        d, i = heapq.heappop(queue)
        if i in done:
            continue
        done.add(i)
        if i == 1:
            break
        for j in range(len(nodes)):
            if j in done or not visible(nodes[i], nodes[j]):
                continue
            candidate = d + float(np.linalg.norm(nodes[j] - nodes[i]))
            if candidate < dist.get(j, np.inf):
                dist[j] = candidate
                previous[j] = i
                heapq.heappush(queue, (candidate, j))
    if 1 not in done:
        return None
    path, i = [], 1
    while i != 0:
        path.append(nodes[i])
        i = previous[i]
    return waypoints + path[::-1]


class PushTExpert(ScriptedExpert):
    """Closed-loop expert: `act(agent_pos, agent_vel, block_pose)` -> (2,) target position.

    `gave_up` turns True after `max_plans` planning rounds (each costs ~0.5 s of CPU), which only
    episodes stuck in a corner need; the collector then abandons the episode."""

    style_class = PushTEpisodeStyle

    def __init__(self, rng: np.random.Generator | None = None, max_plans: int = 60):
        self.max_plans = max_plans
        super().__init__(rng)

    def start_episode(self) -> None:
        self.planner = PushTPlanner(self.style, self.rng)
        self.push = None
        self.waypoints = []  # transit to the push start; its last entry is the start
        self.push_targets = []
        self.planned_block_pose = None
        self.n_plans = 0
        self.steps_on_waypoint = 0

    @property
    def gave_up(self) -> bool:
        return self.n_plans > self.max_plans

    def _plan(self, agent_pos, block_pose) -> bool:
        """Pick the best push whose start the agent can reach; False if there is none."""
        self.n_plans += 1
        for push in self.planner.plan(agent_pos, block_pose):
            # line up behind the start so that the agent arrives moving along the push direction
            approach = np.clip(push.start - push.direction * APPROACH_DISTANCE, AGENT_MIN, AGENT_MAX)
            waypoints = transit_waypoints(agent_pos, approach, block_pose)
            if waypoints is not None:
                waypoints.append(push.start)
            else:
                waypoints = transit_waypoints(agent_pos, push.start, block_pose)
            if waypoints is not None:
                self.push = push
                self.waypoints = waypoints
                self.push_targets = list(push.targets)
                self.planned_block_pose = np.array(block_pose)
                self.steps_on_waypoint = 0
                return True
        return False

    def _block_moved(self, block_pose) -> bool:
        delta = np.abs(np.asarray(block_pose) - self.planned_block_pose)
        return delta[:2].max() > 0.5 or delta[2] > 0.005

    def act(self, agent_pos, agent_vel, block_pose) -> np.ndarray:
        agent_pos = np.asarray(agent_pos, dtype=np.float64)
        # replan when the transit bumped the block or got stuck on its way to a waypoint
        if self.waypoints and (self._block_moved(block_pose) or self.steps_on_waypoint > MAX_STEPS_ON_WAYPOINT):
            self.waypoints, self.push_targets = [], []
        if not self.waypoints and not self.push_targets and not self._plan(agent_pos, block_pose):
            # boxed in (e.g. between the block and a wall): step away from the block and retry
            away = free_point_near(agent_pos, block_polygon(block_pose), clearance=15.0)
            return agent_pos.copy() if away is None else away
        while self.waypoints:
            waypoint = self.waypoints[0]
            if len(self.waypoints) > 1:
                arrived = np.linalg.norm(waypoint - agent_pos) < 5.0
            else:  # the push start: arrive close and nearly still
                arrived = (
                    np.linalg.norm(waypoint - agent_pos) < self.push.mode.arrive_distance
                    and np.linalg.norm(agent_vel) < self.push.mode.arrive_speed
                )
            if arrived:
                self.waypoints.pop(0)
                self.steps_on_waypoint = 0
                continue
            self.steps_on_waypoint += 1
            offset = waypoint - agent_pos
            step = np.linalg.norm(offset)
            if step <= self.style.carrot:
                return np.clip(waypoint, AGENT_MIN, AGENT_MAX)
            target = agent_pos + offset * self.style.carrot / step
            return np.clip(target + self.rng.normal(0.0, self.style.action_noise, size=2), AGENT_MIN, AGENT_MAX)
        return self.push_targets.pop(0)


def collect_pusht_episode(env, expert: PushTExpert, seed: int, max_steps: int = 300) -> dict | None:
    """One expert episode on `env` (PushTKeypointsEnv or PushTImageEnv) from the scene of `seed`;
    None unless the T reaches coverage > 0.95 within `max_steps` (and before the expert gives up).

    Returns the replay-zarr keys of the original dataset: state (T, 5) [agent x, y, block x, y,
    angle mod 2pi], keypoint (T, 9, 2), action (T, 2), n_contacts (T, 1) (contacts during the
    step), and img (T, 96, 96, 3) uint8 for an image env; observations are those before each action.
    """
    expert.reset(np.random.default_rng(seed))  # the episode depends on `seed` alone
    obs, info = env.reset(seed=seed)
    steps = {"state": [], "keypoint": [], "action": [], "n_contacts": []}
    if isinstance(obs, dict):
        steps["img"] = []
    for _ in range(max_steps):
        block_pose = np.asarray(info["block_pose"], dtype=np.float64)
        action = expert.act(info["pos_agent"], info["vel_agent"], block_pose)
        steps["state"].append([*info["pos_agent"], block_pose[0], block_pose[1], block_pose[2] % (2 * np.pi)])
        steps["keypoint"].append(pose_to_world(BLOCK_LOCAL_KEYPOINTS, block_pose))
        steps["action"].append(action)
        if "img" in steps:
            steps["img"].append(np.round(np.moveaxis(obs["image"], 0, -1) * 255).astype(np.uint8))
        obs, _, terminated, _, info = env.step(action)
        steps["n_contacts"].append([info["n_contacts"]])
        if expert.gave_up:
            return None
        if terminated:
            episode = {key: np.asarray(value, dtype=np.float32) for key, value in steps.items() if key != "img"}
            if "img" in steps:
                episode["img"] = np.stack(steps["img"])
            return episode
    return None
