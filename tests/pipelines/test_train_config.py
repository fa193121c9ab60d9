"""Every model/sampler/deformation/loss/train key reaches the object that uses it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from pipelines.config import load_config
from pipelines.run_dir import build_model

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_pca_histo_config_is_the_papers_setting():
    config = load_config(CONFIGS / "pca_histo.yaml")
    raw = yaml.safe_load((CONFIGS / "pca_histo.yaml").read_text())
    assert raw["sampler"]["level_choice"] == "fixed"  # set explicitly, stored in checkpoints
    assert (config.model.arch, config.model.stem_stride) == ("hrnet_w48", 1)
    assert (config.sampler.dynamic, config.sampler.density_fraction) == ("80x800", 0.25)
    assert (config.train.epochs, config.train.batch_size, config.loss.gamma) == (250, 2, 100.0)
    assert config.num_classes == 6 and config.train.flips


def test_model_and_density_keys_reach_the_model(tmp_path):
    overrides = {
        "sampler.name": "learned",
        "sampler.padding": "reflect",
        "sampler.level_choice": "adaptive",
        "sampler.sigma": 3.0,
        "sampler.radius": 6,
        "sampler.density_fraction": 0.5,
        "sampler.dynamic": "40x400",
        "deformation.widths": [8, 4],
        "deformation.activation": "relu6",
        "loss.edge_sigma": 2.0,
        "data.source_mpp": 1.0,
        "model.stem_stride": 1,
    }
    model = build_model(load_config(None, overrides))
    assert (model.padding, model.level_choice, model.sigma, model.radius) == (
        "reflect",
        "adaptive",
        3.0,
        6,
    )
    assert (model.density_fraction, str(model.budget)) == (0.5, "dynamic:40x400")
    assert (model.edge_sigma, model.source_mpp, model.segmenter.multiple) == (2.0, 1.0, 8)
    convs = [m for m in model.density.net.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 4]
    assert isinstance(model.density.net.features[2], torch.nn.ReLU6)
    edge = build_model(
        load_config(None, {"sampler.edge_blur": 2.5, "sampler.edge_floor": 0.5}), "edge"
    )
    assert (edge.density.blur, edge.density.floor) == (2.5, 0.5)


def test_unknown_arch_in_a_config_lists_the_known_ones():
    from wsi_downsample.errors import ConfigError

    with pytest.raises(ConfigError, match="hrnet_w18_small"):
        load_config(None, {"model.arch": "hrnet_w64"})


def test_stain_jitter_is_differentiable_and_off_at_zero():
    from pipelines.data import stain_jitter

    gen = torch.Generator().manual_seed(0)
    image = torch.rand(3, 8, 8, dtype=torch.float64, requires_grad=True)
    assert stain_jitter(image, 0.0, gen) is image
    out = stain_jitter(image, 0.2, gen)
    diff = (out - image).abs()
    assert out.shape == image.shape and 0 < diff.mean() < 0.1 and diff.max() <= 1
    out.sum().backward()
    assert torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0


def test_thread_and_device_keys(tmp_path):
    from pipelines.train import _set_threads, resolve_device
    from wsi_downsample.errors import ConfigError

    config = load_config(None, {"train.threads": 1, "train.device": "cpu"})
    _set_threads(config)
    assert torch.get_num_threads() == 1
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ConfigError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda:1")


def test_class_weight_keys_reach_the_segmentation_loss(tmp_path):
    import numpy as np

    from pipelines.data import region_class_counts
    from pipelines.trainer import Trainer
    from tests.pipelines.train_testkit import make_slides, write_config
    from wsi_downsample.losses import class_weights_from_counts

    manifest = make_slides(tmp_path / "slides", count=2)
    loss = {"class_weights": "balanced", "class_weight_power": 1.0, "class_weight_max": 7.0}
    train = {"steps": 5, "batch_size": 1, "epochs": 1}
    config = load_config(write_config(tmp_path / "c.yaml", loss=loss, train=train))
    trainer = Trainer.create(manifest, config, tmp_path, torch.device("cpu"))
    counts = region_class_counts(trainer.train_set.records, config)
    assert counts.shape == (config.num_classes,) and counts.min() > 0
    expected = class_weights_from_counts(torch.from_numpy(counts), power=1.0, max_ratio=7.0)
    weight = trainer.seg_loss.weight
    assert torch.equal(weight, expected)
    manual = np.minimum(counts.max() / counts, 7.0)  # power 1: inverse frequency, clipped
    np.testing.assert_allclose(weight.numpy(), manual, rtol=1e-6)
    # steps above the batches of one pass: the epoch cycles the regions (new order and flips)
    assert trainer.steps_per_epoch == 5 > len(trainer.loader)
    none = Trainer.create(manifest, load_config(None), tmp_path, torch.device("cpu"))
    assert none.seg_loss.weight is None


def test_class_weight_keys_have_range_rules():
    from wsi_downsample.errors import ConfigError

    for key, bad in (
        ("loss.class_weights", "inverse"),
        ("loss.class_weight_power", -0.5),
        ("loss.class_weight_max", 0.5),
        ("loss.edge_scaling", "max"),
        ("loss.edge_floor", 0.0),
        ("train.grad_clip_mode", "apart"),
    ):
        with pytest.raises(ConfigError, match=key.split(".")[1]):
            load_config(None, {key: bad})
