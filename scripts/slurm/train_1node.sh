#!/bin/bash
# Multi-GPU training on ONE node: torchrun --standalone, one process per GPU (DDP).
#
# Resources (edit the #SBATCH lines): 1 node, 4 GPUs, 32 CPU cores (8 data-loading workers per
# GPU process), 256 GB memory, 24 h. Add --partition/--account as your site requires.
# Edit below, or pass as environment: sbatch --export=ALL,MANIFEST=...,RUN_DIR=... train_1node.sh
#   SIF       the Apptainer image (apptainer build wsi-seg.sif docker-daemon://wsi-seg:latest);
#             empty = wsi-seg installed natively in the job's environment
#   BIND      host folders the container needs (data, manifest, run directory), comma-separated
#   MANIFEST  training manifest CSV (split column: train/val)
#   RUN_DIR   output run directory (must not exist; to continue one, add --resume below)
#   CONFIG    YAML config (the image has /opt/wsi-seg/configs/default.yaml)
#SBATCH --job-name=wsi-seg-train
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=32
#SBATCH --mem=256G
#SBATCH --time=24:00:00
#SBATCH --output=%x-%j.out
set -euo pipefail

SIF=${SIF-$HOME/containers/wsi-seg.sif}
BIND=${BIND:-/data}
MANIFEST=${MANIFEST:-/data/manifest.csv}
RUN_DIR=${RUN_DIR:-/data/runs/hrnet_w48-$SLURM_JOB_ID}
CONFIG=${CONFIG:-/opt/wsi-seg/configs/default.yaml}

GPUS=${SLURM_GPUS_ON_NODE:-4}
CPUS=${SLURM_CPUS_PER_TASK:-32}
WORKERS=$(( CPUS / GPUS > 1 ? CPUS / GPUS - 1 : 0 ))   # data-loading workers per GPU process
THREADS=1   # per GPU process; its data-loading workers decode the tiles

# Apptainer keeps the image's variables over the host's: threads go in with --env.
ENVS="OMP_NUM_THREADS=$THREADS,MKL_NUM_THREADS=$THREADS,TIFFSLIDE_NUM_DECODE_THREADS=$THREADS"
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS TIFFSLIDE_NUM_DECODE_THREADS=$THREADS
RUN=()
if [[ -n "$SIF" ]]; then RUN=(apptainer exec --nv --bind "$BIND" --env "$ENVS" "$SIF"); fi

"${RUN[@]}" torchrun --standalone --nproc-per-node "$GPUS" -m pipelines.train \
  --slides "$MANIFEST" -o "$RUN_DIR" --config "$CONFIG" \
  --device cuda --num-workers "$WORKERS" --seed 0
