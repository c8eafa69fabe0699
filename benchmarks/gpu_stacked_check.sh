#!/bin/bash
# GPU check of the stacked trainer (src/clvsmim/train/stacked.py) for a session lent a GPU, ~5 min:
#  1. the CUDA tests of tests/test_stacked.py: the eager stack and the CUDA-graph stack (resumed
#     across the capture) against separate `train` runs on the same device;
#  2. models x images/s of the mini profile's models (batch 256 per model), K = 1, 4, 16 stacked vs
#     separate runs, eager and with the step captured in a CUDA graph.
# Output in $OUT (default ./gpu_stacked): pytest.log, throughput.log, throughput-graph.log.
# A whole seed sweep on the GPU afterwards: python3 -m clvsmim zoo build --profile mini --stacked --seeds 0,1,2 --cuda-graph
# (mini3 too, since session 10: the stack takes its train.lr_scales; tests/test_stacked.py stacks its BEiT SimMIM)
set -u
OUT=${OUT:-$PWD/gpu_stacked}; mkdir -p "$OUT"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 CLVSMIM_CACHE=${CLVSMIM_CACHE:-/tmp/clvsmim-cache}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout 150 python3 -m pytest -q tests/test_stacked.py -k cuda 2>&1 | tail -n 30 | tee "$OUT/pytest.log"
for graph in "" "--cuda-graph"; do
  timeout 120 python3 benchmarks/train_throughput.py --objectives simmim,moco --settings mini --stacked 1,4,16 \
    --steps 10 --warmup 5 --rounds 1 $graph 2>&1 | grep -v Warning | tee "$OUT/throughput${graph:+-graph}.log"
done
