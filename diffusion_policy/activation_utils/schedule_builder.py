"""Recorded activations -> similarity matrices, ACS schedules, BU ranking, plots (all files).

get_optimal_cache_update_steps.py records one (N, B, ...) activation array per block -- N denoising
steps, B calibration observations (batch entries) -- and hands the dict to `build_schedule_assets`,
which writes the layout described in schedule_files.py. Costs are aggregated over the observations
as the mean of each observation's own matrix (so B copies of one observation give its schedule).
"""

from pathlib import Path

import numpy as np

from diffusion_policy.activation_utils.acs import optimal_update_steps
from diffusion_policy.activation_utils.bubbling_union import add_final_step, bubbling_union, select_bu_blocks
from diffusion_policy.activation_utils.schedule_files import (
    Schedule,
    bubbling_union_path,
    save_activation_summary,
    save_bubbling_union_info,
    save_schedule,
    save_similarity_matrices,
    schedule_path,
    summarize_activations,
)
from diffusion_policy.activation_utils.similarity import METRICS, similarity_matrix


def per_observation(acts: np.ndarray) -> list[np.ndarray]:
    """(N, B, ...) -> B arrays (N, ...), one per calibration observation."""
    acts = np.asarray(acts)
    if acts.ndim < 2:
        raise ValueError(f"activations must be (N, B, ...) with a batch axis, got shape {acts.shape}")
    return [acts[:, b] for b in range(acts.shape[1])]


def compute_similarity_matrices(activations: dict[str, np.ndarray], metric: str) -> dict[str, np.ndarray]:
    """Block name -> (N, N) matrix of `metric`, the mean over the calibration observations."""
    return {name: np.mean([similarity_matrix(a, metric) for a in per_observation(acts)], axis=0)
            for name, acts in activations.items()}


def compute_forecast_steps(activations: dict[str, np.ndarray], metric: str, num_caches: int
                           ) -> tuple[dict[str, list[int]], dict[str, list[bool]]]:
    """Block name -> update steps of least order-1 forecast error, and per update step whether its
    segment forecasts (forecast_schedule.py)."""
    from diffusion_policy.activation_utils.forecast_schedule import forecast_update_steps

    chosen = {name: forecast_update_steps(per_observation(acts), metric, num_caches)
              for name, acts in activations.items()}
    return {name: steps for name, (steps, _) in chosen.items()}, {name: flags for name, (_, flags) in chosen.items()}


def compute_acs_steps(matrices: dict[str, np.ndarray], metric: str, num_caches: int) -> dict[str, list[int]]:
    """Block name -> ACS update steps for `num_caches` caches."""
    maximize = METRICS[metric]
    return {name: optimal_update_steps(matrix, num_caches, maximize) for name, matrix in matrices.items()}


def schedule_assets_exist(output_dir, metrics: list[str], num_caches_list: list[int],
                          strategies: tuple[str, ...] = ("reuse",)) -> bool:
    """True if every schedule and BU file for these metrics, cache counts and strategies is on disk."""
    paths = [bubbling_union_path(output_dir, m) for m in metrics]
    paths += [schedule_path(output_dir, m, k, st) for m in metrics for k in num_caches_list for st in strategies]
    return all(p.is_file() for p in paths)


def existing_schedules_fit(output_dir, metrics: list[str], num_caches_list: list[int], model_fingerprint: str,
                           num_steps: int, strategies: tuple[str, ...] = ("reuse",), calibration: dict | None = None
                           ) -> bool:
    """True if every schedule and BU file is on disk, valid, and computed for this model and step count;
    False if none of them exists (or only some, all fitting). A corrupt file or one computed for
    another model or step count raises ValueError (one line): replacing it is the caller's decision."""
    from diffusion_policy.activation_utils.schedule_files import load_bubbling_union_info, load_schedule

    present = 0
    for metric in metrics:
        if bubbling_union_path(output_dir, metric).is_file():
            load_bubbling_union_info(output_dir, metric)  # raises on a corrupt file
            present += 1
        for num_caches in num_caches_list:
            for strategy in strategies:
                path = schedule_path(output_dir, metric, num_caches, strategy)
                if not path.is_file():
                    continue
                schedule = load_schedule(path, metric, num_caches, strategy)  # raises on a corrupt file
                schedule.check_model(model_fingerprint)
                if schedule.num_steps != num_steps:
                    raise ValueError(f"{path} was computed for {schedule.num_steps} denoising steps, this policy "
                                     f"runs {num_steps}")
                if calibration is not None and schedule.calibration and schedule.calibration != calibration:
                    return False  # other calibration observations: recomputed (nothing foreign about it)
                present += 1
    return present == len(metrics) * (1 + len(num_caches_list) * len(strategies))


def build_schedule_assets(
    output_dir,
    activations: dict[str, np.ndarray],
    metrics: list[str],
    num_caches_list: list[int],
    num_layers: int,
    scheduler: dict,
    checkpoint_sha256: str,
    model_fingerprint: str,
    num_bu_blocks_for_plots: int = 3,
    make_plots: bool = True,
    strategies: tuple[str, ...] = ("reuse",),
    calibration: dict | None = None,
) -> list[Path]:
    """Write original/, optimal_steps/<metric>/ and (optionally) plots/ under output_dir.

    activations: block name -> (N, B, ...) float array, in model order, index 0 = noisiest step, B the
        calibration observations.
    strategies: 'reuse' (ACS schedules) and/or 'forecast' (forecast_schedule.py; metrics cosine, l2, mse).
    calibration: where the observations came from (recorded in every schedule).
    scheduler: {"class", "num_train_timesteps", "num_inference_steps"} of the policy's scheduler.
    model_fingerprint: checkpoint.weights_fingerprint of the recorded policy (the cache compares it).
    Returns the written paths.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {sorted(METRICS)}")
    if "forecast" in strategies:
        from diffusion_policy.activation_utils.forecast_schedule import FORECAST_METRICS

        if any(m not in FORECAST_METRICS for m in metrics):
            raise ValueError(f"--strategy forecast needs --metric in {', '.join(FORECAST_METRICS)}, got "
                             f"{', '.join(metrics)}")
    if not activations:
        raise ValueError("no activations recorded; check that the recording hooks are installed")

    summary = summarize_activations(activations)
    num_steps = summary["num_steps"]
    block_names = summary["block_names"]
    block_errors = {name: summary["blocks"][name]["caching_error"] for name in block_names}
    written = [save_activation_summary(output_dir, summary)]

    if make_plots:
        from diffusion_policy.activation_visualization import plots

        plot_dir = Path(output_dir) / "plots"
        selected = select_bu_blocks(block_errors, num_bu_blocks_for_plots)
        written.append(plots.plot_block_errors(block_errors, plot_dir / "block_errors.png", selected=selected))

    for metric in metrics:
        matrices = compute_similarity_matrices(activations, metric)
        written.append(save_similarity_matrices(output_dir, metric, matrices))
        written.append(save_bubbling_union_info(output_dir, metric, block_errors, num_steps))
        if make_plots:
            written.append(plots.plot_similarity_heatmaps(matrices, plot_dir / f"similarity_{metric}.png", metric))
        for num_caches, strategy in [(k, st) for k in num_caches_list for st in strategies]:
            if strategy == "reuse":
                steps, segments = compute_acs_steps(matrices, metric, num_caches), {}
            else:
                steps, segments = compute_forecast_steps(activations, metric, num_caches)
            schedule = Schedule(
                metric=metric,
                num_caches=num_caches,
                num_steps=num_steps,
                num_layers=num_layers,
                scheduler=dict(scheduler),
                checkpoint_sha256=checkpoint_sha256,
                model_fingerprint=model_fingerprint,
                block_names=block_names,
                steps=steps,
                block_errors=block_errors,
                strategy=strategy,
                forecast_order=1 if strategy == "forecast" else 0,
                forecast_segments=segments,
                calibration=dict(calibration or {}),
            )
            written.append(save_schedule(schedule, output_dir))
            if make_plots and strategy == "reuse":
                bu_steps = add_final_step(bubbling_union(steps, block_errors, num_bu_blocks_for_plots), num_steps)
                raster_path = plot_dir / f"update_steps_{metric}_num_caches_{num_caches}.png"
                written.append(plots.plot_update_raster(steps, bu_steps, num_steps, raster_path))
    return written
