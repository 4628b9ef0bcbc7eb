"""Many devices and many processes change no per-seed result.

* Seeds laid over 4 (forced host) devices end where one device ends them (to float32
  rounding: XLA sums a 1-seed and a 4-seed vmap in different orders); seeds ×
  data-parallel batch shards (2 × 2) average the gradients over the shards and end where
  one device does, up to float summation order.
* Two processes joined by `jax.distributed` on 127.0.0.1 train one run (`teamsift train
  --coordinator …`, streamed): it reports 2 processes and 2 devices, writes one run directory
  and one set of checkpoints, and each seed ends as in a one-process run.

(MAPPO's seeds and environments over 4 devices: tests/test_sharded_envs.py.)

Forced devices and `jax.distributed` must be set up before JAX starts, so both run in
subprocesses."""

import csv
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from teamsift.algos import bc
from teamsift.data.testing import random_dataset
from teamsift.engine import RunConfig, fit

SRC = str(Path(__file__).resolve().parents[1] / "src")
CONFIG = bc.BCConfig(hidden=(16,), batch_size=4, recurrent=False, optimizer="adam", learning_rate=1e-2)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return random_dataset(tmp_path_factory.mktemp("devices") / "tiny", discrete=True, seed=0)


def flat(tree) -> np.ndarray:
    return np.concatenate([np.asarray(x, np.float64).reshape(x.shape[0], -1) for x in jax.tree.leaves(tree)], axis=1)


def run_python(code: str, env_extra: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC, **env_extra}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


FORCED = """
    import sys
    import jax, numpy as np
    from teamsift.algos import bc
    from teamsift.data import load_dataset
    from teamsift.engine import RunConfig, fit
    assert jax.device_count() == 4
    dataset = load_dataset(sys.argv[1])
    config = bc.BCConfig(hidden=(16,), batch_size=4, recurrent=False, optimizer="adam", learning_rate=1e-2)
    out = {}
    for name, seeds, data_parallel in (("seeds", 4, None), ("data", 2, 2)):
        run = RunConfig(updates=8, seeds=seeds, log_every=4, progress=False, data_parallel=data_parallel)
        result = fit(bc.learner(config, dataset), dataset, jax.random.key(11), run)
        leaves = [np.asarray(x, np.float64).reshape(seeds, -1) for x in jax.tree.leaves(result.state)]
        out[name] = np.concatenate(leaves, axis=1)
        out[name + "_devices"] = np.asarray([result.placement["devices"], result.placement["mesh"]["seed"],
                                             result.placement["mesh"]["data"]])
        out[name + "_sharded"] = np.asarray(len(jax.tree.leaves(result.state)[0].sharding.device_set))
    np.savez(sys.argv[2], **out)
"""


def test_seeds_over_four_devices_give_the_one_device_results(dataset, tmp_path):
    out = tmp_path / "forced.npz"
    code = FORCED.replace("sys.argv[1]", repr(str(dataset.path))).replace("sys.argv[2]", repr(str(out)))
    run_python(code, {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    got = np.load(out)
    np.testing.assert_array_equal(got["seeds_devices"], [4, 4, 1])
    assert int(got["seeds_sharded"]) == 4  # the state lives on 4 devices, a seed on each
    np.testing.assert_array_equal(got["data_devices"], [4, 2, 2])
    one = fit(bc.learner(CONFIG, dataset), dataset, jax.random.key(11),
              RunConfig(updates=8, seeds=4, log_every=4, progress=False))
    assert one.placement["devices"] == 1
    # Equal to float32 rounding, not bit for bit: XLA compiles the update vmapped over 1 seed (a
    # device's share) and over 4 seeds to kernels that add in different orders — on one device
    # too (a 1-seed and a 4-seed vmap of the same update differ in the last bit).
    np.testing.assert_allclose(got["seeds"], flat(one.state), rtol=1e-5, atol=1e-6)
    two = fit(bc.learner(CONFIG, dataset), dataset, jax.random.key(11),
              RunConfig(updates=8, seeds=2, log_every=4, progress=False))
    # Data-parallel: the same batch, the gradient summed over 2 shards: equal up to the order of sums.
    np.testing.assert_allclose(got["data"], flat(two.state), rtol=1e-5, atol=1e-6)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def teamsift_cli(args: list[str], env_extra: dict | None = None) -> subprocess.Popen:
    code = "import sys; from teamsift.cli.main import main; sys.argv = ['teamsift'] + sys.argv[1:]; main()"
    env = {**os.environ, "PYTHONPATH": SRC, **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_two_processes_train_one_run_with_one_set_of_checkpoints(dataset, tmp_path):
    """Streamed (the harder case: global arrays from each process' own pages, each process
    gathering its own seed's rows), against one process with the data on its device."""
    placement = "stream"
    common = ["train", str(dataset.path), "--algo", "bc", "--mlp", "--updates", "12", "--seeds", "2",
              "--eval-episodes", "0", "--checkpoint-every", "6", "--log-every", "6", "--json",
              "--set", "batch_size=4", "--set", "hidden=[16]", "--data-placement", placement]
    port = free_port()
    procs = [teamsift_cli(common + ["--run-dir", str(tmp_path / "two"), "--coordinator", f"127.0.0.1:{port}",
                                    "--num-processes", "2", "--process-id", str(i)]) for i in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    result = json.loads(outputs[0][0])
    assert result["processes"] == 2 and result["devices"] == 2 and result["mesh"] == {"seed": 2, "data": 1}
    assert result["data_placement"] == placement and outputs[1][0] == ""  # process 0 reports
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir() if p.name.isdigit()) == ["12", "6"]
    one = teamsift_cli([a if a != "stream" else "device" for a in common] + ["--run-dir", str(tmp_path / "one")])
    out, err = one.communicate(timeout=600)
    assert one.returncode == 0, err[-3000:]
    single = json.loads(out)
    assert single["processes"] == 1
    assert result["final_loss"] == single["final_loss"]
    def logged(run_dir):  # metrics.csv without the wall-clock column
        with open(run_dir / "metrics.csv") as handle:
            return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in csv.DictReader(handle)]

    assert logged(tmp_path / "two") == logged(tmp_path / "one")

