"""The gate between a checkpoint's config and `hydra.utils.instantiate`.

A checkpoint's cfg is untrusted: hydra builds whatever its `_target_`s name, and OmegaConf runs
whatever resolvers its interpolations call. `resolve_untrusted_cfg` turns it into a plain,
validated config before anything reads it:

1. it is resolved once, with only the resolvers in SAFE_RESOLVERS available (custom resolvers
   such as `eval`, hydra's `now` and every other `oc.*` one, `oc.env` included, are refused);
2. the result is a plain container: no interpolation is left, and a string that would become one
   again when hydra wraps the container (an escaped `\\${...}`) is refused;
3. every `_target_` anywhere in it (policy, model, scheduler, obs encoder, env runner, dataset,
   their arguments, lists and nested dicts) must name a class defined in this package or one of
   the diffusers schedulers in ALLOWED_EXTERNAL_TARGETS; it is checked by name before anything is
   imported, so a crafted module path is never imported.

Any violation raises UnsafeConfigError with one line naming the key path and the opt-in
(`trust_checkpoint=True` / `--trust_checkpoint`). Only the returned config is instantiated.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.basecontainer import BaseContainer
from omegaconf.errors import OmegaConfBaseException

PACKAGE = "diffusion_policy"
# Resolvers that only read other values of the same config.
SAFE_RESOLVERS = frozenset({"oc.select", "oc.dict.keys", "oc.dict.values"})
# Classes outside this package that a Diffusion Policy cfg instantiates (the noise schedulers).
ALLOWED_EXTERNAL_TARGETS = frozenset({
    "diffusers.schedulers.scheduling_ddpm.DDPMScheduler",
    "diffusers.schedulers.scheduling_ddim.DDIMScheduler",
    "diffusers.DDPMScheduler",
    "diffusers.DDIMScheduler",
})
TRUST_OPT_IN = "if you trust this file, pass trust_checkpoint=True (--trust_checkpoint)"
_RESOLVER_CALL = re.compile(r"\$\{\s*([A-Za-z_][\w.]*)\s*:")


class UnsafeConfigError(ValueError):
    """A config asks for code or values outside what a Diffusion Policy checkpoint needs."""


def _refuse(source: str, where: str, what: str) -> UnsafeConfigError:
    return UnsafeConfigError(f"checkpoint {source}: cfg {where} {what}, which a Diffusion Policy checkpoint "
                             f"does not need; {TRUST_OPT_IN}")


def _walk(node: Any, where: str) -> Iterator[tuple[str, Any]]:
    """(key path, value) of every leaf and every `_target_` below a plain container."""
    if isinstance(node, dict):
        for key, value in node.items():
            child = f"{where}.{key}" if where else str(key)
            if key == "_target_":  # yielded whatever its type, so that a non-string target is seen
                yield child, value
            else:
                yield from _walk(value, child)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{where}[{i}]")
    else:
        yield where, node


def _check_resolvers(raw: Any, source: str) -> None:
    for where, value in _walk(raw, ""):
        if isinstance(value, str):
            for name in _RESOLVER_CALL.findall(value):
                if name not in SAFE_RESOLVERS:
                    raise _refuse(source, where, f"calls the resolver '{name}' ({value!r})")


def _resolve_with_safe_resolvers(cfg: DictConfig, source: str) -> dict:
    """`OmegaConf.to_container(cfg, resolve=True)` with only SAFE_RESOLVERS registered meanwhile."""
    registered = BaseContainer._resolvers
    BaseContainer._resolvers = {name: fn for name, fn in registered.items() if name in SAFE_RESOLVERS}
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or "?"
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if "Unsupported interpolation type" in reason:
            raise _refuse(source, key, f"uses an interpolation that is not allowed ({reason})") from None
        raise UnsafeConfigError(f"checkpoint {source}: cfg {key} cannot be resolved ({reason}); the cfg is "
                                "broken (was it edited?)") from None
    finally:
        BaseContainer._resolvers = registered


def check_target(target: Any, where: str, source: str) -> None:
    """Raise UnsafeConfigError unless `target` names a class of this package or an allowed scheduler."""
    if not isinstance(target, str):
        raise _refuse(source, where, f"has a non-string _target_ {target!r}")
    if target in ALLOWED_EXTERNAL_TARGETS:
        return
    if not re.fullmatch(rf"{PACKAGE}(\.[A-Za-z_]\w*)+", target):
        raise _refuse(source, where, f"instantiates '{target}'")
    try:
        obj = hydra.utils.get_object(target)
    except Exception:  # ImportError, AttributeError, hydra's own errors: the name does not exist here
        raise UnsafeConfigError(f"checkpoint {source}: cfg {where} names '{target}', which does not exist in "
                                "this package; the checkpoint was written by other code") from None
    # `diffusion_policy.some_module.os.system` resolves through a module attribute to foreign code.
    if not (inspect.isclass(obj) and obj.__module__.split(".")[0] == PACKAGE):
        raise _refuse(source, where, f"instantiates '{target}' (not a class of this package)")


def check_targets(container: Any, source: str) -> None:
    """Check every `_target_` below a plain container (dicts and lists, any depth)."""
    for where, value in _walk(container, ""):
        if where == "_target_" or where.endswith("._target_"):
            check_target(value, where, source)


def resolve_untrusted_cfg(cfg: DictConfig | dict, source: str = "<cfg>") -> DictConfig:
    """The checkpoint cfg as a plain, validated DictConfig (see the module docstring)."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    raw = OmegaConf.to_container(cfg, resolve=False)
    _check_resolvers(raw, source)
    container = _resolve_with_safe_resolvers(cfg, source)
    for where, value in _walk(container, ""):
        if isinstance(value, str) and "${" in value:
            raise _refuse(source, where, f"holds an interpolation after resolution ({value!r})")
    check_targets(container, source)
    return OmegaConf.create(container)



def safe_slug(text: Any, fallback: str = "task") -> str:
    """A checkpoint-provided string as one safe path component: letters, digits, '.', '_', '-' only,
    no leading dot, at most 64 characters ('/abs/../x' -> 'abs_.._x'; '' -> fallback)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).lstrip("._-")[:64]
    return slug if slug and set(slug) - {"."} else fallback
