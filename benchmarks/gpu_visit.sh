#!/usr/bin/env bash
# One prepared visit to a lent GPU machine (torch present, no Jupyter, no registry): the GPU
# tests and the GPU benchmarks, everything written under $OUT (or ./gpu-visit).
# Run from the repository root: bash benchmarks/gpu_visit.sh
set -u
OUT=${OUT:-./gpu-visit}; mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1 HELPERS_OFFLINE=1
log() { echo "== $*" | tee -a "$OUT/visit.log"; }
step() { local name=$1; shift; log "$name: $*"; timeout "${STEP_S:-240}" "$@" >"$OUT/$name.log" 2>&1; echo "rc=$?" | tee -a "$OUT/visit.log"; tail -5 "$OUT/$name.log"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.csv"
date -u +%FT%TZ | tee -a "$OUT/visit.log"
python3 -m helpers env --json >"$OUT/env.json" 2>"$OUT/env.err" && log "env ok"
step pytest-gpu python3 -m pytest -q -p no:cacheprovider -m gpu tests
step bench-b0-fp32 python3 -m helpers bench --model b0 --batch-size 32 --device all --iters 50 --json "$OUT/bench-b0-fp32.json"
step bench-b0-fp16 python3 -m helpers bench --model b0 --batch-size 32 --device cuda --precision fp16 --channels-last --iters 50 --json "$OUT/bench-b0-fp16.json"
step ladder-cuda python3 benchmarks/speed_ladder.py --device cuda --batch-sizes 32,256 --out "$OUT/ladder-cuda" --json "$OUT/ladder-cuda.json"
for p in fp32 fp16 bf16; do
  step "train-$p" python3 -m helpers train --precision "$p" --epochs 2 --device cuda --image-size 128 --channels-last --json "$OUT/train-$p.json"
done
log "done"
