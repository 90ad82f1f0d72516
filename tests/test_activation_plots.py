"""Plots write non-empty PNG files."""

import numpy as np
import pytest

from diffusion_policy.activation_visualization.plots import (
    plot_block_errors,
    plot_similarity_heatmaps,
    plot_speed_vs_error,
    plot_update_raster,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BLOCKS = [f"decoder.layers.{i}.{kind}" for i in range(2) for kind in ("sa", "ca", "ffn")]


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_similarity_heatmaps(tmp_path):
    rng = np.random.default_rng(0)
    matrices = {name: rng.random((6, 6)) for name in BLOCKS}
    assert_png(plot_similarity_heatmaps(matrices, tmp_path / "heat.png", "cosine"))
    # names outside the decoder.layers.{i}.{kind} scheme fall back to a plain grid
    assert_png(plot_similarity_heatmaps({"a": rng.random((3, 3)), "b": rng.random((3, 3))}, tmp_path / "x.png", "l1"))
    with pytest.raises(ValueError):
        plot_similarity_heatmaps({}, tmp_path / "empty.png", "l1")


def test_update_raster(tmp_path):
    acs = {name: [0, 3] for name in BLOCKS}
    bu = {name: [0, 3, 5, 7] for name in BLOCKS}
    assert_png(plot_update_raster(acs, bu, 8, tmp_path / "sub" / "raster.png"))


def test_block_errors(tmp_path):
    errors = {name: float(i) for i, name in enumerate(BLOCKS)}
    assert_png(plot_block_errors(errors, tmp_path / "errors.png", selected=BLOCKS[-2:]))


def test_speed_vs_error(tmp_path):
    records = [
        {"num_caches": k, "speedup": 10 / k, "action_error": 0.1 / k + offset, "mode": mode}
        for k in (5, 10, 20)
        for mode, offset in (("optimal", 0.0), ("threshold", 0.02))
    ]
    assert_png(plot_speed_vs_error(records, tmp_path / "speed.png"))
    with pytest.raises(ValueError, match="lacks keys"):
        plot_speed_vs_error([{"num_caches": 5}], tmp_path / "bad.png")
