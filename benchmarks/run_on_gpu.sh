#!/usr/bin/env bash
# Issue 5's GPU benchmarks inside one fixed time budget (a lent GPU is held for minutes, not hours):
#   1. MADDPG+CQL's updates/s on halfcheetah_2x3, 1 seed and 5 vmapped seeds (learner-speed-gpu);
#   2. `teamsift bench pjap --mabrax` (MADDPG+CQL vs MADDPG+CQL+PJAP, 5 seeds) with as many
#      updates as that speed allows inside the budget (pjap-mabrax-gpu);
#   3. the other halfcheetah_2x3 learners' speeds (BC, TD3+BC, OMAR, SIT) while time is left.
# Each step saves its results after every cell, so a step cut short by the budget keeps what it finished.
#
#   benchmarks/run_on_gpu.sh OUT_DIR [BUDGET_SECONDS]      (default 480)
#   SMOKE=1 benchmarks/run_on_gpu.sh /tmp/out 900          (tiny sizes: checks the plumbing on a CPU)
#
# teamsift must import with a GPU JAX. The recorded results ran on a machine whose image held
# JAX 0.11.2 with CUDA, Flax, Optax and Chex but no internet; the rest travelled as wheels:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
#       -d .whl brax==0.14.2 glfw==2.11.0 jaxmarl==0.2.0 jaxopt==0.8.5 mujoco==4.0.0 mujoco-core==4.0.0 \
#       mujoco-mjx==3.17.0 mujoco-studio==4.0.0 trimesh==5.2.0           (here, then on the GPU machine:)
#   pip install --no-index --no-deps --target /tmp/site .whl/*.whl && PYTHONPATH=/tmp/site:$PWD/src \
#       benchmarks/run_on_gpu.sh "$OUT" 540
set -uo pipefail
out=${1:?usage: benchmarks/run_on_gpu.sh OUT_DIR [BUDGET_SECONDS]}
budget=${2:-480}
python=${PYTHON:-python3}
start=$SECONDS
left() { echo $((budget - (SECONDS - start))); }
mkdir -p "$out"
# XLA_FLAGS as given: teamsift's XLA:CPU scheduler flags are for jaxlib 0.10.2, and an XLA that
# no longer knows a flag refuses to start.
export TEAMSIFT_KEEP_XLA_FLAGS=1 PYTHONUNBUFFERED=1

if [[ -n "${SMOKE:-}" ]]; then
    speed_args=(--updates 2 --episodes 4) pjap_args=(--episodes 4 --mabrax-seeds 1) min_updates=2 max_updates=4
else
    speed_args=(--updates 100 --episodes 300) pjap_args=() min_updates=1000 max_updates=20000
fi
speed() {  # speed SECONDS METHODS: time METHODS on halfcheetah_2x3, for at most SECONDS
    timeout "$1" "$python" benchmarks/run_learner_speed.py --envs halfcheetah_2x3 "${speed_args[@]}" \
        --data-dir /tmp/teamsift-gpu/speed-data --out "$out" --methods "$2"; }

"$python" -c "import jax, teamsift.envs; print('JAX', jax.__version__, jax.devices()); teamsift.envs.make('halfcheetah_2x3')" || exit 1
speed "$(left)" MADDPG+CQL || exit 1

# Updates per learner: the pjap study trains 4 cells (2 datasets x 2 samplers); about 180 s go
# to generating its two datasets, compiling and evaluating, and 60 s stay in reserve.
updates=$("$python" - "$out" "$(left)" "$min_updates" "$max_updates" <<'EOF'
import glob, json, sys
out, seconds_left, low, high = sys.argv[1], *map(int, sys.argv[2:])
rates = [row["seeds_5"]["updates_per_s"] for path in glob.glob(f"{out}/learner-speed-*.json")
         for row in json.load(open(path))["rows"] if row["method"] == "MADDPG+CQL"]
fitting = int(rates[0] * max(0, seconds_left - 240) / 4) // 500 * 500 if rates else low
print(max(low, min(high, fitting)))
EOF
)
echo "pjap --mabrax: $updates updates per learner, $(left) s left"
timeout $(($(left) - 60)) "$python" -m teamsift.cli.main bench pjap --mabrax --mabrax-updates "$updates" \
    "${pjap_args[@]}" --data-dir /tmp/teamsift-gpu/pjap-data --out "$out"
echo "pjap done (rc $?), $(left) s left"
if (($(left) > 30)); then
    speed $(($(left) - 10)) BC,TD3+BC,OMAR,SIT
fi
echo "all done, $(left) s left"
