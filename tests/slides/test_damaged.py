"""Damaged files and implausible metadata: truncated slides and masks, dpi-default mpps."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import tifffile

from wsi_downsample._types import Mpp
from wsi_downsample.errors import CorruptSlideError, MissingMppError, NotASlideError, WsiSegError
from wsi_downsample.slides import check_decodable, open_mask, open_slide, require_mpp
from wsi_downsample.slides._checks import plausible_mpp

SLIDE_BACKENDS = ("auto", "tiffslide", "openslide", "image")


def _cuts(size: int) -> dict[str, int]:
    return {"50%": size // 2, "10%": size // 10, "1KB": 1024, "7B": 7}


def _open_and_decode(path, backend: str) -> None:  # noqa: ANN001
    with open_slide(path, backend=backend) as slide:
        check_decodable(slide)


@pytest.mark.parametrize("backend", SLIDE_BACKENDS)
def test_truncated_svs_is_corrupt_on_every_backend(synthetic_slide, tmp_path, backend) -> None:
    data = synthetic_slide.slide_path.read_bytes()
    for label, cut in _cuts(len(data)).items():
        path = tmp_path / f"cut_{label}.svs"
        path.write_bytes(data[:cut])
        with pytest.raises(CorruptSlideError) as err:
            _open_and_decode(path, backend)
        msg = str(err.value)
        assert msg.startswith(f"{path}: ") and msg.endswith("re-copy or re-export it"), label


@pytest.mark.parametrize("backend", SLIDE_BACKENDS)
def test_first_directory_past_the_end_is_corrupt(synthetic_slide, tmp_path, backend) -> None:
    # Aperio writes the directories after the tiles: a cut file keeps a header whose first
    # directory offset points past its end (tifffile then has no pages: IndexError before)
    data = bytearray(synthetic_slide.slide_path.read_bytes()[:4096])
    data[4:8] = struct.pack("<I", 10_000_000)
    path = tmp_path / "lost_ifd.svs"
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptSlideError, match=r"lost_ifd.svs: its first TIFF directory"):
        _open_and_decode(path, backend)


def test_truncated_and_empty_masks_are_corrupt(synthetic_slide, tmp_path) -> None:
    data = synthetic_slide.mask_path.read_bytes()
    for label, cut in {**_cuts(len(data)), "empty": 0}.items():
        path = tmp_path / f"cut_{label}.mask.tif"
        path.write_bytes(data[:cut])
        with pytest.raises(CorruptSlideError, match=f"cut_{label}.mask.tif: .*re-copy"):
            with open_mask(path) as mask:
                check_decodable(mask)


def test_empty_slide_file_names_the_file(tmp_path) -> None:
    path = tmp_path / "empty.svs"
    path.write_bytes(b"")
    with pytest.raises(CorruptSlideError, match=r"empty.svs: the file is empty \(0 bytes\)"):
        open_slide(path)


# -- implausible resolution metadata --------------------------------------------------------

#: (resolution unit, pixels per unit) -> the mpp wsi-seg reports (None: unknown)
RESOLUTIONS = [
    ("INCH", 72.0, None),  # screen default, 352.8 um/px
    ("INCH", 96.0, None),  # screen default, 264.6 um/px
    ("CENTIMETER", 72.0 / 2.54, None),  # 72 dpi written in centimetres
    ("CENTIMETER", 1e4 / 25.0, None),  # 25 um/px: above 20
    ("CENTIMETER", 1e4 / 0.04, None),  # 0.04 um/px: below 0.05
    ("CENTIMETER", 1e4 / 0.5, Mpp(0.5, 0.5)),
    ("INCH", 25400 / 0.25, Mpp(0.25, 0.25)),
]


def _write(path, image: np.ndarray, unit: str, per_unit: float, **kw) -> None:  # noqa: ANN001
    tifffile.imwrite(
        path, image, resolution=(per_unit, per_unit), resolutionunit=unit, metadata=None, **kw
    )


@pytest.mark.parametrize(("unit", "per_unit", "expected"), RESOLUTIONS)
def test_implausible_mpp_is_unknown_on_every_backend(tmp_path, unit, per_unit, expected) -> None:
    rgb = np.full((128, 192, 3), 200, np.uint8)
    tiled, plain, mask = tmp_path / "tiled.tif", tmp_path / "plain.tif", tmp_path / "mask.tif"
    _write(tiled, rgb, unit, per_unit, tile=(64, 64), photometric="rgb")
    _write(plain, rgb, unit, per_unit, photometric="rgb")
    _write(mask, rgb[..., 0] // 100, unit, per_unit)
    readers = [open_slide(tiled, backend=b) for b in ("tiffslide", "openslide", "image")]
    readers += [open_slide(plain), open_mask(mask)]
    assert [r.backend for r in readers] == ["tiffslide", "openslide", "image", "image", "tifffile"]
    for reader in readers:
        with reader:
            assert reader.mpp == (pytest.approx(expected) if expected else None), reader
            if expected is None:
                with pytest.raises(MissingMppError, match="no plausible mpp") as err:
                    require_mpp(reader)
                assert err.value.hint == {"mpp": "UM_PER_PX"}
    with open_slide(tiled, mpp=0.5) as slide:  # the caller's mpp always wins
        assert slide.mpp == Mpp(0.5, 0.5)


def test_plausible_mpp_bounds() -> None:
    assert plausible_mpp(Mpp(0.05, 20.0)) == Mpp(0.05, 20.0)
    assert plausible_mpp(Mpp(0.25, 20.5)) is None
    assert plausible_mpp(Mpp(0.049, 0.25)) is None
    assert plausible_mpp(Mpp(float("nan"), 0.25)) is None
    assert plausible_mpp(None) is None


def test_slide_layer_messages_name_no_cli_flags(tmp_path) -> None:
    """Fixes are hints (``hint=``), rendered as flags by the CLI only."""
    rgb = np.full((128, 192, 3), 200, np.uint8)
    path = tmp_path / "s.tif"
    _write(path, rgb, "INCH", 72.0, tile=(64, 64), photometric="rgb")
    with open_slide(path) as slide, pytest.raises(WsiSegError) as err:
        require_mpp(slide)
    assert "--" not in str(err.value)
    assert err.value.cli_message({"mpp": "--slide-mpp"}).endswith("try --slide-mpp UM_PER_PX")


def test_tiffslide_refusal_hints_the_openslide_backend(tmp_path, monkeypatch) -> None:
    import tiffslide

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003
        raise NotImplementedError("unsupported layout (test)")

    path = tmp_path / "s.tif"
    _write(path, np.zeros((64, 64, 3), np.uint8), "CENTIMETER", 2e4, tile=(32, 32))
    monkeypatch.setattr(tiffslide, "TiffSlide", refuse)
    with pytest.raises(NotASlideError, match="s.tif: tiffslide cannot open it") as err:
        open_slide(path, backend="tiffslide")
    assert err.value.hint == {"backend": "openslide"} and "backend=" not in err.value.message
    with open_slide(path) as slide:  # auto falls back to OpenSlide
        assert slide.backend == "openslide" and slide.mpp == Mpp(0.5, 0.5)


def test_openslide_reads_tiff_tiles_natively_and_falls_back(tmp_path, monkeypatch) -> None:
    from slide_testkit import write_pyramid_tiff

    from wsi_downsample.slides.openslide import OpenSlideReader

    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (300, 200, 3), dtype=np.uint8)
    path = write_pyramid_tiff(tmp_path / "p.tif", image, factors=(1, 2), tile=64)
    with open_slide(path, backend="openslide") as os_, open_slide(path) as ts:
        assert os_.vendor == "generic-tiff" and os_._tiles is not None
        for level, (r, c) in [(0, (4, 3)), (1, (2, 1))]:
            assert np.array_equal(os_.read_tile(level, r, c), ts.read_tile(level, r, c))
        assert np.array_equal(os_.read_region((10, 20), 0, (150, 90)), image[20:110, 10:160])
    # a first tile that decodes differently from OpenSlide's: stay on read_region
    monkeypatch.setattr(OpenSlideReader, "_read_rgb", lambda self, *a: np.zeros((1, 1, 3)))
    with OpenSlideReader(path) as os_:
        assert os_._tiles is None


def test_huge_plain_image_is_refused_with_the_fix(tmp_path, monkeypatch) -> None:
    from PIL import Image

    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 10,000 px is now a "bomb" (> 2x)
    with pytest.raises(NotASlideError, match="big.png: too large to decode whole.*tiled"):
        open_slide(path)
    with pytest.raises(NotASlideError, match="big.png: too large"):
        open_mask(path)
