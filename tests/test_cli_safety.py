"""Nothing the user had is lost, Ctrl-C ends cleanly, bad input gets one clear line, results go
to stdout: the promises of docs/cli.md, checked on tiny data."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from teamsift.cli.main import app

runner = CliRunner()


def refused(*args) -> str:
    """Run a command that must be refused: exit code 2, exactly one line on stderr, no traceback;
    return that line."""
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def snapshot(root: Path) -> dict:
    """Every file and directory under `root` with its bytes (files) and modification time."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


@pytest.fixture()
def tiny(tmp_path) -> Path:
    from teamsift.data import write_dataset
    from teamsift.data.testing import make_arrays, tiny_spec

    return write_dataset(tmp_path / "tiny", **make_arrays(tiny_spec(), [4, 3, 5], seed=1))


# --- nothing lost ----------------------------------------------------------------------------


def test_existing_outputs_are_refused_before_any_work(tmp_path, tiny):
    mine = tmp_path / "notes.msgpack"
    mine.write_text("my notes")
    for command in ("train", "imitate"):
        line = refused(command, tiny, "--out", mine, "--run-dir", tmp_path / "run")
        assert f"--out {mine}: already exists; pass --overwrite" in line
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "keep.txt").write_text("keep")
    line = refused("train", tiny, "--out", folder, "--overwrite", "--run-dir", tmp_path / "run")
    assert f"--out {folder}: a directory; give a file name" in line
    assert not (tmp_path / "run").exists(), "refused before training"
    assert mine.read_text() == "my notes" and (folder / "keep.txt").read_text() == "keep"

    # datasets: an existing directory needs --overwrite, and even then only a dataset is replaced
    assert "already exists; pass --overwrite" in refused("generate", "commons", folder, "--episodes", "1")
    assert "is not a teamsift dataset" in refused("generate", "commons", folder, "--episodes", "1", "--overwrite")
    garbage = tmp_path / "garbage.npz"
    garbage.write_text("not read: the output is checked first")
    assert f"{folder} already exists" in refused("import", "npz", garbage, folder)
    assert f"{tiny} already exists" in refused("import", "vault", tmp_path / "no-vault", tiny)
    assert (folder / "keep.txt").read_text() == "keep" and sorted(p.name for p in folder.iterdir()) == ["keep.txt"]

    # pools and benchmark results
    (tmp_path / "pools" / "commons").mkdir(parents=True)
    (tmp_path / "pools" / "commons" / "pools.json").write_text("{}")
    line = refused("pools", "train", "commons", "--dir", tmp_path / "pools", "--timesteps", "10")
    assert "already holds pools of commons; pass --overwrite" in line
    assert (tmp_path / "pools" / "commons" / "pools.json").read_text() == "{}"
    results = tmp_path / "results"
    results.mkdir()
    (results / "poly-pjap-cpu.json").write_text("{}")
    assert "poly-pjap-cpu.json already exists; pass --overwrite" in refused("bench", "pjap", "--quick", "--out",
                                                                             results)
    (results / "sit-cpu.json").write_text(json.dumps({"config": {"episodes": 10000, "num_seeds": 5}}))
    line = refused("bench", "sit", "--episodes", "20", "--out", results, "--data-dir", tmp_path / "d")
    assert "holds results of another budget: episodes 10000 (now 20)" in line
    assert json.loads((results / "sit-cpu.json").read_text())["config"]["episodes"] == 10000


KILLED_WRITE = """
import os, signal, sys
import numpy as np
from teamsift.data import write_dataset
from teamsift.data.testing import make_arrays, tiny_spec
from teamsift.fileio import atomic_write_bytes
os.replace = lambda *args: os.kill(os.getpid(), signal.SIGKILL)  # killed just before the rename
if sys.argv[1] == "file":
    atomic_write_bytes(sys.argv[2], b"new")
else:
    write_dataset(sys.argv[2], **make_arrays(tiny_spec(), [2, 2]), overwrite=True)
"""


@pytest.mark.parametrize("kind", ["file", "dataset"])
def test_a_killed_write_leaves_a_temporary_the_next_write_removes(tmp_path, kind):
    from teamsift.data import write_dataset
    from teamsift.data.testing import make_arrays, tiny_spec
    from teamsift.fileio import atomic_write_bytes

    target = tmp_path / ("policy.msgpack" if kind == "file" else "ds")
    if kind == "file":
        target.write_bytes(b"old")
    else:
        write_dataset(target, **make_arrays(tiny_spec(), [3]))
    before = snapshot(tmp_path)
    foreign = tmp_path / f".{target.name}.tmp-notours"  # somebody else's hidden file: never touched
    foreign.write_text("theirs")
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITE, kind, str(target)], capture_output=True, text=True,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    orphans = [p for p in tmp_path.iterdir() if p.name.startswith(f".{target.name}.tmp-") and p != foreign]
    assert len(orphans) == 1, "the killed writer left its temporary"
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith(".")} == before, "the old one is intact"

    live = tmp_path / f".{target.name}.tmp-{os.getpid()}-{orphans[0].name.split('-')[2]}-0badc0de"
    live.write_text("a write in progress (this process)")
    if kind == "file":
        atomic_write_bytes(tmp_path / "other.txt", b"next write")
    else:
        write_dataset(tmp_path / "other", **make_arrays(tiny_spec(), [2]))
    assert not orphans[0].exists(), "the next write into the directory removed the stale temporary"
    assert foreign.read_text() == "theirs" and live.exists(), "only our own temporaries of dead writers go"


def test_a_replacement_killed_between_its_renames_gets_the_old_dataset_back(tmp_path, tiny):
    from teamsift.data import load_dataset, write_dataset
    from teamsift.data.testing import make_arrays, tiny_spec
    from teamsift.fileio import temporary_name

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    name = temporary_name(tiny.name, "old").split("-")
    name[1] = dead.stdout.strip()  # the pid of a process that has ended
    set_aside = tiny.parent / "-".join(name)
    os.replace(tiny, set_aside)  # the state a SIGKILL between the two renames leaves
    write_dataset(tmp_path / "next", **make_arrays(tiny_spec(), [2]))
    assert load_dataset(tiny).num_episodes == 3 and not set_aside.exists()


# --- interrupts --------------------------------------------------------------------------------

INTERRUPTED_CHILD = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)  # as from a terminal, whatever the test runner ignores
sys.argv = ["teamsift", *sys.argv[1:]]
import teamsift.cli.main as cli  # what the console script imports first
os.write(1, b"ready\\n")
cli.main()
"""


@pytest.mark.parametrize("after_s", [0.2, 2.0])
def test_ctrl_c_at_start_up_or_later_exits_130_with_one_line(tmp_path, tiny, after_s):
    child = subprocess.Popen([sys.executable, "-c", INTERRUPTED_CHILD, "train", str(tiny), "--updates", "100000",
                              "--eval-episodes", "0", "--run-dir", str(tmp_path / "run")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert child.stdout.readline() == b"ready\n"
    time.sleep(after_s)  # 0.2 s: JAX is still importing; 2 s: importing, compiling or training
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 130, err.decode()[-2000:]
    lines = [line for line in err.decode().splitlines() if line.strip()]
    assert lines[-1] == "interrupted" and not any("Traceback" in line or "Error" in line for line in lines), lines
    assert sum("interrupted" in line for line in lines) == 1 and out == b""


# --- bad input ---------------------------------------------------------------------------------


def test_bad_counts_and_conflicting_options_are_refused_with_one_line(tmp_path, tiny):
    mine = tmp_path / "mine.msgpack"
    mine.write_text("mine")
    before = snapshot(tmp_path)
    assert "'--updates'" in refused("train", tiny, "--updates", "0", "--out", mine, "--overwrite")
    assert "'--seeds'" in refused("train", tiny, "--seeds", "0")
    assert "'--eval-episodes'" in refused("train", tiny, "--eval-episodes", "-3")
    assert "'--episodes'" in refused("eval", mine, "--episodes", "0")
    assert "'--episodes'" in refused("generate", "commons", tmp_path / "new", "--episodes", "0")
    assert "'--episodes'" in refused("generate", "commons", tmp_path / "new", "--episodes", "-5")
    assert "'--timesteps'" in refused("pools", "train", "commons", "--timesteps", "0")
    assert "Missing argument" in refused("train")
    assert "--spec chooses every slot's behaviour; --policy and --mix" in refused(
        "generate", "commons", tmp_path / "new", "--spec", "100%[r,r,r]", "--policy", "random")
    assert "--population chooses every slot's behaviour" in refused(
        "generate", "commons", tmp_path / "new", "--population", "6", "--mix")
    assert "--appearances belongs to --population" in refused("generate", "commons", tmp_path / "new",
                                                               "--appearances", "3")
    assert "--clusters belongs to --method ev-cluster, not ev" in refused("value", tiny, "--clusters", "3")
    assert "--updates, --learning-rate, --ensemble, --no-attention and --mixer belong to --method ardnem" in refused(
        "value", tiny, "--method", "shapley", "--updates", "5")
    text = tmp_path / "table.npz"
    text.write_text("obs,actions,reward\n0.5,1,0.0\n")
    line = refused("import", "npz", text, tmp_path / "new")
    assert f"{text}: field 'npz' expected an .npz archive" in line and "found a text file starting 'obs,actions" in line
    assert not (tmp_path / "new").exists()
    assert {k: v for k, v in snapshot(tmp_path).items() if k != "table.npz"} == before


def test_logged_actions_marked_unavailable_are_refused_at_load(tmp_path, tiny):
    from teamsift.data import DatasetError, load_dataset

    avail_file = tiny / "steps" / "avail.npy"
    avail = np.load(avail_file)
    actions = np.load(tiny / "steps" / "actions.npy")
    for row, agent in ((5, 0), (6, 2), (10, 1)):  # episode 1 (rows 4-6) at t 1 and t 2; episode 2 at t 3
        avail[row, agent, actions[row, agent]] = False
    np.save(avail_file, avail)
    with pytest.raises(DatasetError) as caught:
        load_dataset(tiny)
    message = str(caught.value)
    assert message.startswith("steps/actions.npy: field 'actions' expected logged actions that steps/avail.npy "
                              "marks available")
    assert f"3 of 12 steps with an unavailable logged action, the first at episode 1, t 1, agent 0 " \
           f"(action {actions[5, 0]})" in message
    line = refused("train", tiny, "--updates", "5", "--run-dir", tmp_path / "run")
    assert "3 of 12 steps with an unavailable logged action" in line and not (tmp_path / "run").exists()


# --- results on stdout ---------------------------------------------------------------------------


def test_results_go_to_stdout_and_a_read_only_dataset_trains(tmp_path, tiny):
    import shutil

    evaluated = runner.invoke(app, ["eval", "scripted:sustainable", "--env", "commons", "--episodes", "2"])
    assert evaluated.exit_code == 0, evaluated.stderr
    assert "v_total: 600.000" in evaluated.stdout and "v_total" not in evaluated.stderr

    frozen = tmp_path / "frozen"
    shutil.copytree(tiny, frozen)
    for path in [frozen, *frozen.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    before = snapshot(frozen)
    try:
        trained = runner.invoke(app, ["train", str(frozen), "--updates", "3", "--eval-episodes", "0",
                                      "--run-dir", str(tmp_path / "run")])
    finally:
        for path in [frozen, *frozen.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
    assert trained.exit_code == 0, trained.stderr
    assert "bc: 3 updates × 1 seed(s), final loss per seed" in trained.stdout
    assert "final loss" not in trained.stderr
    assert snapshot(frozen) == before, "nothing written into the dataset directory"


# --- guidance ----------------------------------------------------------------------------------


def test_version_and_every_help_is_a_full_sentence():
    from typer.main import get_command

    import teamsift

    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.stdout == f"teamsift {teamsift.__version__}\n"

    def commands(group, path):
        for name, command in group.commands.items():
            yield f"{path} {name}", command
            if hasattr(command, "commands"):
                yield from commands(command, f"{path} {name}")

    root = get_command(app)
    for path, command in [("teamsift", root), *commands(root, "teamsift")]:
        summary = (command.help or "").strip().split("\n\n")[0]
        assert summary.endswith(".") and "\n" not in summary, f"{path}: {summary!r}"


def test_suite_checks_every_output_before_generating_any(tmp_path):
    # CN_3ls3l-low would be generated first; CN_3ls3l-medium is a user's file that
    # --overwrite may not replace, so nothing may be generated at all
    (tmp_path / "CN_3ls3l-medium").write_text("my notes")
    result = runner.invoke(app, ["suite", "sit", "--envs", "CN_3ls3l", "--episodes", "2", "--out", str(tmp_path),
                                 "--overwrite"])
    assert result.exit_code == 2 and "CN_3ls3l-medium" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CN_3ls3l-medium"]
    assert (tmp_path / "CN_3ls3l-medium").read_text() == "my notes"
