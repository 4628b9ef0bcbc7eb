"""Quickstart: collect data from a scripted policy, clone it with 5 seeds, evaluate them.

    python examples/quickstart.py
"""

import jax

from teamsift import envs
from teamsift.algos import bc
from teamsift.collect import behaviours, collect
from teamsift.data import load_dataset
from teamsift.engine import RunConfig, fit
from teamsift.evaluate import evaluate

env = envs.make("CN_3ls3l")  # pure reset/step, jit- and vmap-able
teacher, _ = behaviours.resolve("scripted:nearest", env)
path = collect(env, teacher, jax.random.key(0), 1000, "runs/quickstart", overwrite=True)  # vectorised, atomic
dataset = load_dataset(path)  # validated, memory-mapped
print(dataset)

learner = bc.learner(bc.BCConfig(), dataset)  # GRU agents: CN_3ls3l is partially observable
result = fit(learner, dataset, jax.random.key(1), RunConfig(updates=1000, seeds=5))  # one vmapped program
print("final loss per seed:", result.final().round(3))
for seed in range(5):
    evaluated = evaluate(env, result.policy(seed), jax.random.key(2), num_episodes=500)
    print(f"seed {seed}: return {evaluated.team_return}")
print("teacher:", evaluate(env, teacher, jax.random.key(2), num_episodes=500).team_return)
