"""The human proxy of the human Overcooked benchmark (`teamsift.bench.overcooked_human`):
BC on the held-out test split only, and a learner evaluated beside it in either seat.

Needs the optional dependency overcooked-ai (1.1.0); skipped cleanly without it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

if importlib.util.find_spec("overcooked_ai_py") is None:
    pytest.skip("overcooked-ai not installed (pip install 'teamsift[human]')", allow_module_level=True)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from teamsift.algos import bc  # noqa: E402
from teamsift.bench import overcooked_human as oh  # noqa: E402
from teamsift.engine import RunConfig, fit  # noqa: E402
from teamsift.envs import make  # noqa: E402
from teamsift.evaluate import paired, rollout  # noqa: E402
from teamsift.nets import FunctionPolicy  # noqa: E402

LAYOUT = "cramped_room"
UPDATES = 20


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    return oh.import_splits(LAYOUT, tmp_path_factory.mktemp("human"))


@pytest.fixture(scope="module")
def proxy(splits):
    train, test = splits
    return oh.human_proxy(test, jax.random.key(3), updates=UPDATES, config=bc.BCConfig(recurrent=False), train=train)


def test_the_splits_hold_different_games(splits):
    train, test = splits
    assert train.meta["provenance"]["split"] == "train" and test.meta["provenance"]["split"] == "test"
    assert oh.game_workers(train) and oh.game_workers(test)
    assert not oh.game_workers(train) & oh.game_workers(test)
    assert not set(np.asarray(train.episodes["agent_ids"]).ravel()) & set(np.asarray(test.episodes["agent_ids"]).ravel())


def test_the_proxy_is_bc_on_the_test_split_only(splits, proxy):
    """The proxy's parameters are exactly those of BC fitted on the test split alone (same key
    and budget), so no training game reaches it."""
    train, test = splits
    config = bc.BCConfig(recurrent=False)
    run = RunConfig(updates=UPDATES, seeds=1, log_every=UPDATES, progress=False)
    on_test = fit(bc.learner(config, test), test, jax.random.key(3), run).policy(0)
    same = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), proxy.params, on_test.params)
    assert all(jax.tree.leaves(same))
    assert proxy.config.obs_dim == train.spec.obs_dim and not proxy.deterministic  # it samples, like a human


def test_a_train_split_or_an_overlapping_test_split_is_refused(splits, tmp_path):
    train, test = splits
    with pytest.raises(ValueError, match=r"meta.json: field 'provenance.split' expected 'test'.*found 'train'"):
        oh.human_proxy(train, jax.random.key(0), updates=1)
    with pytest.raises(ValueError, match="provenance.split"):
        oh.check_held_apart(test, train)
    leaky_record = {**test.meta["provenance"], "games": test.meta["provenance"]["games"]
                    + train.meta["provenance"]["games"][:1]}
    leaky = SimpleNamespace(meta={**test.meta, "provenance": leaky_record}, path=Path(tmp_path / "leaky"))
    shared = int(train.meta["provenance"]["games"][0]["workerid_num"])
    with pytest.raises(ValueError, match=rf"provenance.games' expected no game of the train split.*\[{shared}\]"):
        oh.check_held_apart(train, leaky)


def test_the_learner_plays_the_requested_seat_beside_the_proxy(splits, proxy):
    """In the human layout, a learner that only stays put leaves the cooking to the proxy,
    whichever seat it holds: its slot's recorded actions are all STAY, the proxy's are not."""
    train, _ = splits
    env = make(train.meta["env_id"], **{**train.meta["env_kwargs"], "episode_length": 60})
    stay = FunctionPolicy(lambda key, obs, avail: jnp.full(obs.shape[:1], 4, jnp.int32))
    for seat in (0, 1):
        actions = np.asarray(rollout(env, paired(stay, proxy, seat, 2), jax.random.key(5), 2).actions)
        assert (actions[..., seat] == 4).all() and (actions[..., 1 - seat] != 4).any()
