#!/usr/bin/env bash
# Base-size training and inference speed of BLEMORE models on one GPU, in bf16, and their peak GPU memory; then
# feature extraction at the paper's sizes (VideoMAEv2, ImageBind, Video Swin-B).
#
# VideoMAE-base + WavLM-base with random weights (their library default configs: nothing is downloaded), batch 8
# and 32, with and without activation checkpointing, and HiCMAE base at batch 8 and 32: one JSON report per run
# from benchmarks/bench_model.py, then a one-line summary per run. Run from the repository root:
#
#     bash benchmarks/gpu_check.sh                 # uses the python3 that has torch with CUDA
#     WHEELS=wheels bash benchmarks/gpu_check.sh   # first installs the wheels in ./wheels into a scratch folder
#
# WHEELS: a folder of wheels carried beside the checkout (e.g. `pip download transformers==5.24.0 -d wheels` on a
# machine with network) for a machine that cannot reach a registry; they go into a scratch folder put first on
# PYTHONPATH, and nothing of the machine's own environment changes. STEPS (default 10) timed steps per run.
#
# First ImageBind's vision encoder at base size and at the paper's size (imagebind_huge, 632M parameters; random
# weights in the original checkpoint layout, converted by `blemore convert imagebind`) on random 224x224 frames in
# float16: frames/s, clips/s when every frame of a 3 s clip is embedded, peak GPU memory (bench_imagebind.py; torch
# and transformers only).
set -euo pipefail

PYTHON=${PYTHON:-python3}
STEPS=${STEPS:-10}
cd "$(dirname "$0")/.."

if [[ -n "${WHEELS:-}" ]]; then
    SCRATCH=$(mktemp -d -t blemore-gpu-check-XXXXXX)
    "$PYTHON" -m pip install --quiet --no-index --no-deps --find-links "$WHEELS" --target "$SCRATCH" "$WHEELS"/*.whl
    export PYTHONPATH="$SCRATCH${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

"$PYTHON" - <<'PY'
import torch, transformers
print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
      f"GPU {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}")
PY

echo "ImageBind vision encoder (float16, random weights, random frames):"
"$PYTHON" benchmarks/bench_imagebind.py --size base,huge --device cuda --dtype float16 --batch-size 256 --batches 5

REPORTS=$(mktemp -d -t blemore-gpu-reports-XXXXXX)
for batch in 8 32; do
    for checkpointing in "" "--gradient-checkpointing"; do
        name="batch${batch}${checkpointing:+-checkpointing}"
        "$PYTHON" benchmarks/bench_model.py --video-model-type videomae --audio-model-type wavlm --device cuda \
            --bf16 --batch-size "$batch" --steps "$STEPS" $checkpointing > "$REPORTS/$name.json"
        cat "$REPORTS/$name.json"
    done
done

# HiCMAE at the BLEMORE fine-tuning's base size (dim 512, 10 + 10 + 2 layers, 16x160x160 + 256x128 log-mel).
for batch in 8 32; do
    name="hicmae-batch${batch}"
    "$PYTHON" benchmarks/bench_model.py --model hicmae --device cuda --bf16 --batch-size "$batch" --steps "$STEPS" \
        > "$REPORTS/$name.json"
    cat "$REPORTS/$name.json"
done

echo "summary (bf16, random weights; VideoMAE-base 16x224x224 + WavLM-base 2 s, and hicmae-*: HiCMAE base):"
"$PYTHON" - "$REPORTS" <<'PY'
import json, pathlib, sys
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    r = json.loads(path.read_text())
    print(f"  {path.stem:<26} train {r['train_clips_per_s']:8.1f} clips/s  inference {r['inference_clips_per_s']:8.1f}"
          f" clips/s  peak GPU memory train {r['train_peak_memory_mb'] / 1024:6.1f} GiB, inference "
          f"{r['inference_peak_memory_mb'] / 1024:6.1f} GiB  attention {r['attention']}")
PY

# The paper's VideoMAEv2 encoder (vit_giant_patch14_224) and the base size, random weights in the layout
# `blemore convert videomaev2` writes, extracting features under --protocol paper (every frame, 16-frame windows) from
# a few synthetic clips: clips/s and windows/s. Needs the toolkit's own dependencies (pip install -e .) and ffmpeg.
"$PYTHON" benchmarks/bench_features.py --no-tiny --videomaev2 base,giant --videomaev2-clips "${VIDEOMAEV2_CLIPS:-8}" \
    --device cuda --dtype bfloat16 --batch-size 16

# Feature extraction at the paper's size: torchvision's Video Swin-B (random weights, nothing downloaded) on the
# organisers' windows (32 frames every 16 over 10 s chunks) and eGeMAPS; needs torchvision (the video extra) and
# opensmile (audio-features) in that python, otherwise the line says so.
echo "feature extraction (bench_features.py --families, --protocol paper):"
"$PYTHON" benchmarks/bench_features.py --families --only torchvision:swin3d_b egemaps --protocol paper \
    --device cuda --clips 8
