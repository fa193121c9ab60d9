"""`wsi-seg demo --quick`: the whole path (synth -> train -> infer -> score) on a tiny set."""

from __future__ import annotations

import json

import tifffile
from click.testing import CliRunner

from pipelines.cli import cli


def test_demo_quick_writes_everything_and_replaces_the_folder(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / ".wsi-seg-demo").write_text("an earlier demo run")
    (out / "old.txt").write_text("from a previous run")
    res = CliRunner().invoke(cli, ["demo", "--quick", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert not (out / "old.txt").exists()  # a rerun replaces the folder
    assert not list(tmp_path.glob(".*"))  # no staging folder left behind
    lines = res.output.splitlines()
    assert any("learned" in line and "full-resolution mIoU 0." in line for line in lines)
    assert any(line.strip().startswith("QuPath: open") for line in lines)
    slide_id = "synthetic_001"  # the held-out slide of two (the val row)
    assert (out / "slides" / "manifest.csv").is_file()
    assert (out / "runs" / "learned" / "last.pt").is_file()
    stem = out / "learned" / f"{slide_id}.mask"
    mask = tifffile.imread(stem.with_suffix(".mask.ome.tif"))
    assert mask.ndim == 2 and mask.dtype == "uint8"
    fc = json.loads(stem.with_suffix(".mask.geojson").read_text())
    assert fc["type"] == "FeatureCollection"
    assert stem.with_suffix(".mask.preview.png").stat().st_size > 1000
    assert str(stem.with_suffix(".mask.geojson")) in res.output


def test_demo_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    res = CliRunner().invoke(cli, ["demo", "--quick", "-o", str(tmp_path)])
    assert res.exit_code == 2 and "not an earlier demo output" in res.output
    assert (tmp_path / "mine.txt").read_text() == "precious"
