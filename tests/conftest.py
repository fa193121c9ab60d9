"""Shared fixtures: real test files (skip when absent, marked ``real``), the repository root
and small synthetic slides made fresh for each session (CPU only, no network)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[1]
_REAL = Path(os.environ.get("WSI_SEG_REAL_DATA", _REPO.parent / "shared" / "data" / "real"))
_REAL_FIXTURES = frozenset({"real_file", "real_dir"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a real-data fixture ``real`` (select with ``-m real``)."""
    for item in items:
        if _REAL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (configs/, data_manifests/, pyproject.toml)."""
    return _REPO


@pytest.fixture(scope="session")
def real_file() -> Callable[[str], Path]:
    """A callable ``real_file(relpath) -> Path`` under the real-data folder (environment
    variable ``WSI_SEG_REAL_DATA``); it skips the calling test when the file is absent."""

    def find(relpath: str) -> Path:
        path = _REAL / relpath
        if not path.exists():
            pytest.skip(f"real test data absent: {path} (set WSI_SEG_REAL_DATA)")
        return path

    return find


@pytest.fixture(scope="session")
def real_dir() -> Path:
    """The real-data folder; skips the test when absent."""
    if not _REAL.is_dir():
        pytest.skip(f"real test data absent: {_REAL} (set WSI_SEG_REAL_DATA)")
    return _REAL


@pytest.fixture(scope="session")
def synthetic_slide(tmp_path_factory: pytest.TempPathFactory):
    """A small deterministic Aperio-style SVS + matching label mask (see synthetic.py)."""
    from wsi_downsample.synthetic import write_synthetic_slide

    out = tmp_path_factory.mktemp("synthetic")
    return write_synthetic_slide(out, shape_hw=(1536, 2048), seed=0, name="synth0")
