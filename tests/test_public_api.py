"""The public surface: light top-level import, sorted ``__all__`` lists whose names resolve."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = [
    "wsi_downsample",
    "wsi_downsample.deformation",
    "wsi_downsample.io",
    "wsi_downsample.models",
    "wsi_downsample.slides",
    "wsi_downsample.synthetic",
]


def test_import_does_not_import_torch() -> None:
    code = (
        "import sys, wsi_downsample\n"
        "print(sorted(m for m in ('torch', 'timm', 'monai') if m in sys.modules))\n"
        "wsi_downsample.open_slide\n"
        "print('torch' in sys.modules)\n"
        "wsi_downsample.DownsampleSegmenter\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.split("\n")[:3] == ["[]", "False", "True"]


@pytest.mark.parametrize("package", PACKAGES)
def test_all_sorted_and_resolves(package: str) -> None:
    module = importlib.import_module(package)
    names = list(module.__all__)
    assert names == sorted(names)
    assert len(set(names)) == len(names)
    for name in names:
        assert getattr(module, name) is not None, name


def test_top_level_names() -> None:
    import wsi_downsample as wd
    from wsi_downsample.deformation.inverse import invert_labels
    from wsi_downsample.errors import WsiSegError

    assert set(wd.__all__) == {
        "DownsampleSegmenter",
        "Region",
        "SlideSampler",
        "WsiSegError",
        "confusion_counts",
        "find_tissue_regions",
        "invert_grid",
        "invert_labels",
        "iou_from_counts",
        "iter_inverse_tiles",
        "mean_iou",
        "open_mask",
        "open_slide",
        "write_label_tiff",
    }
    assert wd.invert_labels is invert_labels and wd.WsiSegError is WsiSegError
    assert set(wd.__all__) <= set(dir(wd))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = wd.nope
