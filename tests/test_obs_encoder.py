"""Hybrid-policy observation encoder: robomimic 0.2.0 state_dict layout, crops, shapes, GroupNorm."""
import pytest
import torch
import torch.nn as nn
from omegaconf import OmegaConf

from diffusion_policy.model.vision.crop_randomizer import CropRandomizer
from diffusion_policy.model.vision.resnet import ResNet18Conv
from diffusion_policy.model.vision.robomimic_obs_encoder import RobomimicObsEncoder
from diffusion_policy.model.vision.spatial_softmax import SpatialSoftmax

LIFT_SHAPE_META = {
    "obs": {
        "agentview_image": {"shape": [3, 84, 84], "type": "rgb"},
        "robot0_eye_in_hand_image": {"shape": [3, 84, 84], "type": "rgb"},
        "robot0_eef_pos": {"shape": [3]},
        "robot0_eef_quat": {"shape": [4]},
        "robot0_gripper_qpos": {"shape": [2]},
    },
    "action": {"shape": [10]},
}

TRANSPORT_SHAPE_META = {
    "obs": {
        "shouldercamera0_image": {"shape": [3, 84, 84], "type": "rgb"},
        "robot0_eye_in_hand_image": {"shape": [3, 84, 84], "type": "rgb"},
        "robot0_eef_pos": {"shape": [3]},
        "robot0_eef_quat": {"shape": [4]},
        "robot0_gripper_qpos": {"shape": [2]},
        "shouldercamera1_image": {"shape": [3, 84, 84], "type": "rgb"},
        "robot1_eye_in_hand_image": {"shape": [3, 84, 84], "type": "rgb"},
        "robot1_eef_pos": {"shape": [3]},
        "robot1_eef_quat": {"shape": [4]},
        "robot1_gripper_qpos": {"shape": [2]},
    },
    "action": {"shape": [20]},
}

# torchvision resnet18 has 11,689,512 params; its fc (512*1000 + 1000) is cut off by children[:-2].
RESNET18_TRUNK_PARAMS = 11_689_512 - 513_000


def expected_trunk_keys(prefix: str, group_norm: bool = True) -> list[str]:
    """torchvision resnet18 children[:-2] inside a Sequential: 0 conv1, 1 bn1, 4..7 layer1..layer4."""
    norm = ["weight", "bias"] if group_norm else ["weight", "bias", "running_mean", "running_var",
                                                  "num_batches_tracked"]
    keys = [f"{prefix}0.weight"] + [f"{prefix}1.{n}" for n in norm]
    for seq_index in (4, 5, 6, 7):
        for block in (0, 1):
            b = f"{prefix}{seq_index}.{block}."
            keys += [b + "conv1.weight"] + [b + f"bn1.{n}" for n in norm]
            keys += [b + "conv2.weight"] + [b + f"bn2.{n}" for n in norm]
            if seq_index > 4 and block == 0:  # layer2..4 change width and stride
                keys += [b + "downsample.0.weight"] + [b + f"downsample.1.{n}" for n in norm]
    return keys


def expected_encoder_keys(rgb_keys, group_norm: bool = True) -> set[str]:
    keys = []
    for rgb in rgb_keys:
        core = f"obs_nets.{rgb}."
        keys += expected_trunk_keys(core + "backbone.nets.", group_norm)
        keys += expected_trunk_keys(core + "nets.0.nets.", group_norm)
        for pool in ("pool.", "nets.1."):
            keys += [core + pool + name for name in ("nets.weight", "nets.bias", "temperature", "pos_x", "pos_y")]
        keys += [core + "nets.3.weight", core + "nets.3.bias"]
    return set(keys)


def random_obs(shape_meta, batch: int = 2) -> dict[str, torch.Tensor]:
    return {key: torch.rand(batch, *attr["shape"]) * 2 - 1 for key, attr in shape_meta["obs"].items()}


@pytest.fixture(scope="module")
def lift_encoder():
    torch.manual_seed(0)
    return RobomimicObsEncoder(LIFT_SHAPE_META, crop_shape=(76, 76), obs_encoder_group_norm=True, eval_fixed_crop=True)


def test_lift_state_dict_keys_match_robomimic_layout(lift_encoder):
    state = lift_encoder.state_dict()
    assert set(state) == expected_encoder_keys(["agentview_image", "robot0_eye_in_hand_image"])
    assert len(state) == 2 * 132
    core = "obs_nets.agentview_image."
    assert state[core + "backbone.nets.0.weight"].shape == (64, 3, 7, 7)
    assert state[core + "backbone.nets.7.0.downsample.0.weight"].shape == (512, 256, 1, 1)
    assert state[core + "backbone.nets.7.1.bn2.weight"].shape == (512,)
    assert state[core + "pool.nets.weight"].shape == (32, 512, 1, 1)
    assert state[core + "pool.temperature"].tolist() == [1.0]
    assert state[core + "pool.pos_x"].shape == (1, 9)  # 76x76 crop -> 3x3 feature map
    assert state[core + "nets.3.weight"].shape == (64, 64)
    # the VisualCore.nets entries are the same tensors as backbone/pool, not copies
    assert state[core + "nets.0.nets.0.weight"].data_ptr() == state[core + "backbone.nets.0.weight"].data_ptr()
    assert state[core + "nets.1.pos_y"].data_ptr() == state[core + "pool.pos_y"].data_ptr()


def test_lift_feature_dim_and_output(lift_encoder):
    assert lift_encoder.feature_dim == 137 == lift_encoder.output_shape()[0]
    lift_encoder.eval()
    with torch.no_grad():
        out = lift_encoder(random_obs(LIFT_SHAPE_META, batch=3))
    assert out.shape == (3, 137)
    assert (out[:, :128] >= 0).all()  # image features pass through the ReLU


def test_low_dim_passthrough_follows_shape_meta_order():
    shape_meta = {"obs": {
        "robot0_eef_pos": {"shape": [3]},
        "agentview_image": {"shape": [3, 84, 84], "type": "rgb"},
        "robot0_gripper_qpos": {"shape": [2]},
    }}
    encoder = RobomimicObsEncoder(shape_meta).eval()
    obs = random_obs(shape_meta, batch=2)
    with torch.no_grad():
        out = encoder(obs)
    assert out.shape == (2, 3 + 64 + 2)
    assert torch.equal(out[:, :3], obs["robot0_eef_pos"])
    assert torch.equal(out[:, 67:], obs["robot0_gripper_qpos"])
    with torch.no_grad():
        image_features = encoder.activation(encoder.obs_nets["agentview_image"](obs["agentview_image"][:, :, 4:80, 4:80]))
    assert torch.allclose(out[:, 3:67], image_features)


def test_transport_four_cameras():
    encoder = RobomimicObsEncoder(TRANSPORT_SHAPE_META)
    rgb = [k for k, v in TRANSPORT_SHAPE_META["obs"].items() if v.get("type") == "rgb"]
    assert encoder.feature_dim == 274
    assert set(encoder.state_dict()) == expected_encoder_keys(rgb)


def test_resnet18_trunk_param_count_and_output_shape():
    for group_norm in (True, False):
        trunk = ResNet18Conv(group_norm=group_norm)
        assert sum(p.numel() for p in trunk.parameters()) == RESNET18_TRUNK_PARAMS == 11_176_512
    trunk = ResNet18Conv(group_norm=True)
    with torch.no_grad():
        for h, w in [(76, 76), (84, 84), (96, 128)]:
            out = trunk(torch.randn(1, 3, h, w))
            assert list(out.shape[1:]) == trunk.output_shape((3, h, w))
    assert trunk.output_shape((3, 216, 288)) == [512, 7, 9]


def test_batchnorm_variant_keys():
    encoder = RobomimicObsEncoder({"obs": {"cam": {"shape": [3, 84, 84], "type": "rgb"}}}, obs_encoder_group_norm=False)
    assert set(encoder.state_dict()) == expected_encoder_keys(["cam"], group_norm=False)


def test_group_norm_replaces_every_batchnorm(lift_encoder):
    modules = list(lift_encoder.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in modules)
    group_norms = [m for m in modules if isinstance(m, nn.GroupNorm)]
    assert len(group_norms) == 2 * 20  # per trunk: bn1 + 2 per block * 8 blocks + 3 downsample norms
    for gn in group_norms:
        assert gn.num_groups == gn.num_channels // 16
    assert {gn.num_channels for gn in group_norms} == {64, 128, 256, 512}


def test_state_dict_round_trip_strict():
    torch.manual_seed(1)
    source = RobomimicObsEncoder(LIFT_SHAPE_META).eval()
    torch.manual_seed(2)
    target = RobomimicObsEncoder(LIFT_SHAPE_META).eval()
    obs = random_obs(LIFT_SHAPE_META)
    with torch.no_grad():
        assert not torch.allclose(source(obs), target(obs))
        # as inside a policy checkpoint, under the `obs_encoder.` prefix
        policy_like = nn.Module()
        policy_like.obs_encoder = target
        checkpoint = {f"obs_encoder.{k}": v.clone() for k, v in source.state_dict().items()}
        result = policy_like.load_state_dict(checkpoint, strict=True)
        assert not result.missing_keys and not result.unexpected_keys
        assert torch.equal(source(obs), target(obs))


def test_accepts_omegaconf_shape_meta():
    encoder = RobomimicObsEncoder(OmegaConf.create(LIFT_SHAPE_META), crop_shape=OmegaConf.create([76, 76]))
    assert encoder.feature_dim == 137


def test_crop_shape_none_uses_full_image():
    encoder = RobomimicObsEncoder({"obs": {"cam": {"shape": [3, 84, 84], "type": "rgb"}}}, crop_shape=None)
    assert len(encoder.obs_randomizers) == 0
    assert encoder.state_dict()["obs_nets.cam.pool.pos_x"].shape == (1, 9)
    with torch.no_grad():
        assert encoder(random_obs({"obs": {"cam": {"shape": [3, 84, 84]}}})).shape == (2, 64)


def test_encoder_eval_is_deterministic_and_train_crops_randomly(lift_encoder):
    obs = random_obs(LIFT_SHAPE_META, batch=4)
    with torch.no_grad():
        lift_encoder.eval()
        assert torch.equal(lift_encoder(obs), lift_encoder(obs))
        lift_encoder.train()
        torch.manual_seed(3)
        first = lift_encoder(obs)
        second = lift_encoder(obs)
        torch.manual_seed(3)
        replay = lift_encoder(obs)
    lift_encoder.eval()
    assert not torch.allclose(first, second)
    assert torch.equal(first, replay)


def pixel_coded_images(batch: int, h: int = 84, w: int = 84) -> torch.Tensor:
    """(B, 3, H, W) whose value encodes (image, channel, row, col) uniquely."""
    return torch.arange(batch * 3 * h * w, dtype=torch.float32).reshape(batch, 3, h, w)


def test_crop_randomizer_center_crop_in_eval():
    crop = CropRandomizer((3, 84, 84), 76, 76).eval()
    images = pixel_coded_images(2)
    assert torch.equal(crop(images), images[:, :, 4:80, 4:80])
    assert sum(1 for _ in crop.parameters()) == 0 and len(crop.state_dict()) == 0


def test_crop_randomizer_random_windows_in_train():
    torch.manual_seed(0)
    crop = CropRandomizer((3, 84, 84), 76, 76).train()
    images = pixel_coded_images(32)
    crops = crop(images)
    assert crops.shape == (32, 3, 76, 76)
    offsets = set()
    for i in range(32):
        first_pixel = int(crops[i, 0, 0, 0]) - i * 3 * 84 * 84
        top, left = divmod(first_pixel, 84)
        assert 0 <= top < 8 and 0 <= left < 8  # robomimic samples offsets in [0, H - crop_h)
        assert torch.equal(crops[i], images[i, :, top:top + 76, left:left + 76])
        offsets.add((top, left))
    assert len(offsets) > 1


def test_crop_randomizer_multiple_crops_and_robomimic_mode():
    crop = CropRandomizer((3, 84, 84), 76, 76, num_crops=3).train()
    images = pixel_coded_images(2)
    crops = crop.forward_in(images)
    assert crops.shape == (6, 3, 76, 76)
    for i in range(6):
        assert int(crops[i, 0, 0, 0]) // (3 * 84 * 84) == i // 3  # crops of image b are contiguous
    assert crop.forward_out(torch.ones(6, 64)).shape == (2, 64)
    random_at_eval = CropRandomizer((3, 84, 84), 76, 76, center_crop_at_eval=False).eval()
    torch.manual_seed(0)
    assert not torch.equal(random_at_eval(pixel_coded_images(16)), pixel_coded_images(16)[:, :, 4:80, 4:80])


def test_crop_randomizer_position_encoding():
    crop = CropRandomizer((3, 84, 84), 76, 76, pos_enc=True).eval()
    assert crop.output_shape_in() == [5, 76, 76]
    out = crop(torch.zeros(1, 3, 84, 84))
    assert out.shape == (1, 5, 76, 76)
    assert out[0, 3, 0, 0].item() == pytest.approx(4 / 84) and out[0, 4, 0, 0].item() == pytest.approx(4 / 84)


def test_spatial_softmax_keypoint_convention():
    pool = SpatialSoftmax((2, 3, 4), num_kp=None)
    feature = torch.zeros(1, 2, 3, 4)
    feature[0, 0, 0, 3] = 100.0  # top-right corner -> x=+1, y=-1
    feature[0, 1, 2, 0] = 100.0  # bottom-left corner -> x=-1, y=+1
    keypoints = pool(feature)
    assert keypoints.shape == (1, 2, 2)
    assert torch.allclose(keypoints, torch.tensor([[[1.0, -1.0], [-1.0, 1.0]]]), atol=1e-4)
    assert sorted(pool.state_dict()) == ["pos_x", "pos_y", "temperature"]
    assert len(list(pool.parameters())) == 0


def test_bad_inputs_raise_clear_errors(lift_encoder):
    with pytest.raises(ValueError, match="unsupported type"):
        RobomimicObsEncoder({"obs": {"scan": {"shape": [10], "type": "depth"}}})
    with pytest.raises(ValueError, match="smaller than the image"):
        RobomimicObsEncoder(LIFT_SHAPE_META, crop_shape=(84, 84))
    obs = random_obs(LIFT_SHAPE_META)
    del obs["robot0_eef_quat"]
    with pytest.raises(KeyError, match="robot0_eef_quat"):
        lift_encoder(obs)
    obs = random_obs(LIFT_SHAPE_META)
    obs["agentview_image"] = torch.rand(2, 3, 96, 96)
    with pytest.raises(ValueError, match="agentview_image"):
        lift_encoder(obs)
