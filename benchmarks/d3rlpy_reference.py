"""d3rlpy's BC and TD3+BC on the same per-agent data, networks and batch as teamsift's,
for `benchmarks/run_speed.py`. Runs in a separate environment with PyTorch and d3rlpy
(run_speed.py makes it); prints one JSON object.

    python benchmarks/d3rlpy_reference.py DATA.npz --algo td3bc|bc --batch 512 --hidden 256,256 \
        --updates 500 --rounds 3 [--compile]

DATA.npz holds single-agent transitions: each agent's trajectory of every episode, one after
the other, its observation followed by its one-hot agent id (teamsift's parameter-shared
networks see the same input). Two timings, each the fastest of `rounds`:
  * end to end: `algo.fit(dataset, n_steps=updates)` (d3rlpy's own loop: sampling from its
    replay buffer, the update, no logging, no saving, no progress bar);
  * update alone: `algo.update(batch)` over batches sampled before the clock starts.
"""

from __future__ import annotations

import argparse
import json
import time

import d3rlpy
import numpy as np
import torch


def build(algo: str, batch: int, hidden: list[int], dataset, compile_graph: bool):
    encoder = d3rlpy.models.VectorEncoderFactory(hidden_units=hidden)
    if algo == "td3bc":
        # teamsift's TD3+BC: Adam 3e-4 for both, τ 0.005, d = 2, σ̃ 0.2, c 0.5, α 2.5, twin critics,
        # observations standardised by the dataset's statistics.
        config = d3rlpy.algos.TD3PlusBCConfig(
            batch_size=batch, actor_encoder_factory=encoder, critic_encoder_factory=encoder,
            observation_scaler=d3rlpy.preprocessing.StandardObservationScaler(), compile_graph=compile_graph)
    else:  # deterministic BC, tanh-squashed actions, MSE, Adam (teamsift's BC with optimizer="adam")
        config = d3rlpy.algos.BCConfig(batch_size=batch, encoder_factory=encoder, learning_rate=5e-4,
                                       compile_graph=compile_graph)
    learner = config.create(device="cpu:0")
    learner.build_with_dataset(dataset)
    return learner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data")
    parser.add_argument("--algo", choices=("td3bc", "bc"), required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--hidden", default="256,256")
    parser.add_argument("--updates", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="d3rlpy's compile_graph (torch.compile)")
    args = parser.parse_args()
    torch.manual_seed(0)
    data = np.load(args.data)
    dataset = d3rlpy.dataset.MDPDataset(data["observations"], data["actions"], data["rewards"], data["terminals"],
                                        timeouts=data["timeouts"])
    hidden = [int(h) for h in args.hidden.split(",")]
    learner = build(args.algo, args.batch, hidden, dataset, args.compile)
    batches = [dataset.sample_transition_batch(args.batch) for _ in range(args.updates)]
    fit_kwargs = dict(n_steps=args.updates, n_steps_per_epoch=args.updates, show_progress=False,
                      save_interval=10**9, logger_adapter=d3rlpy.logging.NoopAdapterFactory(), with_timestamp=False)
    learner.fit(dataset, **fit_kwargs)  # warm-up (and torch.compile's compilation with --compile)
    fit_seconds, update_seconds = [], []
    for _ in range(args.rounds):
        started = time.perf_counter()
        learner.fit(dataset, **fit_kwargs)
        fit_seconds.append(time.perf_counter() - started)
        started = time.perf_counter()
        for batch in batches:
            learner.update(batch)
        update_seconds.append(time.perf_counter() - started)
    print(json.dumps({"algo": args.algo, "batch": args.batch, "hidden": hidden, "updates": args.updates,
                      "compile": args.compile, "fit_seconds": fit_seconds, "update_seconds": update_seconds,
                      "torch": torch.__version__, "d3rlpy": d3rlpy.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
