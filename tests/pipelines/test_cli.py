"""The `wsi-seg` CLI through click's runner and as a subprocess: answers and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines.cli import cli

CMU = "openslide-cmu1-small-region/CMU-1-Small-Region.svs"
TCGA = "tcga-cr-7395-aperio-j2k/tcga-cr-7395-01a-01-ts1.svs"
FIXTURES = "openslide-python-fixtures"


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def _one_line_error(code: int, stdout: str, stderr: str) -> str:
    assert code == 2, (code, stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_inspect_cmu_text(real_file) -> None:
    code, out, err = _run("inspect", str(real_file(CMU)))
    assert code == 0, err
    assert "2220 x 2967" in out and "aperio" in out and "0.499" in out


def test_inspect_tcga_json_two_levels_no_mpp(real_file) -> None:
    code, out, err = _run("inspect", str(real_file(TCGA)), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert [(lv["width"], lv["height"]) for lv in report["levels"]] == [(4443, 3567), (2221, 1783)]
    assert report["mpp"] is None
    assert len(report["regions"]) >= 1


@pytest.mark.parametrize(
    "relpath, needle",
    [
        (f"{FIXTURES}/unreadable.svs", "unreadable.svs"),
        (f"{FIXTURES}/unopenable.tiff", "unopenable.tiff"),
        (f"{FIXTURES}/SOURCE.md", "SOURCE.md"),
    ],
)
def test_inspect_broken_files_one_line(relpath: str, needle: str, real_file) -> None:
    line = _one_line_error(*_run("inspect", str(real_file(relpath))))
    assert needle in line


def test_inspect_missing_and_directory(tmp_path: Path) -> None:
    assert "absent.svs" in _one_line_error(*_run("inspect", str(tmp_path / "absent.svs")))
    assert str(tmp_path) in _one_line_error(*_run("inspect", str(tmp_path)))


def test_synth_writes_slide_mask_manifest(tmp_path: Path) -> None:
    code, out, err = _run("synth", str(tmp_path / "s"), "--size", "1024x1536", "--count", "2")
    assert code == 0, err
    manifest = Path(out.strip())
    assert manifest.name == "manifest.csv" and manifest.is_file()
    lines = manifest.read_text().strip().splitlines()
    assert len(lines) == 3
    assert sorted(p.name for p in (tmp_path / "s").glob("*.svs")) == [
        "synthetic_000.svs",
        "synthetic_001.svs",
    ]


def test_synth_bad_size() -> None:
    code, _, err = _run("synth", "x", "--size", "12x")
    assert code == 2 and "HxW" in err


def test_subprocess_error_is_one_line(tmp_path: Path, repo_root) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "inspect", str(tmp_path / "nope.svs")],
        capture_output=True,
        text=True,
        cwd=repo_root,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
