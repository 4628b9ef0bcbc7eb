"""One file format for every trained policy: msgpack, never pickle, with a checksum.

    {"header": JSON text, "params": msgpack bytes of the weights, "sha256": hex digest of them}

The header names the format and its version, the policy's `kind` (below), the network
config, the policy's own fields (action mode, noise, BCQ threshold), the environment spec
when known, the teamsift version and free `extra` entries (the learner, its
hyperparameters, the dataset, the seed). `load_policy` refuses a file whose weights do not
match their checksum, so a corrupted file never acts.

    kind       class                       written by
    network    nets.NetworkPolicy          BC, EV2BC, group-BC, ICQ, MACQL, SIT, TD3+BC, OMAR,
                                           MADDPG+CQL, MAPPO/IPPO, MAGAIL's generator
    bcq        nets.BCQPolicy              MABCQ (Q and behaviour networks)
    mat        nets.mat.MATPolicy          MAT, MILD²'s generator

Version-1 files (a network policy, or the earlier MAT format) still load, without a checksum.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from teamsift.fileio import atomic_write_bytes
from teamsift.nets.agent import AgentNetConfig, init_params
from teamsift.nets.mat import MATNetConfig, MATPolicy, init_mat_params
from teamsift.nets.policy import BCQPolicy, NetworkPolicy

POLICY_FORMAT = "teamsift-policy"
POLICY_FORMAT_VERSION = 2
LEGACY_MAT_FORMAT = "teamsift-mat-policy"


class PolicyFileError(ValueError):
    """A policy file that is missing, corrupt or of an unknown format."""


@dataclasses.dataclass(frozen=True)
class PolicyKind:
    name: str
    cls: type
    config_cls: type
    template: Callable[[Any], Any]  # config -> a params pytree of the right structure
    fields: tuple[str, ...]  # the policy's non-array fields stored in the header


def _network_template(config):
    return init_params(config, jax.random.key(0))


KINDS = {
    "network": PolicyKind("network", NetworkPolicy, AgentNetConfig, _network_template, ("deterministic", "noise_std")),
    "bcq": PolicyKind("bcq", BCQPolicy, AgentNetConfig,
                      lambda c: {"q": _network_template(c), "behaviour": _network_template(c)}, ("threshold",)),
    "mat": PolicyKind("mat", MATPolicy, MATNetConfig, lambda c: init_mat_params(c, jax.random.key(0)),
                      ("deterministic",)),
}


def kind_of(policy) -> PolicyKind:
    for kind in KINDS.values():
        if type(policy) is kind.cls:
            return kind
    raise TypeError(f"save_policy: no file kind for a {type(policy).__name__}; expected one of "
                    f"{[k.cls.__name__ for k in KINDS.values()]}")


def _config_dict(config) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(config).items()}


def _config_of(kind: PolicyKind, values: dict):
    return kind.config_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def params_bytes(params) -> bytes:
    return serialization.msgpack_serialize(serialization.to_state_dict(jax.tree.map(np.asarray, params)))


def save_policy(policy, path: str | os.PathLike, *, spec=None, extra: dict | None = None) -> Path:
    """Write any trained policy (see the kinds above) to one file, atomically."""
    import teamsift

    kind = kind_of(policy)
    blob = params_bytes(policy.params)
    header = {
        "format": POLICY_FORMAT,
        "format_version": POLICY_FORMAT_VERSION,
        "kind": kind.name,
        "config": _config_dict(policy.config),
        "policy": {name: getattr(policy, name) for name in kind.fields},
        "spec": spec.to_dict() if spec is not None else None,
        "teamsift_version": teamsift.__version__,
        "extra": extra or {},
    }
    payload = {"header": json.dumps(header), "params": blob, "sha256": hashlib.sha256(blob).hexdigest()}
    return atomic_write_bytes(path, serialization.msgpack_serialize(payload))


def read_header(path: str | os.PathLike) -> dict:
    """The header of a policy file (its kind, config, spec and extra entries)."""
    return _read(Path(path))[1]


def _read(path: Path) -> tuple[dict, dict]:
    if not path.is_file():
        raise PolicyFileError(f"{path}: no such policy file")
    try:
        payload = serialization.msgpack_restore(path.read_bytes())
        header = json.loads(payload["header"])
    except Exception as exc:  # corrupt bytes of any kind
        raise PolicyFileError(f"{path}: not a teamsift policy file ({type(exc).__name__}: {exc})") from None
    if not isinstance(header, dict):
        raise PolicyFileError(f"{path}: field 'header' expected a JSON object, found {type(header).__name__}")
    return payload, header


def load_policy(path: str | os.PathLike) -> tuple[Any, dict]:
    """Read a policy of any kind written by `save_policy`. Returns (policy, header)."""
    path = Path(path)
    payload, header = _read(path)
    version = (header.get("format"), header.get("format_version"))
    if version == (POLICY_FORMAT, POLICY_FORMAT_VERSION):
        kind = KINDS.get(header.get("kind"))
        if kind is None:
            raise PolicyFileError(f"{path}: field 'kind' expected one of {sorted(KINDS)}, found {header.get('kind')!r}")
        blob = payload.get("params")
        if not isinstance(blob, bytes) or hashlib.sha256(blob).hexdigest() != payload.get("sha256"):
            raise PolicyFileError(f"{path}: the weights do not match their checksum (field 'sha256'): the file is "
                                  f"corrupted; train or copy it again")
        state = serialization.msgpack_restore(blob)
        fields = header.get("policy", {})
    elif version in ((POLICY_FORMAT, 1), (LEGACY_MAT_FORMAT, 1)):
        kind = KINDS["mat"] if version[0] == LEGACY_MAT_FORMAT else KINDS["network"]
        if header.get("extra", {}).get("kind") == "mabcq":
            kind = KINDS["bcq"]
        state = payload["params"]
        fields = {name: header[name] for name in ("deterministic", "noise_std") if name in header}
        if kind.name == "bcq":
            fields = {"threshold": header["extra"]["threshold"]}
    else:
        raise PolicyFileError(f"{path}: field 'format' expected {POLICY_FORMAT!r} version {POLICY_FORMAT_VERSION}, "
                              f"found {header.get('format')!r} version {header.get('format_version')!r}")
    try:
        config = _config_of(kind, header["config"])
        params = serialization.from_state_dict(kind.template(config), state)
    except Exception as exc:
        raise PolicyFileError(f"{path}: field 'config' or 'params' does not describe a {kind.name} policy "
                              f"({type(exc).__name__}: {exc})") from None
    params = jax.tree.map(jnp.asarray, params)
    return kind.cls(params=params, config=config, **fields), header
