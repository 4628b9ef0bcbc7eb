"""The static spec table that `teamsift envs` shows equals the spec of every environment built."""

import pprint

import pytest

from teamsift import envs
from teamsift.envs.specs import STATIC_SPECS, static_spec


@pytest.mark.slow  # builds every environment (imports JaxMARL, Brax, MuJoCo): about 20 s on 2 cores
def test_static_specs_match_the_built_environments():
    stale = {}
    for item in envs.list_envs():
        built = envs.make(item.env_id).spec
        if static_spec(item.env_id) != built:
            stale[item.env_id] = built.to_dict()
    assert not stale, "update teamsift/envs/specs.py STATIC_SPECS:\n" + pprint.pformat(stale, sort_dicts=False)
    assert set(STATIC_SPECS) == {item.env_id for item in envs.list_envs()}
