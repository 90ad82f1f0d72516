"""How well a network can learn a demonstration set's actions from its observations: a quick proxy for
choosing between scripted experts before spending hours of training on one.

An MLP regresses the action at each step from the observation at that step (observations scaled to
[-1, 1] per dimension as Diffusion Policy's limits normaliser does, actions standardised), trained on the
first episodes and scored on the last ones. An expert whose action is a discontinuous or
history-dependent function of the observation scores worse; the score says nothing about multimodality,
which a diffusion policy handles and a regressor does not, so compare experts with it, not tasks.

`policy_agreement` scores a trained lowdim policy the same way: the first action it would execute at
held-out steps (sampled from its To-step observation window) against the demonstrated one.

`closed_loop_learnability` asks the closed-loop question instead: the MLP, fitted on every episode, drives
the env itself (a new action every step) and is scored by the task's success; with an expert that is a
function of the observation alone, DAgger rounds add the expert's labels of the states the MLP visits and
refit. A regressor that fails in closed loop on an expert's data bounds what a policy trained on the same
data should be expected to do, whatever its training budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

OFF_DIRECTION_COSINE = 0.5  # a predicted action more than 60 degrees off its label counts as off direction


@dataclass
class LearnabilityResult:
    train_episodes: int | None  # episodes the MLP was fitted on; None for a policy (trained on its own split)
    heldout_episodes: int  # the last episodes, whose steps are scored
    heldout_abs_error: float  # mean |predicted - label| per action dimension, in action units
    label_abs_mean: float  # mean |label| per action dimension, in action units
    off_direction_share: float  # share of held-out steps whose predicted action is > 60 degrees off

    def summary(self) -> str:
        fitted = "policy" if self.train_episodes is None else f"MLP fitted on {self.train_episodes} episodes"
        return (f"last {self.heldout_episodes} episodes ({fitted}): "
                f"off direction {self.off_direction_share:.1%}, abs error {self.heldout_abs_error:.4g} "
                f"(|label| {self.label_abs_mean:.4g}, ratio {self.heldout_abs_error / self.label_abs_mean:.2f})")


def _split_step(episode_ends: np.ndarray, heldout_episodes: int) -> int:
    """The first step of the last `heldout_episodes` episodes."""
    if not 0 < heldout_episodes < len(episode_ends):
        raise ValueError(f"heldout_episodes must be in 1..{len(episode_ends) - 1}, got {heldout_episodes}")
    return int(episode_ends[-heldout_episodes - 1])


def _score(predicted: np.ndarray, label: np.ndarray, train_episodes: int | None,
           heldout_episodes: int) -> LearnabilityResult:
    norms = np.linalg.norm(predicted, axis=1) * np.linalg.norm(label, axis=1)
    cosine = (predicted * label).sum(1) / np.maximum(norms, 1e-12)
    return LearnabilityResult(
        train_episodes=train_episodes,
        heldout_episodes=heldout_episodes,
        heldout_abs_error=float(np.abs(predicted - label).mean()),
        label_abs_mean=float(np.abs(label).mean()),
        off_direction_share=float((cosine < OFF_DIRECTION_COSINE).mean()),
    )


@dataclass(frozen=True)
class RegressorConfig:
    """The MLP of every learnability measure: 3 hidden Mish layers, AdamW on the mean squared error."""

    epochs: int = 15  # passes over the steps it is fitted on
    hidden: int = 512
    batch_size: int = 256
    learning_rate: float = 1e-3
    seed: int = 0  # initialisation and batch order


def action_learnability(
    obs: np.ndarray,  # (N, Do): every step of every episode, in episode order
    action: np.ndarray,  # (N, Da)
    episode_ends: np.ndarray,  # (E,): exclusive end index of each episode
    heldout_episodes: int = 25,
    config: RegressorConfig = RegressorConfig(),
) -> LearnabilityResult:
    obs, action = np.asarray(obs, np.float32), np.asarray(action, np.float32)
    episode_ends = np.asarray(episode_ends, np.int64)
    if obs.ndim != 2 or action.ndim != 2 or len(obs) != len(action) or episode_ends[-1] != len(obs):
        raise ValueError(f"need obs (N, Do), action (N, Da) and episode_ends ending at N; got {obs.shape}, "
                         f"{action.shape}, last end {episode_ends[-1]}")
    if action.shape[1] < 2:
        raise ValueError("the off-direction share needs actions of at least 2 dimensions")
    split = _split_step(episode_ends, heldout_episodes)
    regressor = fit_action_regressor(obs[:split], action[:split], config)
    predicted = regressor.predict(obs[split:])  # (M, Da)
    return _score(predicted, action[split:], len(episode_ends) - heldout_episodes, heldout_episodes)


@dataclass
class ActionRegressor:
    """An MLP observation -> action, with its [-1, 1] observation scaling and action standardisation."""

    net: torch.nn.Module
    obs_low: np.ndarray  # (Do,)
    obs_high: np.ndarray  # (Do,)
    action_mean: np.ndarray  # (Da,)
    action_std: np.ndarray  # (Da,)

    def scale(self, obs: np.ndarray) -> torch.Tensor:
        scaled = 2 * (np.asarray(obs, np.float32) - self.obs_low) / np.maximum(self.obs_high - self.obs_low, 1e-6) - 1
        return torch.from_numpy(scaled.astype(np.float32))

    def predict(self, obs: np.ndarray) -> np.ndarray:
        """(M, Do) -> (M, Da)"""
        with torch.no_grad():
            return (self.net(self.scale(obs)).numpy() * self.action_std + self.action_mean).astype(np.float32)


def fit_action_regressor(
    obs: np.ndarray,  # (N, Do)
    action: np.ndarray,  # (N, Da)
    config: RegressorConfig = RegressorConfig(),
) -> ActionRegressor:
    obs, action = np.asarray(obs, np.float32), np.asarray(action, np.float32)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(obs.shape[1], config.hidden), torch.nn.Mish(),
        torch.nn.Linear(config.hidden, config.hidden), torch.nn.Mish(),
        torch.nn.Linear(config.hidden, config.hidden), torch.nn.Mish(),
        torch.nn.Linear(config.hidden, action.shape[1]),
    )  # fmt: skip
    regressor = ActionRegressor(net, obs.min(0), obs.max(0), action.mean(0), np.maximum(action.std(0), 1e-9))
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.learning_rate)
    x = regressor.scale(obs)
    y = torch.from_numpy((action - regressor.action_mean) / regressor.action_std)
    for _ in tqdm(range(config.epochs), desc="fitting actions", leave=False):
        for batch in torch.randperm(len(obs), generator=generator).split(config.batch_size):
            loss = torch.nn.functional.mse_loss(net(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return regressor


@dataclass
class ClosedLoopResult:
    dagger_round: int  # 0: fitted on the demonstrations alone
    samples: int  # (observation, action) pairs the MLP was fitted on
    episodes: int  # test episodes driven by the MLP
    p1: float  # share of test episodes with a total reward > 0.4 (block pushing: one block delivered)
    p2: float  # share with a total reward > 0.9 (block pushing: both blocks)

    def summary(self) -> str:
        return (f"DAgger round {self.dagger_round}: MLP fitted on {self.samples} steps, closed loop over "
                f"{self.episodes} test episodes: p2 {self.p2:.2f}, p1 {self.p1:.2f}")


def _drive(regressor: ActionRegressor, env, seeds: Sequence[int], max_steps: int,
           expert: Callable[[np.ndarray], np.ndarray] | None) -> tuple[list[float], list, list]:
    """Episodes driven by the regressor; per episode the sum of its unique rewards (the block pushing
    runner's score), and, with an expert, the visited observations and the expert's actions there."""
    totals, visited, labels = [], [], []
    for seed in tqdm(seeds, desc="driving the env", leave=False):
        obs, _ = env.reset(seed=int(seed))
        rewards = set()
        for _ in range(max_steps):
            if expert is not None:
                visited.append(np.asarray(obs, np.float32))
                labels.append(np.asarray(expert(obs), np.float32))
            obs, reward, terminated, truncated, _ = env.step(regressor.predict(np.asarray(obs)[None])[0])
            rewards.add(round(float(reward), 2))
            if terminated or truncated:
                break
        totals.append(sum(rewards))
    return totals, visited, labels


def closed_loop_learnability(
    obs: np.ndarray,  # (N, Do)
    action: np.ndarray,  # (N, Da)
    env,  # gymnasium-style: reset(seed=) -> (obs, info); step(action) -> (obs, reward, terminated, truncated, info)
    test_seeds: Sequence[int],
    max_steps: int,
    expert: Callable[[np.ndarray], np.ndarray] | None = None,  # labels visited states; needed for DAgger
    dagger_rounds: int = 0,
    dagger_seeds: Sequence[int] = (),  # the env seeds each DAgger round drives (then labels)
    config: RegressorConfig = RegressorConfig(),
    report: Callable[[ClosedLoopResult], None] | None = None,  # called with each round's result as it comes
) -> list[ClosedLoopResult]:
    """Fit on every step, drive the test episodes; then per DAgger round drive `dagger_seeds`, add the
    expert's labels of the visited states, refit from scratch and drive the test episodes again."""
    if dagger_rounds < 0 or (dagger_rounds and (expert is None or not len(dagger_seeds))):
        raise ValueError("DAgger rounds need an expert (a function of the observation) and seeds to drive")
    obs, action = np.asarray(obs, np.float32), np.asarray(action, np.float32)
    results = []
    for dagger_round in range(dagger_rounds + 1):
        regressor = fit_action_regressor(obs, action, config)
        totals, _, _ = _drive(regressor, env, test_seeds, max_steps, expert=None)
        totals = np.asarray(totals)
        results.append(ClosedLoopResult(dagger_round, len(obs), len(totals), float((totals > 0.4).mean()),
                                        float((totals > 0.9).mean())))
        if report is not None:
            report(results[-1])
        if dagger_round < dagger_rounds:
            _, visited, labels = _drive(regressor, env, dagger_seeds, max_steps, expert=expert)
            obs, action = np.concatenate([obs, np.stack(visited)]), np.concatenate([action, np.stack(labels)])
    return results


def policy_agreement(
    policy: torch.nn.Module,  # a lowdim policy: predict_action({"obs": (B, To, Do)})["action"] (B, Ta, Da)
    obs: np.ndarray,  # (N, Do)
    action: np.ndarray,  # (N, Da)
    episode_ends: np.ndarray,  # (E,)
    n_obs_steps: int,
    heldout_episodes: int = 25,
    max_steps: int = 512,
    batch_size: int = 128,
    seed: int = 0,
) -> LearnabilityResult:
    """The policy's first executed action at up to `max_steps` held-out steps (drawn with `seed`; the
    observation window padded with the episode's first observation, as the training windows are)."""
    obs, action = np.asarray(obs, np.float32), np.asarray(action, np.float32)
    episode_ends = np.asarray(episode_ends, np.int64)
    split = _split_step(episode_ends, heldout_episodes)
    rng = np.random.default_rng(seed)
    steps = np.arange(split, len(obs))
    steps = np.sort(rng.choice(steps, size=min(max_steps, len(steps)), replace=False))
    starts = np.concatenate([[0], episode_ends[:-1]])[np.searchsorted(episode_ends, steps, side="right")]
    window = np.maximum(steps[:, None] + np.arange(1 - n_obs_steps, 1)[None, :], starts[:, None])  # (M, To)
    device = next(policy.parameters()).device
    torch.manual_seed(seed)
    predicted = []
    with torch.no_grad():
        for batch in tqdm(np.array_split(window, max(1, -(-len(window) // batch_size))), desc="policy", leave=False):
            result = policy.predict_action({"obs": torch.from_numpy(obs[batch]).to(device)})
            predicted.append(result["action"][:, 0].float().cpu().numpy())
    return _score(np.concatenate(predicted), action[steps], None, heldout_episodes)
