#!/usr/bin/env bash
# GPU check of the bundled `vivid` recipe (class head, context, mirrored views), run on a borrowed CUDA machine
# like benchmarks/gpu_check.sh, on the same small CIFAR-10 subset (benchmarks/make_subset.py):
#   DATA=.gpudata OUT=/tmp/out bash benchmarks/gpu_check_vivid.sh
# Logs of H100 runs: benchmarks/results/gpu/log-vivid.txt (the recipe without `regress`, commit b1ad410) and
# log-vivid-regress.txt (the recipe with its direct a*b* objective, bundled alone then) and log-vivid-ensemble.txt
# (the bundled `vivid` as a `vivid-ensemble`: its evaluate and colorize steps run the four member networks).
set -u
source "$(dirname "$0")/gpu_env.sh"  # DATA, OUT, the carried wheels, step
CFG='{"classes": 10, "context": true, "class_weight": 0.3, "regress": 3.0}'  # as the bundled vivid's card

step nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
# the vivid training recipe under torchrun (NCCL) on CUDA with labels for the class head: stopped, then resumed
step torchrun --standalone --nproc-per-node=1 -m autocolor train --model unet-vivid --model-config "$CFG" \
  --epochs 3 --stop-after 2 --shift 2 --device cuda --data "$DATA" --out /tmp/r-vivid
step torchrun --standalone --nproc-per-node=1 -m autocolor train --model unet-vivid --model-config "$CFG" \
  --epochs 3 --shift 2 --resume --device cuda --data "$DATA" --out /tmp/r-vivid
cp /tmp/r-vivid/metrics.jsonl "$OUT/vivid_metrics.jsonl" 2>/dev/null
# the bundled vivid (its members' views, averaged calibrated bins, fidelity mix, boost) scores the same on CUDA and CPU
for d in cuda cpu; do
  python3 -m autocolor evaluate --model vivid --device $d --data "$DATA" --json --max-images 1000 \
    > "$OUT/eval_vivid_$d.json" || echo "!!! FAILED evaluate vivid $d"
  cat "$OUT/eval_vivid_$d.json"
done
step python3 -m autocolor colorize autocolor/samples -o /tmp/colorized-vivid --model vivid --device cuda --overwrite
ls /tmp/colorized-vivid | head -3
