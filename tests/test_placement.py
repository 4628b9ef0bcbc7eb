"""Where the data lives changes no result: the streaming placement (pages of the drawn
rows gathered on the host, `teamsift.data.pages`) trains every kind of learner to exactly
the state the on-device placement reaches from the same key — one unit each: steps (BC,
TD3+BC with its observation statistics), whole episodes (ICQ, recurrent BC), individual
trajectories (SIT's Stage III), windows (MADDPG+CQL), several draws per update — and
pages read back the dataset's own rows, episodes and steps."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from teamsift.algos import bc, icq, maddpg_cql, sit, td3bc
from teamsift.data.pages import Pager, release
from teamsift.data.samplers import DPER, PJAP, gather_episodes, gather_transitions, gather_windows, on_host, to_device
from teamsift.data.testing import random_dataset
from teamsift.engine import Learner, RunConfig, fit


@pytest.fixture(scope="module")
def discrete(tmp_path_factory):  # 1-step episodes included
    return random_dataset(tmp_path_factory.mktemp("placement") / "discrete", discrete=True, seed=0)


@pytest.fixture(scope="module")
def continuous(tmp_path_factory):
    return random_dataset(tmp_path_factory.mktemp("placement") / "continuous", discrete=False, seed=1)


def flat(tree) -> np.ndarray:
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(tree)])


def both(learner, dataset, updates=6, seeds=2, **kwargs):
    results = {}
    for placement in ("device", "stream"):
        run = RunConfig(updates=updates, seeds=seeds, log_every=4, progress=False, data_placement=placement)
        results[placement] = fit(learner, dataset, jax.random.key(7), run, **kwargs)
    assert results["stream"].placement["data_placement"] == "stream"
    assert results["device"].placement["data_placement"] == "device"
    return results["device"], results["stream"]


def assert_same_run(device, stream):
    np.testing.assert_array_equal(flat(device.state), flat(stream.state))
    for name in device.history:
        if name != "elapsed":
            np.testing.assert_array_equal(device.history[name], stream.history[name])


SMALL_ICQ = icq.ICQConfig(hidden=(8,), critic_hidden=(8, 8), batch_size=4)


@pytest.mark.parametrize("case", ["bc-steps", "bc-episodes", "icq"])
def test_streamed_discrete_learners_end_where_on_device_ones_do(discrete, case):
    if case == "icq":
        learner = icq.learner(SMALL_ICQ, discrete)
    else:
        config = bc.BCConfig(hidden=(8,), batch_size=4, recurrent=case == "bc-episodes")
        learner = bc.learner(config, discrete)
    assert_same_run(*both(learner, discrete))


def test_streamed_sit_trajectories_and_dper_end_where_on_device_ones_do(discrete):
    config = sit.SITConfig(hidden=(8,), critic_hidden=8, batch_size=3)
    shape = (discrete.num_steps, discrete.num_agents)
    rng = np.random.default_rng(3)
    inputs = {"reward": rng.normal(size=shape).astype(np.float32),
              "weight": rng.uniform(0.5, 1.5, size=shape).astype(np.float32)}
    priorities = rng.uniform(size=(discrete.num_episodes, discrete.num_agents))
    device, stream = both(sit.learner(config, discrete), discrete, inputs=inputs, sampler=DPER(priorities=priorities))
    assert_same_run(device, stream)


def test_streamed_continuous_learners_end_where_on_device_ones_do(continuous):
    small = td3bc.TD3BCConfig(actor_hidden=(8,), critic_hidden=(8,), batch_size=5, policy_delay=2)
    assert_same_run(*both(td3bc.learner(small, continuous), continuous))  # with the obs statistics (global)
    windows = maddpg_cql.MADDPGCQLConfig(recurrent=False, policy_hidden=(8,), critic_hidden=(8,), batch_size=4,
                                         seq_len=3, sample_period=2, cql_samples=2)
    assert_same_run(*both(maddpg_cql.learner(windows, continuous), continuous))


def test_weights_and_several_draws_per_update_stream_too(discrete):
    """A learner drawing 3 batches per update, reporting what it read: the same rows,
    episodes, steps and weights in both placements."""

    def update(state, key, arrays, items):
        total = state
        for j in range(3):
            batch = gather_transitions(arrays, items[j])
            total = total + jnp.sum(batch["obs"]) + jnp.sum(batch["next_obs"]) + jnp.sum(batch["weight"])
        last = gather_transitions(arrays, items[2])
        return total, {"index": last["index"].astype(jnp.float32), "episode": last["episode"].astype(jnp.float32),
                       "t": last["t"].astype(jnp.float32), "is_last": last["is_last"].astype(jnp.float32)}

    learner = Learner("reader", lambda key, arrays: jnp.float32(0), update, None,
                      prepare=lambda dataset, inputs: to_device(dataset, ("obs", "final_obs", "actions")),
                      unit="step", batch_size=5, draws=3)
    weights = np.random.default_rng(4).uniform(size=(discrete.num_episodes, discrete.num_agents))
    device, stream = both(learner, discrete, updates=5, weights=weights)
    assert_same_run(device, stream)
    assert np.all(device.history["t"] >= 0) and np.any(device.history["is_last"] > 0)


def test_pages_hold_exactly_what_the_whole_dataset_gives(discrete):
    """Every unit: the gathered batch from a page equals the batch from the whole dataset
    (fields, next_* across episode ends, masks, and the dataset's episodes and steps)."""
    whole = to_device(discrete, None)
    with on_host():
        host = to_device(discrete, None)
    rng = np.random.default_rng(5)
    steps = rng.integers(0, discrete.num_steps, size=(2, 7))
    pager = Pager(host, discrete.starts, discrete.lengths, "step")
    page, local = pager.page(steps)
    for lead in range(2):
        got = gather_transitions({k: jnp.asarray(v[lead]) for k, v in page.items()}, jnp.asarray(local[lead]))
        want = gather_transitions(whole, jnp.asarray(steps[lead]))
        assert set(got) == set(want)
        for name in want:
            np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(want[name]), err_msg=name)

    episodes = rng.integers(0, discrete.num_episodes, size=(1, 6))
    pager = Pager(host, discrete.starts, discrete.lengths, "episode")
    page, local = pager.page(episodes)
    max_length = int(discrete.lengths.max())
    got = gather_episodes({k: jnp.asarray(v[0]) for k, v in page.items()}, jnp.asarray(local[0]), max_length)
    want = gather_episodes(whole, jnp.asarray(episodes[0]), max_length)
    for name in want:
        np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(want[name]), err_msg=name)

    starts = np.arange(0, discrete.num_steps, 2)
    pager = Pager({**host, "window_start": starts}, discrete.starts, discrete.lengths, "window", span=4)
    items = rng.integers(0, len(starts), size=(1, 6))
    page, local = pager.page(items)
    page = {k: jnp.asarray(v[0]) for k, v in page.items()}
    got = gather_windows(page, page["window_start"][jnp.asarray(local[0])], 4)
    want = gather_windows(whole, jnp.asarray(starts[items[0]]), 4)
    for name in want:
        np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(want[name]), err_msg=name)
    release(host["obs"])  # memory-maps give their resident pages back; the data reads the same after
    np.testing.assert_array_equal(np.asarray(host["obs"][:3]), np.asarray(discrete.steps["obs"][:3]))


def test_a_bounded_gather_reads_what_a_plain_one_does(discrete, monkeypatch):
    """Large memory-maps are read in sorted groups of rows whose pages are given back after
    each group: the rows come back in the order asked, duplicates included."""
    from teamsift.data import pages

    monkeypatch.setattr(pages, "GATHER_ROWS", 7)
    obs = discrete.steps["obs"]
    rows = np.random.default_rng(6).integers(0, discrete.num_steps, size=50)
    rows[:5] = rows[5]
    np.testing.assert_array_equal(pages.gather_rows(obs, rows, bounded=True), np.asarray(obs)[rows])
    monkeypatch.setattr(pages, "RESIDENT_BYTES", 0)  # every map counts as large: the pages still agree
    with on_host():
        host = to_device(discrete, None)
    pager = Pager(host, discrete.starts, discrete.lengths, "step")
    assert pager.bounded
    page, local = pager.page(rows[None, :8])
    got = gather_transitions({k: jnp.asarray(v[0]) for k, v in page.items()}, jnp.asarray(local[0]))
    np.testing.assert_array_equal(np.asarray(got["obs"]), np.asarray(obs)[rows[:8]])


def test_streaming_refuses_an_adaptive_sampler_and_auto_chooses_by_size(continuous):
    small = td3bc.TD3BCConfig(actor_hidden=(8,), critic_hidden=(8,), batch_size=5)
    learner = td3bc.learner(small, continuous)
    with pytest.raises(ValueError, match="stream.*pjap.*--data-placement device"):
        fit(learner, continuous, jax.random.key(0), RunConfig(updates=2, progress=False, data_placement="stream"),
            sampler=PJAP())
    run = RunConfig(updates=2, progress=False, data_placement="auto", device_memory_fraction=1e-12)
    from teamsift.engine import placement

    data = placement.prepare(learner, continuous, {}, None, "auto", 1e-12, None)
    assert data.placement == "stream" and data.bytes > 0
    assert placement.prepare(learner, continuous, {}, None, "auto", 1.0, None).placement == "device"
    assert fit(learner, continuous, jax.random.key(0), run).state is not None
    with pytest.raises(ValueError, match="data_placement"):
        dataclasses.replace(run, data_placement="disk")


def test_the_cli_refuses_an_unknown_placement_and_a_coordinator_alone(discrete):
    from typer.testing import CliRunner

    from teamsift.cli.main import app

    runner = CliRunner()
    bad = runner.invoke(app, ["train", str(discrete.path), "--data-placement", "disk", "--updates", "1"])
    assert bad.exit_code == 2 and "--data-placement: expected device, stream or auto, got 'disk'" in bad.output
    alone = runner.invoke(app, ["train", str(discrete.path), "--coordinator", "127.0.0.1:1", "--updates", "1"])
    assert alone.exit_code == 2 and "--coordinator: also give --num-processes and --process-id" in alone.output
