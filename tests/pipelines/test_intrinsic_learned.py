"""`wsi-seg intrinsic --sampler learned --model RUN`: a trained density's IoU(Y',Y)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pipelines.config import load_config
from pipelines.intrinsic import intrinsic_from_options
from pipelines.run_dir import build_model, prepare_run_dir, save_checkpoint
from wsi_downsample.errors import ConfigError

OPTIONS = dict(
    size_hw=None,
    dynamic=None,
    downsample=None,
    blur=None,
    density_fraction=None,
    inverse="exact",
    source_mpp=None,
    slide_mpp=None,
    output=None,
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from wsi_downsample.synthetic import write_synthetic_slide

    out = tmp_path_factory.mktemp("intr_learned")
    s = write_synthetic_slide(out, shape_hw=(1536, 2048), seed=1, name="i1")
    manifest = out / "manifest.csv"
    manifest.write_text(
        f"slide_path,mask_path,split\n{s.slide_path.name},{s.mask_path.name},test\n"
    )
    config = load_config(None)
    config = dataclasses.replace(config, sampler=_fixed(config))
    runs = {}
    for name, flat in (("flat", True), ("random", False)):
        torch.manual_seed(0)
        model = build_model(config, "learned")
        for p in model.density.parameters():  # flat: a constant output, a uniform density
            torch.nn.init.zeros_(p) if flat else torch.nn.init.normal_(p, std=0.5)
        run = prepare_run_dir(out / name, config, resume=False, overwrite=False)
        save_checkpoint(run, "last", model, config, {})
        runs[name] = run / "last.pt"
    return manifest, runs


def _fixed(config):
    return dataclasses.replace(config.sampler, size="24x32", dynamic=None)


def test_a_flat_density_is_uniform(setup):
    manifest, runs = setup
    learned = intrinsic_from_options(manifest, None, sampler=None, model=runs["flat"], **OPTIONS)
    uniform = intrinsic_from_options(
        manifest, None, sampler="uniform", **(OPTIONS | {"size_hw": "24x32"})
    )
    assert learned["settings"]["sampler"] == "learned"
    assert learned["settings"]["budget"] == "24x32"
    assert learned["settings"]["model"] == str(runs["flat"])
    assert learned["sampled_fraction"] == uniform["sampled_fraction"]
    assert learned["iou"] == uniform["iou"]
    assert learned["miou"] == uniform["miou"] < 1.0


def test_a_trained_density_gives_its_own_grid(setup):
    manifest, runs = setup
    flat = intrinsic_from_options(manifest, None, sampler="learned", model=runs["flat"], **OPTIONS)
    net = intrinsic_from_options(manifest, None, sampler="learned", model=runs["random"], **OPTIONS)
    assert net["miou"] != flat["miou"]
    assert net["sampled_fraction"] == flat["sampled_fraction"]


def test_refusals(setup):
    manifest, runs = setup
    with pytest.raises(ConfigError, match="needs a trained model"):
        intrinsic_from_options(manifest, None, sampler="learned", **OPTIONS)
    with pytest.raises(ConfigError, match="not 'edge'"):
        intrinsic_from_options(manifest, None, sampler="edge", model=runs["flat"], **OPTIONS)
    with pytest.raises(ConfigError, match="model's own budget"):
        intrinsic_from_options(
            manifest, None, sampler=None, model=runs["flat"], **(OPTIONS | {"size_hw": "8x8"})
        )
