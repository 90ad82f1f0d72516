"""PNG plots of BAC's analysis: similarity heatmaps, update rasters, block errors, speed vs error.

Figures are built with matplotlib.figure.Figure directly (no pyplot, no global
backend state) and written atomically (temp file + os.replace).
"""

from pathlib import Path

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from diffusion_policy.activation_utils.bubbling_union import BLOCK_NAME_PATTERN
from diffusion_policy.activation_utils.schedule_files import write_atomic

BLOCK_KINDS = ("sa", "ca", "ffn")


def _save_png(fig: Figure, path) -> Path:
    return write_atomic(Path(path), lambda f: fig.savefig(f, format="png", dpi=100))


def _layer_kind_grid(names: list[str]) -> dict[str, tuple[int, int]] | None:
    """(row=layer, col=kind) of each block if every name is 'decoder.layers.{i}.{kind}', else None."""
    grid = {}
    for name in names:
        match = BLOCK_NAME_PATTERN.match(name)
        if match is None:
            return None
        grid[name] = (int(match.group(1)), BLOCK_KINDS.index(match.group(2)))
    return grid


def plot_similarity_heatmaps(matrices: dict[str, np.ndarray], path, metric: str) -> Path:
    """Grid of per-block (N, N) heatmaps: one row per decoder layer, columns SA / CA / FFN."""
    if not matrices:
        raise ValueError("no similarity matrices to plot")
    names = list(matrices)
    grid = _layer_kind_grid(names)
    if grid is None:  # unknown naming: plain row-major grid
        ncols = min(3, len(names))
        grid = {name: divmod(i, ncols) for i, name in enumerate(names)}
    nrows = max(r for r, _ in grid.values()) + 1
    ncols = max(c for _, c in grid.values()) + 1

    fig = Figure(figsize=(3.2 * ncols, 2.8 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for name, (row, col) in grid.items():
        ax = axes[row, col]
        ax.set_axis_on()
        image = ax.imshow(np.asarray(matrices[name]), cmap="viridis", origin="upper", interpolation="nearest")
        colorbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        colorbar.ax.tick_params(labelsize=6)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("step t", fontsize=7)
        ax.set_ylabel("cache step", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle(f"step-to-step {metric} per block")
    return _save_png(fig, path)


def _update_grid(steps: dict[str, list[int]], names: list[str], num_steps: int) -> np.ndarray:
    """(num_blocks, num_steps) bool, True where a block recomputes."""
    grid = np.zeros((len(names), num_steps), dtype=bool)
    for row, name in enumerate(names):
        grid[row, [s for s in steps.get(name, []) if 0 <= s < num_steps]] = True
    return grid


def plot_update_raster(acs_steps: dict[str, list[int]], bu_steps: dict[str, list[int]], num_steps: int, path) -> Path:
    """Step x block raster of update steps: ACS alone (left) and the final schedule, e.g. after
    Bubbling Union and add_final_step (right); steps new on the right are drawn in red."""
    names = list(acs_steps) + [name for name in bu_steps if name not in acs_steps]
    if not names:
        raise ValueError("no schedules to plot")
    acs = _update_grid(acs_steps, names, num_steps)
    bu = _update_grid(bu_steps, names, num_steps)
    # 0 reuse, 1 update in ACS, 2 update added on the right (BU / final step)
    cmap = ListedColormap(["#f2f2f2", "#1f77b4", "#d62728"])
    panels = [("ACS", acs.astype(int)), ("after Bubbling Union", np.where(bu & ~acs, 2, bu.astype(int)))]

    width = min(16.0, 6.0 + 0.1 * num_steps)
    fig = Figure(figsize=(width, 1.5 + 0.22 * len(names)), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (title, codes) in zip(axes, panels):
        ax.imshow(codes, cmap=cmap, vmin=0, vmax=2, aspect="auto", interpolation="nearest")
        counts = (codes > 0).sum()
        ax.set_title(f"{title}: {counts} block updates", fontsize=10)
        ax.set_xlabel("denoising step (0 = noisiest)")
        ax.set_xticks(np.arange(0, num_steps, max(1, num_steps // 10)))
        ax.set_yticks(np.arange(len(names)), labels=names, fontsize=7)
        ax.set_xticks(np.arange(-0.5, num_steps, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, len(names), 1), minor=True)
        ax.grid(which="minor", color="white", linewidth=0.3)
        ax.tick_params(which="minor", length=0)
    fig.legend(
        handles=[Patch(color=cmap(1), label="update (ACS)"), Patch(color=cmap(2), label="update added by BU / final step")],
        loc="outside lower center",
        ncols=2,
    )
    return _save_png(fig, path)


def plot_block_errors(block_errors: dict[str, float], path, selected=()) -> Path:
    """Bar chart of caching error per block (model order); BU-selected blocks highlighted."""
    if not block_errors:
        raise ValueError("no block errors to plot")
    names = list(block_errors)
    selected = set(selected)
    colors = ["#d62728" if name in selected else "#7f7f7f" for name in names]

    fig = Figure(figsize=(max(6.0, 0.35 * len(names) + 2), 4.0), layout="constrained")
    ax = fig.subplots()
    ax.bar(np.arange(len(names)), [block_errors[name] for name in names], color=colors)
    ax.set_xticks(np.arange(len(names)), labels=names, rotation=75, ha="right", fontsize=7)
    ax.set_ylabel("caching error (mean pairwise L1)")
    ax.set_title("caching error per block")
    ax.legend(
        handles=[Patch(color="#d62728", label=f"selected for BU ({len(selected)})"), Patch(color="#7f7f7f", label="other")],
        fontsize=8,
    )
    return _save_png(fig, path)


def plot_speed_vs_error(records: list[dict], path) -> Path:
    """Speedup (x) vs action error (y), one line per mode, points labelled with num_caches."""
    if not records:
        raise ValueError("no records to plot")
    required = {"num_caches", "speedup", "action_error", "mode"}
    for record in records:
        if not required <= set(record):
            raise ValueError(f"record {record} lacks keys {sorted(required - set(record))}")

    fig = Figure(figsize=(6.0, 4.5), layout="constrained")
    ax = fig.subplots()
    for mode in sorted({str(r["mode"]) for r in records}):
        points = sorted((r for r in records if str(r["mode"]) == mode), key=lambda r: r["speedup"])
        xs = [float(r["speedup"]) for r in points]
        ys = [float(r["action_error"]) for r in points]
        ax.plot(xs, ys, marker="o", label=mode)
        for r, x, y in zip(points, xs, ys):
            ax.annotate(f"k={r['num_caches']}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("speedup vs. no caching (x)")
    ax.set_ylabel("action error vs. no caching")
    ax.set_title("speed vs. error")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save_png(fig, path)
