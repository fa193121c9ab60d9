"""`infer --slides`: outputs per slide, skip finished, errors, shards, Dask LocalCluster."""

from __future__ import annotations

import csv
import dataclasses

import pytest
import tifffile

from pipelines.batch import parse_shard, run_batch
from pipelines.infer import InferSettings
from wsi_downsample.errors import ConfigError, WsiSegError


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    from pipelines.synth import run_synth

    return run_synth(tmp_path_factory.mktemp("batch_synth"), (1536, 2048), count=2, seed=5)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    import torch

    from pipelines.config import Config
    from pipelines.run_dir import build_model, save_checkpoint

    torch.manual_seed(0)
    base = Config()  # a small budget keeps the random model fast
    config = dataclasses.replace(base, sampler=dataclasses.replace(base.sampler, dynamic="32x320"))
    out = tmp_path_factory.mktemp("run")
    save_checkpoint(out, "best", build_model(config, "learned"), config, {})
    return out


def _csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


FAST = {"preview": False, "geojson": False, "progress": False}


def test_batch_writes_skips_and_summarises(slides, run_dir, tmp_path):
    out = tmp_path / "out"
    result = run_batch(slides, out, run_dir, InferSettings(**FAST))
    assert (result["ok"], result["skipped"], result["failed"]) == (2, 0, 0)
    ids = ["synthetic_000", "synthetic_001"]
    for sid in ids:
        assert (out / f"{sid}.mask.ome.tif").is_file()
        assert (out / f"{sid}.mask.summary.json").is_file()
        assert tifffile.imread(out / f"{sid}.mask.ome.tif").ndim == 2
    rows = _csv(out / "summary.csv")
    assert [r["slide_id"] for r in rows] == ids and {r["status"] for r in rows} == {"ok"}
    assert float(rows[0]["tissue_area_um2"]) > 0 and "Gleason 4 um2" in rows[0]
    again = run_batch(slides, out, run_dir, InferSettings(**FAST))
    assert (again["ok"], again["skipped"]) == (0, 2)
    assert {r["status"] for r in _csv(out / "summary.csv")} == {"skipped"}


def _fake_infer(monkeypatch, fail_on=None):
    """Replace the per-slide inference by a stub writing the files a finished slide has."""
    import pipelines.infer
    from wsi_downsample.io.sidecars import output_paths

    calls = []

    def run(slide, output, *args, **kw):
        calls.append(slide.name)
        if fail_on and fail_on in str(slide):
            raise ConfigError(f"{slide}: broken on purpose")
        paths = output_paths(output)
        paths.mask.parent.mkdir(parents=True, exist_ok=True)
        for p in (paths.mask, paths.classes, paths.summary):
            p.write_text("x")
        return {"tissue_area_um2": 1.0, "classes": {"benign": {"area_um2": 2.0}}}

    monkeypatch.setattr(pipelines.infer, "run_infer", run)
    return calls


def test_shards_split_the_manifest(slides, run_dir, tmp_path, monkeypatch):
    calls = _fake_infer(monkeypatch)
    out = tmp_path / "out"
    r0 = run_batch(slides, out, run_dir, InferSettings(**FAST), shard="0/2")
    r1 = run_batch(slides, out, run_dir, InferSettings(**FAST), shard="1/2")
    assert (r0["ok"], r1["ok"]) == (1, 1)
    assert calls == ["synthetic_000.svs", "synthetic_001.svs"]
    assert [r["slide_id"] for r in _csv(out / "summary.shard-1-of-2.csv")] == ["synthetic_001"]
    assert parse_shard("3/4") == (3, 4)
    for bad in ("4/4", "x", "1/0"):
        with pytest.raises(ConfigError, match="K/N"):
            parse_shard(bad)


def test_overwrite_reruns_finished_slides(slides, run_dir, tmp_path, monkeypatch):
    calls = _fake_infer(monkeypatch)
    out = tmp_path / "out"
    run_batch(slides, out, run_dir, InferSettings(**FAST))
    run_batch(slides, out, run_dir, InferSettings(**FAST, overwrite=True))
    assert len(calls) == 4


def test_first_error_stops_and_names_the_slide(slides, run_dir, tmp_path, monkeypatch):
    _fake_infer(monkeypatch, fail_on="synthetic_000")
    out = tmp_path / "out"
    with pytest.raises(WsiSegError, match="slide synthetic_000 .* broken on purpose"):
        run_batch(slides, out, run_dir, InferSettings(**FAST))
    rows = {r["slide_id"]: r["status"] for r in _csv(out / "summary.csv")}
    assert rows == {"synthetic_000": "error"}  # stopped: synthetic_001 never started


def test_skip_errors_records_and_goes_on(slides, run_dir, tmp_path, monkeypatch):
    _fake_infer(monkeypatch, fail_on="synthetic_000")
    out = tmp_path / "out"
    result = run_batch(slides, out, run_dir, InferSettings(**FAST), skip_errors=True)
    assert (result["ok"], result["failed"]) == (1, 1)
    rows = {r["slide_id"]: r for r in _csv(out / "summary.csv")}
    assert rows["synthetic_000"]["status"] == "error"
    assert "broken on purpose" in rows["synthetic_000"]["error"]
    assert rows["synthetic_001"]["benign um2"] == "2.0"
    assert not (out / "synthetic_000.mask.ome.tif").exists()


@pytest.mark.slow
def test_dask_local_cluster_of_two_workers(slides, run_dir, tmp_path):
    out = tmp_path / "out"
    result = run_batch(slides, out, run_dir, InferSettings(**FAST), workers=2)
    assert (result["ok"], result["failed"]) == (2, 0)
    assert sorted(p.name for p in out.glob("*.mask.ome.tif")) == [
        "synthetic_000.mask.ome.tif",
        "synthetic_001.mask.ome.tif",
    ]


def _cli(*args):
    from click.testing import CliRunner

    from pipelines.cli import cli

    return CliRunner().invoke(cli, ["infer", *map(str, args)])


def test_cli_one_slide_then_refuses_existing_outputs(slides, run_dir, tmp_path):
    slide = slides.parent / "synthetic_000.svs"
    out = tmp_path / "a.mask.tif"
    res = _cli(slide, "-o", out, "--model", run_dir, "--no-preview", "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "D = " in res.output and (tmp_path / "a.mask.geojson").is_file()
    assert not (tmp_path / "a.mask.preview.png").exists()
    again = _cli(slide, "-o", out, "--model", run_dir)
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert len(again.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--sampler", "edge"], "needs the slide's labels"),
        (["--output-downsample", "x"], "integer >= 1"),
        (["--device", "tpu"], "unknown device"),
    ],
)
def test_cli_bad_options_are_one_line_errors(slides, run_dir, tmp_path, extra, message):
    slide = slides.parent / "synthetic_000.svs"
    res = _cli(slide, "-o", tmp_path / "m.tif", "--model", run_dir, *extra)
    assert res.exit_code == 2 and message in res.output, res.output
    assert not list(tmp_path.iterdir())  # nothing written


def test_cli_needs_one_slide_or_a_manifest(slides, run_dir, tmp_path):
    res = _cli("-o", tmp_path, "--model", run_dir)
    assert res.exit_code == 2 and "either one SLIDE or --slides" in res.output
    res = _cli(slides.parent / "x.svs", "--slides", slides, "-o", tmp_path, "--model", run_dir)
    assert res.exit_code == 2
