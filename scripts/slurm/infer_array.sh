#!/bin/bash
# Batch inference as a SLURM job array: task K of N segments every N-th slide of the manifest
# (--shard K/N, K counted from 0), one GPU per task. Finished masks are skipped, so a failed or
# requeued task can simply be run again; bad slides are recorded and skipped (--skip-errors).
# Task K writes OUT_DIR/summary.shard-K-of-N.csv (status and seconds per slide).
#
# Resources (edit the #SBATCH lines): 8 tasks (--array=0-7; keep it 0-based and contiguous, N is
# SLURM_ARRAY_TASK_COUNT; append %4 to run at most 4 at once), each 1 GPU, 8 CPU cores, 64 GB,
# 4 h. Add --partition/--account as your site requires.
# Edit below, or pass as environment: sbatch --export=ALL,MANIFEST=...,OUT_DIR=... infer_array.sh
#   SIF       the Apptainer image; empty = wsi-seg installed natively in the job's environment
#   BIND      host folders the container needs (slides, manifest, model, output), comma-separated
#   MANIFEST  manifest CSV of the slides to segment (slide_path column)
#   MODEL     a training run directory (or a checkpoint)
#   OUT_DIR   output folder: one SLIDE_ID.mask.ome.tif (+ .geojson, .classes.json) per slide
#SBATCH --job-name=wsi-seg-infer
#SBATCH --array=0-7
#SBATCH --ntasks=1
#SBATCH --gpus=1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=04:00:00
#SBATCH --output=%x-%A_%a.out
set -euo pipefail

SIF=${SIF-$HOME/containers/wsi-seg.sif}
BIND=${BIND:-/data}
MANIFEST=${MANIFEST:-/data/slides.csv}
MODEL=${MODEL:-/data/runs/hrnet_w48}
OUT_DIR=${OUT_DIR:-/data/masks}

THREADS=${SLURM_CPUS_PER_TASK:-8}   # OpenMP and tile-decode threads

# Apptainer keeps the image's variables over the host's: threads go in with --env.
ENVS="OMP_NUM_THREADS=$THREADS,MKL_NUM_THREADS=$THREADS,TIFFSLIDE_NUM_DECODE_THREADS=$THREADS"
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS TIFFSLIDE_NUM_DECODE_THREADS=$THREADS
RUN=()
if [[ -n "$SIF" ]]; then RUN=(apptainer exec --nv --bind "$BIND" --env "$ENVS" "$SIF"); fi

"${RUN[@]}" wsi-seg infer --slides "$MANIFEST" -o "$OUT_DIR" --model "$MODEL" \
  --device cuda --shard "${SLURM_ARRAY_TASK_ID}/${SLURM_ARRAY_TASK_COUNT}" --skip-errors
