"""Atomic JSON records written next to outputs (parameters, versions, results)."""

from __future__ import annotations

from wsi_downsample.io.atomic import write_json_atomic

__all__ = ["write_json_atomic", "versions"]


def versions() -> dict[str, str]:
    """Versions of wsi-seg and the libraries whose behaviour shapes its outputs."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("wsi-seg", "torch", "numpy", "tifffile", "tiffslide", "openslide-python", "zarr"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out
