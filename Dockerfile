# wsi-seg on a GPU node (first version; the cluster runbook issue finishes it).
# The base image ships a CUDA build of torch + torchvision that satisfies pyproject's ranges,
# so pip keeps it and installs only the rest. OpenSlide comes from openslide-bin (a wheel).
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TIFFSLIDE_NUM_DECODE_THREADS=1

WORKDIR /opt/wsi-seg
COPY pyproject.toml README.md ./
COPY wsi_downsample ./wsi_downsample
COPY pipelines ./pipelines
COPY configs ./configs
RUN pip install --no-cache-dir . \
    && python -c "import torch, openslide, tiffslide, timm, monai; print(torch.__version__)"

RUN useradd --create-home --uid 1000 wsi
USER 1000:1000
WORKDIR /data
ENTRYPOINT ["wsi-seg"]
CMD ["--help"]
