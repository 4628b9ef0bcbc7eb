"""Environment registry: `make(env_id, **kwargs)` and `list_envs()`.

Factories are registered lazily (by module path) so that `teamsift envs` does not
import JaxMARL, Brax and MuJoCo just to print a table. `make` caches its result per
(id, kwargs), so the same environment object — and therefore the same jit cache —
is returned every time.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from typing import Any, Callable

from teamsift.envs.base import Env


@dataclasses.dataclass(frozen=True)
class EnvEntry:
    env_id: str
    family: str  # mpe | overcooked | smax | mabrax | commons | poly
    factory: str  # "module:function", called as function(**kwargs) -> Env
    defaults: tuple[tuple[str, Any], ...] = ()
    description: str = ""


_REGISTRY: dict[str, EnvEntry] = {}
_CACHE: dict[tuple[str, str], Env] = {}


def register(env_id: str, family: str, factory: str, description: str = "", **defaults) -> None:
    if env_id in _REGISTRY:
        raise ValueError(f"environment id {env_id!r} is already registered")
    _REGISTRY[env_id] = EnvEntry(env_id, family, factory, tuple(sorted(defaults.items())), description)


def list_envs(family: str | None = None) -> list[EnvEntry]:
    return [e for e in _REGISTRY.values() if family is None or e.family == family]


def entry(env_id: str) -> EnvEntry:
    try:
        return _REGISTRY[env_id]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"unknown environment id {env_id!r}; registered ids: {known}") from None


#: The best episode return of an environment family whose rewards are bounded by
#: construction (learners tuned on SMAC rescale rewards by it, as PyMARL does).
_BEST_RETURNS = {"smax": "teamsift.envs.smax:BEST_RETURN"}


def best_return(env_id: str) -> float | None:
    """The best episode return `env_id` can give, where its family bounds it (SMAX: 2);
    None for other families and for ids that are not registered (e.g. imported data)."""
    family = _REGISTRY[env_id].family if env_id in _REGISTRY else None
    return float(_resolve(_BEST_RETURNS[family])) if family in _BEST_RETURNS else None


def _resolve(factory: str) -> Callable[..., Env]:
    module_name, fn_name = factory.split(":")
    return getattr(importlib.import_module(module_name), fn_name)


def make(env_id: str, **kwargs) -> Env:
    """Build (or fetch from cache) the environment `env_id` with keyword overrides."""
    item = entry(env_id)
    merged = {**dict(item.defaults), **kwargs}
    cache_key = (env_id, json.dumps(merged, sort_keys=True, default=str))
    if cache_key not in _CACHE:
        env = _resolve(item.factory)(**merged)
        if env.spec.env_id != env_id:
            env = dataclasses.replace(env, spec=dataclasses.replace(env.spec, env_id=env_id))
        _CACHE[cache_key] = dataclasses.replace(env, kwargs=merged)
    return _CACHE[cache_key]
