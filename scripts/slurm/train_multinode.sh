#!/bin/bash
# Multi-GPU training ACROSS nodes: srun starts one torchrun per node; the torchrun agents meet
# at a c10d rendezvous on the first node of the allocation (SLURM_JOB_NODELIST), keyed by the
# job id, and start one process per GPU (DDP over NCCL).
#
# Resources (edit the #SBATCH lines): 2 nodes x 4 GPUs, 32 CPU cores and 256 GB per node, 24 h.
# Add --partition/--account as your site requires. The nodes must reach each other on PORT.
# Edit below, or pass as environment: sbatch --export=ALL,MANIFEST=...,RUN_DIR=... train_multinode.sh
#   SIF       the Apptainer image; empty = wsi-seg installed natively on every node
#   BIND      host folders the container needs (data, manifest, run directory), comma-separated;
#             RUN_DIR must be on a file system every node sees
#   MANIFEST  training manifest CSV (split column: train/val)
#   RUN_DIR   output run directory (must not exist; to continue one, add --resume below)
#   CONFIG    YAML config (the image has /opt/wsi-seg/configs/default.yaml)
#   PORT      rendezvous TCP port on the first node
#SBATCH --job-name=wsi-seg-train-multinode
#SBATCH --nodes=2
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
PORT=${PORT:-29500}

HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
NODES=$SLURM_JOB_NUM_NODES
GPUS=${SLURM_GPUS_ON_NODE:-4}
CPUS=${SLURM_CPUS_PER_TASK:-32}
WORKERS=$(( CPUS / GPUS > 1 ? CPUS / GPUS - 1 : 0 ))   # data-loading workers per GPU process
THREADS=1   # per GPU process; its data-loading workers decode the tiles
echo "rendezvous ${HEAD_NODE}:${PORT}, ${NODES} nodes x ${GPUS} GPUs"

# Apptainer keeps the image's variables over the host's: threads go in with --env.
ENVS="OMP_NUM_THREADS=$THREADS,MKL_NUM_THREADS=$THREADS,TIFFSLIDE_NUM_DECODE_THREADS=$THREADS"
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS TIFFSLIDE_NUM_DECODE_THREADS=$THREADS
RUN=()
if [[ -n "$SIF" ]]; then RUN=(apptainer exec --nv --bind "$BIND" --env "$ENVS" "$SIF"); fi

srun --ntasks-per-node=1 --cpus-per-task="$CPUS" --kill-on-bad-exit=1 "${RUN[@]}" torchrun \
  --nnodes "$NODES" --nproc-per-node "$GPUS" \
  --rdzv-backend c10d --rdzv-endpoint "${HEAD_NODE}:${PORT}" --rdzv-id "$SLURM_JOB_ID" \
  -m pipelines.train \
  --slides "$MANIFEST" -o "$RUN_DIR" --config "$CONFIG" \
  --device cuda --num-workers "$WORKERS" --seed 0
