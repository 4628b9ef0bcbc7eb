"""Importers: plain `.npz` archives and OG-MARL / flashbax Vaults -> teamsift datasets.

Both build the arrays of a dataset, then hand them to `write_dataset` (which validates
everything again and writes atomically). Every problem with the source raises
`DatasetError` naming the source file (the npz, or the vault leaf) and the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from teamsift.data.errors import DatasetError, describe_array, short_exc
from teamsift.data.format import check_finite, write_dataset
from teamsift.envs.base import EnvSpec

# ---------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------


def _resolve_spec(env_id: str | None, spec: EnvSpec | None) -> tuple[EnvSpec | None, dict]:
    """The spec to check against: the given one, or the registered env's, or None."""
    if spec is not None:
        return spec, {"spec_source": "given"}
    if env_id is not None:
        from teamsift.envs import registry

        try:
            registry.entry(env_id)
        except KeyError:
            return None, {"spec_source": "inferred", "env_registered": False}
        env = registry.make(env_id)
        return env.spec, {"spec_source": "registry", "env_kwargs": dict(env.kwargs)}
    return None, {"spec_source": "inferred"}


def _custom_spec(env_id: str | None, num_agents: int, obs_dim: int, state_dim: int, discrete: bool,
                 num_actions: int, episode_length: int, score_names) -> EnvSpec:
    return EnvSpec(
        env_id=env_id or "custom",
        agents=tuple(f"agent_{i}" for i in range(num_agents)),
        agent_types=("agent",) * num_agents,
        obs_dim=int(obs_dim),
        obs_widths=(int(obs_dim),) * num_agents,
        state_dim=int(state_dim),
        discrete=bool(discrete),
        num_actions=int(num_actions),
        action_dims=(int(num_actions),) * num_agents,
        episode_length=int(episode_length),
        scores=("return", *[s for s in score_names if s != "return"]),
        description="inferred from imported arrays",
    )


def _check_against_spec(label: str, spec: EnvSpec, arrays: Mapping[str, np.ndarray], keymap: Mapping[str, str]) -> None:
    """Compare the imported arrays' widths with a known spec (clear per-key messages)."""
    a = spec.num_agents
    obs = arrays["obs"]
    if obs.shape[1:] != (a, spec.obs_dim):
        raise DatasetError(label, keymap["obs"], f"shape [N, A={a}, O={spec.obs_dim}] for env {spec.env_id!r}",
                           describe_array(obs))
    state = arrays.get("state")
    if state is not None and state.shape[1:] != (spec.state_dim,):
        raise DatasetError(label, keymap["state"], f"shape [N, S={spec.state_dim}] for env {spec.env_id!r}",
                           describe_array(state))
    act = arrays["actions"]
    if spec.discrete and act.ndim != 2:
        raise DatasetError(label, keymap["actions"], f"discrete actions [N, A={a}] for env {spec.env_id!r}",
                           describe_array(act))
    if not spec.discrete and act.shape[1:] != (a, spec.num_actions):
        raise DatasetError(label, keymap["actions"],
                           f"continuous actions [N, A={a}, D={spec.num_actions}] for env {spec.env_id!r}",
                           describe_array(act))
    avail = arrays.get("avail")
    if avail is not None and avail.shape[1:] != (a, spec.num_actions):
        raise DatasetError(label, keymap["avail"], f"shape [N, A={a}, nA={spec.num_actions}] for env {spec.env_id!r}",
                           describe_array(avail))


def _as_bool(label: str, key: str, arr: np.ndarray) -> np.ndarray:
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind in "iuf":
        if arr.dtype.kind == "f":
            check_finite(label, key, arr)
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise DatasetError(label, key, "bool (or 0/1) values", f"values {np.unique(arr)[:6].tolist()}")
        return arr != 0
    raise DatasetError(label, key, "a bool array", f"dtype {arr.dtype.name}")


def _write_remapped(label: str, keymap: Mapping[str, str], **kwargs) -> Path:
    """write_dataset, with its errors re-labelled as errors of the source file/key."""
    try:
        return write_dataset(**kwargs)
    except DatasetError as exc:
        key = keymap.get(exc.field, exc.field)
        raise DatasetError(label, key, exc.expected, exc.found) from None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------
# npz
# ---------------------------------------------------------------------------------------

#: The keys `import_npz` understands (N steps, E episodes, A agents). Any other key is
#: refused (so that a typo such as "rewards" is not silently ignored).
NPZ_KEYS: dict[str, str] = {
    "obs": "required, [N, A, O] float: observations, concatenated over episodes",
    "actions": "required, [N, A] integer (discrete) or [N, A, D] float (continuous)",
    "reward": "required, [N] float: team reward per step",
    "episode_lengths": "required, [E] integer >= 1, summing to N",
    "state": "optional, [N, S] float (default: obs flattened to [N, A*O])",
    "avail": "optional, [N, A, nA] bool, discrete only (default: all actions available)",
    "terminated": "optional, [N] bool, True only at an episode's last step",
    "truncated": "optional, [N] bool, True only at an episode's last step",
    "final_obs": "optional, [E, A, O] float: observation after each episode's last step "
                 "(default: the episode's last observation)",
    "final_state": "optional, [E, S] float (default: the episode's last state)",
    "final_avail": "optional, [E, A, nA] bool (default: the episode's last avail)",
    "agent_ids": "optional, [E, A] unicode: individual behind each slot (default 'e{episode}_s{slot}')",
    "behaviour": "optional, [E, A] unicode: ground-truth behaviour level per slot",
    "policy_ids": "optional, [E, A] unicode: behaviour policy id per slot",
    "score_<name>": "optional, any number of them, [E] float: a named episode score",
}
NPZ_REQUIRED = ("obs", "actions", "reward", "episode_lengths")

_NPZ_FIELD_TO_KEY = {"length": "episode_lengths"}


def import_npz(npz_path: str | os.PathLike, out_dir: str | os.PathLike, *, env_id: str | None = None,
               spec: EnvSpec | None = None, discount: float = 0.99, overwrite: bool = False,
               notes: str = "", provenance: Mapping[str, Any] | None = None) -> Path:
    """Import a `.npz` archive of concatenated episodes as a teamsift dataset.

    Keys (see `NPZ_KEYS`; N steps, E episodes, A agents):

    * required: ``obs`` [N,A,O] float; ``actions`` [N,A] integer (discrete) or [N,A,D]
      float (continuous); ``reward`` [N] float (team reward); ``episode_lengths`` [E]
      integers >= 1 summing to N.
    * optional: ``state`` [N,S] (default: obs flattened); ``avail`` [N,A,nA] bool
      (discrete only; default: all available); ``terminated`` / ``truncated`` [N] bool,
      True only at an episode's last step (with neither, every episode is taken as
      terminated at its last step; with one, the other is "last step and not the
      given flag"); ``final_obs`` [E,A,O], ``final_state`` [E,S], ``final_avail``
      [E,A,nA] (default: the episode's last row — no bootstrapping information is
      invented); ``agent_ids``, ``behaviour``, ``policy_ids`` [E,A] unicode strings;
      ``score_<name>`` [E] float, any number.

    The spec: `spec` if given; else, if `env_id` is a registered environment, its spec
    (the arrays are checked against it); else one inferred from the arrays (env id
    `env_id` or "custom", agents agent_0.., nA = avail width or max action + 1,
    episode_length = longest episode).

    The archive is read with ``allow_pickle=False``: object arrays are refused, and
    strings must be unicode (``str``) arrays, not bytes.

    Raises:
        DatasetError: naming the npz file and the key, for every malformed input.
    """
    src = Path(npz_path)
    label = str(src)

    def err(key, expected, found):
        return DatasetError(label, key, expected, found)

    if not src.is_file():
        raise err("npz", "an .npz file", "missing" if not src.exists() else "not a file")
    data = _read_npz(src, label)

    missing = [k for k in NPZ_REQUIRED if k not in data]
    if missing:
        raise err(missing[0], NPZ_KEYS[missing[0]], "missing")

    def numeric(key, ndim, shape_txt):
        arr = data[key]
        if arr.ndim != ndim or arr.dtype.kind not in "iuf":
            raise err(key, f"a numeric array {shape_txt}", describe_array(arr))
        return arr

    obs = numeric("obs", 3, "[N, A, O]")
    n, a, o = obs.shape
    if n == 0 or a == 0 or o == 0:
        raise err("obs", "a non-empty [N, A, O] array", describe_array(obs))
    reward = numeric("reward", 1, "[N]")
    lengths = data["episode_lengths"]
    if lengths.ndim != 1 or lengths.dtype.kind not in "iu" or len(lengths) == 0:
        raise err("episode_lengths", "a non-empty integer array [E]", describe_array(lengths))
    if (lengths < 1).any():
        r = int(np.argmax(lengths < 1))
        raise err("episode_lengths", "lengths >= 1", f"{int(lengths[r])} at index {r}")
    total = int(lengths.sum())
    # N: obs, reward and episode_lengths must agree; blame the one that disagrees.
    if total != n and reward.shape[0] == n:
        raise err("episode_lengths", f"lengths summing to N={n} (rows of obs and reward)", f"sum {total}")
    if n != total:
        raise err("obs", f"N={total} rows (sum of episode_lengths)", describe_array(obs))
    if reward.shape != (n,):
        raise err("reward", f"shape [N={n}] (sum of episode_lengths, rows of obs)", describe_array(reward))
    lengths = lengths.astype(np.int64)
    e = len(lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    last = starts + lengths - 1
    is_last = np.zeros(n, bool)
    is_last[last] = True

    actions = data["actions"]
    if actions.ndim == 2 and actions.dtype.kind in "iu":
        discrete = True
    elif actions.ndim == 3 and actions.dtype.kind == "f":
        discrete = False
    else:
        raise err("actions", "[N, A] integer (discrete) or [N, A, D] float (continuous)", describe_array(actions))
    if actions.shape[:2] != (n, a):
        raise err("actions", f"leading shape [N={n}, A={a}]", describe_array(actions))
    if discrete and actions.size and actions.min() < 0:
        r = int(np.argmax((actions < 0).any(axis=1)))
        raise err("actions", "discrete actions >= 0", f"{int(actions[r].min())} at row {r}")

    if "state" in data:
        state = numeric("state", 2, "[N, S]")
        if state.shape[0] != n:
            raise err("state", f"shape [N={n}, S]", describe_array(state))
        state_default = False
    else:
        state = obs.reshape(n, a * o)
        state_default = True

    avail = None
    if "avail" in data:
        if not discrete:
            raise err("avail", "no avail key for continuous actions", describe_array(data["avail"]))
        avail = _as_bool(label, "avail", data["avail"])
        if avail.ndim != 3 or avail.shape[:2] != (n, a) or avail.shape[2] == 0:
            raise err("avail", f"shape [N={n}, A={a}, nA] bool", describe_array(avail))

    flags = {}
    for key in ("terminated", "truncated"):
        if key in data:
            flag = _as_bool(label, key, data[key])
            if flag.shape != (n,):
                raise err(key, f"shape [N={n}] bool", describe_array(flag))
            if (flag & ~is_last).any():
                r = int(np.argmax(flag & ~is_last))
                raise err(key, "True only at an episode's last step", f"True at row {r}")
            flags[key] = flag
    if not flags:
        flags = {"terminated": is_last.copy(), "truncated": np.zeros(n, bool)}
    elif "terminated" not in flags:
        flags["terminated"] = is_last & ~flags["truncated"]
    elif "truncated" not in flags:
        flags["truncated"] = is_last & ~flags["terminated"]

    finals = {}
    for key, base, nd in (("final_obs", obs, 3), ("final_state", state, 2)):
        if key in data:
            arr = numeric(key, nd, f"[E={e}, ...]")
            if arr.shape != (e, *base.shape[1:]):
                raise err(key, f"shape [E={e}, {', '.join(map(str, base.shape[1:]))}]", describe_array(arr))
            finals[key] = arr
        else:
            finals[key] = base[last]
    if "final_avail" in data:
        if not discrete:
            raise err("final_avail", "no final_avail key for continuous actions", describe_array(data["final_avail"]))
        fa = _as_bool(label, "final_avail", data["final_avail"])
        want = (e, a, avail.shape[2] if avail is not None else fa.shape[-1] if fa.ndim == 3 else -1)
        if fa.shape != want:
            raise err("final_avail", f"shape [E={e}, A={a}, nA] bool matching avail", describe_array(fa))
        finals["final_avail"] = fa
    elif avail is not None:
        finals["final_avail"] = avail[last]

    strings = {}
    for key in ("agent_ids", "behaviour", "policy_ids"):
        if key in data:
            arr = data[key]
            if arr.dtype.kind != "U":
                raise err(key, "a unicode (str) array [E, A]", f"dtype {arr.dtype.name}" +
                          (" (bytes: decode to str first)" if arr.dtype.kind == "S" else ""))
            if arr.shape != (e, a):
                raise err(key, f"shape [E={e}, A={a}] str", describe_array(arr))
            strings[key] = arr
    scores = {}
    for key in sorted(k for k in data if k.startswith("score_")):
        arr = numeric(key, 1, f"[E={e}]")
        if arr.shape != (e,):
            raise err(key, f"shape [E={e}]", describe_array(arr))
        scores[key[len("score_"):]] = arr

    keymap = {"obs": "obs", "state": "state", "actions": "actions", "avail": "avail", **_NPZ_FIELD_TO_KEY}
    arrays = {"obs": obs, "state": None if state_default else state, "actions": actions, "avail": avail}
    if state_default:
        keymap["state"] = "obs"  # the state is derived from obs
    resolved, how = _resolve_spec(env_id, spec)
    if resolved is not None:
        _check_against_spec(label, resolved, arrays, keymap)
        if state_default and resolved.state_dim != a * o:
            raise err("state", f"[N, S={resolved.state_dim}] for env {resolved.env_id!r} (obs flattened has {a * o})",
                      "missing")
    else:
        if discrete:
            nA = avail.shape[2] if avail is not None else int(actions.max()) + 1
            if avail is not None and actions.size and actions.max() >= nA:
                r = int(np.argmax((actions >= nA).any(axis=1)))
                raise err("actions", f"actions < nA={nA} (width of avail)", f"{int(actions[r].max())} at row {r}")
        else:
            nA = actions.shape[2]
        resolved = _custom_spec(env_id, a, o, state.shape[1], discrete, nA, int(lengths.max()), scores)

    prov = {
        "source": "npz",
        "file": str(src.resolve()),
        "sha256": _sha256(src),
        "keys": sorted(data),
        "state_from_obs": state_default,
        "final_from_last_step": [k for k in ("final_obs", "final_state") if k not in data],
        **how,
        **dict(provenance or {}),
    }
    env_kwargs = prov.pop("env_kwargs", None)
    return _write_remapped(
        label, {**keymap, "final_obs": "final_obs", "final_state": "final_state"},
        out_dir=out_dir, spec=resolved, obs=obs, state=state, actions=actions, reward=reward,
        terminated=flags["terminated"], truncated=flags["truncated"], episode_lengths=lengths,
        final_obs=finals["final_obs"], final_state=finals["final_state"], avail=avail,
        final_avail=finals.get("final_avail"), scores=scores or None, agent_ids=strings.get("agent_ids"),
        behaviour=strings.get("behaviour"), policy_ids=strings.get("policy_ids"), env_kwargs=env_kwargs,
        discount=discount, provenance=prov, notes=notes, overwrite=overwrite)


def _read_npz(src: Path, label: str) -> dict[str, np.ndarray]:
    with open(src, "rb") as handle:
        head = handle.read(512)
    if not head.startswith(b"PK\x03\x04") and not head.startswith(b"\x93NUMPY"):
        raise DatasetError(label, "npz", "an .npz archive (a zip file of .npy arrays, as np.savez writes)",
                           _what_file(head))
    try:
        npz = np.load(src, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - truncated, damaged...
        kind = "a damaged or truncated zip file" if head.startswith(b"PK") else "a .npy file"
        raise DatasetError(label, "npz", "a readable .npz archive", f"{kind} ({short_exc(exc)})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DatasetError(label, "npz", "an .npz archive of named arrays", f"a single {describe_array(npz)} array")
    data = {}
    with npz:
        for key in npz.files:
            if key not in NPZ_KEYS and not (key.startswith("score_") and len(key) > len("score_")):
                raise DatasetError(label, key, f"one of the documented keys {sorted(NPZ_KEYS)}", "an unknown key")
            try:
                arr = npz[key]
            except ValueError as exc:
                if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
                    raise DatasetError(label, key, "a numeric, bool or unicode array (object/pickled arrays are refused)",
                                       "an object array") from None
                raise DatasetError(label, key, "a readable array", short_exc(exc)) from None
            except (zipfile.BadZipFile, OSError, EOFError, KeyError, RuntimeError) as exc:
                raise DatasetError(label, key, "a readable array", short_exc(exc)) from None
            except Exception as exc:  # noqa: BLE001 - zlib.error and friends
                raise DatasetError(label, key, "a readable array", short_exc(exc)) from None
            if arr.dtype.hasobject:
                raise DatasetError(label, key, "a numeric, bool or unicode array", "an object array")
            data[key] = arr
    return data


_MAGIC = ((b"\x1f\x8b", "a gzip file"), (b"\x89HDF", "an HDF5 file"), (b"BZh", "a bzip2 file"),
          (b"\xfd7zXZ", "an xz file"), (b"PAR1", "a Parquet file"), (b"%PDF", "a PDF file"),
          (b"\x89PNG", "a PNG image"), (b"7z\xbc\xaf", "a 7-Zip archive"))


def _what_file(head: bytes) -> str:
    """What the first bytes of a file say it is, for the "found" part of a message."""
    if not head:
        return "an empty file"
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        return "a Python pickle (never loaded: a pickle can run code)"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a character cut at the end of `head` is still text
        text = head[: exc.start].decode("utf-8") if exc.start >= len(head) - 3 else None
    if text is None or "\x00" in text:
        return "binary data starting with bytes " + head[:8].hex(" ")
    first = text.splitlines()[0] if text.strip() else ""
    return f"a text file starting {first[:40]!r}" if first else "a text file of blank lines"


# ---------------------------------------------------------------------------------------
# flashbax / OG-MARL Vault
# ---------------------------------------------------------------------------------------

#: Vault leaves (datastore names; flashbax appends "." to every path component).
VAULT_LEAVES: dict[str, str] = {
    "observations.": "required, (B, T, N, O)",
    "actions.": "required, (B, T, N) integer/float-coded discrete or (B, T, N, D) float continuous",
    "rewards.": "required, (B, T, N) per-agent (reduced to a team reward) or (B, T)",
    "terminals.": "required, (B, T, N) or (B, T), 0/1",
    "truncations.": "required, (B, T, N) or (B, T), 0/1",
    "infos.state.": "optional, (B, T, S) (default: observations flattened)",
    "infos.legals.": "optional, (B, T, N, nA) 0/1 available-action mask (discrete only)",
}
VAULT_INDEX = "vault_index"
VAULT_METADATA = "metadata.json"
#: Vault layout versions read here: flashbax's metadata "version" 1.0, 1.1 and 1.2 (major 1).
SUPPORTED_VAULT_MAJOR = 1
#: What `export_vault` keeps beside OG-MARL's leaves: a "teamsift" entry of metadata.json
#: (spec, discount, per-episode ids, labels and scores, episode lengths) and zarr arrays
#: "teamsift/<name>" in the same OCDBT store (final_obs, final_state, final_avail: one row
#: per episode). They are outside the vault's structure, so flashbax and OG-MARL never open them.
VAULT_EXTRAS_KEY = "teamsift"
VAULT_EXTRAS_FORMAT = "teamsift-vault-extras/1"
#: flashbax's layout constants: metadata version written, and the time-axis capacity of
#: every leaf (flashbax's TIME_AXIS_MAX_LENGTH, so that flashbax can append to the vault).
VAULT_VERSION = 1.2
VAULT_TIME_CAPACITY = 10**13
VAULT_COMPRESSION = {"id": "gzip", "level": 5}


def _find_vault_dir(vault_path: Path, vault_uid: str | None) -> Path:
    def is_vault(p: Path) -> bool:
        return (p / VAULT_METADATA).is_file() or (p / "manifest.ocdbt").is_file()

    if not vault_path.is_dir():
        raise DatasetError(str(vault_path), "vault", "a vault directory", "missing" if not vault_path.exists() else "not a directory")
    if vault_uid is not None:
        root = vault_path / vault_uid
        if not is_vault(root):
            if is_vault(vault_path) and vault_path.name == vault_uid:
                return vault_path
            raise DatasetError(str(root), "vault_uid", f"a vault (containing {VAULT_METADATA} and an OCDBT manifest)", "none there")
        return root
    if is_vault(vault_path):
        return vault_path
    # names starting with "." are temporaries of an unfinished `export_vault`, never vaults
    uids = sorted(p.name for p in vault_path.iterdir() if p.is_dir() and not p.name.startswith(".") and is_vault(p))
    if len(uids) == 1:
        return vault_path / uids[0]
    if not uids:
        raise DatasetError(str(vault_path), "vault_uid", "a vault directory, or a folder holding one vault uid", "no vault")
    raise DatasetError(str(vault_path), "vault_uid", f"vault_uid= naming one of {uids}", f"{len(uids)} vaults")


def _leaf_names(structure: Any, prefix: str = "") -> list[str]:
    if isinstance(structure, dict):
        out = []
        for k, v in structure.items():
            out += _leaf_names(v, f"{prefix}{k}.")
        return out
    return [prefix]


def _ts_spec(root: Path, name: str) -> dict:
    return {"driver": "zarr", "kvstore": {"driver": "ocdbt", "base": f"file://{root.resolve()}", "path": name}}


def _open_leaf(root: Path, name: str):
    import tensorstore as ts

    try:
        return ts.open(_ts_spec(root, name), open=True, read=True).result()
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(f"{root}/{name}", name, "a zarr array in the vault's OCDBT store", short_exc(exc)) from None


def import_vault(vault_path: str | os.PathLike, out_dir: str | os.PathLike, *, vault_uid: str | None = None,
                 env_id: str | None = None, spec: EnvSpec | None = None, discount: float | None = None,
                 reward_reduce: str = "auto", drop_incomplete: bool = True, overwrite: bool = False,
                 notes: str = "") -> Path:
    """Import an OG-MARL / flashbax Vault as a teamsift dataset, with tensorstore only.

    Supported layout (flashbax `Vault`, metadata "version" 1.0, 1.1 and 1.2 — the
    pre-release 0.x layout, which named datastores with `jax.tree_util.keystr`, is not):

    * ``<vault_path>/<vault_uid>/metadata.json``: {"version", "structure_shape",
      "structure_dtype", ...}; the structure dicts list the leaves.
    * one OCDBT key-value store rooted at ``<vault_path>/<vault_uid>/`` holding a zarr
      array per leaf at key ``<path>.`` (each path component followed by "."), e.g.
      ``observations.``, ``infos.state.``, shaped (B, T_max, ...) with B independent
      streams along time, and an int32 zarr array ``vault_index`` of shape (1,) with
      the written length T (only ``[:, :T]`` is read).
    * leaves (see `VAULT_LEAVES`): observations (B,T,N,O), actions (B,T,N) discrete or
      (B,T,N,D) continuous, rewards (B,T,N) or (B,T), terminals and truncations
      (B,T,N) or (B,T), optional infos.state (B,T,S) and infos.legals (B,T,N,nA).
      Other leaves are ignored (listed in the provenance).

    Each stream is split into episodes after every step whose terminal or truncation
    flag is set for any agent. The steps after a stream's last flagged step form an
    unfinished episode: dropped (drop_incomplete=True, counted in the provenance) or
    kept as truncated. Vaults hold no observation after an episode's last step, so
    final_obs/final_state/final_avail are the last step's (for terminal steps this is
    never bootstrapped from). Per-agent rewards become the team reward by
    `reward_reduce`: "auto" (agent 0's when all agents' rewards are equal, else the
    mean), "mean", "sum" or "first". Actions are discrete when legals exist or the
    actions are integers (float-coded integers are accepted).

    A vault written by `export_vault` also carries what OG-MARL's layout has no leaf for
    (see `VAULT_EXTRAS`); when it still matches the leaves, the import restores it, so that
    dataset -> `export_vault` -> `import_vault` gives the same dataset back. An explicit
    `env_id`/`spec`/`discount` still wins; `discount` defaults to the exported one, else 0.99.

    Args:
        vault_path: the vault directory (``rel_dir/vault_name``) or one uid directory.
        vault_uid: the uid sub-directory; optional when there is exactly one.
        env_id: as for `import_npz`.
        spec: as for `import_npz`.

    Raises:
        DatasetError: naming the vault leaf (``<vault dir>/<leaf>``) and the problem.
    """
    root = _find_vault_dir(Path(vault_path), vault_uid)
    meta_path = root / VAULT_METADATA
    mlabel = str(meta_path)
    if not meta_path.is_file():
        raise DatasetError(mlabel, "metadata", "flashbax vault metadata (version, structure_shape)", "missing")
    try:
        vmeta = json.loads(meta_path.read_text(encoding="utf-8"))
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(mlabel, "metadata", "a JSON object", short_exc(exc)) from None
    if not isinstance(vmeta, dict):
        raise DatasetError(mlabel, "metadata", "a JSON object", type(vmeta).__name__)
    version = vmeta.get("version")
    if isinstance(version, bool) or not isinstance(version, (int, float)) or int(version // 1) != SUPPORTED_VAULT_MAJOR:
        raise DatasetError(mlabel, "version", f"a flashbax vault version {SUPPORTED_VAULT_MAJOR}.x", repr(version))
    structure = vmeta.get("structure_shape")
    if not isinstance(structure, dict):
        raise DatasetError(mlabel, "structure_shape", "a dict of leaf shapes", repr(structure)[:80])
    leaves = _leaf_names(structure)
    for name, doc in VAULT_LEAVES.items():
        if doc.startswith("required") and name not in leaves:
            raise DatasetError(mlabel, name, f"a leaf {name!r} ({doc})", f"leaves {leaves}")

    index_ds = _open_leaf(root, VAULT_INDEX)
    try:
        t_len = int(np.asarray(index_ds.read().result()).reshape(-1)[0])
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(f"{root}/{VAULT_INDEX}", VAULT_INDEX, "one int32 (the written length)", short_exc(exc)) from None
    if t_len < 1:
        raise DatasetError(f"{root}/{VAULT_INDEX}", VAULT_INDEX, "a written length >= 1", str(t_len))

    raw: dict[str, np.ndarray] = {}
    for name in VAULT_LEAVES:
        if name not in leaves:
            continue
        ds = _open_leaf(root, name)
        if ds.rank < 2 or ds.shape[1] < t_len:
            raise DatasetError(f"{root}/{name}", name, f"(B, T>={t_len}, ...) (vault_index = {t_len})", f"shape {list(ds.shape)}")
        try:
            raw[name] = np.asarray(ds[:, :t_len].read().result())
        except Exception as exc:  # noqa: BLE001
            raise DatasetError(f"{root}/{name}", name, "readable chunks", short_exc(exc)) from None
    extras = _read_extras(root, vmeta)
    return _vault_to_dataset(root, raw, vmeta, leaves, t_len, out_dir, env_id=env_id, spec=spec, discount=discount,
                             reward_reduce=reward_reduce, drop_incomplete=drop_incomplete, overwrite=overwrite,
                             notes=notes, extras=extras)


def _read_extras(root: Path, vmeta: dict) -> dict | None:
    """`export_vault`'s extras (metadata and arrays), or None for any other vault."""
    info = vmeta.get(VAULT_EXTRAS_KEY)
    if not isinstance(info, dict) or info.get("format") != VAULT_EXTRAS_FORMAT:
        return None
    arrays = {}
    for name in info.get("arrays", []):
        if name not in ("final_obs", "final_state", "final_avail"):
            raise DatasetError(str(root / VAULT_METADATA), VAULT_EXTRAS_KEY, "arrays among final_obs, final_state, "
                               "final_avail", repr(name))
        key = f"{VAULT_EXTRAS_KEY}/{name}"
        try:
            arrays[name] = np.asarray(_open_leaf(root, key).read().result())
        except DatasetError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise DatasetError(f"{root}/{key}", key, "readable chunks", short_exc(exc)) from None
    return {**info, "arrays": arrays}


def _apply_extras(extras: dict, lengths: np.ndarray, num_agents: int) -> tuple[dict, str | None]:
    """The dataset fields the extras restore, or ({}, why not) when they no longer match the leaves."""
    e = len(lengths)
    if extras.get("episode_lengths") != lengths.tolist():
        return {}, "episode lengths differ from the exported ones (the vault was changed after export)"
    out: dict[str, Any] = {}
    try:
        out["spec"] = EnvSpec.from_dict(extras["spec"])
    except Exception as exc:  # noqa: BLE001
        return {}, f"spec unreadable ({short_exc(exc)})"
    for name in ("agent_ids", "behaviour", "policy_ids"):
        if extras.get(name) is not None:
            arr = np.asarray(extras[name], dtype=str)
            if arr.shape != (e, num_agents):
                return {}, f"{name} has shape {list(arr.shape)}, expected [{e}, {num_agents}]"
            out[name] = arr
    scores = {}
    for name, values in (extras.get("scores") or {}).items():
        arr = np.asarray(values, dtype=np.float64)
        if arr.shape != (e,):
            return {}, f"score {name!r} has shape {list(arr.shape)}, expected [{e}]"
        scores[name] = arr
    out["scores"] = scores or None
    for name, arr in extras["arrays"].items():
        if arr.shape[:1] != (e,):
            return {}, f"{name} has {arr.shape[0] if arr.ndim else 0} rows, expected {e}"
        out[name] = arr
    unmarked = np.asarray(extras.get("unmarked_ends", []), dtype=np.int64)
    if unmarked.size and (unmarked.min() < 0 or unmarked.max() >= e):
        return {}, "unmarked_ends out of range"
    out["unmarked_ends"] = unmarked
    for name in ("discount", "env_kwargs", "notes", "provenance"):
        if name in extras:
            out[name] = extras[name]
    return out, None


def _vault_to_dataset(root: Path, raw: dict, vmeta: dict, leaves: list, t_len: int, out_dir, *, env_id, spec,
                      discount, reward_reduce, drop_incomplete, overwrite, notes, extras=None) -> Path:
    def lab(name):
        return f"{root}/{name}"

    def err(name, expected, found):
        return DatasetError(lab(name), name, expected, found)

    obs = raw["observations."]
    if obs.ndim != 4 or obs.dtype.kind not in "iuf":
        raise err("observations.", "numeric (B, T, N, O)", describe_array(obs))
    b, t, a, o = obs.shape
    for name, arr in raw.items():
        if arr.shape[0] != b:
            raise err(name, f"batch size B={b} (as observations.)", describe_array(arr))

    def flags(name):
        arr = raw[name]
        if arr.shape not in ((b, t, a), (b, t)):
            raise err(name, f"(B={b}, T={t}, N={a}) or (B, T) 0/1 flags", describe_array(arr))
        arr = _as_bool(lab(name), name, arr)
        return arr.any(axis=-1) if arr.ndim == 3 else arr

    term, trunc = flags("terminals."), flags("truncations.")

    rew = raw["rewards."]
    if rew.dtype.kind not in "iuf" or rew.shape not in ((b, t, a), (b, t)):
        raise err("rewards.", f"numeric (B={b}, T={t}, N={a}) or (B, T)", describe_array(rew))
    check_finite(lab("rewards."), "rewards.", rew.reshape(b * t, -1))
    reduce_used = "team" if rew.ndim == 2 else reward_reduce
    if rew.ndim == 3:
        if reward_reduce == "auto":
            same = bool((rew == rew[..., :1]).all())
            reduce_used = "first" if same else "mean"
        if reduce_used == "first":
            rew = rew[..., 0]
        elif reduce_used == "mean":
            rew = rew.mean(axis=-1)
        elif reduce_used == "sum":
            rew = rew.sum(axis=-1)
        else:
            raise ValueError(f"reward_reduce must be 'auto', 'mean', 'sum' or 'first', got {reward_reduce!r}")

    act = raw["actions."]
    legals = raw.get("infos.legals.")
    discrete = legals is not None or act.dtype.kind in "iu"
    if discrete:
        if act.shape != (b, t, a):
            raise err("actions.", f"discrete actions (B={b}, T={t}, N={a})", describe_array(act))
        if act.dtype.kind == "f":
            check_finite(lab("actions."), "actions.", act.reshape(b * t, -1))
            if not (act == np.round(act)).all():
                raise err("actions.", "integer-valued discrete actions", "non-integer values")
        elif act.dtype.kind not in "iu":
            raise err("actions.", "numeric actions", f"dtype {act.dtype.name}")
        act = act.astype(np.int64)
        if act.size and act.min() < 0:
            raise err("actions.", "discrete actions >= 0", f"minimum {int(act.min())}")
        if legals is not None:
            if legals.ndim != 4 or legals.shape[:3] != (b, t, a):
                raise err("infos.legals.", f"(B={b}, T={t}, N={a}, nA)", describe_array(legals))
            legals = _as_bool(lab("infos.legals."), "infos.legals.", legals)
    else:
        if act.ndim != 4 or act.shape[:3] != (b, t, a) or act.dtype.kind != "f":
            raise err("actions.", f"continuous float actions (B={b}, T={t}, N={a}, D)", describe_array(act))

    state = raw.get("infos.state.")
    if state is not None and (state.ndim != 3 or state.shape[:2] != (b, t) or state.dtype.kind not in "iuf"):
        raise err("infos.state.", f"numeric (B={b}, T={t}, S)", describe_array(state))

    # Split every stream into episodes at terminal|truncation steps.
    done = term | trunc
    sel_b, sel_t, lengths, dropped = [], [], [], 0
    for row in range(b):
        ends = np.flatnonzero(done[row])
        begin = 0
        for end in ends:
            sel_b.append(np.full(end + 1 - begin, row))
            sel_t.append(np.arange(begin, end + 1))
            lengths.append(end + 1 - begin)
            begin = end + 1
        if begin < t:
            if drop_incomplete:
                dropped += t - begin
            else:
                sel_b.append(np.full(t - begin, row))
                sel_t.append(np.arange(begin, t))
                lengths.append(t - begin)
    if not lengths:
        raise err("terminals.", "at least one finished episode (a terminal or truncation flag)",
                  f"none in {t} steps x {b} streams (pass drop_incomplete=False to keep unfinished ones)")
    bi, ti = np.concatenate(sel_b), np.concatenate(sel_t)
    lengths = np.asarray(lengths, dtype=np.int64)
    n = int(lengths.sum())
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    last = starts + lengths - 1

    obs_s = obs[bi, ti]
    state_s = state[bi, ti] if state is not None else obs_s.reshape(n, a * o)
    act_s = act[bi, ti]
    avail_s = legals[bi, ti] if legals is not None else None
    is_last = np.zeros(n, bool)
    is_last[last] = True
    terminated = term[bi, ti] & is_last
    truncated = np.zeros(n, bool)
    truncated[last] = ~terminated[last]  # a kept unfinished episode counts as truncated

    restored, extras_note = ({}, None) if extras is None else _apply_extras(extras, lengths, a)
    if restored:
        # export_vault marked unflagged episode ends as truncations: unmark them again
        truncated[last[restored["unmarked_ends"]]] = False

    keymap = {"obs": "observations.", "state": "infos.state." if state is not None else "observations.",
              "actions": "actions.", "reward": "rewards.", "avail": "infos.legals.",
              "final_obs": "observations.", "final_state": "infos.state." if state is not None else "observations.",
              "final_avail": "infos.legals.", "terminated": "terminals.", "truncated": "truncations.",
              "length": "terminals."}
    for name in ("final_obs", "final_state", "final_avail"):
        if name in restored:
            keymap[name] = f"{VAULT_EXTRAS_KEY}/{name}"
    if spec is None and env_id is None and "spec" in restored:
        spec = restored["spec"]
    resolved, how = _resolve_spec(env_id, spec)
    if "spec" in restored and spec is restored["spec"]:
        how = {"spec_source": "exported"}
    arrays = {"obs": obs_s, "state": state_s, "actions": act_s, "avail": avail_s}
    if resolved is not None:
        _check_against_spec(str(root), resolved, arrays, keymap)
    else:
        if discrete:
            n_act = legals.shape[3] if legals is not None else int(act_s.max()) + 1
        else:
            n_act = act.shape[3]
        resolved = _custom_spec(env_id, a, o, state_s.shape[1], discrete, n_act, int(lengths.max()), ())
    extra_meta = {k: v for k, v in vmeta.items() if k not in ("structure_shape", "structure_dtype", VAULT_EXTRAS_KEY)}
    prov = {
        "source": "flashbax-vault",
        "vault": str(root.resolve()),
        "vault_metadata": extra_meta,
        "vault_index": t_len,
        "streams": b,
        "leaves_read": sorted(raw),
        "leaves_ignored": sorted(set(leaves) - set(raw)),
        "reward_reduce": reduce_used,
        "incomplete_steps_dropped": int(dropped),
        "final_from_last_step": "final_obs" not in restored,
        **how,
    }
    if extras is not None:
        prov["teamsift_export"] = ("restored" if restored else f"ignored: {extras_note}")
        if restored.get("provenance") is not None:
            prov["exported_from"] = restored["provenance"]
    env_kwargs = prov.pop("env_kwargs", None)
    if env_kwargs is None and how.get("spec_source") == "exported":
        env_kwargs = restored.get("env_kwargs")
    if discount is None:
        discount = restored.get("discount", 0.99)
    if not notes and restored.get("notes"):
        notes = restored["notes"]
    final_avail = avail_s[last] if avail_s is not None else None
    try:
        return write_dataset(
            out_dir, spec=resolved, obs=obs_s, state=state_s, actions=act_s, reward=rew[bi, ti],
            terminated=terminated, truncated=truncated, episode_lengths=lengths,
            final_obs=restored.get("final_obs", obs_s[last]), final_state=restored.get("final_state", state_s[last]),
            avail=avail_s, final_avail=restored.get("final_avail", final_avail) if avail_s is not None else None,
            scores=restored.get("scores"), agent_ids=restored.get("agent_ids"), behaviour=restored.get("behaviour"),
            policy_ids=restored.get("policy_ids"), env_kwargs=env_kwargs, discount=discount, provenance=prov,
            notes=notes, overwrite=overwrite)
    except DatasetError as exc:
        name = keymap.get(exc.field, exc.field)
        raise DatasetError(lab(name), name, exc.expected, exc.found) from None



def _is_vault_dir(path: Path) -> bool:
    try:
        meta = json.loads((path / VAULT_METADATA).read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001
        return False
    return isinstance(meta, dict) and "structure_shape" in meta


def export_vault(dataset_dir: str | os.PathLike, vault_dir: str | os.PathLike, *, vault_uid: str = "teamsift",
                 overwrite: bool = False) -> Path:
    """Write a teamsift dataset as an OG-MARL-style flashbax Vault; return ``vault_dir/vault_uid``.

    The vault is what flashbax's ``Vault(vault_name, rel_dir=..., vault_uid=...)`` reads
    (``vault_dir`` = ``rel_dir/vault_name``): metadata version 1.2 and one stream (B = 1)
    holding the N steps of every episode in order, with OG-MARL's leaves

    * ``observations`` (1, N, A, O) float32, ``actions`` (1, N, A) int32 (discrete) or
      (1, N, A, D) float32, ``rewards`` (1, N, A) float32 (the team reward, per agent),
      ``terminals`` / ``truncations`` (1, N, A) float32 0/1 (an episode whose last step
      has neither flag is marked truncated there, so that every episode ends with a flag),
      ``infos.state`` (1, N, S) float32 and, for discrete actions, ``infos.legals``
      (1, N, A, nA) float32;

    each a gzip-compressed zarr array with flashbax's time capacity, in one OCDBT store,
    plus the int32 ``vault_index`` (= N). What OG-MARL's layout has no leaf for goes into
    `VAULT_EXTRAS_KEY` (see there), so that `import_vault` restores the dataset exactly.

    Other uids in ``vault_dir`` are left alone; an existing ``vault_dir/vault_uid`` is
    replaced only with overwrite=True and only if it is a vault (or empty). The vault is
    written to a hidden sibling directory and renamed into place when complete.

    Raises:
        DatasetError: the dataset is invalid.
        FileExistsError: the uid directory exists (overwrite=False) or is not a vault.
        ValueError: `vault_uid` is not a plain directory name.
    """
    from teamsift.data.format import load_dataset
    from teamsift.fileio import write_directory

    if not isinstance(vault_uid, str) or not vault_uid or vault_uid in (".", "..") or vault_uid.startswith(".") \
            or "/" in vault_uid or os.sep in vault_uid:
        raise ValueError(f"vault_uid: expected a plain directory name not starting with '.', got {vault_uid!r}")
    target = Path(vault_dir).absolute() / vault_uid
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{target} already exists (pass overwrite=True to replace it)")
        if target.is_symlink() or not target.is_dir() or (any(target.iterdir()) and not _is_vault_dir(target)):
            raise FileExistsError(f"{target} exists and is not a flashbax vault; refusing to overwrite it")
    if target.parent.exists() and not target.parent.is_dir():
        raise FileExistsError(f"{target.parent} exists and is not a directory")
    ds = load_dataset(dataset_dir)

    write_directory(target, lambda tmp: _write_vault(ds, tmp), overwrite=overwrite)
    return target


def _write_vault(ds, root: Path) -> None:
    """The vault's leaves, vault_index, extras and metadata.json (last) into `root`."""
    import tensorstore as ts

    n, a = ds.num_steps, ds.num_agents
    lengths = np.asarray(ds.lengths, np.int64)
    last = np.asarray(ds.starts, np.int64) + lengths - 1
    steps = ds.steps
    terminated = np.asarray(steps["terminated"], bool)
    truncated = np.asarray(steps["truncated"], bool).copy()
    unmarked = np.flatnonzero(~terminated[last] & ~truncated[last])
    truncated[last[unmarked]] = True

    def per_agent(flag: np.ndarray) -> np.ndarray:
        return np.repeat(flag.astype(np.float32)[:, None], a, axis=1)

    leaves: dict[str, np.ndarray] = {
        "observations": np.asarray(steps["obs"], np.float32),
        "actions": np.asarray(steps["actions"], np.int32 if ds.discrete else np.float32),
        "rewards": per_agent(np.asarray(steps["reward"], np.float32)),
        "terminals": per_agent(terminated),
        "truncations": per_agent(truncated),
        "infos.state": np.asarray(steps["state"], np.float32),
    }
    if ds.discrete:
        leaves["infos.legals"] = np.asarray(steps["avail"], np.float32)

    def spec(name: str, create: bool) -> dict:
        out = _ts_spec(root, name)
        if create:
            out["metadata"] = {"compressor": dict(VAULT_COMPRESSION)}
        return out

    shapes: dict[str, Any] = {}
    dtypes: dict[str, Any] = {}
    for path, arr in leaves.items():
        arr = arr[None]  # one stream: (1, N, ...)
        node_s, node_d = shapes, dtypes
        *parents, leaf = path.split(".")
        for p in parents:
            node_s, node_d = node_s.setdefault(p, {}), node_d.setdefault(p, {})
        node_s[leaf] = str(tuple(arr.shape))
        node_d[leaf] = arr.dtype.name
        store = ts.open(spec(path + ".", True), create=True, dtype=arr.dtype,
                        shape=(1, VAULT_TIME_CAPACITY, *arr.shape[2:])).result()
        store[:, :n].write(arr).result()
    finals = ["final_obs", "final_state"] + (["final_avail"] if ds.discrete else [])
    for name in finals:
        arr = np.ascontiguousarray(steps[name])
        store = ts.open(spec(f"{VAULT_EXTRAS_KEY}/{name}", True), create=True, dtype=arr.dtype,
                        shape=arr.shape).result()
        store.write(arr).result()
    index = ts.open(spec(VAULT_INDEX, False), create=True, dtype=np.int32, shape=(1,)).result()
    index.write(np.asarray([n], np.int32)).result()

    episodes = ds.episodes
    extras = {
        "format": VAULT_EXTRAS_FORMAT,
        "spec": ds.spec.to_dict(),
        "env_kwargs": ds.meta.get("env_kwargs") or {},
        "discount": ds.discount,
        "episode_lengths": lengths.tolist(),
        "unmarked_ends": unmarked.tolist(),
        "agent_ids": np.asarray(episodes["agent_ids"]).astype(str).tolist(),
        "behaviour": np.asarray(episodes["behaviour"]).astype(str).tolist() if "behaviour" in episodes else None,
        "policy_ids": np.asarray(episodes["policy_ids"]).astype(str).tolist() if "policy_ids" in episodes else None,
        "scores": {name: np.asarray(ds.score(name), np.float64).tolist() for name in ds.score_names},
        "arrays": finals,
        "notes": ds.meta.get("notes", ""),
        "provenance": ds.meta.get("provenance") or {},
    }
    meta = {"version": VAULT_VERSION, "structure_shape": shapes, "structure_dtype": dtypes,
            "source": "teamsift export_vault", "env_id": ds.spec.env_id, VAULT_EXTRAS_KEY: extras}
    (root / VAULT_METADATA).write_text(json.dumps(meta, allow_nan=False), encoding="utf-8")
