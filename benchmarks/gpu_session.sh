#!/bin/bash
# One rented-GPU session, as run for docs/mini-profile.md: the GPU path check, then the mini
# candidates' zoos (every seed), their claims and their weights exported for `clvsmim zoo install`.
#   bash benchmarks/gpu_session.sh "a b" [DEADLINE_S]     # candidates in benchmarks/mini_candidates/
# Results land in $OUT (or ./gpu_session): reports.tgz (gpu_check.json, claims, logs) and one
# folder per candidate seed with <profile>-zoo.safetensors + <profile>-zoo.json.
# timm is carried as a wheel in .whl/ where the GPU image's own timm is older than 1.0.
OUT=${OUT:-$PWD/gpu_session}; mkdir -p "$OUT"
export PYTHONPATH=/tmp/site:$PWD/src:$PWD/benchmarks PYTHONUNBUFFERED=1 CLVSMIM_CACHE=/tmp/clvsmim-cache
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
work=/tmp/gpu_session; mkdir -p $work
timeout 170 python3 benchmarks/gpu_check.py --steps 5 --out $work/gpu_check.json > $work/gpu_check.log 2>&1
echo "gpu_check rc $? at ${SECONDS}s"; grep -v "^ " $work/gpu_check.log | tail -20
args=(); for c in ${1:-b}; do args+=(--candidate "$c=benchmarks/mini_candidates/$c.yaml"); done
python3 benchmarks/zoo_sweep.py "${args[@]}" --seeds 0,1,2 --adaptive --parallel 2 --jobs 7 \
  --deadline $(( ${2:-550} - SECONDS )) --cache /tmp/zoo_sweep --out $work
(cd $work && tar czf "$OUT/reports.tgz" *.json *.log && cp -r */ "$OUT/" 2>/dev/null); ls -la "$OUT"
