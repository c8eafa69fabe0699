#!/bin/bash
# Train the missing models of a profile's zoo, several seeds side by side, on one (rented) GPU; at
# DEADLINE_S - 75 s stop every run with SIGTERM (each checkpoints its current step), then export what
# was built and pack it, with the unfinished runs' checkpoints, for `clvsmim zoo install` / resuming.
# Packing takes about 60 s after the stop (one H100 run: 10 runs stopped, 3 seeds exported).
#   bash benchmarks/gpu_zoo.sh PROFILE.yaml DEADLINE_S SEED:JOBS:ONLY [SEED:JOBS:ONLY ...]
#   bash benchmarks/gpu_zoo.sh PROFILE.yaml DEADLINE_S stacked:SEEDS:ONLY   (SEEDS like 0,1,2)
# ONLY is a priority list (`clvsmim zoo build --only`, runs start in its order; empty: the whole zoo).
# The stacked form trains the seeds' pending models as batched stacks in one process
# (`clvsmim zoo build --stacked --cuda-graph`; the mini profiles' models are launch-bound alone).
# Optional inputs:
# .whl/*.whl (timm where the machine's is older), .gpu_carry/*.pt.gz (datasets for the cache's data/).
# $OUT (default ./gpu_zoo) receives gpu_zoo.log and zoo.tgz.partNN (cat them, then tar xzf):
# export-s<SEED>/ (fp16 safetensors + provenance), runs/<model folder>/ (unfinished: checkpoint + log).
set -u
profile=$1; deadline=$2; shift 2
OUT=${OUT:-$PWD/gpu_zoo}; mkdir -p "$OUT"; work=/tmp/gpu_zoo; mkdir -p $work
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 CLVSMIM_CACHE=${CLVSMIM_CACHE:-/tmp/clvsmim-cache}
exec > >(tee "$OUT/gpu_zoo.log") 2>&1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
mkdir -p "$CLVSMIM_CACHE/data"
for f in .gpu_carry/*.pt.gz; do [ -e "$f" ] && gunzip -c "$f" > "$CLVSMIM_CACHE/data/$(basename "${f%.gz}")"; done
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, 'cuda', torch.cuda.is_available())"
pids=(); seeds=()
for spec in "$@"; do
  IFS=: read -r seed jobs only <<< "$spec"
  if [ "$seed" = stacked ]; then  # stacked:SEEDS:ONLY -- one process for all the seeds
    IFS=, read -r -a stacked_seeds <<< "$jobs"; seeds+=("${stacked_seeds[@]}")
    python3 -m clvsmim zoo build --profile "$profile" --stacked --seeds "$jobs" --cuda-graph ${only:+--only "$only"} \
      --no-progress > "$work/build-stacked.log" 2>&1 &
  else
    seeds+=("$seed")
    python3 -m clvsmim zoo build --profile "$profile" --seed "$seed" --jobs "$jobs" ${only:+--only "$only"} \
      --no-progress > "$work/build-s$seed.log" 2>&1 &
  fi
  pids+=($!)
done
while [ $SECONDS -lt $(( deadline - 75 )) ] && kill -0 "${pids[@]}" 2>/dev/null; do sleep 2; done
echo "deadline or done at ${SECONDS}s: SIGTERM to the runs (each saves its current step)"
ours() { for pid in "${pids[@]}"; do pgrep -P "$pid"; kill -0 "$pid" 2>/dev/null && echo "$pid"; done; }
kill -TERM $(ours) 2>/dev/null  # the builds and their pool workers, nothing else on the machine
for _ in $(seq 10); do [ -n "$(ours)" ] || break; sleep 1; done
[ -n "$(ours)" ] && { echo "still running, killed: $(ours | tr '\n' ' ')"; kill -KILL $(ours) 2>/dev/null; }
echo "stopped at ${SECONDS}s"
for log in "$work"/build-*.log; do tail -n 5 "$log" | cut -c1-300; done
mkdir -p $work/runs
for run in "$CLVSMIM_CACHE"/zoo/*/*/; do
  [ -f "$run/checkpoint.pt" ] && [ ! -f "$run/done.json" ] || continue
  mkdir -p "$work/runs/$(basename "$run")" && cp "$run"/checkpoint.pt "$run"/log.csv "$work/runs/$(basename "$run")/" 2>/dev/null
done
python3 - "$profile" "$work" "${seeds[@]}" <<'PY'
import sys
from clvsmim.config import load_profile, seed_profile
from clvsmim.train.zoo import format_table, list_models
from clvsmim.train.zoo_weights import ZooWeightsError, export_zoo
profile, work, seeds = load_profile(sys.argv[1]), sys.argv[2], [int(s) for s in sys.argv[3:]]
for seed in seeds:
    seeded = seed_profile(profile, seed)
    print(f"seed {seed}\n" + format_table(list_models(seeded)), flush=True)
    try:
        print(export_zoo(seeded, f"{work}/export-s{seed}")[0], flush=True)
    except ZooWeightsError as error:
        print(f"seed {seed}: {error}", flush=True)
PY
(cd $work && tar czf - export-s* build-*.log runs) | split -b 15M -d - "$OUT/zoo.tgz.part"
ls -la "$OUT"; echo "finished at ${SECONDS}s"
