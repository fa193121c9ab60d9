"""The one atomic-output mechanism: whole or nothing, refusals, modes, stale temporaries."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from wsi_downsample.errors import OutputError, OutputExistsError
from wsi_downsample.io.atomic import (
    OutputSet,
    atomic_dir,
    atomic_path,
    live_temporaries,
    write_json_atomic,
)


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_atomic_path_renames_on_success_and_leaves_nothing_on_error(tmp_path) -> None:
    out = tmp_path / "a" / "b" / "report.json"
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert _names(tmp_path) == []  # the created folders went too
    write_json_atomic(out, {"x": 1})
    assert out.read_text() == '{\n  "x": 1\n}\n'
    assert _names(out.parent) == ["report.json"]
    assert live_temporaries() == []


def test_file_mode_follows_umask_on_rewrite(tmp_path) -> None:
    out = tmp_path / "r.json"
    old = os.umask(0o022)
    try:
        write_json_atomic(out, 1)
        write_json_atomic(out, 2)
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_existing_output_refused_without_overwrite(tmp_path) -> None:
    out = tmp_path / "m.tif"
    out.write_text("old")
    with pytest.raises(OutputExistsError, match="m.tif exists") as info:
        with atomic_path(out, overwrite=False):
            pass
    assert info.value.cli_message({"overwrite": "--overwrite"}).endswith("try --overwrite")
    assert out.read_text() == "old"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only folders")
def test_unwritable_folder_is_an_output_error(tmp_path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="ro/x.json"):
            write_json_atomic(ro / "x.json", 1)
    finally:
        ro.chmod(0o700)


def test_missing_parent_that_is_a_file_is_an_output_error(tmp_path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="cannot write"):
        write_json_atomic(tmp_path / "file" / "x.json", 1)
    assert _names(tmp_path) == ["file"]


def test_output_set_is_all_or_nothing(tmp_path) -> None:
    paths = [tmp_path / "s.mask.ome.tif", tmp_path / "s.mask.geojson"]
    with pytest.raises(KeyError), OutputSet(paths) as out:
        out.path(paths[0]).write_text("mask")
        raise KeyError("second output failed")
    assert _names(tmp_path) == []
    with OutputSet(paths) as out:
        for p in paths:
            out.path(p).write_text(p.name)
    assert _names(tmp_path) == ["s.mask.geojson", "s.mask.ome.tif"]
    with pytest.raises(OutputExistsError):
        OutputSet(paths)
    with OutputSet(paths, overwrite=True) as out:
        out.path(paths[1]).write_text("new")
    assert paths[1].read_text() == "new" and paths[0].read_text() == paths[0].name


def test_atomic_dir_replaces_whole_folder(tmp_path) -> None:
    run = tmp_path / "run"
    with atomic_dir(run) as tmp:
        (tmp / "config.yaml").write_text("a")
    with pytest.raises(OutputExistsError):
        with atomic_dir(run):
            pass
    with pytest.raises(ValueError), atomic_dir(run, overwrite=True) as tmp:
        (tmp / "config.yaml").write_text("b")
        raise ValueError
    assert (run / "config.yaml").read_text() == "a" and _names(tmp_path) == ["run"]
    with atomic_dir(run, overwrite=True) as tmp:
        (tmp / "other").write_text("b")
    assert _names(run) == ["other"] and _names(tmp_path) == ["run"]


def test_stale_temporary_of_a_killed_process_is_swept(tmp_path) -> None:
    out = tmp_path / "x.json"
    code = (
        "import os, sys\n"
        "from wsi_downsample.io.atomic import atomic_path\n"
        f"with atomic_path({str(out)!r}) as tmp:\n"
        "    tmp.write_text('partial'); os._exit(9)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=False)
    assert len([p for p in tmp_path.iterdir() if ".tmp-" in p.name]) == 1
    write_json_atomic(out, 1)
    assert _names(tmp_path) == ["x.json"]
