"""Quickstart: collect data from a scripted policy, clone it with 5 seeds, evaluate one.

    python examples/quickstart.py
"""

import jax

from teamsift import envs
from teamsift.algos import bc
from teamsift.algos.common import policy_for_seed
from teamsift.collect import behaviours, collect
from teamsift.data import load_dataset
from teamsift.evaluate import evaluate

env = envs.make("CN_3ls3l")  # pure reset/step, jit- and vmap-able
teacher, _ = behaviours.resolve("scripted:nearest", env)
path = collect(env, teacher, jax.random.key(0), 1000, "runs/quickstart", overwrite=True)  # vectorised, atomic
dataset = load_dataset(path)  # validated, memory-mapped
print(dataset)

config = bc.BCConfig(num_updates=1000)  # GRU agents: CN_3ls3l is partially observable
policy, logs = bc.train(config, dataset, jax.random.key(1), num_seeds=5)  # one vmapped program
print("final loss per seed:", logs["loss"][:, -1].round(3))
for seed in range(5):
    result = evaluate(env, policy_for_seed(policy, seed), jax.random.key(2), num_episodes=500)
    print(f"seed {seed}: return {result.team_return}")
print("teacher:", evaluate(env, teacher, jax.random.key(2), num_episodes=500).team_return)
