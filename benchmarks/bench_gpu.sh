#!/bin/bash
# GPU benchmark, end to end through the command line (about 5-8 minutes on one CUDA GPU):
#   1. installs wsi-seg into a venv that reuses the machine's CUDA torch (when not installed),
#   2. writes synthetic 15360x20480 slides (and a 4x smaller one for the fixed cost),
#   3. trains hrnet_w48 for 200 steps,
#   4. times `wsi-seg infer` on both slides (best of REPEATS after one warm-up run),
#   5. projects the time to a 100k x 100k slide at the same tissue fraction: the time is fitted
#      as fixed cost + cost per tissue pixel through the two slides (infer's work grows with
#      the tissue area it reads and writes back, not with the slide's empty background).
# Run from the repository root:  bash benchmarks/bench_gpu.sh [OUT_DIR]
# Environment: PYTHON (>= 3.11 with a CUDA torch; default python3), DEVICE (default cuda),
#   STEPS (200), REPEATS (3), BIG=1 to also write and time a real 100k x 100k slide (+3-5 min).
#   Offline machines: PIP_NO_INDEX=1 PIP_FIND_LINKS=/path/to/wheels (pip reads both).
# Prints a Markdown block for BENCHMARKS.md and writes it to OUT_DIR/bench_gpu.md.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-out/bench_gpu}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-200}
REPEATS=${REPEATS:-3}
BIG=${BIG:-0}
VENV=${VENV:-.venv-gpu}
mkdir -p "$OUT"

# 1. wsi-seg with the machine's torch (never replaced: pinned by a constraint file).
if "$PYTHON" -c "import pipelines.cli, timm, monai, tiffslide, openslide" 2>/dev/null; then
  BIN=$(dirname "$(command -v "$PYTHON")")
else
  "$PYTHON" -m venv --system-site-packages "$VENV"
  "$VENV/bin/python" -m pip list --format=freeze | grep -iE '^(torch|torchvision)==' \
    > "$VENV/torch-pin.txt"
  "$VENV/bin/python" -m pip install -q --constraint "$VENV/torch-pin.txt" -e .
  BIN=$VENV/bin
fi
export PATH="$BIN:$PATH"
"$BIN/python" -c "import torch; assert torch.cuda.is_available() or '$DEVICE' == 'cpu', 'no CUDA'"

now() { date +%s.%N; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
tissue_px() {  # sum of the tissue regions' areas (level-0 pixels) of slide $1
  wsi-seg inspect "$1" --json | "$BIN/python" -c \
    'import json, sys; print(int(sum(r["area"] for r in json.load(sys.stdin)["regions"])))'
}
best_infer() {  # best wall time (s) of REPEATS runs of wsi-seg infer on slide $1, after a warm-up
  local slide=$1 mask=$2 best="" t0 t
  for run in $(seq 0 "$REPEATS"); do
    t0=$(now)
    wsi-seg infer "$slide" -o "$mask" --model "$OUT/run" --device "$DEVICE" --overwrite
    t=$(seconds "$t0" "$(now)")
    echo "infer $slide run $run: $t s" >&2
    if [[ $run -gt 0 ]] && { [[ -z $best ]] || awk -v a="$t" -v b="$best" 'BEGIN { exit !(a < b) }'; }; then
      best=$t
    fi
  done
  echo "$best"
}

# 2. Synthetic slides.
rm -rf "$OUT/slides" "$OUT/small" "$OUT/big"
t0=$(now)
wsi-seg synth "$OUT/slides" --size 15360x20480 --count 3 --seed 0
wsi-seg synth "$OUT/small" --size 7680x10240 --count 1 --seed 1
synth_s=$(seconds "$t0" "$(now)")
SLIDE=$OUT/slides/synthetic_000.svs
SMALL=$OUT/small/synthetic_000.svs

# 3. Training: hrnet_w48, STEPS steps.
t0=$(now)
wsi-seg train --slides "$OUT/slides/manifest.csv" -o "$OUT/run" --config configs/default.yaml \
  --arch hrnet_w48 --epochs 1 --steps "$STEPS" --device "$DEVICE" --num-workers 4 --seed 0 --overwrite
train_s=$(seconds "$t0" "$(now)")

# 4. Inference.
big_t=$(best_infer "$SLIDE" "$OUT/slides/synthetic_000.pred.mask.tif")
small_t=$(best_infer "$SMALL" "$OUT/small/synthetic_000.pred.mask.tif")
big_a=$(tissue_px "$SLIDE")
small_a=$(tissue_px "$SMALL")

# 5. Projection to 100k x 100k at the slide's tissue fraction.
read -r frac a100k per_mpx fixed t100k < <(awk -v tb="$big_t" -v ts="$small_t" \
  -v ab="$big_a" -v as="$small_a" 'BEGIN {
    frac = ab / (15360 * 20480); a100k = frac * 1e10
    b = (tb - ts) / (ab - as); if (b < 0) b = 0; a = tb - b * ab; if (a < 0) a = 0
    printf "%.3f %.0f %.4f %.2f %.2f\n", frac, a100k, b * 1e6, a, a + b * a100k }')
measured=""
if [[ $BIG == 1 ]]; then
  wsi-seg synth "$OUT/big" --size 100000x100000 --count 1 --seed 2
  measured=$(best_infer "$OUT/big/synthetic_000.svs" "$OUT/big/synthetic_000.pred.mask.tif")
fi

gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
  | head -n 1 || echo "unknown")
torch_v=$("$BIN/python" -c "import torch; print(torch.__version__, torch.version.cuda)")
cat <<REPORT | tee "$OUT/bench_gpu.md"
### GPU end to end (benchmarks/bench_gpu.sh), $(date -u +%Y-%m-%d)
GPU: $gpu; torch $torch_v; $(nproc) CPU cores.

| step | seconds |
| --- | --- |
| synth 3 x 15360x20480 + 1 x 7680x10240 | $synth_s |
| train hrnet_w48, $STEPS steps (incl. start-up) | $train_s |
| infer 15360x20480 (best of $REPEATS after warm-up; tissue $big_a px) | $big_t |
| infer 7680x10240 (tissue $small_a px) | $small_t |
| fit: fixed cost / s per tissue megapixel | $fixed / $per_mpx |
| **100k x 100k projected** (tissue fraction $frac, $a100k px) | **$t100k** |
| 100k x 100k measured (BIG=1) | ${measured:-not run} |
REPORT
