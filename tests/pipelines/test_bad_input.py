"""The bad-input matrix: every command x every kind of bad input -> one `error:` line, the
right exit status, the file or option named, and no new file left behind.

In-process through click's runner (fast); only the interrupt cases start a subprocess and
send it a real SIGINT / SIGTERM. New commands add their rows to ``CASES``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines.cli import cli


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace: a small synthetic set, corrupt files, bad manifests and configs."""
    from pipelines.synth import run_synth

    root = tmp_path_factory.mktemp("bad_input")
    run_synth(root / "set", (2048, 3072), count=1, seed=3)
    svs = (root / "set" / "synthetic_000.svs").read_bytes()
    (root / "truncated.svs").write_bytes(svs[: len(svs) // 2])
    (root / "tiny.svs").write_bytes(svs[:7])
    (root / "empty.svs").write_bytes(b"")
    (root / "text.svs").write_text("not a slide\n")
    (root / "dir.svs").mkdir()
    good = (root / "set" / "manifest.csv").read_text()
    (root / "set" / "empty.csv").write_text("")
    (root / "set" / "header_only.csv").write_text("slide_path,mask_path\n")
    (root / "set" / "latin1.csv").write_bytes("slide_path\ncaf\xe9.svs\n".encode("latin-1"))
    (root / "set" / "binary.csv").write_bytes(svs[:4096])
    (root / "set" / "bad_column.csv").write_text(good.replace("slide_path", "slide"))
    (root / "set" / "missing_row.csv").write_text(good + "absent.svs,absent.mask.ome.tif\n")
    unknown_map = good.replace("mpp\n", "mpp,label_map\n", 1).strip() + ",mine\n"
    (root / "set" / "unknown_map.csv").write_text(unknown_map)
    (root / "lots.yaml").write_text("sampler:\n  edge_blur: lots\n")
    (root / "neg.yaml").write_text("data:\n  source_mpp: -1\n")
    (root / "frac.yaml").write_text("sampler:\n  density_fraction: 5\n")
    (root / "jitter.yaml").write_text("train:\n  grid_jitter: 2\n  deformation_lr: 0\n")
    (root / "scaling.yaml").write_text("loss:\n  edge_scaling: contrast\n")
    (root / "floor.yaml").write_text("loss:\n  edge_scaling: mean\n  edge_floor: 0\n")
    (root / "clip.yaml").write_text("train:\n  grad_clip_mode: apart\n")
    (root / "broken.yaml").write_text("sampler: [\n")
    (root / "existing.json").write_text("{}\n")
    _model(root / "run")
    (root / "norun").mkdir()
    (root / "junk.pt").write_bytes(b"not a checkpoint")
    (root / "train.yaml").write_text("sampler:\n  dynamic: 16x64\n")
    (root / "report").mkdir()
    (root / "report" / "report.json").write_text("{}")
    (root / "out_exists").mkdir()
    (root / "out_exists" / "m.mask.ome.tif").write_text("old")
    return root


def _model(run: Path) -> None:
    """A randomly initialised run directory (best.pt and last.pt), made without training."""
    from pipelines.config import load_config
    from pipelines.run_dir import build_model, prepare_run_dir, save_checkpoint

    config = load_config(overrides={"sampler.dynamic": "16x64"})
    prepare_run_dir(run, config, resume=False, overwrite=False)
    model = build_model(config, "learned")
    for which in ("best", "last"):
        save_checkpoint(run, which, model, config, {"epoch": 0, "step": 0})


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


M = "{ws}/set/manifest.csv"
# (id, argv with {ws}, expected exit status, text the error line must contain)
CASES = [
    ("inspect-missing", ["inspect", "{ws}/absent.svs"], 2, "absent.svs"),
    ("inspect-directory", ["inspect", "{ws}/dir.svs"], 2, "dir.svs"),
    ("inspect-empty", ["inspect", "{ws}/empty.svs"], 2, "empty.svs"),
    ("inspect-truncated", ["inspect", "{ws}/truncated.svs"], 2, "truncated.svs"),
    ("inspect-truncated-header", ["inspect", "{ws}/tiny.svs"], 2, "tiny.svs"),
    ("inspect-wrong-format", ["inspect", "{ws}/text.svs"], 2, "text.svs"),
    (
        "inspect-bad-backend",
        ["inspect", "{ws}/set/synthetic_000.svs", "--backend", "x"],
        2,
        "--backend",
    ),
    (
        "inspect-bad-mpp",
        ["inspect", "{ws}/set/synthetic_000.svs", "--slide-mpp", "-1"],
        2,
        "--slide-mpp",
    ),
    ("inspect-no-such-option", ["inspect", "--mask-downsample", "2"], 2, "--mask-downsample"),
    ("synth-size-zero", ["synth", "{ws}/out", "--size", "0x0"], 2, "--size"),
    ("synth-size-garbage", ["synth", "{ws}/out", "--size", "12x"], 2, "--size"),
    ("synth-size-too-small", ["synth", "{ws}/out", "--size", "32x32"], 2, "--size"),
    ("synth-too-thin", ["synth", "{ws}/out", "--size", "64x100000"], 2, "too thin"),
    ("synth-count-zero", ["synth", "{ws}/out", "--count", "0"], 2, "--count"),
    ("synth-bad-preset", ["synth", "{ws}/out", "--preset", "x"], 2, "--preset"),
    ("synth-existing", ["synth", "{ws}/set", "--size", "2048x3072"], 2, "--overwrite"),
    (
        "synth-unwritable",
        ["synth", "/proc/wsi-seg-test", "--size", "1024x1536"],
        2,
        "/proc/wsi-seg-test",
    ),
    ("intrinsic-missing-manifest", ["intrinsic", "--slides", "{ws}/absent.csv"], 2, "absent.csv"),
    ("intrinsic-manifest-dir", ["intrinsic", "--slides", "{ws}/set"], 2, "set"),
    ("intrinsic-empty-manifest", ["intrinsic", "--slides", "{ws}/set/empty.csv"], 2, "empty.csv"),
    ("intrinsic-header-only", ["intrinsic", "--slides", "{ws}/set/header_only.csv"], 2, "no rows"),
    ("intrinsic-latin1", ["intrinsic", "--slides", "{ws}/set/latin1.csv"], 2, "UTF-8"),
    ("intrinsic-binary", ["intrinsic", "--slides", "{ws}/set/binary.csv"], 2, "binary.csv"),
    ("intrinsic-bad-column", ["intrinsic", "--slides", "{ws}/set/bad_column.csv"], 2, "slide_path"),
    (
        "intrinsic-missing-row",
        ["intrinsic", "--slides", "{ws}/set/missing_row.csv"],
        2,
        "absent.svs",
    ),
    ("intrinsic-unknown-map", ["intrinsic", "--slides", "{ws}/set/unknown_map.csv"], 2, "--config"),
    (
        "intrinsic-config-type",
        ["intrinsic", "--slides", M, "--config", "{ws}/lots.yaml"],
        2,
        "sampler.edge_blur",
    ),
    (
        "intrinsic-config-range",
        ["intrinsic", "--slides", M, "--config", "{ws}/neg.yaml"],
        2,
        "data.source_mpp",
    ),
    (
        "intrinsic-config-fraction",
        ["intrinsic", "--slides", M, "--config", "{ws}/frac.yaml"],
        2,
        "density_fraction",
    ),
    (
        "train-config-jitter",
        ["train", "--slides", M, "-o", "{ws}/run_jitter", "--config", "{ws}/jitter.yaml"],
        2,
        "train.grid_jitter",
    ),
    (
        "train-config-scaling",
        ["train", "--slides", M, "-o", "{ws}/run_scaling", "--config", "{ws}/scaling.yaml"],
        2,
        "loss.edge_scaling",
    ),
    (
        "train-config-floor",
        ["train", "--slides", M, "-o", "{ws}/run_floor", "--config", "{ws}/floor.yaml"],
        2,
        "loss.edge_floor",
    ),
    (
        "train-config-clip",
        ["train", "--slides", M, "-o", "{ws}/run_clip", "--config", "{ws}/clip.yaml"],
        2,
        "train.grad_clip_mode",
    ),
    (
        "intrinsic-config-yaml",
        ["intrinsic", "--slides", M, "--config", "{ws}/broken.yaml"],
        2,
        "broken.yaml",
    ),
    (
        "intrinsic-config-missing",
        ["intrinsic", "--slides", M, "--config", "{ws}/no.yaml"],
        2,
        "no.yaml",
    ),
    ("intrinsic-size-zero", ["intrinsic", "--slides", M, "--size", "0x5"], 2, "--size"),
    ("intrinsic-budget-too-big", ["intrinsic", "--slides", M, "--size", "9000x9000"], 2, "budget"),
    (
        "intrinsic-two-budgets",
        ["intrinsic", "--slides", M, "--size", "8x8", "--dynamic", "8x80"],
        2,
        "one budget",
    ),
    ("intrinsic-bad-dynamic", ["intrinsic", "--slides", M, "--dynamic", "80"], 2, "80"),
    (
        "intrinsic-fraction",
        ["intrinsic", "--slides", M, "--density-fraction", "5"],
        2,
        "--density-fraction",
    ),
    ("intrinsic-huge-blur", ["intrinsic", "--slides", M, "--blur", "1e9"], 2, "--blur"),
    ("intrinsic-learned", ["intrinsic", "--slides", M, "--sampler", "learned"], 2, "--model"),
    (
        "intrinsic-existing-output",
        ["intrinsic", "--slides", M, "-o", "{ws}/existing.json"],
        2,
        "--overwrite",
    ),
    (
        "train-missing-manifest",
        ["train", "--slides", "{ws}/absent.csv", "-o", "{ws}/r"],
        2,
        "absent.csv",
    ),
    ("train-latin1", ["train", "--slides", "{ws}/set/latin1.csv", "-o", "{ws}/r"], 2, "UTF-8"),
    (
        "train-config-type",
        ["train", "--slides", M, "-o", "{ws}/r", "--config", "{ws}/lots.yaml"],
        2,
        "sampler.edge_blur",
    ),
    ("train-existing-run", ["train", "--slides", M, "-o", "{ws}/run"], 2, "--overwrite"),
    ("train-resume-nothing", ["train", "--slides", M, "-o", "{ws}/norun", "--resume"], 2, "norun"),
    (
        "train-bad-arch",
        ["train", "--slides", M, "-o", "{ws}/r", "--arch", "hrnet_w64"],
        2,
        "--arch",
    ),
    (
        "train-bad-sampler",
        ["train", "--slides", M, "-o", "{ws}/r", "--sampler", "x"],
        2,
        "--sampler",
    ),
    ("train-epochs-zero", ["train", "--slides", M, "-o", "{ws}/r", "--epochs", "0"], 2, "--epochs"),
    ("train-bad-device", ["train", "--slides", M, "-o", "{ws}/r", "--device", "tpu"], 2, "tpu"),
    (
        "train-missing-weights",
        ["train", "--slides", M, "-o", "{ws}/r", "--weights", "{ws}/w.pth"],
        2,
        "w.pth",
    ),
    ("train-empty-split", ["train", "--slides", M, "-o", "{ws}/r", "--fold", "7"], 2, "fold"),
    (
        "train-unwritable",
        ["train", "--slides", M, "-o", "/proc/wsi-seg-run"],
        2,
        "/proc/wsi-seg-run",
    ),
    (
        "infer-missing-slide",
        ["infer", "{ws}/absent.svs", "-o", "{ws}/m.tif", "--model", "{ws}/run"],
        2,
        "absent.svs",
    ),
    (
        "infer-truncated",
        ["infer", "{ws}/truncated.svs", "-o", "{ws}/m.tif", "--model", "{ws}/run"],
        2,
        "truncated.svs",
    ),
    (
        "infer-wrong-format",
        ["infer", "{ws}/text.svs", "-o", "{ws}/m.tif", "--model", "{ws}/run"],
        2,
        "text.svs",
    ),
    (
        "infer-missing-model",
        ["infer", "{ws}/set/synthetic_000.svs", "-o", "{ws}/m.tif", "--model", "{ws}/nomodel"],
        2,
        "nomodel",
    ),
    (
        "infer-empty-run-dir",
        ["infer", "{ws}/set/synthetic_000.svs", "-o", "{ws}/m.tif", "--model", "{ws}/norun"],
        2,
        "norun",
    ),
    (
        "infer-junk-checkpoint",
        ["infer", "{ws}/set/synthetic_000.svs", "-o", "{ws}/m.tif", "--model", "{ws}/junk.pt"],
        2,
        "junk.pt",
    ),
    (
        "infer-edge-refused",
        [
            "infer",
            "{ws}/set/synthetic_000.svs",
            "-o",
            "{ws}/m.tif",
            "--model",
            "{ws}/run",
            "--sampler",
            "edge",
        ],
        2,
        "edge",
    ),
    (
        "infer-bad-downsample",
        [
            "infer",
            "{ws}/set/synthetic_000.svs",
            "-o",
            "{ws}/m.tif",
            "--model",
            "{ws}/run",
            "--output-downsample",
            "0",
        ],
        2,
        "--output-downsample",
    ),
    (
        "infer-existing-output",
        [
            "infer",
            "{ws}/set/synthetic_000.svs",
            "-o",
            "{ws}/out_exists/m.mask.ome.tif",
            "--model",
            "{ws}/run",
        ],
        2,
        "--overwrite",
    ),
    (
        "infer-unwritable",
        ["infer", "{ws}/set/synthetic_000.svs", "-o", "/proc/wsi-seg/m.tif", "--model", "{ws}/run"],
        2,
        "/proc/wsi-seg",
    ),
    ("infer-no-input", ["infer", "-o", "{ws}/m.tif", "--model", "{ws}/run"], 2, "--slides"),
    (
        "infer-bad-shard",
        ["infer", "--slides", M, "-o", "{ws}/o", "--model", "{ws}/run", "--shard", "3/2"],
        2,
        "--shard",
    ),
    (
        "infer-batch-latin1",
        ["infer", "--slides", "{ws}/set/latin1.csv", "-o", "{ws}/o", "--model", "{ws}/run"],
        2,
        "UTF-8",
    ),
    (
        "evaluate-missing-manifest",
        ["evaluate", "--slides", "{ws}/absent.csv", "--model", "{ws}/run"],
        2,
        "absent.csv",
    ),
    ("evaluate-no-model", ["evaluate", "--slides", M], 2, "--model"),
    (
        "evaluate-missing-model",
        ["evaluate", "--slides", M, "--model", "{ws}/nomodel"],
        2,
        "nomodel",
    ),
    (
        "evaluate-auto-refused",
        ["evaluate", "--slides", M, "--model", "{ws}/run", "--output-downsample", "auto"],
        2,
        "auto",
    ),
    (
        "evaluate-missing-pred-dir",
        ["evaluate", "--slides", M, "--pred-dir", "{ws}/nopred"],
        2,
        "nopred",
    ),
    (
        "evaluate-existing-report",
        ["evaluate", "--slides", M, "--model", "{ws}/run", "--split", "train", "-o", "{ws}/report"],
        2,
        "--overwrite",
    ),
    ("demo-output-is-file", ["demo", "--quick", "-o", "{ws}/existing.json"], 2, "existing.json"),
    ("demo-unwritable", ["demo", "--quick", "-o", "/proc/wsi-seg-demo"], 2, "/proc/wsi-seg-demo"),
    (
        "intrinsic-unwritable",
        ["intrinsic", "--slides", M, "--dynamic", "8x80", "-o", "/proc/x/r.json"],
        2,
        "/proc/x/r.json",
    ),
]


@pytest.mark.parametrize("argv, status, needle", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_one_line_no_leftovers(ws: Path, argv: list[str], status: int, needle: str):
    args = [a.replace("{ws}", str(ws)) for a in argv]
    before = _listing(ws)
    result = CliRunner().invoke(cli, args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == status, (result.exit_code, result.stderr, result.stdout)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert needle in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert _listing(ws) == before


def test_unexpected_error_names_command_and_input_exit_1(monkeypatch, ws: Path) -> None:
    import pipelines.inspect_slide as inspect_pipeline

    def boom(*_a, **_k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(inspect_pipeline, "inspect_slide", boom)
    slide = str(ws / "set" / "synthetic_000.svs")
    result = CliRunner().invoke(cli, ["inspect", slide])
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert line.count("\n") == 0 and "wsi-seg inspect failed on" in line and slide in line
    assert "ZeroDivisionError" in line and "--debug" in line
    debug = CliRunner().invoke(cli, ["--debug", "inspect", slide])
    assert debug.exit_code == 1 and "Traceback" in debug.stderr


def _wait_for_handler(pid: int, sig: int, timeout_s: float = 30.0) -> None:
    """Wait until the process catches ``sig`` (its guard is installed): SigCgt in /proc."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return
        caught = int(next(x for x in status.splitlines() if x.startswith("SigCgt:")).split()[1], 16)
        if caught >> (int(sig) - 1) & 1:
            return
        time.sleep(0.02)


def _interrupt(argv: list[str], sig: int, wait_s: float, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_handler(proc.pid, sig)
    if wait_s < 0:  # after the command's first line of output (it is at work by then)
        assert proc.stdout is not None
        proc.stdout.readline()
    time.sleep(abs(wait_s))
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _interrupt_argv(command: str, ws: Path, tmp: Path) -> list[str]:
    shutil.copytree(ws / "set", tmp / "set")
    manifest = str(tmp / "set" / "manifest.csv")
    slide = str(tmp / "set" / "synthetic_000.svs")
    return {
        "synth": ["synth", str(tmp / "out"), "--size", "8192x8192", "--count", "3"],
        "intrinsic": [
            "intrinsic",
            "--slides",
            manifest,
            "--size",
            "64x64",
            "-o",
            str(tmp / "r.json"),
        ],
        "infer": ["infer", slide, "-o", str(tmp / "m.tif"), "--model", str(ws / "run")],
        "evaluate": [
            "evaluate",
            "--slides",
            manifest,
            "--model",
            str(ws / "run"),
            "--split",
            "train",
            "-o",
            str(tmp / "rep"),
        ],
        "demo": ["demo", "--quick", "-o", str(tmp / "demo")],
        "train": [
            "train",
            "--slides",
            manifest,
            "-o",
            str(tmp / "run"),
            "--epochs",
            "50",
            "--steps",
            "2",
            "--sampler",
            "uniform",
            "--config",
            str(ws / "train.yaml"),
        ],
    }[command]


@pytest.mark.parametrize(
    "command, sig, wait_s",
    [
        ("synth", signal.SIGINT, 3.0),
        ("intrinsic", signal.SIGTERM, 0.3),
        ("infer", signal.SIGINT, 3.0),
        ("evaluate", signal.SIGTERM, 3.0),
        ("demo", signal.SIGTERM, -0.5),
        ("train", signal.SIGINT, 8.0),
    ],
)
def test_interrupt_cleans_up(
    ws: Path, tmp_path: Path, repo_root: Path, command: str, sig: int, wait_s: float
) -> None:
    argv = _interrupt_argv(command, ws, tmp_path)
    before = _listing(tmp_path)
    done = _interrupt(argv, sig, wait_s, repo_root)
    assert done.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[sig], done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: interrupted by "), done.stderr
    assert "Traceback" not in done.stderr
    after = _listing(tmp_path)
    if command == "train":  # a killed run keeps its config and last good checkpoint (--resume)
        assert not [p for p in after if ".tmp-" in p or "staging" in p]
        assert "run" not in after or "run/config.yaml" in after
    else:
        assert after == before


def test_guard_failure_path_imports_nothing(repo_root: Path) -> None:
    # A signal can land while a module is half imported (CI once caught SIGTERM
    # inside scipy.ndimage's import); the guard's cleanup must not import again.
    code = (
        "import sys; sys.modules['wsi_downsample.io'] = None\n"
        "from pipelines.cli import main\n"
        "sys.argv = ['wsi-seg', 'infer']\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: missing option --output; see 'wsi-seg infer --help'"
    ]


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "semicolon"])
def test_excel_manifests_are_read(ws: Path, tmp_path: Path, encoding: str) -> None:
    from pipelines.config import load_config
    from pipelines.manifest import read_manifest

    text = (ws / "set" / "manifest.csv").read_text()
    text = text.replace("set/", "")
    if encoding == "semicolon":
        data, encoding = text.replace(",", ";").encode(), "utf-8"
    else:
        data = text.encode(encoding)
    path = ws / "set" / f"excel_{encoding}.csv"
    path.write_bytes(data)
    try:
        rows = read_manifest(path, load_config(), require_masks=True)
    finally:
        path.unlink()
    assert [r.slide_path.name for r in rows] == ["synthetic_000.svs"]
    assert rows[0].mask_path is not None and rows[0].mask_path.name == "synthetic_000.mask.ome.tif"


def test_mask_values_outside_the_map_are_found_before_work(ws: Path, tmp_path: Path) -> None:
    import numpy as np

    from pipelines.config import load_config
    from pipelines.manifest import read_manifest
    from wsi_downsample.errors import ManifestError
    from wsi_downsample.io.mask_tiff import write_label_tiff

    set_dir = tmp_path / "set"
    shutil.copytree(ws / "set", set_dir)
    labels = np.zeros((2048, 3072), np.uint8)
    labels[1500, 2900] = 9  # one stray pixel, dropped by every lower pyramid level
    write_label_tiff(set_dir / "synthetic_000.mask.ome.tif", labels.shape, labels, mpp=0.5)
    manifest = set_dir / "manifest.csv"
    manifest.write_text(manifest.read_text() + "synthetic_000.svs,absent.tif,train\n")
    with pytest.raises(ManifestError) as info:
        read_manifest(manifest, load_config(), require_masks=True)
    message = str(info.value)
    assert "2 problem(s)" in message and "values [9]" in message and "absent.tif" in message
