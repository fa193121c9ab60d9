"""`wsi-seg train`: joint training of the deformation module and an HRNet segmenter on slides.

``run_train`` sets up the device, the process group (under torchrun) and the run directory,
then hands over to ``pipelines.trainer.Trainer``. ``torchrun --nproc-per-node N -m
pipelines.train ARGS`` (what ``wsi-seg train --nproc N`` runs) trains with
DistributedDataParallel: regions sharded over ranks, gradients averaged, rank 0 writes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from pipelines import distributed as ddp
from pipelines.config import Config, load_config
from pipelines.run_dir import check_run_dir, prepare_run_dir, read_checkpoint
from wsi_downsample.errors import ConfigError

__all__ = ["resolve_device", "run_train", "train_from_options", "launch_torchrun", "main"]

_LAUNCHED = "WSI_SEG_TORCHRUN_CHILD"  # set by --nproc: the launcher prints, its ranks don't


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {name!r} asked but CUDA is not available", hint={"device": "cpu"}
        )
    return device


def _set_threads(config: Config) -> None:
    """Torch CPU threads: the config's, else the machine's cores shared between ranks."""
    threads = config.train.threads or max(1, (os.cpu_count() or 1) // ddp.world_size())
    torch.set_num_threads(threads)


def run_train(
    manifest: str | Path,
    config: Config,
    *,
    output: str | Path,
    fold: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    skip_errors: bool = False,
    progress: bool | None = None,
) -> Path:
    """Train on a manifest's ``train`` rows (or every fold but ``fold``); return the run dir."""
    from pipelines.trainer import Trainer

    device = resolve_device(config.train.device)
    if ddp.init_from_env(device) and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    _set_threads(config)
    run_dir = Path(output)
    try:
        check_run_dir(run_dir, resume=resume, overwrite=overwrite)  # before any work
        trainer = Trainer.create(
            manifest, config, run_dir, device, fold=fold, skip_errors=skip_errors
        )  # validates the manifest and finds regions: bad input leaves no run directory
        if ddp.is_main():
            prepare_run_dir(run_dir, config, resume=resume, overwrite=overwrite)
        ddp.barrier()
        if resume:
            trainer.load_state(read_checkpoint(run_dir, checkpoint="last"))
        if progress is None:
            progress = sys.stderr.isatty()
        try:
            trainer.fit(progress=progress and ddp.is_main())
        finally:
            trainer.close()
    finally:
        ddp.shutdown()
    return run_dir


def _overrides(options: dict[str, Any]) -> dict[str, Any]:
    """CLI options -> dotted config overrides (None = keep the config's value)."""
    keys = {
        "epochs": "train.epochs",
        "steps": "train.steps",
        "batch_size": "train.batch_size",
        "num_workers": "train.num_workers",
        "device": "train.device",
        "seed": "train.seed",
        "sampler": "sampler.name",
        "arch": "model.arch",
        "weights": "model.weights",
    }
    out = {dotted: options.get(name) for name, dotted in keys.items()}
    if out["model.weights"] is not None:
        out["model.weights"] = str(out["model.weights"])
    return out


def train_from_options(
    manifest: Path, config_path: Path | None, *, output: Path, nproc: int = 1, **options: Any
) -> Path | None:
    """Resolve CLI options over the config (flags win) and train; ``nproc`` > 1 relaunches
    this command under torchrun."""
    config = load_config(config_path, _overrides(options))
    if nproc > 1:
        launch_torchrun(nproc, sys.argv[1:])
        return output
    run_dir = run_train(
        manifest,
        config,
        output=output,
        fold=options.get("fold"),
        resume=bool(options.get("resume")),
        overwrite=bool(options.get("overwrite")),
        skip_errors=bool(options.get("skip_errors")),
    )
    quiet = os.environ.get("RANK", "0") != "0" or _LAUNCHED in os.environ
    return None if quiet else run_dir  # one process reports the run directory


def launch_torchrun(nproc: int, argv: list[str]) -> None:
    """Run ``torchrun --nproc-per-node N -m pipelines.train ARGS``: the train command's own
    arguments (after ``train``) without ``--nproc``."""
    args, skip = [], False
    for arg in argv[argv.index("train") + 1 :] if "train" in argv else argv:
        if skip:
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        if not arg.startswith("--nproc="):
            args.append(arg)
    torchrun = [sys.executable, "-m", "torch.distributed.run"]  # torchrun, this interpreter's
    cmd = [*torchrun, "--standalone", f"--nproc-per-node={nproc}", "-m", "pipelines.train", *args]
    code = subprocess.call(cmd, env=dict(os.environ, **{_LAUNCHED: "1"}))
    if code != 0:
        raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    """``python -m pipelines.train`` / ``torchrun -m pipelines.train``: the train command."""
    from pipelines.cli import cli

    cli(["train", *(sys.argv[1:] if argv is None else argv)], prog_name="wsi-seg")


if __name__ == "__main__":
    main()
