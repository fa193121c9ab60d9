"""DistributedDataParallel on CPU (gloo, 2 processes) equals one process accumulating both
shards' gradients."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipelines.config import load_config
from pipelines.run_dir import read_checkpoint
from tests.pipelines.train_testkit import make_slides, write_config

REPO = Path(__file__).resolve().parents[2]


def _reference(manifest: Path, config_path: Path, tmp_path: Path) -> dict[str, torch.Tensor]:
    """One process: the loss of rank 0's batch plus rank 1's, halved (DDP averages), one step."""
    from torch.utils.data.distributed import DistributedSampler

    from pipelines.trainer import Trainer, batch_loss

    config = load_config(config_path)
    trainer = Trainer.create(manifest, config, tmp_path, torch.device("cpu"))
    data = trainer.train_set
    data.set_epoch(0)
    losses = []
    for rank in (0, 1):
        shard = DistributedSampler(data, num_replicas=2, rank=rank, shuffle=True, seed=0)
        shard.set_epoch(0)
        index = next(iter(shard))
        batch = [{"index": index, "item": data[index]["item"]}]
        losses.append(batch_loss(trainer.core, batch, trainer, 0)[0])
    trainer.optimizer.zero_grad()
    (sum(losses) / 2).backward()
    torch.nn.utils.clip_grad_norm_(trainer.core.parameters(), config.train.grad_clip)
    trainer.optimizer.step()
    return {k: v.detach().clone() for k, v in trainer.core.state_dict().items()}


@pytest.mark.slow  # two torch processes plus a reference: ~75 s on 2 shared cores
def test_two_gloo_ranks_match_one_process_with_both_shards(tmp_path):
    manifest = make_slides(tmp_path / "slides", count=2)
    config = write_config(tmp_path / "c.yaml", train={"steps": 1, "batch_size": 1, "threads": 1})
    run = tmp_path / "ddp"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [
        str(torchrun),
        "--standalone",
        "--nproc-per-node=2",
        "-m",
        "pipelines.train",
        "--slides",
        str(manifest),
        "-o",
        str(run),
        "--config",
        str(config),
    ]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ddp = read_checkpoint(run, checkpoint="last")
    assert ddp["step"] == 1 and int(ddp["rows"][0]["regions"]) == 2  # one region per rank
    torch.set_num_threads(1)
    reference = _reference(manifest, config, tmp_path)
    for key, value in reference.items():
        if "running" in key or "num_batches" in key:
            continue  # BatchNorm statistics: DDP broadcasts rank 0's buffers
        assert torch.allclose(ddp["model"][key], value, atol=1e-5), key
    assert any(torch.equal(ddp["model"][k], reference[k]) is not False for k in reference)


@pytest.mark.parametrize(
    "argv", [["--debug", "train", "--nproc", "2", "-o", "x"], ["--nproc=2", "-o", "x"]]
)
def test_nproc_relaunches_under_torchrun_without_the_flag(argv, monkeypatch):
    import pipelines.train as train

    seen = {}

    def call(cmd, env):
        seen.update(cmd=cmd, env=env)
        return 0

    monkeypatch.setattr(train.subprocess, "call", call)
    train.launch_torchrun(2, argv)
    assert seen["cmd"][1:3] == ["-m", "torch.distributed.run"]
    assert seen["cmd"][3:7] == ["--standalone", "--nproc-per-node=2", "-m", "pipelines.train"]
    assert seen["cmd"][7:] == ["-o", "x"]
    assert seen["env"]["WSI_SEG_TORCHRUN_CHILD"] == "1"  # ranks stay quiet, the launcher reports
