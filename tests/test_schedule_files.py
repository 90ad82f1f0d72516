"""Schedule files: round trips, path resolution, mismatch and corruption errors, full pipeline."""

import json

import numpy as np
import pytest

from diffusion_policy.activation_utils.bubbling_union import add_final_step, bubbling_union
from diffusion_policy.activation_utils.schedule_builder import build_schedule_assets, schedule_assets_exist
from diffusion_policy.activation_utils.schedule_files import (
    Schedule,
    ScheduleMismatchError,
    load_activation_summary,
    load_bubbling_union_info,
    load_schedule,
    load_similarity_matrices,
    resolve_update_steps,
    save_schedule,
    save_similarity_matrices,
    schedule_path,
    sha256_of_file,
)

NUM_LAYERS, NUM_STEPS = 2, 8
BLOCKS = [f"decoder.layers.{i}.{kind}" for i in range(NUM_LAYERS) for kind in ("sa", "ca", "ffn")]
SCHEDULER = {"class": "DDPMScheduler", "num_train_timesteps": 100, "num_inference_steps": NUM_STEPS}


def make_schedule(num_caches=3) -> Schedule:
    steps = {name: [0, 1 + i % 3, 5 + i % 2][:num_caches] for i, name in enumerate(BLOCKS)}
    errors = {name: 0.1 * (i + 1) for i, name in enumerate(BLOCKS)}
    return Schedule(
        metric="cosine",
        num_caches=num_caches,
        num_steps=NUM_STEPS,
        num_layers=NUM_LAYERS,
        scheduler=SCHEDULER,
        checkpoint_sha256="0" * 64,
        model_fingerprint="f" * 64,
        block_names=BLOCKS,
        steps=steps,
        block_errors=errors,
    )


def test_round_trip_and_path_resolution(tmp_path):
    schedule = make_schedule()
    path = save_schedule(schedule, tmp_path)
    assert path == tmp_path / "optimal_steps" / "cosine" / "num_caches_3.json"
    assert json.loads(path.read_text())["steps"]["decoder.layers.0.ca"] == schedule.steps["decoder.layers.0.ca"]
    for where in [path, path.parent, tmp_path / "optimal_steps", tmp_path]:
        loaded = load_schedule(where, "cosine", 3)
        assert loaded == schedule and loaded.path == path
    assert not [p for p in path.parent.iterdir() if p.suffix == ".tmp"]


def test_check_compatible_accepts_matching_model():
    make_schedule().check_compatible(list(reversed(BLOCKS)), NUM_STEPS, NUM_LAYERS)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(num_layers=3), ["decoder layers 2 (schedule) vs 3 (model)"]),
        (dict(num_steps=10), ["denoising steps 8 (schedule) vs 10 (policy)"]),
        (dict(block_names=BLOCKS[:-1]), ["unknown to model: decoder.layers.1.ffn"]),
        (dict(block_names=BLOCKS + ["decoder.layers.2.sa"]), ["missing from schedule: decoder.layers.2.sa"]),
    ],
)
def test_check_compatible_mismatch_is_one_line_with_fix(kwargs, words):
    args = dict(block_names=BLOCKS, num_steps=NUM_STEPS, num_layers=NUM_LAYERS) | kwargs
    with pytest.raises(ScheduleMismatchError) as info:
        make_schedule().check_compatible(**args)
    message = str(info.value)
    assert "\n" not in message and "--force_recompute" in message
    assert isinstance(info.value, ValueError)
    for word in words:
        assert word in message


def test_missing_and_corrupt_files_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="schedule directory not found"):
        load_schedule(tmp_path / "nowhere", "cosine", 3)
    path = save_schedule(make_schedule(), tmp_path)
    with pytest.raises(FileNotFoundError, match=r"num_caches=5 .*found: num_caches_3.json"):
        load_schedule(path.parent, "cosine", 5)

    path.write_text('{"format_version": 2, "metric": ')
    with pytest.raises(ValueError, match="corrupt schedule file") as info:
        load_schedule(path, "cosine", 3)
    assert str(path) in str(info.value) and "\n" not in str(info.value)

    path.write_text(json.dumps({"format_version": 2, "metric": "cosine"}))
    with pytest.raises(ValueError, match="missing keys"):
        load_schedule(path, "cosine", 3)

    data = make_schedule().to_json_dict() | {"format_version": 99}
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="format_version 99"):
        load_schedule(path, "cosine", 3)


def test_invalid_contents_and_request_mismatch(tmp_path):
    path = save_schedule(make_schedule(), tmp_path)
    data = json.loads(path.read_text())
    data["steps"]["decoder.layers.0.sa"] = [1, 2, 3]  # does not start at 0
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="steps of decoder.layers.0.sa"):
        load_schedule(path, "cosine", 3)

    save_schedule(make_schedule(), tmp_path)
    with pytest.raises(ValueError, match="metric=l1 num_caches=3 was requested"):
        load_schedule(path, "l1", 3)
    bad = make_schedule()
    bad.steps = {"decoder.layers.0.sa": [0]}
    with pytest.raises(ValueError, match="'steps' keys differ"):
        save_schedule(bad, tmp_path)


def test_resolve_update_steps_applies_bu_then_final_step(tmp_path):
    schedule = make_schedule()
    resolved = resolve_update_steps(schedule, 2, NUM_STEPS)
    expected = add_final_step(bubbling_union(schedule.steps, schedule.block_errors, 2), NUM_STEPS)
    assert resolved == expected
    # the two highest-error blocks are layer 1's ca and ffn; ca merges ffn1's steps
    assert resolved["decoder.layers.1.ca"] == sorted(set(schedule.steps["decoder.layers.1.ca"]) | set(schedule.steps["decoder.layers.1.ffn"]) | {7})
    assert all(steps[-1] == NUM_STEPS - 1 for steps in resolved.values())
    with pytest.raises(ScheduleMismatchError, match="denoising steps 8"):
        resolve_update_steps(schedule, 0, 16)


def test_similarity_npz_round_trip_and_corruption(tmp_path):
    matrices = {name: np.random.default_rng(i).random((4, 4)) for i, name in enumerate(BLOCKS)}
    path = save_similarity_matrices(tmp_path, "l2", matrices)
    loaded = load_similarity_matrices(tmp_path, "l2")
    assert list(loaded) == BLOCKS
    for name in BLOCKS:
        np.testing.assert_array_equal(loaded[name], matrices[name])
    path.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="corrupt similarity file"):
        load_similarity_matrices(tmp_path, "l2")
    with pytest.raises(FileNotFoundError, match="similarity matrices not found"):
        load_similarity_matrices(tmp_path, "mse")


def test_build_schedule_assets_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    activations = {
        name: np.cumsum(rng.normal(size=(NUM_STEPS, 4, 6)), axis=0).astype(np.float32) for name in BLOCKS
    }
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"weights")
    assert not schedule_assets_exist(tmp_path, ["cosine", "l1"], [2, 4])
    build_schedule_assets(
        tmp_path, activations, ["cosine", "l1"], [2, 4], NUM_LAYERS, SCHEDULER, sha256_of_file(ckpt), "f" * 64,
        make_plots=False
    )
    assert schedule_assets_exist(tmp_path, ["cosine", "l1"], [2, 4])
    assert schedule_path(tmp_path, "l1", 4).is_file()

    summary = load_activation_summary(tmp_path)
    assert summary["num_steps"] == NUM_STEPS and summary["block_names"] == BLOCKS
    assert summary["blocks"]["decoder.layers.0.sa"]["shape"] == [NUM_STEPS, 4, 6]

    schedule = load_schedule(tmp_path / "optimal_steps" / "cosine", "cosine", 4)
    schedule.check_compatible(BLOCKS, NUM_STEPS, NUM_LAYERS)
    assert schedule.checkpoint_sha256 == sha256_of_file(ckpt) and schedule.model_fingerprint == "f" * 64
    assert all(len(steps) == 4 and steps[0] == 0 for steps in schedule.steps.values())
    assert schedule.block_errors == {name: summary["blocks"][name]["caching_error"] for name in BLOCKS}

    ranking = load_bubbling_union_info(tmp_path, "cosine")["ranking"]
    errors = [entry["caching_error"] for entry in ranking]
    assert errors == sorted(errors, reverse=True) and len(ranking) == len(BLOCKS)
    assert load_similarity_matrices(tmp_path, "l1")["decoder.layers.1.ffn"].shape == (NUM_STEPS, NUM_STEPS)
