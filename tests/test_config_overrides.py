"""`with_overrides` / `parse_assignment`: the `teamsift train --set FIELD=VALUE` machinery."""

import pytest

from teamsift.algos import sit
from teamsift.algos.common import parse_assignment, with_overrides


def test_nested_fields_are_set_and_coerced():
    config = with_overrides(sit.SITConfig(), dict(parse_assignment(t) for t in (
        "beta=1", "dper.alpha=2", "hidden=[32]", "filter=exp", "use_gat=false")))
    assert config.beta == 1.0 and isinstance(config.beta, float)
    assert config.dper.alpha == 2.0 and config.dper.priority_range == (0.0, 20.0)
    assert config.hidden == (32,) and config.filter == "exp" and config.use_gat is False
    assert sit.SITConfig().beta == 0.1  # the default is untouched


@pytest.mark.parametrize("text, message", [
    ("betta=1", "has no field 'betta'"),
    ("dper.alfa=1", "has no field 'alfa'"),
    ("beta=fast", "expected a value like 0.1"),
    ("num_updates=1.5", "expected a value like 15000"),
    ("use_gat=1", "expected a value like True"),
    ("beta.x=1", "has no fields to set"),
])
def test_bad_assignments_name_the_field(text, message):
    with pytest.raises(ValueError, match=message):
        with_overrides(sit.SITConfig(), dict([parse_assignment(text)]))


def test_assignment_syntax():
    assert parse_assignment("dper.alpha=2") == ("dper.alpha", 2)
    assert parse_assignment("filter=binary") == ("filter", "binary")
    with pytest.raises(ValueError, match="expected FIELD=VALUE"):
        parse_assignment("beta")


def test_config_validation_still_runs():
    with pytest.raises(ValueError, match="SITConfig.filter"):
        with_overrides(sit.SITConfig(), {"filter": "none"})
