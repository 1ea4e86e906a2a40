#!/usr/bin/env bash
# The GPU figures of the README in one command, about 6-8 minutes on one H200:
#
#   bash benchmarks/gpu.sh           # CUDA: bf16 inference and training throughput and peak memory of naive, InTI,
#                                    # _deep, frame subsampling and ToMe at B/16 and L/14 (benchmarks/throughput.py),
#                                    # then the pipeline with the model on the GPU and torchcodec GPU decoding where
#                                    # it can decode on CUDA (benchmarks/pipeline.py --device cuda)
#   bash benchmarks/gpu.sh --quick   # the same scripts on shrunken models on CPU, in a minute or two: checks that it runs
#
# Results go to benchmarks/results/gpu/ (OUT=... to change), one folder per backbone.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${OUT:-benchmarks/results/gpu}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [[ "${1:-}" == "--quick" ]]; then
    OUT=${OUT}_quick
    # 12 and 24 blocks keep the models' InTI schedules valid; narrow and small so that CPU finishes quickly
    SMALL=(--device cpu --quick --no-memory --threads 1 --frames 4)
    timeout 600 "$PY" benchmarks/throughput.py "${SMALL[@]}" --models inti_vit_b16 inti_vit_b16_deep --out "$OUT/b16" \
        --model-kwargs img_size=32 patch_size=8 embed_dim=32 num_heads=2
    timeout 600 "$PY" benchmarks/throughput.py "${SMALL[@]}" --models inti_vit_l14 inti_vit_l14_deep --out "$OUT/l14" \
        --model-kwargs img_size=32 patch_size=8 embed_dim=32 num_heads=2
    timeout 600 "$PY" benchmarks/pipeline.py --quick --no-storage --out "$OUT/pipeline"
    echo "gpu.sh --quick: done, results in $OUT"
    exit 0
fi

"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "gpu.sh: torch sees no CUDA device (try --quick)")'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
start=$SECONDS
timeout 180 "$PY" benchmarks/throughput.py --device cuda --models inti_vit_b16 inti_vit_b16_deep --out "$OUT/b16"
echo "B/16 done after $((SECONDS - start)) s" >&2
timeout 200 "$PY" benchmarks/throughput.py --device cuda --models inti_vit_l14 inti_vit_l14_deep --reps 6 --out "$OUT/l14"
echo "L/14 done after $((SECONDS - start)) s" >&2
timeout 150 "$PY" benchmarks/pipeline.py --device cuda --no-storage --reps 2 --seconds 5 --out "$OUT/pipeline"
echo "gpu.sh: done in $((SECONDS - start)) s, results in $OUT" >&2
