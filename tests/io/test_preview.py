"""The preview PNG: three panels (slide, sampling points, mask) and a legend."""

from __future__ import annotations

import numpy as np
from PIL import Image

from wsi_downsample.io.preview import colour_labels, render_preview, write_preview

CLASSES = [(0, "background", (255, 255, 255)), (1, "benign", (0, 170, 0)), (3, "G4", (255, 128, 0))]


def test_colour_labels_uses_the_class_colours():
    lab = np.array([[0, 1], [3, 7]], np.uint8)
    rgb = colour_labels(lab, {v: c for v, _, c in CLASSES})
    assert rgb.tolist() == [[[255, 255, 255], [0, 170, 0]], [[255, 128, 0], [0, 0, 0]]]


def test_preview_panels_points_and_legend(tmp_path):
    thumb = np.full((50, 80, 3), 200, np.uint8)
    labels = np.zeros((25, 40), np.uint8)
    labels[:, 20:] = 3
    points = [np.array([[10.0, 10.0], [790.0, 490.0]])]  # level-0 of a 800 x 500 slide
    img = render_preview(
        thumb, labels, CLASSES, slide_size_wh=(800, 500), points_xy=points, title="slide x"
    )
    gap, head = 8, 18
    assert img.shape == (50 + 22 + 2 * gap + head, 3 * 80 + 4 * gap, 3)
    p1 = img[gap + head : gap + head + 50, gap : gap + 80]
    assert (p1 == 200).all()  # the bare thumbnail
    p2 = img[gap + head : gap + head + 50, 2 * gap + 80 : 2 * gap + 160]
    assert p2[1, 1].tolist() == [20, 20, 120] and p2[49, 79].tolist() == [20, 20, 120]
    p3 = img[gap + head : gap + head + 50, 3 * gap + 160 : 3 * gap + 240]
    assert p3[10, 10].tolist() == [200, 200, 200]  # background not tinted
    assert p3[10, 60].tolist() == [228, 164, 100]  # 50 % Gleason 4 orange over grey
    legend = img[50 + 2 * gap + head :]
    assert (legend == [0, 170, 0]).all(-1).sum() == 13 * 13  # benign swatch in its outline
    out = tmp_path / "p.png"
    write_preview(out, img)
    assert np.array_equal(np.asarray(Image.open(out)), img)
