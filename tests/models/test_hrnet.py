"""HRNetV2 segmenter: any input size, channel counts from the backbone, local weights, registry."""

from __future__ import annotations

import pytest
import torch

from wsi_downsample.errors import ConfigError
from wsi_downsample.models import SEGMENTERS, HRNetSegmenter, build_segmenter


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_registry_lists_names_on_a_miss():
    assert list(SEGMENTERS) == ["hrnet_w18_small", "hrnet_w18", "hrnet_w48"]
    miss = r"unknown model 'hrnet_w64'; available: \['hrnet_w18_small'"
    with pytest.raises(ConfigError, match=miss):
        build_segmenter("hrnet_w64", 6)


@pytest.mark.parametrize(("stride", "multiple"), [(4, 32), (1, 8)])
def test_logits_at_the_input_size_for_any_shape(stride, multiple):
    torch.manual_seed(0)
    model = build_segmenter("hrnet_w18_small", 5, stem_stride=stride).eval()
    assert model.multiple == multiple
    # head input = the four branches concatenated: 16 + 32 + 64 + 128 for w18_small
    assert model.head[0].in_channels == 240
    with torch.no_grad():
        out = model(torch.rand(2, 3, 20, 44))
    assert out.shape == (2, 5, 20, 44)
    # branch 1 sits at the input resolution with the stride-1 stem, at 1/4 with timm's
    feats = model.backbone(torch.rand(1, 3, 32, 64))
    assert feats[0].shape[-2:] == ((32, 64) if stride == 1 else (8, 16))


def test_local_weights_file_loads_backbone_and_full_checkpoints(tmp_path):
    torch.manual_seed(1)
    source = HRNetSegmenter("hrnet_w18_small", 3)
    backbone = tmp_path / "backbone.pth"
    torch.save(source.backbone.state_dict(), backbone)
    loaded = HRNetSegmenter("hrnet_w18_small", 3, weights=backbone)
    key = "conv1.weight"
    assert torch.equal(loaded.backbone.state_dict()[key], source.backbone.state_dict()[key])
    full = tmp_path / "full.pt"
    torch.save({"state_dict": source.state_dict()}, full)
    again = HRNetSegmenter("hrnet_w18_small", 3, weights=full)
    assert torch.equal(again.head[-1].weight, source.head[-1].weight)


def test_bad_weights_files_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="weights file not found"):
        HRNetSegmenter("hrnet_w18_small", 3, weights=tmp_path / "none.pt")
    other = tmp_path / "other.pt"
    torch.save({"foo": torch.zeros(3)}, other)
    with pytest.raises(ConfigError, match="no tensor matches"):
        HRNetSegmenter("hrnet_w18_small", 3, weights=other)
