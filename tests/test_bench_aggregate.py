"""Aggregate statistics over rows and seeds (rliable): reproducible from their seed."""

from __future__ import annotations

import numpy as np

from teamsift.bench import aggregate


def _rows():
    rng = np.random.default_rng(0)
    return {f"row{r}": {"behavior": 0.0, "cells": {m: {"returns": (rng.normal(size=5) + shift).tolist()}
                                                  for m, shift in (("A", 0.0), ("B", 1.0), ("C", 2.0))}}
            for r in range(3)}


def test_intervals_depend_on_their_seed_only():
    """rliable 1.2 draws its bootstrap from NumPy's global generator: the intervals are the
    same whatever that generator's state, and its state is left as it was."""
    rows = _rows()
    np.random.seed(123)
    first = aggregate.aggregate(rows, ("A", "B", "C"), reps=200, seed=0)
    np.random.seed(456)
    before = np.random.get_state()[1].copy()
    second = aggregate.aggregate(rows, ("A", "B", "C"), reps=200, seed=0)
    assert first == second
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    other = aggregate.aggregate(rows, ("A", "B", "C"), reps=200, seed=1)
    assert other["methods"]["A"]["IQM"][0] == first["methods"]["A"]["IQM"][0]  # the point estimate needs no draw
    assert other["methods"]["A"]["IQM"][1:] != first["methods"]["A"]["IQM"][1:]
    # C is far above A on every row: the intervals say so.
    assert first["methods"]["C"]["mean"][1] > first["methods"]["A"]["mean"][2]
