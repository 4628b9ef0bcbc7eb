"""Policies save and load without pickle, atomically, with clear errors for bad files."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from teamsift.nets import AgentNetConfig, NetworkPolicy, PolicyFileError, init_params, load_policy, save_policy


@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("discrete", [False, True])
def test_round_trip_gives_identical_actions(tmp_path, recurrent, discrete):
    config = AgentNetConfig(num_agents=3, obs_dim=5, num_actions=4, discrete=discrete, recurrent=recurrent)
    policy = NetworkPolicy(params=init_params(config, jax.random.key(0)), config=config, deterministic=False)
    path = save_policy(policy, tmp_path / "p.msgpack", extra={"note": "x"})
    loaded, header = load_policy(path)
    assert loaded.config == config and header["extra"] == {"note": "x"}
    assert loaded.deterministic is False
    obs = jax.random.normal(jax.random.key(1), (3, 5))
    avail = jnp.ones((3, 4), bool) if discrete else None
    a1, _ = policy.act(jax.random.key(2), obs, avail, policy.initial_carry())
    a2, _ = loaded.act(jax.random.key(2), obs, avail, loaded.initial_carry())
    np.testing.assert_array_equal(np.asarray(a1), np.asarray(a2))
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


def test_bad_policy_files_get_clear_errors(tmp_path):
    with pytest.raises(PolicyFileError, match="no such policy file"):
        load_policy(tmp_path / "missing.msgpack")
    garbage = tmp_path / "garbage.msgpack"
    garbage.write_bytes(b"\x00\x01not msgpack at all")
    with pytest.raises(PolicyFileError, match="garbage.msgpack"):
        load_policy(garbage)
    pickled = tmp_path / "pickle.msgpack"
    import pickle

    pickled.write_bytes(pickle.dumps({"params": 1}))
    with pytest.raises(PolicyFileError, match="pickle.msgpack"):
        load_policy(pickled)
