#!/usr/bin/env bash
# Issue 16's GPU measurements in one run on a lent card (README, "One GPU"). Prepared here, run there:
#   1. here: `make device-wheels` (transformers 5.24 and peft 0.21 for the card's Python 3.12 in .whl/;
#      its image has torch and accelerate, but transformers 5.17, too old for lab);
#   2. the device tool: run(command="bash scripts/device_bench.sh", carry=[".whl"], timeout_s=540).
# What comes back in $OUT: the GPU's name, `bench train` for default and full (each teacher variant of
# lab.bench.train.CUDA_VARIANTS, the ratios against this CPU's saved JSON in benchmarks/), and the log and
# train_info.json of a real 2-epoch teacher training through lab.train.fit (resident tensors, fused AdamW, bf16).
set -uo pipefail
OUT=${OUT:-/tmp/device_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "no wheels in .whl/: run make device-wheels here first"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TQDM_DISABLE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)" | tee -a "$OUT/gpu.txt"
# PROFILES / TRAIN_PROFILE: a dry run elsewhere (e.g. PROFILES=smoke TRAIN_PROFILE=smoke on the CPU, python3 on PATH
# being the project's venv) checks the script without a card
# default: every CUDA variant (two compile, ~1 min each); full: its bf16 step only (32 layers, 16k items)
for p in ${PROFILES:-default full}; do
    against=benchmarks/cpu-2core/train_$p.json
    [ -f "$against" ] && against_arg="--against $against" || against_arg=""
    [ "$p" = full ] && variants="--variants bf16" || variants=""
    [ "$p" = full ] && limit=120 || limit=240  # at most 240 + 120 + 120 s: the run fits a 540 s timeout_s
    timeout $limit python3 -m lab bench train --profile "$p" $against_arg $variants 2>&1 | tee "$OUT/bench_train_$p.log"
done
timeout 120 python3 -m lab train --profile "${TRAIN_PROFILE:-default}" --epochs 2 --out /tmp/teacher \
    --artefacts /tmp/art 2>&1 | tail -5 | tee "$OUT/train.log"
cp /tmp/teacher/train_info.json /tmp/teacher/history.csv "$OUT/" 2>/dev/null || true
