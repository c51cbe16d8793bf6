#!/usr/bin/env bash
# The GPU checks of issue 13, as one prepared run on one GPU machine (budget: under 8 minutes on one H200).
#
#   bash benchmarks/gpu_check.sh [DATA_DIR]      # DATA_DIR: the shared data (mnist/, cifar10/); default ../shared/data
#
# Writes its figures to $OUT (default ./gpu_check) as logs and JSON; prints a summary at the end. Each step is
# bounded by `timeout` so that one hung step cannot eat the rest. Needs torch with CUDA in .venv (make install).
set -u -o pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
OUT=${OUT:-gpu_check}
PY=${PY:-.venv/bin/python}
FASHION=${FASHION:-/usr/share/datasets/fashion-mnist}  # d2l's table is on Fashion-MNIST (Debian's dataset-fashion-mnist)
mkdir -p "$OUT"
test -x "$PY" || make install >"$OUT/install.log" 2>&1 || { echo "install failed"; tail "$OUT/install.log"; exit 1; }
step() {  # step NAME SECONDS COMMAND...: run it, keep its log, say how it ended and how long it took
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "$name: exit $rc in $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
    tail -n 4 "$OUT/$name.log" | sed 's/^/    /' | tee -a "$OUT/summary.txt"
}
: >"$OUT/summary.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT/gpu.txt" 2>&1
"$PY" -c "import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name(0))" \
    | tee -a "$OUT/summary.txt"
step cuda_tests 120 "$PY" -m pytest -m cuda -q -p no:cacheprovider
step d2l_lenet_epoch 60 "$PY" -m convzoo train --model lenet --recipe d2l --dataset mnist --data-dir "$DATA/mnist" \
    --epochs 1 --device cuda --quiet --out "$OUT/d2l-lenet"
step report_rows 150 "$PY" -m convzoo report --recipe d2l --device cuda --models lenet,resnet18 --budget-minutes 1 \
    --data-dir "$FASHION" --runs "$OUT/report-runs" --out "$OUT/report"
step cifar10_85 150 "$PY" benchmarks/time_to_accuracy.py cifar10-85 --runs 1 --device cuda --data-dir "$DATA" \
    --json "$OUT/cifar10-85.json"
# airbench's own train94 (fp16, as published) beside convzoo's --recipe airbench, one seed each, on the lossless
# CIFAR-10 (the row to compare with airbench's published 2.59 s on an A100); needs airbench in .venv (make install)
step vs_airbench 300 "$PY" benchmarks/vs_airbench.py --seeds 1 --device cuda --data-dir "$DATA" \
    --json "$OUT/vs-airbench.json"
step ddp_nccl_world_1 60 "$PY" -m torch.distributed.run --standalone --nproc-per-node 1 -m convzoo train \
    --model lenet_bn --dataset mnist --data-dir "$DATA/mnist" --epochs 1 --device cuda --quiet --out "$OUT/ddp1"
echo "figures in $OUT/ (summary.txt, *.log, *.json)"
