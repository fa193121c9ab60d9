"""Shared fixtures: the real files in ../shared/data/real (skip when absent) and small
synthetic slides made fresh for each session (CPU only, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"


def real_file(relpath: str) -> Path:
    """Path of a file under ../shared/data/real, or skip the test with the reason."""
    path = REAL / relpath
    if not path.exists():
        pytest.skip(f"real test data absent: {path} (clone next to a 'shared' folder)")
    return path


@pytest.fixture(scope="session")
def real_dir() -> Path:
    if not REAL.is_dir():
        pytest.skip(f"real test data absent: {REAL}")
    return REAL


@pytest.fixture(scope="session")
def synthetic_slide(tmp_path_factory: pytest.TempPathFactory):
    """A small deterministic Aperio-style SVS + matching label mask (see synthetic.py)."""
    from wsi_downsample.synthetic import write_synthetic_slide

    out = tmp_path_factory.mktemp("synthetic")
    return write_synthetic_slide(out, shape_hw=(1536, 2048), seed=0, name="synth0")
