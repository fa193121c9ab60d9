"""Manifest reading: every bad row reported at once, paths resolved, real example tiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config import load_config
from pipelines.manifest import read_manifest
from wsi_downsample.errors import ManifestError

GLEASON = "gleason-grade-ing2018-examples"


def test_shipped_gleason_manifest_validates(real_file, repo_root) -> None:
    real_file(f"{GLEASON}/img/test10.jpg")
    config = load_config(repo_root / "configs" / "gleason_examples.yaml")
    rows = read_manifest(
        repo_root / "data_manifests" / "gleason_examples.csv", config, require_masks=True
    )
    assert len(rows) == 11
    assert rows[0].slide_id == "test10" and rows[0].mpp == 1.0
    assert rows[0].label_map == "ing2018" and rows[0].split == "test"
    assert rows[0].slide_path.is_file() and rows[0].mask_path is not None
    assert {r.slide_path.name for r in rows} == {f"test{i}.jpg" for i in [10, *range(100, 110)]}


def test_every_bad_row_reported_at_once(tmp_path: Path, real_file) -> None:
    img = real_file(f"{GLEASON}/img/test10.jpg")
    mask = real_file(f"{GLEASON}/mask/test10.png")
    other_mask = real_file("openslide-python-fixtures/boxes.png")
    csv = tmp_path / "m.csv"
    csv.write_text(
        "slide_path,mask_path,split,mpp,label_map\n"
        f"{img},{mask},train,1.0,\n"  # fine
        f"{tmp_path / 'absent.svs'},,train,,\n"  # missing file
        f"{img},{mask},holdout,1.0,\n"  # unknown split
        f"{img},{mask},test,1.0,nomap\n"  # unknown label map
        f"{img},,test,,\n"  # no mpp, no mask
        f"{img},{other_mask},test,1.0,\n"  # mask frame mismatch
    )
    with pytest.raises(ManifestError) as info:
        read_manifest(csv, load_config(), require_masks=True)
    message = str(info.value)
    # line 3 (missing file, no mask), 4, 5, 6 (no mpp, no mask), 7: seven problems in line order
    assert "7 problem(s)" in message
    assert message.index("line 3:") < message.index("line 4:") < message.index("line 7:")
    for line in (3, 4, 5, 6, 7):
        assert f"line {line}:" in message
    assert "line 2:" not in message
    assert "holdout" in message and "nomap" in message and "absent.svs" in message
    assert "boxes.png" in message


def test_relative_paths_and_defaults(tmp_path: Path, real_file) -> None:
    img = real_file(f"{GLEASON}/img/test10.jpg")
    (tmp_path / "sub").mkdir()
    link = tmp_path / "sub" / "tile.jpg"
    link.symlink_to(img)
    csv = tmp_path / "m.csv"
    csv.write_text("slide_path,mpp\nsub/tile.jpg,0.5\n")
    (row,) = read_manifest(csv, load_config())
    assert row.slide_path == link.resolve() or row.slide_path.name == "test10.jpg"
    assert row.split == "test" and row.mask_path is None and row.mpp == 0.5


def test_header_and_empty_file_errors(tmp_path: Path) -> None:
    csv = tmp_path / "m.csv"
    csv.write_text("path,mask\nx,y\n")
    with pytest.raises(ManifestError, match="no 'slide_path' column"):
        read_manifest(csv, load_config())
    csv.write_text("slide_path\n")
    with pytest.raises(ManifestError, match="no rows"):
        read_manifest(csv, load_config())
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "absent.csv", load_config())


def test_corrupt_slide_row_is_reported(tmp_path: Path, real_file) -> None:
    bad = real_file("openslide-python-fixtures/unreadable.svs")
    csv = tmp_path / "m.csv"
    csv.write_text(f"slide_path\n{bad}\n")
    with pytest.raises(ManifestError, match=r"1 problem\(s\): line 2: .*unreadable.svs.*corrupt"):
        read_manifest(csv, load_config())
