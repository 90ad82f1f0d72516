import numpy as np
import pytest
import torch
import torch.nn as nn

from diffusion_policy.common.normalize_util import (
    array_to_stats,
    get_image_range_normalizer,
    get_max_abs_normalizer_from_stat,
    get_range_normalizer_from_stat,
    robomimic_abs_action_normalizer_from_stat,
)
from diffusion_policy.common.pytorch_util import dict_apply, optimizer_to
from diffusion_policy.model.common.module_attr_mixin import ModuleAttrMixin
from diffusion_policy.model.common.normalizer import LinearNormalizer, SingleFieldLinearNormalizer

FIELD_KEYS = {"scale", "offset", "input_stats.min", "input_stats.max", "input_stats.mean", "input_stats.std"}


def _data(seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.normal(loc=[0.0, 5.0, -3.0, 1.0], scale=[1.0, 2.0, 0.5, 0.0], size=(200, 4)).astype(np.float32)
    action = rng.uniform(-7, 3, size=(50, 3, 2)).astype(np.float32)
    return {"obs": obs, "action": action}


def test_module_attr_mixin_device_dtype_and_state_dict():
    module = ModuleAttrMixin()
    assert list(module.state_dict()) == ["_dummy_variable"]
    assert module.state_dict()["_dummy_variable"].shape == (0,)
    assert module.device == torch.device("cpu")
    assert module.dtype == torch.float32
    assert module.double().dtype == torch.float64


def test_limits_mode_matches_numpy():
    data = _data()
    normalizer = LinearNormalizer()
    normalizer.fit(data, mode="limits")
    obs = data["obs"]
    lo, hi = obs.min(0), obs.max(0)
    params = normalizer.params_dict["obs"]
    varying = hi - lo >= 1e-4
    np.testing.assert_allclose(params["scale"].numpy()[varying], 2 / (hi - lo)[varying], rtol=1e-5)
    normalized = normalizer.normalize(data)["obs"].numpy()
    np.testing.assert_allclose(normalized[:, varying].min(0), -1, atol=1e-5)
    np.testing.assert_allclose(normalized[:, varying].max(0), 1, atol=1e-5)
    # the constant dim (range < range_eps) is only shifted to the output midpoint, not scaled
    assert not varying[3]
    assert params["scale"][3].item() == 1.0
    np.testing.assert_allclose(normalized[:, 3], 0, atol=1e-6)
    stats = normalizer.get_input_stats()["obs"]
    np.testing.assert_allclose(stats["min"].numpy(), lo)
    np.testing.assert_allclose(stats["max"].numpy(), hi)
    np.testing.assert_allclose(stats["mean"].numpy(), obs.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["std"].numpy(), obs.std(0, ddof=1), rtol=1e-4, atol=1e-6)


def test_range_eps_and_output_range():
    x = np.stack([np.linspace(0, 0.01, 100), np.linspace(-4, 4, 100)], axis=-1).astype(np.float32)
    scaled = SingleFieldLinearNormalizer.create_fit(x, range_eps=1e-3, output_min=0.0, output_max=2.0)
    shifted = SingleFieldLinearNormalizer.create_fit(x, range_eps=5e-2, output_min=0.0, output_max=2.0)
    np.testing.assert_allclose(scaled.normalize(x).numpy()[:, 0], np.linspace(0, 2, 100), atol=1e-4)
    # range 0.01 < 5e-2: dim 0 is shifted so that its min lands on the output midpoint 1.0
    np.testing.assert_allclose(shifted.normalize(x).numpy()[:, 0], 1.0 + x[:, 0], atol=1e-6)
    np.testing.assert_allclose(shifted.normalize(x).numpy()[:, 1], (x[:, 1] + 4) / 4, atol=1e-5)


def test_limits_without_offset_is_symmetric():
    x = np.array([[-2.0, 0.5], [1.0, 4.0]], dtype=np.float32)
    normalizer = SingleFieldLinearNormalizer.create_fit(x, fit_offset=False)
    np.testing.assert_allclose(normalizer.params_dict["scale"].numpy(), [0.5, 0.25])
    np.testing.assert_allclose(normalizer.params_dict["offset"].numpy(), [0, 0])


def test_gaussian_mode():
    data = _data()
    normalizer = LinearNormalizer()
    normalizer.fit(data, mode="gaussian")
    normalized = normalizer.normalize({"obs": data["obs"]})["obs"].numpy()
    np.testing.assert_allclose(normalized[:, :3].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(normalized[:, :3].std(0, ddof=1), 1, atol=1e-4)
    assert normalizer.params_dict["obs"]["scale"][3].item() == 1.0  # std 0 < range_eps keeps scale 1
    no_offset = SingleFieldLinearNormalizer.create_fit(data["obs"], mode="gaussian", fit_offset=False)
    assert torch.all(no_offset.params_dict["offset"] == 0)
    with pytest.raises(ValueError, match="unknown normalizer mode"):
        normalizer.fit(data, mode="minmax")


def test_last_n_dims():
    action = _data()["action"]  # (50, 3, 2)
    per_element = SingleFieldLinearNormalizer.create_fit(action, last_n_dims=2)
    assert per_element.params_dict["scale"].shape == (6,)
    np.testing.assert_allclose(per_element.get_input_stats()["min"].numpy(), action.reshape(50, 6).min(0))
    per_dim = SingleFieldLinearNormalizer.create_fit(action, last_n_dims=1)
    assert per_dim.params_dict["scale"].shape == (2,)
    np.testing.assert_allclose(per_dim.get_input_stats()["max"].numpy(), action.reshape(-1, 2).max(0))
    scalar = SingleFieldLinearNormalizer.create_fit(action, last_n_dims=0)
    assert scalar.params_dict["scale"].shape == (1,)
    out = scalar.normalize(action)
    assert out.shape == action.shape
    assert out.min().item() == pytest.approx(-1, abs=1e-5) and out.max().item() == pytest.approx(1, abs=1e-5)


def test_state_dict_layout_and_load_into_empty():
    normalizer = LinearNormalizer()
    normalizer.fit(_data())
    state = normalizer.state_dict()
    expected = {f"params_dict.{field}.{name}" for field in ("obs", "action") for name in FIELD_KEYS}
    assert set(state) == expected
    assert all(not p.requires_grad for p in normalizer.parameters())

    empty = LinearNormalizer()
    result = empty.load_state_dict(state)
    assert not result.missing_keys and not result.unexpected_keys
    assert set(empty.state_dict()) == expected
    for key, value in state.items():
        torch.testing.assert_close(empty.state_dict()[key], value)
    assert all(not p.requires_grad for p in empty.parameters())

    # inside a policy-like parent, strict loading from a checkpoint with other fields
    class Policy(ModuleAttrMixin):
        def __init__(self):
            super().__init__()
            self.normalizer = LinearNormalizer()
            self.head = nn.Linear(2, 2)

    source = Policy()
    source.normalizer.load_state_dict(state)
    target = Policy()
    target.load_state_dict(source.state_dict())
    x = torch.randn(5, 4)
    torch.testing.assert_close(target.normalizer["obs"].normalize(x), source.normalizer["obs"].normalize(x))


def test_round_trip_dict_and_single_field():
    data = _data()
    normalizer = LinearNormalizer()
    normalizer.fit(data)
    batch = {"obs": torch.randn(8, 2, 4), "action": torch.randn(8, 3, 2)}
    back = normalizer.unnormalize(normalizer.normalize(batch))
    for key in batch:
        torch.testing.assert_close(back[key], batch[key], atol=1e-5, rtol=1e-5)
    single = LinearNormalizer()
    single.fit(data["obs"])
    x = torch.randn(3, 4)
    torch.testing.assert_close(single.unnormalize(single.normalize(x)), x, atol=1e-5, rtol=1e-5)
    assert "min" in single.get_input_stats()
    np.testing.assert_allclose(single.get_output_stats()["max"][:3].numpy(), 1, atol=1e-5)
    with pytest.raises(RuntimeError, match="pass a dict"):
        normalizer.normalize(x)
    with pytest.raises(KeyError, match="no field 'image'"):
        normalizer.normalize({"image": x})


def test_getitem_setitem_share_parameters():
    normalizer = LinearNormalizer()
    normalizer.fit(_data())
    view = normalizer["action"]
    assert view.params_dict["scale"] is normalizer.params_dict["action"]["scale"]
    normalizer["image"] = get_image_range_normalizer()
    image = torch.rand(2, 3, 4, 4)
    torch.testing.assert_close(normalizer.normalize({"image": image})["image"], image * 2 - 1)
    outputs = normalizer.get_output_stats()
    torch.testing.assert_close(outputs["image"]["min"], torch.tensor([-1.0]))
    torch.testing.assert_close(outputs["obs"]["min"][:3], -torch.ones(3))


def test_manual_and_identity():
    identity = SingleFieldLinearNormalizer.create_identity()
    x = torch.randn(4, 7)
    torch.testing.assert_close(identity.normalize(x), x)
    manual = SingleFieldLinearNormalizer.create_manual(
        np.array([2.0, 0.5], dtype=np.float32),
        np.array([1.0, 0.0], dtype=np.float32),
        array_to_stats(np.zeros((3, 2), dtype=np.float32)),
    )
    np.testing.assert_allclose(manual.normalize(np.array([[1.0, 4.0]], dtype=np.float32)).numpy(), [[3.0, 2.0]])
    with pytest.raises(ValueError, match="same shape"):
        SingleFieldLinearNormalizer.create_manual(np.ones(2), np.zeros(3), {})


def test_normalize_util_helpers_match_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 3)).astype(np.float32) * [1, 3, 0]
    stat = array_to_stats(x)
    np.testing.assert_allclose(stat["std"], x.std(0))
    ranged = get_range_normalizer_from_stat(stat).normalize(x).numpy()
    np.testing.assert_allclose(ranged[:, :2].min(0), -1, atol=1e-5)
    np.testing.assert_allclose(ranged[:, :2].max(0), 1, atol=1e-5)
    np.testing.assert_allclose(ranged[:, 2], 0, atol=1e-6)
    max_abs = get_max_abs_normalizer_from_stat(stat)
    np.testing.assert_allclose(max_abs.normalize(x).numpy(), x / np.abs(x).max(), rtol=1e-5)

    action = rng.normal(size=(64, 20)).astype(np.float32)
    abs_normalizer = robomimic_abs_action_normalizer_from_stat(array_to_stats(action))
    out = abs_normalizer.normalize(action).numpy()
    for pos in (slice(0, 3), slice(10, 13)):
        np.testing.assert_allclose(out[:, pos].min(0), -1, atol=1e-5)
        np.testing.assert_allclose(out[:, pos].max(0), 1, atol=1e-5)
    for rest in (slice(3, 10), slice(13, 20)):
        np.testing.assert_allclose(out[:, rest], action[:, rest])


def test_dtype_cast_and_device_move():
    normalizer = LinearNormalizer()
    normalizer.fit(_data())
    out = normalizer.normalize({"obs": np.ones((2, 4), dtype=np.float64)})["obs"]
    assert out.dtype == torch.float32
    assert normalizer.double().normalize({"obs": torch.ones(2, 4)})["obs"].dtype == torch.float64
    assert LinearNormalizer().device == torch.device("cpu")


def test_pytorch_util():
    nested = {"a": np.ones(2), "b": {"c": np.zeros(3)}}
    out = dict_apply(nested, torch.from_numpy)
    assert isinstance(out["b"]["c"], torch.Tensor) and out["a"].shape == (2,)
    model = nn.Linear(2, 1)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    optimizer_to(optimizer, "cpu")
    assert all(v.device.type == "cpu" for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v))
