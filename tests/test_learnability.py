"""bac-learnability: a smooth function of the observation is learnable, labels independent of it are not;
a policy is scored on the first action of its padded observation window."""

import numpy as np
import pytest
import torch
import zarr
from checkpoint_fixtures import write_tiny_checkpoint

from diffusion_policy.cli import learnability as cli
from diffusion_policy.demos.learnability import (
    RegressorConfig,
    _drive,
    action_learnability,
    closed_loop_learnability,
    fit_action_regressor,
    policy_agreement,
)


def _episodes(labels: str, n_episodes: int = 40, length: int = 50, seed: int = 0):
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-1, 1, size=(n_episodes * length, 6)).astype(np.float32)  # (N, Do)
    if labels == "smooth":  # a rotation of two observation dims, plus a gentle nonlinearity
        action = np.stack([obs[:, 0] - 0.5 * obs[:, 1], obs[:, 1] + 0.3 * np.sin(2 * obs[:, 2])], axis=1)
    else:  # unrelated to the observation
        action = rng.normal(size=(len(obs), 2))
    ends = np.arange(1, n_episodes + 1) * length
    return obs, action.astype(np.float32), ends


def test_smooth_labels_score_far_better_than_unrelated_ones():
    smooth = action_learnability(*_episodes("smooth"), heldout_episodes=8, config=RegressorConfig(epochs=6, hidden=64))
    unrelated = action_learnability(*_episodes("unrelated"), heldout_episodes=8, config=RegressorConfig(epochs=6, hidden=64))
    assert (smooth.train_episodes, smooth.heldout_episodes) == (32, 8)
    assert smooth.off_direction_share < 0.05
    assert smooth.heldout_abs_error < 0.3 * smooth.label_abs_mean
    assert unrelated.off_direction_share > 0.25  # a random 2-d direction is > 60 degrees off 2/3 of the time
    assert unrelated.heldout_abs_error > 0.8 * unrelated.label_abs_mean


def test_bad_arguments_are_refused():
    obs, action, ends = _episodes("smooth", n_episodes=4)
    with pytest.raises(ValueError, match="heldout_episodes"):
        action_learnability(obs, action, ends, heldout_episodes=4)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        action_learnability(obs, action[:, :1], ends, heldout_episodes=1)
    with pytest.raises(ValueError, match="episode_ends"):
        action_learnability(obs, action, ends - 1, heldout_episodes=1)


def test_cli_reads_a_replay_buffer_and_names_a_wrong_one(tmp_path, capsys):
    obs, action, ends = _episodes("smooth", n_episodes=12)
    root = zarr.open(str(tmp_path / "demos.zarr"), mode="w")
    root["data/obs"], root["data/action"], root["meta/episode_ends"] = obs, action, ends
    assert cli.main(["--dataset", str(tmp_path / "demos.zarr"), "--episodes", "10", "--heldout", "2",
                     "--epochs", "2", "--threads", "1"]) == 0
    assert "last 2 episodes (MLP fitted on 8 episodes)" in capsys.readouterr().out
    assert cli.main(["--dataset", str(tmp_path / "demos.zarr"), "--obs_key", "keypoint", "--threads", "1"]) == 2
    assert "data/keypoint" in capsys.readouterr().err
    assert cli.main(["--dataset", str(tmp_path / "demos.zarr"), "--episodes", "13", "--threads", "1"]) == 2
    assert "--episodes must be in 1..12" in capsys.readouterr().err


class _WindowDifference(torch.nn.Module):
    """A stand-in lowdim policy whose first action is the change over its observation window (B, To, Do)."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the module a device

    def predict_action(self, obs_dict):
        obs = obs_dict["obs"]
        first = obs[:, -1, :2] - obs[:, 0, :2]  # (B, 2)
        return {"action": torch.stack([first, -first], dim=1)}  # (B, Ta=2, 2)


def test_policy_agreement_scores_the_first_action_of_the_padded_observation_window():
    obs, _, ends = _episodes("smooth", n_episodes=6, length=10)
    starts = np.concatenate([[0], ends[:-1]])
    # the demonstrated action: obs[t] - obs[max(t - 2, episode start)], the To=3 window padded at the start
    start_of = starts[np.searchsorted(ends, np.arange(len(obs)), side="right")]
    label = obs[:, :2] - obs[np.maximum(np.arange(len(obs)) - 2, start_of), :2]
    label[label == 0] = 1e-3  # the first step of each episode: no change over its window
    exact = policy_agreement(_WindowDifference(), obs, label, ends, n_obs_steps=3, heldout_episodes=2, max_steps=15)
    assert exact.train_episodes is None and exact.heldout_episodes == 2
    assert exact.off_direction_share <= 2 / 15  # at most the episodes' first steps disagree
    assert exact.heldout_abs_error < 2e-3
    # a window off by one step (To 2) no longer matches
    shifted = policy_agreement(_WindowDifference(), obs, label, ends, n_obs_steps=2, heldout_episodes=2, max_steps=20)
    assert shifted.heldout_abs_error > 10 * exact.heldout_abs_error


def test_cli_scores_a_checkpoint_and_refuses_a_dataset_of_other_dimensions(tmp_path, capsys):
    checkpoint = write_tiny_checkpoint(tmp_path / "lift.ckpt", "lift_lowdim")  # obs 19, action 7
    rng = np.random.default_rng(0)
    root = zarr.open(str(tmp_path / "lift.zarr"), mode="w")
    root["data/obs"] = rng.uniform(-1, 1, (60, 19)).astype(np.float32)
    root["data/action"] = rng.uniform(-1, 1, (60, 7)).astype(np.float32)
    root["meta/episode_ends"] = np.array([20, 40, 60])
    args = ["--dataset", str(tmp_path / "lift.zarr"), "-c", str(checkpoint), "--heldout", "1", "--max_steps", "8",
            "--threads", "1"]
    assert cli.main(args) == 0
    assert "last 1 episodes (policy)" in capsys.readouterr().out
    root["data/obs7"] = rng.uniform(-1, 1, (60, 7)).astype(np.float32)
    assert cli.main(args + ["--obs_key", "obs7"]) == 2
    assert "takes obs_dim 19 and action_dim 7, the dataset has 7 and 7" in capsys.readouterr().err


class _ReachEnv:
    """A point that moves by its action (at most 0.1 per step) toward a goal; reward 1 and the episode ends
    within 0.05 of it. obs (4,): position, goal."""

    def reset(self, seed):
        rng = np.random.default_rng(seed)
        self.position, self.goal = rng.uniform(-1, 1, 2), rng.uniform(-1, 1, 2)
        return self._obs(), {}

    def _obs(self):
        return np.concatenate([self.position, self.goal]).astype(np.float32)

    def step(self, action):
        self.position = self.position + np.clip(action, -0.1, 0.1)
        reached = np.linalg.norm(self.position - self.goal) < 0.05
        return self._obs(), float(reached), bool(reached), False, {}


def _reach_expert(obs):
    return np.clip(obs[2:] - obs[:2], -0.1, 0.1).astype(np.float32)


def _reach_demos(labels: str, episodes: int = 60):
    env, rng, obs, action = _ReachEnv(), np.random.default_rng(1), [], []
    for seed in range(episodes):
        o, _ = env.reset(seed)
        for _ in range(40):
            a = _reach_expert(o) if labels == "expert" else rng.uniform(-0.1, 0.1, 2).astype(np.float32)
            obs.append(o)
            action.append(a)
            o, _, done, _, _ = env.step(_reach_expert(o))  # the expert drives; only the labels differ
            if done:
                break
    return np.stack(obs), np.stack(action)


def test_closed_loop_regressor_succeeds_on_expert_labels_and_fails_on_unrelated_ones():
    test_seeds = range(1000, 1020)
    expert = closed_loop_learnability(*_reach_demos("expert"), _ReachEnv(), test_seeds, max_steps=60,
                                      config=RegressorConfig(epochs=150))
    unrelated = closed_loop_learnability(*_reach_demos("unrelated"), _ReachEnv(), test_seeds, max_steps=60,
                                         config=RegressorConfig(epochs=150))
    assert len(expert) == 1 and expert[0].dagger_round == 0 and expert[0].episodes == 20
    assert expert[0].p2 >= 0.8 and expert[0].p1 == expert[0].p2  # the reach reward is all or nothing
    assert unrelated[0].p2 <= 0.2


def test_dagger_rounds_add_the_expert_labels_of_every_visited_state():
    obs, action = _reach_demos("unrelated", episodes=20)
    reported = []
    results = closed_loop_learnability(obs, action, _ReachEnv(), range(1000, 1004), max_steps=30,
                                       config=RegressorConfig(epochs=2),
                                       expert=_reach_expert, dagger_rounds=2, dagger_seeds=range(2000, 2005),
                                       report=reported.append)
    assert [r.dagger_round for r in results] == [0, 1, 2] and results[0].samples == len(obs)
    assert reported == results  # each round reported as it completes
    assert len(obs) < results[1].samples <= len(obs) + 5 * 30  # at most max_steps states per driven episode
    assert results[1].samples < results[2].samples
    # what a round adds: every state the regressor visits, labelled by the expert there
    regressor = fit_action_regressor(obs, action, RegressorConfig(epochs=1))
    totals, visited, labels = _drive(regressor, _ReachEnv(), [2000, 2001], 30, expert=_reach_expert)
    assert len(totals) == 2 and len(visited) == len(labels) and len(visited) > 2
    np.testing.assert_array_equal(np.stack(labels), np.stack([_reach_expert(o) for o in visited]))
    first, _ = _ReachEnv().reset(2000)
    np.testing.assert_array_equal(visited[0], first)
    with pytest.raises(ValueError, match="need an expert"):
        closed_loop_learnability(obs, action, _ReachEnv(), range(3), max_steps=5, dagger_rounds=1,
                                 dagger_seeds=range(3))


def test_cli_drives_block_pushing_with_dagger_and_names_wrong_flags(tmp_path, capsys):
    rng = np.random.default_rng(0)
    root = zarr.open(str(tmp_path / "bp.zarr"), mode="w")
    root["data/obs"] = rng.uniform(-0.3, 0.3, size=(200, 16)).astype(np.float32)
    root["data/action"] = rng.uniform(-0.01, 0.01, size=(200, 2)).astype(np.float32)
    root["meta/episode_ends"] = np.array([100, 200])
    args = ["--dataset", str(tmp_path / "bp.zarr"), "--n_test", "1", "--max_steps", "4", "--epochs", "1",
            "--threads", "1"]
    assert cli.main(args + ["--dagger_rounds", "1", "--dagger_episodes", "1", "--expert_style", "smooth"]) == 0
    out = capsys.readouterr().out
    assert "DAgger round 0: MLP fitted on 200 steps, closed loop over 1 test episodes" in out
    assert "DAgger round 1: MLP fitted on 204 steps" in out  # 4 visited states of one driven episode
    assert cli.main(args + ["--dagger_rounds", "1"]) == 2
    assert "--dagger_rounds needs --expert_style" in capsys.readouterr().err
    obs, action, ends = _episodes("smooth", n_episodes=4)
    root = zarr.open(str(tmp_path / "other.zarr"), mode="w")
    root["data/obs"], root["data/action"], root["meta/episode_ends"] = obs, action, ends
    assert cli.main(["--dataset", str(tmp_path / "other.zarr"), "--n_test", "1", "--threads", "1"]) == 2
    assert "drives Block Pushing (obs 16, action 2)" in capsys.readouterr().err
