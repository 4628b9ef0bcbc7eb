"""What SMAX policies do, per unit type: in the environment and on the data's states.

Written for the smax_2s3z population where ICQ at SMAC's reward scale collapses
(benchmarks/results/smax-ev2bc-cpu.md): its greedy actions agree with the data's as often
as a healthy policy's when every agent is counted, so the failure has to be looked for per
unit type. For each policy file (a `teamsift` policy of one parameter-shared network):

* in the environment (its policy in every slot, `--episodes` episodes): return, win rate,
  episode length, and per unit type the share of its living steps spent moving, stopping
  and attacking, how often an enemy is in range (an attack action is available), how often
  it attacks then, how long it lives, and where it moves (SMAX's four directions);
* on the data's states (the network unrolled over every episode of `--data`): per unit type,
  on steps where an enemy is in range, the share of greedy actions that attack against the
  data's, and the policy's probability of moving;
* with `--icq-run LABEL=RUN_DIR` (an ICQ run directory, restored from a copy of its last
  checkpoint as `diagnose_sit.py` does), ICQ's actor filter per unit type on uniform batches
  of the data: the share of the stalkers' (zealots', ...) weight k_i(s)·|B|·softmax_B(A/β)
  that falls on their moves against the moves' share of their decisions, and the mean
  advantage A = Q_i − Σ_a π_i Q_i of their moves and attacks, per seed.

SMAX's action layout: 0-3 move, 4 stop, 5 + j attack enemy j (`teamsift.envs.smax`); a dead
unit may only stop, which is how living steps are told apart.

    python benchmarks/diagnose_unit_behaviour.py --env smax_2s3z \\
        --data /tmp/teamsift-smax-ev2bc/smax_2s3z-p30-a40 \\
        --policy "ICQ ×10, 500 updates, seed 2=/tmp/runs/icq500/policies/seed-2.msgpack" ... \\
        --name icq-2s3z-collapse

Writes benchmarks/results/<name>-<device>.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from teamsift.bench.report import named_key, write_report
from teamsift.collect.suites import ENV_KWARGS
from teamsift.data import load_dataset
from teamsift.envs import make
from teamsift.evaluate.rollout import rollout_to_host
from teamsift.machine import describe, machine
from teamsift.nets.agent import apply_sequence, masked_logits
from teamsift.nets.policy_io import load_policy

ROOT = Path(__file__).resolve().parents[1]
MOVES, STOP, ATTACK = 4, 4, 5  # actions 0-3 move, 4 stop, 5 + j attack enemy j
DIRECTIONS = ("north", "east", "south", "west")  # JaxMARL SMAX's move actions 0-3


def action_kinds(actions: np.ndarray) -> np.ndarray:
    """0 move, 1 stop, 2 attack."""
    return np.where(actions < MOVES, 0, np.where(actions == STOP, 1, 2))


def unit_groups(env) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for slot, kind in enumerate(env.spec.agent_types):
        groups.setdefault(kind, []).append(slot)
    return groups


def living(avail: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[..., A] masks of a unit's living steps (it may do more than stop) and of those with an
    enemy in range (an attack action is available)."""
    alive = (avail.sum(-1) > 1) & valid[..., None]
    return alive, avail[..., ATTACK:].any(-1) & alive


def unit_shares(actions: np.ndarray, alive: np.ndarray, in_range: np.ndarray) -> dict:
    """One unit type's behaviour from its slots' actions [..., U] and masks."""
    kinds = action_kinds(actions)
    moving = alive & (kinds == 0)
    return {"move": float(np.mean(kinds[alive] == 0)), "stop": float(np.mean(kinds[alive] == 1)),
            "attack": float(np.mean(kinds[alive] == 2)), "in_range": float(in_range.sum() / max(alive.sum(), 1)),
            "attack_in_range": float(np.mean(kinds[in_range] == 2)) if in_range.any() else float("nan"),
            "living_steps": float(alive.sum() / max(alive.shape[0] * alive.shape[-1], 1)),
            "directions": {d: float(np.mean(actions[moving] == i)) if moving.any() else 0.0
                           for i, d in enumerate(DIRECTIONS)}}


def in_environment(env, policy, key, episodes: int) -> dict:
    ep = rollout_to_host(env, policy, key, episodes)
    valid = np.asarray(ep.valid)
    actions = np.asarray(ep.actions)
    alive, in_range = living(np.asarray(ep.avail), valid)
    return {"return": float(np.mean(ep.scores["return"])), "win": float(np.mean(ep.scores["win"])),
            "length": float(valid.sum(1).mean()),
            "units": {name: unit_shares(actions[..., slots], alive[..., slots], in_range[..., slots])
                      for name, slots in unit_groups(env).items()}}


def padded_episodes(dataset) -> dict:
    """obs [T, E, A, O], avail [T, E, A, nA], actions [T, E, A] and a step mask [T, E]."""
    lengths, starts = np.asarray(dataset.lengths), np.asarray(dataset.starts)
    steps = int(lengths.max())
    index = starts[:, None] + np.minimum(np.arange(steps)[None], lengths[:, None] - 1)
    mask = np.arange(steps)[None] < lengths[:, None]
    take = {name: np.swapaxes(np.asarray(dataset.steps[name])[index], 0, 1) for name in ("obs", "avail", "actions")}
    return {**take, "mask": mask.T}


def choices_in_range(logits: np.ndarray, data_actions: np.ndarray, alive: np.ndarray, in_range: np.ndarray) -> dict:
    """One unit type's greedy choices on the data's states, from its slots' masked logits
    [..., U, nA], the data's actions [..., U] and masks."""
    greedy = np.argmax(logits, -1)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return {"data_attack_in_range": float(np.mean(action_kinds(data_actions)[in_range] == 2)),
            "greedy_attack_in_range": float(np.mean(action_kinds(greedy)[in_range] == 2)),
            "p_move_in_range": float(np.mean(probs[..., :MOVES].sum(-1)[in_range])),
            "agreement": float(np.mean((greedy == data_actions)[alive]))}


def on_data(env, policy, episodes: dict) -> dict:
    logits = apply_sequence(policy.config, policy.params, jnp.asarray(episodes["obs"]))
    logits = np.asarray(masked_logits(logits, jnp.asarray(episodes["avail"])))
    alive, in_range = living(episodes["avail"], episodes["mask"])
    return {name: choices_in_range(logits[..., slots, :], episodes["actions"][..., slots], alive[..., slots],
                                   in_range[..., slots])
            for name, slots in unit_groups(env).items()}


def filter_shares(weight: np.ndarray, advantage: np.ndarray, actions: np.ndarray, alive: np.ndarray) -> dict:
    """One unit type's ICQ filter from its slots' decision weights, advantages and actions
    [..., U] on living steps: the moves' share of the move and attack decisions and of their
    weight, and the mean advantage of each."""
    kinds = action_kinds(actions)
    move, attack = alive & (kinds == 0), alive & (kinds == 2)
    both = max(float(weight[move].sum() + weight[attack].sum()), 1e-30)
    return {"data_move": float(move.sum() / max(move.sum() + attack.sum(), 1)),
            "weight_move": float(weight[move].sum()) / both,
            "advantage_move": float(advantage[move].mean()) if move.any() else float("nan"),
            "advantage_attack": float(advantage[attack].mean()) if attack.any() else float("nan")}


def icq_filter(env, dataset, run_dir: Path, batches: int = 8) -> dict:
    """ICQ's actor filter per unit type at `run_dir`'s last checkpoint, every seed."""
    import diagnose_sit  # beside this script (benchmarks/)
    from teamsift.algos import icq
    from teamsift.algos import offline_common as oc
    from teamsift.nets.mixer import mixing_weights

    config, data, state, step, seeds = diagnose_sit.restore_icq(run_dir, dataset)
    spec = dataset.spec
    actor, critic, mixer = (icq.actor_net_config(config, spec), icq.critic_net_config(config, spec),
                            icq.mixer_config(config, spec))
    max_length = int(dataset.lengths.max())

    def one(seed_state, key):  # the quantities of `icq.logits_actor_loss` on one uniform batch
        items = jax.random.randint(key, (config.batch_size,), 0, data.arrays["episode_start"].shape[0],
                                   dtype=jnp.int32)
        batch = oc.episode_batch(data.arrays, items, max_length, config.bootstrap_truncated)
        pi = jax.nn.softmax(icq.policy_logits(actor, seed_state.actor, batch)[:, :batch["actions"].shape[1]], -1)
        q = icq.critic_values(critic, seed_state.critic["critic"], batch["obs"], batch["state"])
        q_taken = oc.taken(q, batch["actions"])
        advantage = q_taken - jnp.sum(pi * jnp.where(batch["avail"], q, 0.0), axis=-1)
        mask = jnp.broadcast_to(batch["mask"][..., None], advantage.shape)
        k = mixing_weights(mixer, seed_state.critic["mixer"], q_taken, batch["state"])
        weight = k * oc.batch_softmax_weights(advantage, mask, config.beta)
        return {"weight": weight, "advantage": advantage, "mask": mask, "actions": batch["actions"],
                "avail": batch["avail"]}

    probe = jax.jit(lambda seed_state, keys: jax.lax.map(lambda k: one(seed_state, k), keys))
    keys = jax.random.split(named_key(jax.random.key(0), "filter"), batches)
    per_seed = []
    for seed in range(seeds):
        out = jax.device_get(probe(jax.tree.map(lambda x, s=seed: x[s], state), keys))
        alive, _ = living(np.asarray(out["avail"]), np.asarray(out["mask"]).any(-1))
        per_seed.append({name: filter_shares(out["weight"][..., slots], out["advantage"][..., slots],
                                             out["actions"][..., slots], alive[..., slots])
                         for name, slots in unit_groups(env).items()})
    return {"run_dir": str(run_dir), "update": int(step), "reward_scale": float(config.reward_scale),
            "beta": float(config.beta), "seeds": per_seed}


def _spread(values) -> str:
    low, high = min(values), max(values)
    return f"{low:+.3f}" if np.isclose(low, high, atol=5e-4) else f"{low:+.3f} to {high:+.3f}"


def render(report: dict) -> str:
    lines = [f"# Per-unit-type behaviour of SMAX policies ({report['env']})", "",
             f"Command: `{report['command']}`", f"Machine: {report['machine']}", "",
             f"Data: `{report['data']}`. In the environment: {report['episodes']} episodes per policy, its policy in "
             "every slot, greedy. Shares are of a unit's living steps; \"in range\": an attack action is available; "
             "\"attacks in range\": the share of those steps it attacks. On the data: the network unrolled over every "
             "episode; steps with an enemy in range.", "",
             "## In the environment", ""]
    units = list(next(iter(report["policies"].values()))["environment"]["units"])
    header = "| policy | return | won | length | " + " | ".join(
        f"{u}: move / stop / attack | {u}: in range, attacks then | {u}: steps alive | {u}: moves east" for u in units)
    lines += [header + " |", "|---" * (4 + 4 * len(units)) + "|"]
    for label, p in report["policies"].items():
        e = p["environment"]
        cells = [label, f"{e['return']:.2f}", f"{100 * e['win']:.0f}%", f"{e['length']:.0f}"]
        for u in units:
            s = e["units"][u]
            cells += [f"{s['move']:.2f} / {s['stop']:.2f} / {s['attack']:.2f}", f"{s['in_range']:.2f}, "
                      f"{s['attack_in_range']:.2f}", f"{s['living_steps']:.0f}", f"{s['directions']['east']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## On the data's states, enemy in range", "",
              "| policy | " + " | ".join(f"{u}: greedy attacks (data) | {u}: P(move) | {u}: agreement" for u in units)
              + " |", "|---" * (1 + 3 * len(units)) + "|"]
    for label, p in report["policies"].items():
        cells = [label]
        for u in units:
            s = p["data"][u]
            cells += [f"{s['greedy_attack_in_range']:.2f} ({s['data_attack_in_range']:.2f})",
                      f"{s['p_move_in_range']:.2f}", f"{s['agreement']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if report.get("icq_filter"):
        filters = report["icq_filter"]
        lines += ["", "## ICQ's actor filter per unit type (uniform batches of the data)", "",
                  "Per seed, the share of a unit type's filter weight k_i(s)·|B|·softmax_B(A/β) on its moves (of its "
                  "moves and attacks; \"data\": the moves' share of those decisions), and the range over seeds of the "
                  "mean advantage A = Q_i − Σ_a π_i Q_i of its moves and of its attacks.", "",
                  "| run | update | reward × | β | " + " | ".join(
                      f"{u}: weight on moves (data) | {u}: A of moves | {u}: A of attacks" for u in units) + " |",
                  "|---" * (4 + 3 * len(units)) + "|"]
        for label, f in filters.items():
            cells = [label, str(f["update"]), f"{f['reward_scale']:g}", f"{f['beta']:g}"]
            for u in units:
                seeds = [s[u] for s in f["seeds"]]
                cells += [", ".join(f"{s['weight_move']:.2f}" for s in seeds) + f" ({seeds[0]['data_move']:.2f})",
                          _spread([s["advantage_move"] for s in seeds]), _spread([s["advantage_attack"] for s in seeds])]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + [""] + report.get("notes", [])).rstrip() + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="smax_2s3z")
    parser.add_argument("--data", type=Path, help="a teamsift dataset of the same environment")
    parser.add_argument("--policy", action="append", default=[], metavar="LABEL=FILE",
                        help="a policy file and its label (repeat)")
    parser.add_argument("--icq-run", action="append", default=[], metavar="LABEL=RUN_DIR",
                        help="an ICQ run directory whose actor filter to measure per unit type (repeat)")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--name", default="unit-behaviour")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--render-only", action="store_true", help="rewrite the markdown from the json (its notes)")
    args = parser.parse_args(argv)
    stem = f"{args.name}-{jax.devices()[0].platform}"
    json_path = args.out / f"{stem}.json"
    if args.render_only:
        report = json.loads(json_path.read_text())
        write_report(report, render(report), args.out, stem)
        return
    if args.data is None:
        parser.error("--data: required (a teamsift dataset of the same environment)")
    if not args.policy:
        parser.error("--policy: give at least one LABEL=FILE")
    if not args.env.startswith("smax_"):
        raise SystemExit(f"--env {args.env}: expected a SMAX map (its action layout is what this reads)")
    env = make(args.env, **ENV_KWARGS.get(args.env, {}))
    dataset = load_dataset(args.data)
    if dataset.spec.env_id != env.spec.env_id:
        raise SystemExit(f"{args.data}/meta.json: env_id is {dataset.spec.env_id!r}, expected {env.spec.env_id!r}")
    episodes = padded_episodes(dataset)
    key = named_key(jax.random.key(0), "behaviour")
    report = {"env": args.env, "data": str(args.data), "episodes": args.episodes,
              "command": "python benchmarks/diagnose_unit_behaviour.py " + shlex.join(sys.argv[1:] if argv is None else argv),
              "machine": describe(machine()), "machine_info": machine(), "policies": {}}
    for item in args.policy:
        label, sep, path = item.rpartition("=")
        if not sep or not label:
            raise SystemExit(f"--policy {item!r}: expected LABEL=FILE")
        policy = load_policy(path)[0]
        report["policies"][label] = {"file": path, "environment": in_environment(env, policy, key, args.episodes),
                                     "data": on_data(env, policy, episodes)}
        print(label, json.dumps(report["policies"][label]), flush=True)
    report["icq_filter"] = {}
    for item in args.icq_run:
        label, sep, path = item.rpartition("=")
        if not sep or not label:
            raise SystemExit(f"--icq-run {item!r}: expected LABEL=RUN_DIR")
        report["icq_filter"][label] = icq_filter(env, dataset, Path(path))
        print(label, json.dumps(report["icq_filter"][label]), flush=True)
    if json_path.is_file():  # a rerun keeps the notes written beside the earlier tables
        report["notes"] = json.loads(json_path.read_text()).get("notes", [])
    paths = write_report(report, render(report), args.out, stem)
    print("wrote", *map(str, paths))


if __name__ == "__main__":
    main()
