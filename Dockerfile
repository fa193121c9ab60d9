# wsi-seg on CUDA GPUs. Build from the repository root:   docker build -t wsi-seg .
# Runbook (docker run, Apptainer, SLURM): docs/cluster.md.
#
# Base: pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime = Ubuntu, Python 3.11 (conda, /opt/conda),
# torch 2.5.1 (CUDA 12.4, cuDNN 9), torchvision 0.20.1. pyproject's "torch>=2.2" accepts it, and
# a constraint file pins torch/torchvision to the base's own versions, so pip never replaces
# them. Another base (e.g. --build-arg BASE_IMAGE=pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime
# for Blackwell cards) works the same way if its Python is >= 3.11 (the build checks).
# pip only: OpenSlide comes from the openslide-bin wheel, never from apt.
ARG BASE_IMAGE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
FROM ${BASE_IMAGE}

# Extras of pyproject.toml installed next to the package (cluster: dask-jobqueue).
ARG EXTRAS=cluster

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Threads: 4 OpenMP/MKL and 4 decode threads per process; data-loading workers set their own
# decode threads to 1. Override with docker run -e, or apptainer exec --env (Apptainer does not
# let the host's variables override the image's). Caches follow HOME: the image user's home is
# /tmp, docker run --user takes -e HOME=/tmp, Apptainer keeps your own HOME.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_NUM_THREADS=4 \
    MKL_NUM_THREADS=4 \
    TIFFSLIDE_NUM_DECODE_THREADS=4

WORKDIR /opt/wsi-seg

# Layer 1, dependencies only: rebuilt when pyproject.toml changes, not when the source does.
COPY pyproject.toml ./
COPY scripts/pyproject_requirements.py /tmp/pyproject_requirements.py
RUN python -c 'import sys; assert sys.version_info >= (3, 11), f"Python {sys.version} < 3.11"' \
    && pip list --format=freeze | grep -iE '^(torch|torchvision)==' > /opt/base-torch.txt \
    && python /tmp/pyproject_requirements.py pyproject.toml "${EXTRAS}" > /tmp/requirements.txt \
    && pip install --no-cache-dir --constraint /opt/base-torch.txt --requirement /tmp/requirements.txt \
    && rm /tmp/requirements.txt /tmp/pyproject_requirements.py

# Layer 2, the package itself (no dependency resolution), then a self-check of what a run
# imports (-P: the installed copy, not the source folder): torch still the base's, the
# training and inference pipelines, the entry point.
COPY README.md ./
COPY wsi_downsample ./wsi_downsample
COPY pipelines ./pipelines
COPY configs ./configs
RUN pip install --no-cache-dir --no-deps . \
    && pip list --format=freeze | grep -iE '^(torch|torchvision)==' | diff /opt/base-torch.txt - \
    && python -P -c "import torch, openslide, pipelines.train, pipelines.infer; print(torch.__version__)" \
    && wsi-seg --help > /dev/null \
    && rm -rf /opt/wsi-seg/build /opt/wsi-seg/*.egg-info

# A numeric non-root user; docker run --user "$(id -u):$(id -g)" replaces it with yours.
RUN useradd --no-log-init --uid 10001 --user-group --home-dir /tmp --shell /usr/sbin/nologin wsi
USER 10001:10001
WORKDIR /data
ENTRYPOINT ["wsi-seg"]
CMD ["--help"]
