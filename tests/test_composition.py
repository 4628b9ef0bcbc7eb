"""Composition specs (SIT's table notation) parse, and every bad spec is refused before any work."""

import jax
import numpy as np
import pytest

from teamsift.collect.composition import SpecError, parse


def test_sit_table_specs_parse():
    low = parse("50%[r,r,m] + 50%[r,r,r]", 3)
    assert low.weights == (0.5, 0.5)
    assert low.levels == (("random", "random", "medium"), ("random",) * 3)
    medium = parse("[r,m,e]", 3)
    assert medium.weights == (1.0,) and medium.levels == (("random", "medium", "expert"),)
    extreme = parse("99.5%[all r] + 0.5%[all m]", 4)
    assert extreme.levels[1] == ("medium",) * 4 and extreme.weights[0] == pytest.approx(0.995)
    long_names = parse("100%[random, expert]", 2)
    assert long_names.levels == (("random", "expert"),)


def test_episode_counts_are_exact_and_terms_are_shuffled_by_key():
    spec = parse("99.5%[all r] + 0.5%[all m]", 3)
    assert spec.episode_counts(10_000).tolist() == [9950, 50]
    assert parse("33.3%[r] + 33.3%[m] + 33.4%[e]", 1).episode_counts(10).sum() == 10
    terms = spec.draw_terms(jax.random.key(0), 1000)
    assert np.bincount(terms).tolist() == [995, 5]
    np.testing.assert_array_equal(terms, spec.draw_terms(jax.random.key(0), 1000))
    assert not np.array_equal(terms, spec.draw_terms(jax.random.key(1), 1000))


@pytest.mark.parametrize("text, slots, message", [
    ("", 3, "empty"),
    ("50%[r,r,m] + 40%[r,r,r]", 3, "add up to 90%"),
    ("50%[r,r] + 50%[r,r]", 3, "has 2 slots; the environment has 3"),
    ("100%[r,x,m]", 3, "unknown level"),
    ("[r,r,m] + [r,r,r]", 3, "percentage is needed"),
    ("50%(r,r,m) + 50%[r,r,r]", 3, "expected 'P%[l1,l2,...]'"),
    ("-5%[r] + 105%[m]", 1, "expected"),
    ("100%[]", 3, "no slots"),
    ("50%[r,r] + 50%[r,r,r]", None, "different numbers of slots"),
])
def test_bad_specs_get_clear_errors(text, slots, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]").replace(".", r"\.")):
        parse(text, slots)
