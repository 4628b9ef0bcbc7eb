"""teamsift's XLA:CPU flags (`teamsift.XLA_CPU_FLAGS`) and the deadlock they prevent."""

import os
import subprocess
import sys
import textwrap

import pytest

import teamsift


def _flags_after_import(env_changes: dict) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "TEAMSIFT_KEEP_XLA_FLAGS")}
    env.update(env_changes)
    code = "import os, teamsift; print(os.environ.get('XLA_FLAGS', ''))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_import_adds_the_cpu_flags_and_keeps_the_users():
    assert _flags_after_import({}).split() == list(teamsift.XLA_CPU_FLAGS)
    flags = _flags_after_import({"XLA_FLAGS": "--xla_dump_to=/tmp/x --xla_cpu_multi_thread_eigen=true"}).split()
    assert flags[:2] == ["--xla_dump_to=/tmp/x", "--xla_cpu_multi_thread_eigen=true"]  # the user's value wins
    assert "--xla_cpu_multi_thread_eigen=false" not in flags
    assert "--xla_cpu_enable_concurrency_optimized_scheduler=false" in flags


def test_opt_out_leaves_xla_flags_alone():
    assert _flags_after_import({"TEAMSIFT_KEEP_XLA_FLAGS": "1", "XLA_FLAGS": "--xla_dump_to=/tmp/x"}) == \
        "--xla_dump_to=/tmp/x"


@pytest.mark.slow
def test_many_seed_batched_initialisations_finish(tmp_path):
    """The reproducer of the XLA:CPU deadlock: with XLA's default scheduler, a loop of
    seed-vmapped learner initialisations hung within a few hundred calls every time on the
    2-core machine; with teamsift's flags it finishes."""
    code = textwrap.dedent("""
        import sys, jax, teamsift
        from teamsift.algos import sit
        from teamsift.data import load_dataset, write_dataset
        from teamsift.data.testing import make_arrays, tiny_spec
        spec = tiny_spec()
        dataset = load_dataset(write_dataset(sys.argv[1], **make_arrays(spec, [8, 6, 8])))
        config = sit.SITConfig(decomposition=False)
        learner = sit.learner(config, dataset)
        arrays = learner.prepare(dataset, sit.stage_inputs(config, dataset))
        init = jax.jit(jax.vmap(lambda k: learner.init(k, arrays)))  # what fit compiles: seeds vmapped
        for i in range(1000):
            jax.block_until_ready(init(jax.random.split(jax.random.key(i), 2)))
        print("finished")
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "TEAMSIFT_KEEP_XLA_FLAGS")}
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "tiny")], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("finished")
