"""Environment-specific checks of the JaxMARL adapters (MPE, Overcooked, SMAX, MaBrax)."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from teamsift import envs
from teamsift.envs._jaxmarl import import_jaxmarl, quiet_construct

_ROLLOUTS: dict[tuple, dict] = {}


def rollout(env_id: str, steps: int, n_keys: int = 8, seed: int = 0, actions: str = "random") -> dict:
    """Cached, jitted, vmapped rollout; returns numpy arrays incl. every env_state.

    `actions`: "random" (uniform over avail / in [-1, 1]) or "noop" (0 / zeros).
    Element t of `env_state` is the state *before* action t; `step` holds its result.
    """
    cache_key = (env_id, steps, n_keys, seed, actions)
    if cache_key in _ROLLOUTS:
        return _ROLLOUTS[cache_key]
    env = envs.make(env_id)
    spec = env.spec

    def policy(key, avail):
        if actions == "noop":
            return jnp.zeros(spec.action_shape, jnp.int32 if spec.discrete else jnp.float32)
        if spec.discrete:
            return jax.random.categorical(key, jnp.where(avail, 0.0, -jnp.inf), axis=-1).astype(jnp.int32)
        return jax.random.uniform(key, spec.action_shape, jnp.float32, -1.0, 1.0)

    def one(key):
        k_reset, k_steps = jax.random.split(key)
        r = env.reset(k_reset)

        def body(carry, k):
            env_state, avail = carry
            k_act, k_env = jax.random.split(k)
            a = policy(k_act, avail)
            s = env.step(k_env, env_state, a)
            out = {"env_state": env_state, "avail_before": avail, "action": a, "key": jax.random.key_data(k_env),
                   "obs": s.obs, "state": s.state, "avail": s.avail, "reward": s.reward, "done": s.done,
                   "info": s.info}
            return (s.env_state, s.avail), out

        _, traj = jax.lax.scan(body, (r.env_state, r.avail), jax.random.split(k_steps, steps))
        return {"reset_obs": r.obs, "reset_state": r.state, "reset_env_state": r.env_state, "traj": traj}

    keys = jax.random.split(jax.random.key(seed), n_keys)
    out = jax.tree.map(np.asarray, jax.jit(jax.vmap(one))(keys))
    _ROLLOUTS[cache_key] = out
    return out


# --------------------------------------------------------------------------------------
# Import hygiene
# --------------------------------------------------------------------------------------


def test_jaxmarl_import_is_lazy_and_quiet():
    code = (
        "import sys\n"
        "from teamsift import envs\n"
        "assert 'jaxmarl' not in sys.modules, 'teamsift.envs imported jaxmarl eagerly'\n"
        "envs.list_envs()\n"
        "envs.make('mpe_spread')\n"
        "assert 'jaxmarl' in sys.modules\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "", f"stdout polluted: {res.stdout!r}"


# --------------------------------------------------------------------------------------
# MPE
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("env_id, n_agents", [("CN_3ls3l", 3), ("CN_4ls4l", 4), ("PP_3p1p", 3)])
def test_po_mpe_obs_widths_match_sit_table3(env_id, n_agents):
    spec = envs.make(env_id).spec
    # own vel (2) + own pos (2) + 1 visible teammate (2) + 2 landmarks (4) | prey pos+vel (4)
    assert spec.partially_observable
    assert spec.num_agents == n_agents
    assert spec.obs_widths == (10,) * n_agents and spec.obs_dim == 10
    assert spec.num_actions == 5


def test_full_obs_mpe_specs():
    spread, tag = envs.make("mpe_spread").spec, envs.make("mpe_tag").spec
    assert not spread.partially_observable and spread.obs_dim == 18 and spread.state_dim == 18
    assert not tag.partially_observable and tag.obs_dim == 16 and tag.state_dim == 20
    assert tag.agent_types == ("predator",) * 3 and spread.agent_types == ("seeker",) * 3


@pytest.mark.parametrize("env_id, n", [("CN_3ls3l", 3), ("CN_4ls4l", 4)])
def test_po_spread_sees_nearest_landmarks_and_seeker(env_id, n):
    out = rollout(env_id, steps=25)
    pos_all = out["traj"]["env_state"].p_pos  # [K, T, N+L, 2], state before each step
    vel_all = out["traj"]["env_state"].p_vel
    # obs after step t belongs to the state before step t+1
    obs_all = out["traj"]["obs"][:, :-1]
    pos_all, vel_all = pos_all[:, 1:], vel_all[:, 1:]
    checked = 0
    for pos_e, vel_e, obs_e in zip(pos_all.reshape(-1, 2 * n, 2), vel_all.reshape(-1, 2 * n, 2),
                                   obs_all.reshape(-1, n, 10)):
        agents, lands = pos_e[:n], pos_e[n:]
        for i in range(n):
            o = obs_e[i]
            np.testing.assert_allclose(o[0:2], vel_e[i], atol=1e-6)
            np.testing.assert_allclose(o[2:4], agents[i], atol=1e-6)
            d_land = np.linalg.norm(lands - agents[i], axis=1)
            near = np.argsort(d_land, kind="stable")[:2]
            np.testing.assert_allclose(o[4:8], (lands[near] - agents[i]).reshape(-1), atol=1e-5)
            # the two listed landmarks are the nearest ones, nearest first
            listed = np.linalg.norm(o[4:8].reshape(2, 2), axis=1)
            assert listed[0] <= listed[1] <= np.sort(d_land)[1] + 1e-5
            others = [j for j in range(n) if j != i]
            d_ag = np.linalg.norm(agents[others] - agents[i], axis=1)
            j = others[int(np.argmin(d_ag))]
            np.testing.assert_allclose(o[8:10], agents[j] - agents[i], atol=1e-5)
            checked += 1
    assert checked == 8 * 24 * n


def test_po_tag_obs_content():
    out = rollout("PP_3p1p", steps=25)
    pos_all = out["traj"]["env_state"].p_pos[:, 1:].reshape(-1, 6, 2)  # 3 predators, prey, 2 obstacles
    vel_all = out["traj"]["env_state"].p_vel[:, 1:].reshape(-1, 6, 2)
    obs_all = out["traj"]["obs"][:, :-1].reshape(-1, 3, 10)
    for pos_e, vel_e, obs_e in zip(pos_all, vel_all, obs_all):
        for i in range(3):
            o = obs_e[i]
            np.testing.assert_allclose(o[0:4], np.concatenate([vel_e[i], pos_e[i]]), atol=1e-6)
            others = [j for j in range(3) if j != i]
            j = others[int(np.argmin(np.linalg.norm(pos_e[others] - pos_e[i], axis=1)))]
            np.testing.assert_allclose(o[4:6], pos_e[j] - pos_e[i], atol=1e-5)
            np.testing.assert_allclose(o[6:8], pos_e[3] - pos_e[i], atol=1e-5)
            np.testing.assert_allclose(o[8:10], vel_e[3], atol=1e-6)


def test_full_obs_and_reward_match_jaxmarl_spread():
    mod = import_jaxmarl("jaxmarl.environments.mpe.simple_spread")
    raw = mod.SimpleSpreadMPE(num_agents=3, num_landmarks=3, local_ratio=0.0)
    out = rollout("mpe_spread", steps=8, n_keys=4)
    tr = out["traj"]
    states = jax.tree.map(lambda x: x[:, 1:], tr["env_state"])  # state after step t-1 = before step t
    flat = jax.tree.map(lambda x: jnp.asarray(x.reshape((-1,) + x.shape[2:])), states)
    obs_jm = jax.vmap(raw.get_obs)(flat)
    expected_obs = np.stack([np.asarray(obs_jm[a]) for a in raw.agents], axis=1)
    np.testing.assert_allclose(tr["obs"][:, :-1].reshape(expected_obs.shape), expected_obs, atol=1e-6)
    # team reward = JaxMARL's global (local_ratio=0) reward - colliding pairs
    global_rew = np.asarray(jax.vmap(raw.rewards)(flat)["agent_0"])
    coll = tr["info"]["collisions"][:, :-1].reshape(-1)
    np.testing.assert_allclose(tr["reward"][:, :-1].reshape(-1), global_rew - coll, rtol=1e-5, atol=1e-5)
    assert np.all(tr["reward"] <= 0)


def test_flee_action_points_away_from_nearest_predator():
    from teamsift.envs.mpe import flee_action

    prey = jnp.array([0.0, 0.0])
    cases = [
        (jnp.array([[0.5, 0.1], [-2.0, -2.0], [3.0, 3.0]]), 1),  # nearest on +x side -> move -x
        (jnp.array([[-0.5, 0.1], [-2.0, -2.0], [3.0, 3.0]]), 2),  # nearest on -x side -> +x
        (jnp.array([[2.0, 2.0], [0.1, 0.4], [3.0, 3.0]]), 3),  # nearest above -> -y
        (jnp.array([[2.0, 2.0], [3.0, 3.0], [0.1, -0.4]]), 4),  # nearest below -> +y
    ]
    for preds, expected in cases:
        assert int(flee_action(prey, preds)) == expected


@pytest.mark.parametrize("env_id", ["PP_3p1p", "mpe_tag"])
def test_scripted_prey_moves_away_from_nearest_predator(env_id):
    # predators stand still for one step from rest; the prey's velocity after the step is
    # accel * dt * (its move direction), plus contact forces when it touches something.
    out = rollout(env_id, steps=1, n_keys=32, actions="noop")
    pos0 = out["reset_env_state"].p_pos  # [K, 3 predators + prey + 2 obstacles, 2]
    np.testing.assert_array_equal(out["reset_env_state"].p_vel, 0.0)
    prey_vel = out["traj"]["state"][:, 0, 8 + 6: 8 + 8]  # state = pos (4x2), vel (4x2), obstacles
    rad = np.array([0.075] * 3 + [0.05] + [0.2] * 2)
    tested = 0
    for k in range(len(pos0)):
        prey = pos0[k, 3]
        gaps = np.linalg.norm(pos0[k] - prey, axis=1) - (rad + rad[3])
        gaps[3] = np.inf
        if gaps.min() < 0.05:  # touching something: contact forces would add to the move
            continue
        nearest = pos0[k, np.argmin(np.linalg.norm(pos0[k, :3] - prey, axis=1))]
        away = prey - nearest
        v = prey_vel[k]
        assert v @ away > 0, (k, v, away)
        axis = int(np.argmax(np.abs(away)))
        assert abs(v[axis]) > 10 * abs(v[1 - axis])  # a pure move along the dominant direction
        tested += 1
    assert tested >= 16


def test_random_policy_team_rewards_mpe():
    spread = rollout("CN_3ls3l", steps=25)
    ret = spread["traj"]["reward"].sum(axis=1)
    assert np.all(spread["traj"]["reward"] <= 0)
    assert -150.0 < ret.mean() < -10.0, ret
    tag = rollout("PP_3p1p", steps=25)
    r = tag["traj"]["reward"]
    np.testing.assert_allclose(r, 10.0 * tag["traj"]["info"]["catches"])
    np.testing.assert_allclose(r / 10.0, np.round(r / 10.0))
    assert np.all(r >= 0)


# --------------------------------------------------------------------------------------
# Overcooked
# --------------------------------------------------------------------------------------


def test_overcooked_obs_state_and_reward():
    env = envs.make("overcooked_cramped_room")
    spec = env.spec
    assert spec.obs_dim == 4 * 5 * 26 and spec.state_dim == spec.obs_dim and spec.num_actions == 6
    out = rollout("overcooked_cramped_room", steps=400, n_keys=4)
    tr = out["traj"]
    np.testing.assert_array_equal(tr["state"], tr["obs"][:, :, 0])
    # agent_1 sees the same grid with the two cooks' channels swapped
    g0 = tr["obs"][:, :, 0].reshape(4, 400, 4, 5, 26)
    g1 = tr["obs"][:, :, 1].reshape(4, 400, 4, 5, 26)
    perm = [1, 0, 6, 7, 8, 9, 2, 3, 4, 5] + list(range(10, 26))
    np.testing.assert_array_equal(g1, g0[..., perm])
    # urgency channel switches on for the last 40 steps (JaxMARL max_steps = episode_length)
    assert np.all(g0[:, :359, :, :, 25] == 0) and np.all(g0[:, 360:, :, :, 25] == 1)
    r = tr["reward"]
    assert np.all(np.isin(r, [0.0, 20.0, 40.0]))
    np.testing.assert_allclose(tr["info"]["soups"], r / 20.0)
    assert tr["info"]["shaped_reward"].shape == (4, 400, 2)


# --------------------------------------------------------------------------------------
# SMAX
# --------------------------------------------------------------------------------------

EXPECTED_SMAX_TYPES = {
    "3m": ("marine",) * 3, "8m": ("marine",) * 8, "5m_vs_6m": ("marine",) * 5,
    "10m_vs_11m": ("marine",) * 10, "2s3z": ("stalker",) * 2 + ("zealot",) * 3,
    "3s5z": ("stalker",) * 3 + ("zealot",) * 5, "3s_vs_5z": ("stalker",) * 3,
    "6h_vs_8z": ("hydralisk",) * 6,
}


@pytest.mark.parametrize("map_name", sorted(EXPECTED_SMAX_TYPES))
def test_smax_specs(map_name):
    spec = envs.make(f"smax_{map_name}").spec
    assert spec.agent_types == EXPECTED_SMAX_TYPES[map_name]
    n_enemies = {"3m": 3, "8m": 8, "5m_vs_6m": 6, "10m_vs_11m": 11, "2s3z": 5, "3s5z": 8,
                 "3s_vs_5z": 5, "6h_vs_8z": 8}[map_name]
    assert spec.num_actions == 5 + n_enemies
    assert spec.state_dim == 12 * (spec.num_agents + n_enemies)
    assert spec.episode_length == 100


@pytest.mark.parametrize("map_name", ["3m", pytest.param("2s3z", marks=pytest.mark.slow)])
def test_smax_matches_jaxmarl(map_name):
    mod = import_jaxmarl("jaxmarl.environments.smax")
    raw = mod.HeuristicEnemySMAX(scenario=mod.map_name_to_scenario(map_name), max_steps=100)
    out = rollout(f"smax_{map_name}", steps=30, n_keys=4)
    tr = out["traj"]
    agents = raw.agents

    def reference(env_state, key, action):
        avail = raw.get_avail_actions(env_state)
        obs, s, rew, _, _ = raw.step_env(key, env_state, {a: action[i] for i, a in enumerate(agents)})
        avail_after = raw.get_avail_actions(s)
        return (jnp.stack([avail[a] for a in agents]).astype(bool),
                jnp.stack([obs[a] for a in agents]), obs["world_state"], rew[agents[0]],
                jnp.stack([avail_after[a] for a in agents]).astype(bool))

    flat = jax.tree.map(lambda x: jnp.asarray(x.reshape((-1,) + x.shape[2:])),
                        (tr["env_state"], jax.random.wrap_key_data(jnp.asarray(tr["key"]).reshape(-1, 2)),
                         tr["action"]))
    avail_jm, obs_jm, ws_jm, rew_jm, avail_after_jm = jax.jit(jax.vmap(reference))(*flat)
    n = len(agents)
    np.testing.assert_array_equal(tr["avail_before"].reshape(-1, n, tr["avail"].shape[-1]), avail_jm)
    np.testing.assert_array_equal(tr["avail"].reshape(avail_after_jm.shape), avail_after_jm)
    # same computation, compiled as a different program: equal up to float32 rounding
    np.testing.assert_allclose(tr["obs"].reshape(obs_jm.shape), obs_jm, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tr["state"].reshape(ws_jm.shape), ws_jm, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tr["reward"].reshape(-1), rew_jm, rtol=1e-5, atol=1e-5)
    # random policy: some damage dealt, returns within the reward's range
    ret = tr["reward"].sum(axis=1)
    assert np.all((ret >= 0) & (ret <= 2.0 + 1e-5)) and ret.mean() > 0


def test_smax_win_and_termination():
    env = envs.make("smax_3m")
    r = jax.jit(env.reset)(jax.random.key(3))
    inner = r.env_state.state
    n = env.spec.num_agents
    dead = inner.unit_alive.at[n:].set(False)
    health = inner.unit_health.at[n:].set(0.0)
    won_state = r.env_state.replace(state=inner.replace(unit_alive=dead, unit_health=health))
    s = jax.jit(env.step)(jax.random.key(4), won_state, jnp.full((n,), 4, jnp.int32))
    assert bool(s.done) and bool(s.info["terminated"]) and not bool(s.info["truncated"])
    assert float(s.info["won"]) == 1.0 and float(s.reward) >= 1.0
    scores = env.scores(s.reward[None], jax.tree.map(lambda x: x[None], s.info), jnp.ones(1, bool))
    assert float(scores["win"]) == 1.0


# --------------------------------------------------------------------------------------
# MaBrax
# --------------------------------------------------------------------------------------

FIELD_NOTES_2X3 = ([4, 13, 3, 12, 2, 11, 5, 0, 1, 8, 9, 10], [7, 16, 6, 15, 5, 14, 2, 0, 1, 8, 9, 10])


def test_mabrax_partitions():
    from teamsift.envs.mabrax import PARTITIONS

    mappings = import_jaxmarl("jaxmarl.environments.mabrax.mappings")
    _, cheetah23 = PARTITIONS["halfcheetah_2x3"]
    assert [obs for _, obs in cheetah23] == list(FIELD_NOTES_2X3)
    assert [act for act, _ in cheetah23] == [[0, 1, 2], [3, 4, 5]]
    # 6x1: MaMuJoCo's = JaxMARL's built-in one shifted back by 1 (as index sets)
    _, cheetah61 = PARTITIONS["halfcheetah_6x1"]
    jm61 = mappings._agent_observation_mapping["halfcheetah_6x1"]
    for i, (act, obs) in enumerate(cheetah61):
        assert act == [i]
        assert sorted(obs) == sorted(int(j) - 1 for j in jm61[f"agent_{i}"])
        assert max(obs) < 17 and len(set(obs)) == len(obs)
    # walker2d 2x3: same graph shape as the cheetah (legs of 3 joints, thighs adjacent), 12 dims
    _, walker = PARTITIONS["walker2d_2x3"]
    assert [len(obs) for _, obs in walker] == [12, 12]
    assert [obs for _, obs in walker] == list(FIELD_NOTES_2X3)


@pytest.mark.slow
def test_halfcheetah_2x3_obs_are_global_obs_at_field_note_indices():
    out = rollout("halfcheetah_2x3", steps=20, n_keys=2)
    tr = out["traj"]
    for i, idx in enumerate(FIELD_NOTES_2X3):
        np.testing.assert_array_equal(tr["obs"][:, :, i], tr["state"][..., idx])
        np.testing.assert_array_equal(out["reset_obs"][:, i], out["reset_state"][..., idx])
    # state = the global observation of the Brax state after the step
    np.testing.assert_array_equal(tr["state"][:, :-1], tr["env_state"].brax_state.obs[:, 1:])


@pytest.mark.slow
def test_halfcheetah_2x3_actions_reach_the_right_joints():
    from teamsift.envs.mabrax import _without_mujoco_log

    env = envs.make("halfcheetah_2x3")
    r = jax.jit(env.reset)(jax.random.key(0))
    a = jnp.array([[0.3, -0.7, 0.9], [-0.2, 0.5, 1.0]], jnp.float32)
    ours = jax.jit(env.step)(jax.random.key(1), r.env_state, a)
    brax_envs = import_jaxmarl("brax.envs")
    brax_env = _without_mujoco_log(
        lambda: quiet_construct(brax_envs.get_environment, "halfcheetah", backend="positional"))
    ref = jax.jit(brax_env.step)(r.env_state.brax_state, a.reshape(-1))
    np.testing.assert_allclose(ours.state, ref.obs, atol=1e-6)
    np.testing.assert_allclose(ours.reward, ref.reward, atol=1e-6)


@pytest.mark.slow
def test_walker_terminates_early_and_stays_done():
    out = rollout("walker2d_2x3", steps=400, n_keys=4)
    tr = out["traj"]
    term, done = tr["info"]["terminated"], tr["done"]
    assert term.any(axis=1).all(), "a random walker should fall within 400 steps"
    first = term.argmax(axis=1)
    for k, t0 in enumerate(first):
        assert term[k, t0:].all() and done[k, t0:].all()
        assert not tr["info"]["truncated"][k].any()
        # healthy reward of 1 per step dominates the random walker's per-step reward
        assert 0.0 < tr["reward"][k, :t0].mean() < 2.0


@pytest.mark.slow
def test_random_policy_halfcheetah_reward_is_small():
    out = rollout("halfcheetah_6x1", steps=100, n_keys=2)
    r = out["traj"]["reward"]
    assert np.all(np.isfinite(r)) and np.abs(r).mean() < 5.0
    assert not out["traj"]["done"].any()
