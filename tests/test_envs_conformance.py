"""One conformance suite for every registered environment (`teamsift.envs.list_envs()`).

Each environment is compiled once: a jitted, vmapped (4 keys) rollout of one whole
episode (`spec.episode_length` steps, random actions drawn from `avail`) under
`lax.scan`. Its outputs are cached per id and every test below reads them. Shapes and
dtypes of single (unbatched) calls are checked with `jax.eval_shape`, which compiles
nothing. Ids whose factory module does not import (yet) are skipped, not failed.
MaBrax ids, and the larger SMAX maps (each compiles for ~5 s), are marked slow; the
fast tier keeps smax_3m and smax_2s3z (heterogeneous units).
"""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from teamsift import envs
from teamsift.envs.base import Env, EnvSpec

BATCH_KEYS = np.array([0, 1, 0, 2])  # elements 0 and 2 share a key: identical trajectories expected
SLOW_FAMILIES = {"mabrax"}
SLOW_IDS = {"smax_8m", "smax_3s5z", "smax_3s_vs_5z", "smax_10m_vs_11m", "smax_6h_vs_8z", "smax_5m_vs_6m"}


def _params():
    out = []
    for e in envs.list_envs():
        slow = e.family in SLOW_FAMILIES or e.env_id in SLOW_IDS
        marks = [pytest.mark.slow] if slow else []
        out.append(pytest.param(e.env_id, marks=marks, id=e.env_id))
    return out


_ENVS: dict[str, Env] = {}
_ROLLOUTS: dict[str, dict] = {}


def get_env(env_id: str) -> Env:
    """The registered env, or skip when its factory module does not import yet."""
    if env_id not in _ENVS:
        module_name, fn_name = envs.entry(env_id).factory.split(":")
        module = pytest.importorskip(module_name, reason=f"factory module of {env_id} does not import")
        if not hasattr(module, fn_name):
            pytest.skip(f"{module_name} has no factory {fn_name} yet")
        _ENVS[env_id] = envs.make(env_id)
    return _ENVS[env_id]


def random_actions(spec: EnvSpec, key, avail):
    if spec.discrete:
        logits = jnp.where(avail, 0.0, -jnp.inf)
        return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)
    return jax.random.uniform(key, spec.action_shape, jnp.float32, -1.0, 1.0)


def make_rollout(env: Env, steps: int):
    spec = env.spec

    def rollout(key):
        k_reset, k_steps = jax.random.split(key)
        r = env.reset(k_reset)

        def body(carry, k):
            env_state, avail = carry
            k_act, k_env = jax.random.split(k)
            a = random_actions(spec, k_act, avail)
            s = env.step(k_env, env_state, a)
            out = {"action": a, "avail_before": avail, "obs": s.obs, "state": s.state,
                   "avail": s.avail, "reward": s.reward, "done": s.done, "info": s.info}
            return (s.env_state, s.avail), out

        _, traj = jax.lax.scan(body, (r.env_state, r.avail), jax.random.split(k_steps, steps))
        done = traj["done"]
        valid = (jnp.cumsum(done) - done) == 0  # steps up to and including the first done
        scores = env.scores(traj["reward"], traj["info"], valid)
        return {"reset": {"obs": r.obs, "state": r.state, "avail": r.avail}, "traj": traj,
                "valid": valid, "scores": scores}

    return jax.jit(jax.vmap(rollout))


def get_rollout(env_id: str) -> dict:
    env = get_env(env_id)
    if env_id not in _ROLLOUTS:
        keys = jax.random.split(jax.random.key(7), 3)[BATCH_KEYS]
        out = make_rollout(env, env.spec.episode_length)(keys)
        _ROLLOUTS[env_id] = jax.tree.map(np.asarray, out)
    return _ROLLOUTS[env_id]


# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", _params())
def test_spec_consistent(env_id):
    spec = get_env(env_id).spec
    a = spec.num_agents
    assert spec.env_id == env_id
    assert a >= 1 and len(set(spec.agents)) == a
    assert len(spec.agent_types) == a and all(isinstance(t, str) and t for t in spec.agent_types)
    assert len(spec.obs_widths) == a and all(0 < w <= spec.obs_dim for w in spec.obs_widths)
    assert spec.obs_dim == max(spec.obs_widths)
    assert spec.state_dim > 0 and spec.episode_length > 0
    assert len(spec.action_dims) == a and all(d > 0 for d in spec.action_dims)
    assert spec.num_actions == max(spec.action_dims)
    assert spec.scores[0] == "return" and len(set(spec.scores)) == len(spec.scores)
    assert set(spec.lower_is_better) <= set(spec.scores)
    assert EnvSpec.from_dict(spec.to_dict()) == spec
    assert envs.make(env_id) is get_env(env_id)  # cached per kwargs


@pytest.mark.parametrize("env_id", _params())
def test_single_call_shapes_and_dtypes(env_id):
    env = get_env(env_id)
    spec = env.spec
    a, o = spec.num_agents, spec.obs_dim
    for key in (jax.random.key(0), jax.random.PRNGKey(0)):  # typed and raw keys
        r = jax.eval_shape(env.reset, key)
        assert r.obs.shape == (a, o) and r.obs.dtype == jnp.float32
        assert r.state.shape == (spec.state_dim,) and r.state.dtype == jnp.float32
        if spec.discrete:
            assert r.avail.shape == (a, spec.num_actions) and r.avail.dtype == jnp.bool_
            actions = jax.ShapeDtypeStruct((a,), jnp.int32)
        else:
            assert r.avail is None
            actions = jax.ShapeDtypeStruct((a, spec.num_actions), jnp.float32)
        s = jax.eval_shape(env.step, key, r.env_state, actions)
        assert s.obs.shape == (a, o) and s.obs.dtype == jnp.float32
        assert s.state.shape == (spec.state_dim,) and s.state.dtype == jnp.float32
        if spec.discrete:
            assert s.avail.shape == (a, spec.num_actions) and s.avail.dtype == jnp.bool_
        else:
            assert s.avail is None
        assert s.reward.shape == () and s.reward.dtype == jnp.float32
        assert s.done.shape == () and s.done.dtype == jnp.bool_
        for name in ("terminated", "truncated"):
            assert s.info[name].shape == () and s.info[name].dtype == jnp.bool_
        # env_state is a fixed pytree: a step returns the same structure and shapes
        assert jax.tree.structure(s.env_state) == jax.tree.structure(r.env_state)
        assert [x.shape for x in jax.tree.leaves(s.env_state)] == [x.shape for x in jax.tree.leaves(r.env_state)]


@pytest.mark.parametrize("env_id", _params())
def test_vmapped_episode_shapes(env_id):
    spec = get_env(env_id).spec
    out = get_rollout(env_id)
    b, t, a = len(BATCH_KEYS), spec.episode_length, spec.num_agents
    assert out["reset"]["obs"].shape == (b, a, spec.obs_dim)
    assert out["reset"]["state"].shape == (b, spec.state_dim)
    tr = out["traj"]
    assert tr["obs"].shape == (b, t, a, spec.obs_dim) and tr["obs"].dtype == np.float32
    assert tr["state"].shape == (b, t, spec.state_dim) and tr["state"].dtype == np.float32
    assert tr["reward"].shape == (b, t) and tr["reward"].dtype == np.float32
    assert tr["done"].shape == (b, t) and tr["done"].dtype == np.bool_
    if spec.discrete:
        assert tr["avail"].shape == (b, t, a, spec.num_actions) and tr["avail"].dtype == np.bool_
    else:
        assert tr["avail"] is None
    for name, x in tr["info"].items():
        assert x.shape[:2] == (b, t), name
    for x in (tr["obs"], tr["state"], tr["reward"], out["reset"]["obs"], out["reset"]["state"]):
        assert np.all(np.isfinite(x))


@pytest.mark.parametrize("env_id", _params())
def test_same_key_same_trajectory(env_id):
    out = get_rollout(env_id)
    first = jax.tree.map(lambda x: x[0], out)
    again = jax.tree.map(lambda x: x[2], out)  # same key as element 0
    jax.tree.map(np.testing.assert_array_equal, first, again)


@pytest.mark.parametrize("env_id", _params())
def test_episode_ends_in_time(env_id):
    spec = get_env(env_id).spec
    tr = get_rollout(env_id)["traj"]
    done, term, trunc = tr["done"], tr["info"]["terminated"], tr["info"]["truncated"]
    np.testing.assert_array_equal(done, term | trunc)
    assert np.all(done.any(axis=1)), "episode did not end within spec.episode_length steps"
    assert not np.any(trunc[:, : spec.episode_length - 1]), "truncated before episode_length"
    first_done = done.argmax(axis=1)
    ended_by_time = ~term[np.arange(len(done)), first_done]
    assert np.all(first_done[ended_by_time] == spec.episode_length - 1)


@pytest.mark.parametrize("env_id", _params())
def test_obs_padding_is_zero(env_id):
    spec = get_env(env_id).spec
    out = get_rollout(env_id)
    for i, w in enumerate(spec.obs_widths):
        assert np.all(out["reset"]["obs"][:, i, w:] == 0)
        assert np.all(out["traj"]["obs"][:, :, i, w:] == 0)


@pytest.mark.parametrize("env_id", _params())
def test_actions_respect_avail(env_id):
    spec = get_env(env_id).spec
    if not spec.discrete:
        pytest.skip("continuous actions have no avail mask")
    out = get_rollout(env_id)
    tr = out["traj"]
    avail_before = tr["avail_before"]
    assert avail_before.any(axis=-1).all(), "an agent has no available action"
    chosen = np.take_along_axis(avail_before, tr["action"][..., None], axis=-1)[..., 0]
    assert chosen.all()
    np.testing.assert_array_equal(avail_before[:, 0], out["reset"]["avail"])
    # padded action slots of narrower agents are never available
    for i, n in enumerate(spec.action_dims):
        assert not tr["avail"][:, :, i, n:].any()


@pytest.mark.parametrize("env_id", _params())
def test_scores(env_id):
    spec = get_env(env_id).spec
    out = get_rollout(env_id)
    scores = out["scores"]
    assert set(scores) == set(spec.scores)
    for name, v in scores.items():
        assert v.shape == (len(BATCH_KEYS),) and np.all(np.isfinite(v)), name
    expected = (out["traj"]["reward"] * out["valid"]).sum(axis=1)
    np.testing.assert_allclose(scores["return"], expected, rtol=1e-5, atol=1e-5)
