"""The original Push-T keypoints, in the local frame of the T block (and of the agent disc).

The original `PymunkKeypointManager.create_from_pusht_env` derived them once, procedurally:
draw the body alone (block at (256, 300), agent at (256, 400), angle 0) on a white 512x512 pygame
canvas with the Push-T DrawOptions, take every non-white pixel (x, y) as a point of the body,
move it to the body frame (subtract the body position), pick keypoints by farthest point sampling
from a random start pixel, and add a uniform [0, 1) jitter; one `np.random.default_rng(0)` drives
the block (9 keypoints) then the agent (3 keypoints). `derive_local_keypoints()` re-runs that
procedure; its result is stored below so that building an env needs no drawing (the tests check
that both agree).

World keypoints of a body at pose (x, y, angle): R(angle) @ local + (x, y), i.e. pymunk's
`body.local_to_world`, with (x, y) the body origin (not its center of gravity).
"""

import numpy as np

BLOCK_LOCAL_KEYPOINTS = np.array(
    [
        [9.26978671, 90.04097352],
        [-60.98347236, -1.18672976],
        [60.91275558, -1.39336422],
        [-0.27050344, 25.54362499],
        [-14.06492758, 122.81585355],
        [39.0027385, 32.85740428],
        [-39.96641442, 32.72965545],
        [-16.82434438, 62.86317892],
        [23.54146122, -1.70028811],
    ]
)  # (9, 2)

AGENT_LOCAL_KEYPOINTS = np.array(
    [
        [-9.57731278, 3.02831967],
        [14.12428328, -2.32937559],
        [-1.35281049, -14.38461489],
    ]
)  # (3, 2)


def keypoints_to_world(local_keypoints: np.ndarray, x: float, y: float, angle: float) -> np.ndarray:
    """(N, 2) body-frame keypoints -> (N, 2) world coordinates for a body at pose (x, y, angle)."""
    cos, sin = np.cos(angle), np.sin(angle)
    rot = np.array([[cos, -sin], [sin, cos]])
    return local_keypoints @ rot.T + np.array([x, y])


def farthest_point_sampling(points: np.ndarray, n_points: int, start_idx: int) -> np.ndarray:
    """Greedy farthest point sampling of `n_points` rows of `points` (P, 2), starting at `start_idx`."""
    chosen = [points[start_idx]]
    min_dist = np.linalg.norm(points - chosen[0], axis=-1)
    for _ in range(n_points - 1):
        chosen.append(points[np.argmax(min_dist)])
        min_dist = np.minimum(min_dist, np.linalg.norm(points - chosen[-1], axis=-1))
    return np.array(chosen)


def derive_local_keypoints(
    n_block_keypoints: int = 9, n_agent_keypoints: int = 3, seed: int = 0
) -> dict[str, np.ndarray]:
    """Re-run the original keypoint derivation (needs pygame and pymunk); returns {'block', 'agent'}."""
    import pygame
    import pymunk
    from gym_pusht.envs.pusht import PushTEnv as GymPushTEnv
    from gym_pusht.envs.pymunk_override import DrawOptions

    rng = np.random.default_rng(seed)
    keypoints = {}
    for name, n_keypoints in (("block", n_block_keypoints), ("agent", n_agent_keypoints)):
        space = pymunk.Space()
        if name == "block":
            body, _ = GymPushTEnv.add_tee(space, (256, 300), 0)
        else:
            body = GymPushTEnv.add_circle(space, (256, 400), 15)
        canvas = pygame.Surface((512, 512))
        canvas.fill(pygame.Color("white"))
        space.debug_draw(DrawOptions(canvas))
        image = pygame.surfarray.array3d(canvas).transpose(1, 0, 2)  # (H, W, 3)
        rows, cols = np.nonzero((image != 255).any(axis=-1))  # row-major order, as the original mask
        local_points = np.stack([cols, rows], axis=-1) - np.array(body.position)
        start_idx = rng.choice(len(local_points))
        chosen = farthest_point_sampling(local_points.astype(np.float64), n_keypoints, start_idx)
        keypoints[name] = chosen + rng.uniform(0, 1, size=chosen.shape)
    return keypoints
