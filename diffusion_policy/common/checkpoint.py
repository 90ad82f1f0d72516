"""Read and write Diffusion Policy workspace checkpoints in the original payload format.

A checkpoint is `torch.save(payload, f, pickle_module=dill)` of

    payload = {
        'cfg':         the resolved OmegaConf DictConfig of the training run,
        'state_dicts': {'model': ..., 'ema_model': ..., 'optimizer': ...},
        'pickles':     {'global_step': dill bytes, 'epoch': dill bytes, '_output_dir': dill bytes},
    }

so checkpoints written here load in the original code and the original ones load here.

Safe by default: unpickling runs code named by the file, so every global the file references is
checked against what such a payload legitimately contains (OmegaConf containers, builtin
containers/primitives, torch tensor rebuilds); the cfg is then resolved once, with no custom
resolvers, into a plain container whose every `_target_` must be a class of this package or a
diffusers scheduler (see safe_config.py). Only that container is ever instantiated. Anything else
raises UnsafeCheckpointError unless the caller passes `trust_checkpoint=True`, which loads with
plain dill and keeps the cfg as written.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import io
import os
import pickle
import types
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dill
import hydra
import hydra.errors
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from omegaconf import DictConfig, ListConfig, OmegaConf

from diffusion_policy.common.files import write_atomic
from diffusion_policy.common.safe_config import UnsafeConfigError, resolve_untrusted_cfg

PathLike = str | os.PathLike

TRUST_HINT = "if you trust this file, pass trust_checkpoint=True (--trust_checkpoint)"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit the policy its cfg describes (one-line message)."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint references code that a Diffusion Policy checkpoint does not need."""


# ----------------------------------------------------------------------------- restricted unpickling
# Every global a transformer-workspace checkpoint references (checked by listing the GLOBAL opcodes
# of checkpoints written with dill): OmegaConf's containers and their metadata, builtin types,
# torch's tensor rebuild functions (storages are resolved by torch.load before find_class), and
# `_codecs.encode`, which protocol 2 uses for bytes (the dill-pickled 'pickles' entries).
_ALLOWED_GLOBALS: dict[str, frozenset[str]] = {
    "builtins": frozenset({"dict", "list", "tuple", "set", "frozenset", "int", "float", "complex",
                           "str", "bytes", "bytearray", "bool", "slice"}),
    "collections": frozenset({"OrderedDict", "defaultdict"}),
    "_codecs": frozenset({"encode"}),
    "typing": frozenset({"Any"}),
    "omegaconf.dictconfig": frozenset({"DictConfig"}),
    "omegaconf.listconfig": frozenset({"ListConfig"}),
    "omegaconf.base": frozenset({"ContainerMetadata", "Metadata"}),
    "omegaconf.nodes": frozenset({"AnyNode", "StringNode", "IntegerNode", "FloatNode", "BooleanNode",
                                  "BytesNode"}),
    "torch": frozenset({"Size", "device"} | {name for name in dir(torch)
                                             if isinstance(getattr(torch, name), torch.dtype)}),
    "torch._utils": frozenset({"_rebuild_tensor_v2", "_rebuild_parameter"}),
    # dill pickles builtin *types* (e.g. ContainerMetadata.object_type = dict) as
    # `_load_type(name)`; only the names in _DILL_TYPE_NAMES are accepted (it can also return
    # e.g. CodeType or FunctionType).
    "dill._dill": frozenset({"_load_type"}),
}
_MODULE_ALIASES = {"__builtin__": "builtins", "dill.dill": "dill._dill"}  # older picklers' names
_DILL_TYPE_NAMES = frozenset({"dict", "list", "tuple", "set", "frozenset", "int", "float", "complex",
                              "str", "bytes", "bytearray", "bool", "NoneType"})


def _unsafe_message(source: str, what: str) -> str:
    return f"checkpoint {source} references {what}, which a Diffusion Policy checkpoint does not need; {TRUST_HINT}"


class _RestrictedUnpickler(pickle.Unpickler):
    source = "<bytes>"  # the checkpoint path, for error messages

    def find_class(self, module: str, name: str):
        module = _MODULE_ALIASES.get(module, module)
        if name not in _ALLOWED_GLOBALS.get(module, ()):
            raise UnsafeCheckpointError(_unsafe_message(self.source, f"'{module}.{name}'"))
        if (module, name) == ("dill._dill", "_load_type"):
            return self._checked_load_type
        return super().find_class(module, name)

    def _checked_load_type(self, name: str) -> type:
        if name not in _DILL_TYPE_NAMES:
            raise UnsafeCheckpointError(_unsafe_message(self.source, f"'dill._dill._load_type({name!r})'"))
        return dill._dill._load_type(name)


def restricted_pickle_module(source: PathLike) -> types.SimpleNamespace:
    """A `pickle_module` for torch.load whose Unpickler only resolves allow-listed globals."""

    class Unpickler(_RestrictedUnpickler):
        pass

    Unpickler.source = str(source)

    def load(file, **kwargs):
        return Unpickler(file, **kwargs).load()

    def loads(data: bytes, **kwargs):
        return Unpickler(io.BytesIO(data), **kwargs).load()

    return types.SimpleNamespace(__name__="restricted_pickle", Unpickler=Unpickler, load=load, loads=loads)


# ----------------------------------------------------------------------------- reading
@dataclass
class CheckpointPayload:
    """A checkpoint's contents, with the 'pickles' entries already unpickled."""

    cfg: DictConfig
    state_dicts: dict[str, dict]
    pickles: dict[str, Any]  # e.g. {'global_step': 1200, 'epoch': 50, '_output_dir': '...'}


def _describe(obj: Any) -> str:
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return f"a plain state_dict ({len(obj)} tensors)"
    if isinstance(obj, dict):
        return f"a dict with keys {sorted(map(str, obj))[:6]}"
    return f"a {type(obj).__name__}"


def _torch_load(path: Path, trust_checkpoint: bool) -> Any:
    pickle_module = dill if trust_checkpoint else restricted_pickle_module(path)
    try:
        return torch.load(path, map_location="cpu", pickle_module=pickle_module, weights_only=False)
    except UnsafeCheckpointError:
        raise
    except Exception as error:  # torch/zip/pickle errors all mean: this file cannot be read
        text = str(error).strip()
        reason = text.splitlines()[0].split(". ")[0] if text else type(error).__name__
        with open(path, "rb") as f:
            head = f.read(4)
        if head.startswith(b"PK"):  # a zip archive, as torch.save writes: damaged on disk
            raise CheckpointError(
                f"checkpoint {path} is truncated or corrupt ({reason}); re-download it or re-save it "
                "from its training run"
            ) from None
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint ({reason}); pass a .ckpt file written by a "
            "Diffusion Policy training run"
        ) from None


def read_checkpoint(path: PathLike, trust_checkpoint: bool = False, cfg_is_used: bool = True) -> CheckpointPayload:
    """Load a workspace checkpoint's payload on the CPU (no policy is built).

    Unless trusted, the cfg is resolved and checked (safe_config.py). `cfg_is_used=False` (training
    resume: the run rebuilds everything from its own cfg) skips that check and drops the cfg, since
    nothing of it is read; the pickles are restricted either way."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path (training writes "
                              "<output_dir>/checkpoints/latest.ckpt and the top-k epoch=*.ckpt files)")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory; pass one of its .ckpt files")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (an interrupted write?); re-save or re-download it")

    payload = _torch_load(path, trust_checkpoint)
    if not (isinstance(payload, dict) and "cfg" in payload and "state_dicts" in payload):
        raise CheckpointError(
            f"{path} holds {_describe(payload)}, not a Diffusion Policy workspace checkpoint (a dict with "
            "'cfg', 'state_dicts' and 'pickles'); write one with diffusion_policy.common.checkpoint."
            "save_checkpoint"
        )
    cfg = payload["cfg"]
    if isinstance(cfg, dict):
        cfg = OmegaConf.create(cfg)
    if not isinstance(cfg, DictConfig):
        raise CheckpointError(f"checkpoint {path}: 'cfg' is a {type(cfg).__name__}, expected an OmegaConf "
                              "DictConfig; the file was not written by a training workspace")
    if not cfg_is_used:
        cfg = OmegaConf.create({})
    elif not trust_checkpoint:
        try:
            cfg = resolve_untrusted_cfg(cfg, str(path))
        except UnsafeConfigError as error:
            raise UnsafeCheckpointError(str(error)) from None

    loads = dill.loads if trust_checkpoint else restricted_pickle_module(path).loads
    pickles = {}
    for key, data in payload.get("pickles", {}).items():
        try:
            pickles[key] = loads(data)
        except UnsafeCheckpointError:
            raise
        except Exception as error:  # any unpickling failure: the bytes are damaged
            raise CheckpointError(f"checkpoint {path}: pickles['{key}'] cannot be read ({error}); "
                                  "the file is corrupt") from None
    return CheckpointPayload(cfg=cfg, state_dicts=payload["state_dicts"], pickles=pickles)


# ----------------------------------------------------------------------------- building the policy
def _targets(node: Any, where: str):
    """Yield (config path, target) for every `_target_` below `node`."""
    if isinstance(node, DictConfig):
        for key in node:
            child_where = f"{where}.{key}"
            if key == "_target_":
                yield child_where, node[key]
            else:
                yield from _targets(node._get_node(key), child_where)
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            yield from _targets(node._get_node(i), f"{where}[{i}]")


def _require(cfg: DictConfig, key: str, path: Path) -> Any:
    value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
    if value is None:
        raise CheckpointError(f"checkpoint {path}: cfg has no '{key}'; the cfg is incomplete (was it edited "
                              "or written by another tool?)")
    return value


def build_policy(cfg: DictConfig, path: PathLike = "<cfg>", trust_checkpoint: bool = False) -> torch.nn.Module:
    """`hydra.utils.instantiate(cfg.policy)`; without trust_checkpoint only classes of this package and
    the diffusers schedulers (safe_config.py)."""
    path = Path(path)
    policy_cfg = _require(cfg, "policy", path)
    _require(cfg, "policy._target_", path)
    if not trust_checkpoint:
        try:  # a cfg that did not come through read_checkpoint is resolved and checked here
            policy_cfg = resolve_untrusted_cfg(cfg, str(path)).policy
        except UnsafeConfigError as error:
            raise UnsafeCheckpointError(str(error)) from None
    for where, target in _targets(policy_cfg, "policy"):
        try:
            hydra.utils.get_object(target)
        except (ImportError, AttributeError, ValueError):
            raise CheckpointError(f"checkpoint {path}: {where} names '{target}', which cannot be imported "
                                  "here; install the package that provides it") from None
    try:
        return hydra.utils.instantiate(policy_cfg)
    except hydra.errors.InstantiationException as error:
        reason = " ".join(str(error).split())
        raise CheckpointError(f"checkpoint {path}: building the policy from cfg.policy failed: {reason}") from None


def policy_state_key(cfg: DictConfig) -> str:
    """Which state_dict evaluation uses: 'ema_model' if cfg.training.use_ema, else 'model'."""
    return "ema_model" if cfg.training.use_ema else "model"


def load_policy_weights(policy: torch.nn.Module, state_dict: dict, path: PathLike = "<state_dict>",
                        key: str = "model") -> None:
    """`policy.load_state_dict(state_dict, strict=True)` with one-line errors naming the first problem."""
    expected = policy.state_dict()
    for name, tensor in state_dict.items():
        if name in expected and tuple(expected[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"checkpoint {path}: state_dicts['{key}']['{name}'] has shape {tuple(tensor.shape)} but the "
                f"policy built from its cfg has {tuple(expected[name].shape)}; the weights and cfg.policy "
                "disagree (restore the cfg the weights were trained with)"
            )
    try:
        policy.load_state_dict(state_dict, strict=True)
    except RuntimeError:
        # The normalizer adopts whatever fields the checkpoint has; any other key must match.
        loaded = set(policy.state_dict())
        missing = sorted(set(expected) - set(state_dict) - {k for k in expected if k.startswith("normalizer.")})
        unexpected = sorted(set(state_dict) - loaded)
        problems = [f"missing {missing[:3]}" if missing else "", f"unexpected {unexpected[:3]}" if unexpected else ""]
        raise CheckpointError(
            f"checkpoint {path}: state_dicts['{key}'] does not fit the policy built from its cfg "
            f"({', '.join(p for p in problems if p) or 'key mismatch'}); the weights and cfg.policy disagree"
        ) from None


# ----------------------------------------------------------------------------- inference settings
SCHEDULERS = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}


def set_noise_scheduler(policy: torch.nn.Module, kind: str) -> None:
    """Swap the policy's diffusers scheduler for 'ddpm' or 'ddim', keeping its noise schedule.

    The betas, clip_sample and prediction_type carry over, so DDIM sampling of a DDPM-trained policy
    uses the schedule it was trained with. DDIM gets set_alpha_to_one=True and steps_offset=0 (as in
    the original real-robot config): its last step lands on the clean sample.
    """
    if kind not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {kind!r}; use one of {sorted(SCHEDULERS)}")
    scheduler_cls = SCHEDULERS[kind]
    current = policy.noise_scheduler
    if type(current) is scheduler_cls:
        return
    accepted = set(inspect.signature(scheduler_cls.__init__).parameters)
    kwargs = {k: v for k, v in dict(current.config).items() if k in accepted}
    if kind == "ddim":
        kwargs.update(set_alpha_to_one=True, steps_offset=0)
    policy.noise_scheduler = scheduler_cls(**kwargs)


def set_num_inference_steps(policy: torch.nn.Module, num_inference_steps: int) -> None:
    """Denoising steps per predict_action (at most the scheduler's num_train_timesteps)."""
    max_steps = policy.noise_scheduler.config.num_train_timesteps
    if not 1 <= int(num_inference_steps) <= max_steps:
        raise ValueError(f"num_inference_steps={num_inference_steps} is outside [1, {max_steps}] "
                         f"(the scheduler has {max_steps} train timesteps)")
    policy.num_inference_steps = int(num_inference_steps)


def load_checkpoint(
    path: PathLike,
    device: str | torch.device = "cpu",
    trust_checkpoint: bool = False,
    num_inference_steps: int | None = None,
    scheduler: str | None = None,
) -> tuple[torch.nn.Module, DictConfig]:
    """Checkpoint -> (policy in eval mode on `device`, cfg).

    The policy is `cfg.policy` instantiated and loaded (strict) with the EMA weights when
    cfg.training.use_ema, else the trained weights. `scheduler` ('ddpm' | 'ddim') and
    `num_inference_steps` override the sampling settings of the checkpoint's cfg.
    """
    path = Path(path)
    payload = read_checkpoint(path, trust_checkpoint=trust_checkpoint)
    cfg = payload.cfg
    _require(cfg, "training.use_ema", path)
    key = policy_state_key(cfg)
    if key not in payload.state_dicts:
        raise CheckpointError(f"checkpoint {path} has no state_dicts['{key}'] (it has "
                              f"{sorted(payload.state_dicts)}) although cfg.training.use_ema is "
                              f"{cfg.training.use_ema}; the file is incomplete")
    policy = build_policy(cfg, path, trust_checkpoint=trust_checkpoint)
    load_policy_weights(policy, payload.state_dicts[key], path, key)
    if scheduler is not None:
        set_noise_scheduler(policy, scheduler)
    if num_inference_steps is not None:
        set_num_inference_steps(policy, num_inference_steps)
    policy.to(device).eval()
    return policy, cfg


# ----------------------------------------------------------------------------- writing
def _to_cpu(value: Any) -> Any:
    """Tensors -> CPU, through nested dicts/lists; module state_dicts keep their version metadata."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu")
    if isinstance(value, OrderedDict):
        result = OrderedDict((k, _to_cpu(v)) for k, v in value.items())
        if hasattr(value, "_metadata"):
            result._metadata = value._metadata
        return result
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def save_checkpoint(
    path: PathLike,
    cfg: DictConfig,
    state_dicts: dict[str, dict],
    pickles: dict[str, Any] | None = None,
    inference_only: bool = False,
) -> Path:
    """Write the original payload (`torch.save(..., pickle_module=dill)`) atomically; tensors go to CPU.

    `pickles` values are plain Python values (ints, strings); each is stored as dill bytes, as the
    original does. With `inference_only=True` only the state_dict evaluation reads is kept
    ('ema_model' if cfg.training.use_ema, else 'model'; no optimizer): a valid payload for the
    original `eval.py` and for `load_checkpoint`, about a third of a training checkpoint's size, that
    cannot resume training.
    """
    path = Path(path)
    cfg = OmegaConf.create(cfg) if isinstance(cfg, dict) else copy.deepcopy(cfg)
    OmegaConf.resolve(cfg)
    if inference_only:
        key = policy_state_key(cfg)
        state_dicts = {key: state_dicts[key]}
    payload = {
        "cfg": cfg,
        "state_dicts": {name: _to_cpu(sd) for name, sd in state_dicts.items()},
        "pickles": {name: dill.dumps(value) for name, value in (pickles or {}).items()},
    }
    return write_atomic(path, lambda f: torch.save(payload, f, pickle_module=dill))


def export_inference_checkpoint(src: PathLike, dst: PathLike, trust_checkpoint: bool = False) -> Path:
    """Copy a training checkpoint to a small one holding only the weights evaluation uses."""
    payload = read_checkpoint(src, trust_checkpoint=trust_checkpoint)
    _require(payload.cfg, "training.use_ema", Path(src))
    return save_checkpoint(dst, payload.cfg, payload.state_dicts, payload.pickles, inference_only=True)


# ----------------------------------------------------------------------------- identity
def weights_fingerprint(policy_or_state_dict: torch.nn.Module | dict) -> str:
    """sha256 over a policy's state_dict (names, dtypes, shapes, bytes, in name order).

    Identifies the weights, not the file: a checkpoint re-saved or exported keeps its fingerprint,
    so schedules and datasets can record which model they belong to."""
    state_dict = (policy_or_state_dict.state_dict() if isinstance(policy_or_state_dict, torch.nn.Module)
                  else policy_or_state_dict)
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{tensor.dtype}|{tuple(state_dict[name].shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
