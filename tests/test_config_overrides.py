"""`--set FIELD=VALUE`: overrides reach the learner's hyperparameters, the sampler's
(`dper.alpha`), Stage I's (`ardnem.ensemble_size`) and the weights' selection rule."""

import pytest

from teamsift.algos import pipeline, sit
from teamsift.engine import parse_assignment, with_overrides


def spec_of(*texts, algo="sit", **options):
    return pipeline.make_spec(algo, overrides=dict(parse_assignment(t) for t in texts), **options)


def test_nested_fields_are_set_and_coerced():
    spec = spec_of("beta=1", "dper.alpha=2", "hidden=[32]", "filter=exp", "use_gat=false", "ardnem.ensemble_size=1")
    config = spec.hyperparameters
    assert config.beta == 1.0 and isinstance(config.beta, float)
    assert spec.sampler == "dper" and spec.sampler_config.alpha == 2.0 and spec.sampler_config.priority_range == (0, 20)
    assert config.hidden == (32,) and config.filter == "exp" and config.use_gat is False
    assert spec.ardnem.ensemble_size == 1
    assert sit.SITConfig().beta == 0.1  # the default is untouched


def test_optional_fields_take_a_value():
    # BCConfig.recurrent defaults to None (chosen from the env); `--mlp` is recurrent=false
    assert spec_of("recurrent=false", algo="bc").hyperparameters.recurrent is False
    assert spec_of("recurrent=true", algo="bc").hyperparameters.recurrent is True


def test_the_spec_follows_what_the_algorithm_needs():
    assert spec_of("decomposition=false").sampler == "uniform"  # SIT w/o decomp: uniform type-wise buffers
    assert spec_of("decomposition=false").ardnem is None  # ... and no Stage I
    assert spec_of(algo="icq").ardnem is None and spec_of(algo="icq").sampler == "uniform"
    dper_icq = spec_of(algo="icq", sampler="dper")
    assert dper_icq.needs_stage1() and dper_icq.sampler_config.alpha == 0.2
    ev2bc = spec_of("selection.threshold=0.5", algo="ev2bc")
    assert ev2bc.weights == "ev" and ev2bc.selection.threshold == 0.5
    assert spec_of(algo="ev2bc", weights="none").weights is None
    assert spec_of(algo="maddpg_cql_pjap").sampler == "pjap"


@pytest.mark.parametrize("text, message", [
    ("betta=1", "has no field 'betta'"),
    ("dper.alfa=1", "has no field 'alfa'"),
    ("beta=fast", "expected a value like 0.1"),
    ("batch_size=1.5", "expected a value like 32"),
    ("use_gat=1", "expected a value like True"),
    ("beta.x=1", "has no fields to set"),
])
def test_bad_assignments_name_the_field(text, message):
    with pytest.raises(ValueError, match=message):
        spec_of(text)


def test_assignment_syntax():
    assert parse_assignment("dper.alpha=2") == ("dper.alpha", 2)
    assert parse_assignment("filter=binary") == ("filter", "binary")
    with pytest.raises(ValueError, match="expected FIELD=VALUE"):
        parse_assignment("beta")


def test_config_validation_still_runs():
    with pytest.raises(ValueError, match="SITConfig.filter"):
        with_overrides(sit.SITConfig(), {"filter": "none"})
    with pytest.raises(ValueError, match="--sampler: expected one of"):
        spec_of(sampler="sumtree")
    with pytest.raises(ValueError, match="--weights: expected one of"):
        spec_of(algo="bc", weights="oracle")
