#!/usr/bin/env bash
# GPU check and figures, run on a borrowed CUDA machine (see README "GPU figures"). Needs: python3 with torch
# (CUDA), the kornia wheels in .whl/ (no network there), a small CIFAR-10-format folder in $DATA, and $OUT.
#   DATA=.gpudata OUT=/tmp/out bash benchmarks/gpu_check.sh
set -u
source "$(dirname "$0")/gpu_env.sh"  # DATA, OUT, the carried wheels, step

step nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
step python3 -c "import torch, kornia; print(torch.__version__, torch.version.cuda, kornia.__version__)"
step python3 benchmarks/gpu_throughput.py --json "$OUT/gpu_throughput.json"
# the real training command on CUDA: AMP bf16 + cudnn autotuning, then a torchrun (NCCL) run stopped and resumed
step python3 -m autocolor train --model seed --epochs 3 --device cuda --data "$DATA" --out /tmp/r-seed
cp /tmp/r-seed/metrics.jsonl "$OUT/seed_metrics.jsonl" 2>/dev/null
step torchrun --standalone --nproc-per-node=1 -m autocolor train --model unet --epochs 2 --stop-after 1 --shift 2 \
  --device cuda --data "$DATA" --out /tmp/r-unet
step torchrun --standalone --nproc-per-node=1 -m autocolor train --model unet --epochs 2 --shift 2 --resume \
  --device cuda --data "$DATA" --out /tmp/r-unet
cp /tmp/r-unet/metrics.jsonl "$OUT/unet_metrics.jsonl" 2>/dev/null
# bundled models on CUDA: the same first 1000 test images score the same as on the CPU (compare with the CPU run)
for p in bf16 fp32; do
  python3 -m autocolor evaluate --model default --device cuda --precision $p --data "$DATA" --json \
    --grid /tmp/grid.png > "$OUT/eval_default_cuda_$p.json" || echo "!!! FAILED evaluate $p"
  cat "$OUT/eval_default_cuda_$p.json"
done
step python3 -m autocolor evaluate --model vivid --device cuda --data "$DATA" --json --grid /tmp/grid2.png
step python3 -m autocolor colorize autocolor/samples -o /tmp/colorized --device cuda
ls /tmp/colorized | head -3
# the space-to-depth unet (pixel_unshuffle/pixel_shuffle under bf16 autocast): trains on CUDA, alone and under
# torchrun, and scores the same on CUDA and on the CPU (log of the H100 run: benchmarks/results/gpu/log-stem.txt)
step python3 -m autocolor train --model unet --model-config '{"widths":[64,128,256],"stem":2}' --epochs 2 \
  --device cuda --data "$DATA" --out /tmp/r-stem
for d in cuda cpu; do
  step python3 -m autocolor evaluate --model /tmp/r-stem --device $d --data "$DATA" --json --max-images 1000
done
step torchrun --standalone --nproc-per-node=1 -m autocolor train --model unet \
  --model-config '{"stem":2,"flip_tta":true,"shift_tta":1}' --epochs 1 --device cuda --data "$DATA" --out /tmp/r-stem4
