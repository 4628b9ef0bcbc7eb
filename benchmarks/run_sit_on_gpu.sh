#!/usr/bin/env bash
# The SIT table's cells that take hours on the 2-core CPU, on a lent GPU inside one time budget:
#   1. SIT* on the halfcheetah_2x3 low and medium rows (Stage I alone is 66 min per dataset on one core),
#      with BC beside it as a check of the GPU-regenerated dataset against the CPU's BC cell;
#   2. the smax_3s_vs_5z medium row (every discrete learner);
#   3. SIT's stress cases (Figure 4(b, c)) on the paper's map, smax_2s3z.
# Each group of cells is its own `teamsift bench sit` process under its own --name and data
# directory; PARALLEL of them (default 3) run at once, in the order above, so that their XLA
# compiles overlap on the machine's cores while the GPU is shared by few. Every process saves after
# each cell and gets the budget's remaining seconds, so a group cut off keeps the cells it finished.
# At the end everything (results, logs, the GPU's use every 20 s) is packed into OUT/sit-gpu.tgz:
# a lent machine returns only a few files (8 in the recorded run, which lost 3 cells to it).
# Join the results to the CPU table with
#   tar xzf OUT/sit-gpu.tgz -C OUT && python benchmarks/merge_sit_results.py --allow-other-machine \
#       benchmarks/results/sit-cpu.json OUT/sit-gpu/*-gpu.json
#
#   benchmarks/run_sit_on_gpu.sh OUT_DIR [BUDGET_SECONDS]      (default 500)
#   SMOKE=1 benchmarks/run_sit_on_gpu.sh /tmp/out 900          (tiny sizes: checks the plumbing on a CPU)
#
# The software set-up is run_on_gpu.sh's (wheels carried in .whl, installed with --target /tmp/site).
set -uo pipefail
shopt -s nullglob
out=${1:?usage: benchmarks/run_sit_on_gpu.sh OUT_DIR [BUDGET_SECONDS]}
budget=${2:-500}
parallel=${PARALLEL:-3}
python=${PYTHON:-python3}
work="$out/sit-gpu"
mkdir -p "$work"
# XLA_FLAGS as given (teamsift's XLA:CPU flags are for jaxlib 0.10.2); no preallocation, so that
# the processes share the GPU's memory.
export TEAMSIFT_KEEP_XLA_FLAGS=1 PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false

if [[ -n "${SMOKE:-}" ]]; then
    sizes=(--episodes 4 --seeds 1 --updates 2 --ardnem-updates 2 --eval-episodes 2)
else
    sizes=(--updates 1500)  # the CPU table's budget: 10,000 episodes, 5 seeds, Stage I 20,000 updates
fi
"$python" -c "import jax; print('JAX', jax.__version__, jax.devices())" || exit 1
if command -v nvidia-smi >/dev/null; then  # how busy the shared GPU is, every 20 s
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 20 >"$work/gpu-use.csv" &
    monitor=$!
    disown "$monitor"
fi

group() {  # group NAME ARGS...: one bench sit process for the rest of the budget, its log in NAME.log
    local name=$1; shift
    local left=$((budget - SECONDS))
    ((left > 20)) || { echo "$name: skipped, no time left"; return; }
    timeout "$left" "$python" -m teamsift.cli.main bench sit --name "$name" --out "$work" \
        --data-dir "/tmp/teamsift-gpu/data-$name" "${sizes[@]}" "$@" >"$work/$name.log" 2>&1
    echo "$name: rc $? after $SECONDS s"
}
queue() {  # queue NAME ARGS...: start the group once fewer than PARALLEL run
    while (($(jobs -rp | wc -l) >= parallel)); do wait -n; done
    group "$@" &
}
queue sit-hc-low --envs halfcheetah_2x3 --quality low --methods 'BC,SIT*'
queue sit-hc-medium --envs halfcheetah_2x3 --quality medium --methods 'BC,SIT*'
queue sit-smax-sit --envs smax_3s_vs_5z --quality medium --methods 'SIT,SIT*'
queue sit-smax-icq --envs smax_3s_vs_5z --quality medium --methods 'BC,ICQ'
queue sit-smax-cq --envs smax_3s_vs_5z --quality medium --methods 'MABCQ,MACQL'
queue sit-stress-sit --study stress --stress-env smax_2s3z --methods 'SIT*,SIT* w/o priority'
queue sit-stress-base --study stress --stress-env smax_2s3z --methods 'BC,ICQ'
wait
[[ -n "${monitor:-}" ]] && kill "$monitor"
for log in "$work"/*.log; do echo "$(basename "$log"): $(tr '\r' '\n' <"$log" | grep -v '^$' | tail -n 1)"; done
tar czf "$out/sit-gpu.tgz" -C "$out" sit-gpu && rm -r "$work"
echo "all done after $SECONDS s: $out/sit-gpu.tgz"
