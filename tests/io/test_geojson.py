"""QuPath GeoJSON from label rasters: valid polygons, holes, areas, offsets, block seams."""

from __future__ import annotations

import json

import numpy as np
import shapely
from shapely.geometry import shape

from wsi_downsample.io.canvas import LabelCanvas
from wsi_downsample.io.geojson import block_polygons, feature_collection, label_features

CLASSES = [(1, "benign", (0, 170, 0)), (3, "Gleason 4", (255, 128, 0))]


def _name(feature):
    return feature["properties"]["classification"]["name"]


def _blocks(labels, block, overlap=1):
    h, w = labels.shape
    for r in range(0, h, block):
        for c in range(0, w, block):
            yield r, c, labels[r : r + block + overlap, c : c + block + overlap]


def test_block_polygons_keep_holes_and_islands():
    a = np.zeros((20, 20), np.uint8)
    a[2:18, 2:18] = 1
    a[5:15, 5:15] = 0
    a[8:12, 8:12] = 1
    polys = sorted(block_polygons(a, 1), key=lambda p: p.area)
    assert [len(p.interiors) for p in polys] == [0, 1]
    assert polys[1].bounds == (2.0, 2.0, 18.0, 18.0)  # pixel edges, not centres
    assert polys[0].bounds == (8.0, 8.0, 12.0, 12.0)
    # exact pixel areas: 4 x 4 and 16 x 16 - 10 x 10
    assert abs(polys[0].area - 16.0) < 1e-9
    assert abs(polys[1].area - 156.0) < 1e-9


def _raster():
    rng = np.random.default_rng(3)
    lab = np.zeros((200, 260), np.uint8)
    lab[20:120, 30:200] = 1
    lab[50:90, 60:100] = 3  # a Gleason 4 island: a hole in benign
    lab[140:190, 10:250] = 3
    lab[150:160, 100:110] = 0  # a hole in Gleason 4
    lab[rng.integers(0, 200, 30), rng.integers(0, 260, 30)] = 1  # single-pixel specks
    return lab


def test_features_are_valid_qupath_annotations_with_matching_areas():
    lab = _raster()
    feats = list(label_features(_blocks(lab, 64), CLASSES, downsample=4.0, mpp=0.5))
    fc = json.loads(json.dumps(feature_collection(feats)))
    assert fc["type"] == "FeatureCollection"
    areas = {"benign": 0.0, "Gleason 4": 0.0}
    for f in fc["features"]:
        geom = shape(f["geometry"])
        assert geom.geom_type in ("Polygon", "MultiPolygon") and geom.is_valid
        props = f["properties"]
        assert props["objectType"] == "annotation" and props["isLocked"] is True
        assert set(props["classification"]) == {"name", "color"}
        areas[props["classification"]["name"]] += geom.area
    # level-0 pixels: raster area x D^2, within 2 % (specks dropped, corners cut)
    for value, name, _ in CLASSES:
        expect = (lab == value).sum() * 16.0
        assert abs(areas[name] - expect) / expect < 0.02, (name, areas[name], expect)
    # one feature per connected region: benign (one big, specks dropped), two Gleason 4
    names = [_name(f) for f in fc["features"]]
    assert names.count("benign") == 1 and names.count("Gleason 4") == 2
    g4 = [shape(f["geometry"]) for f in fc["features"] if "4" in _name(f)]
    assert sorted(len(p.interiors) for p in g4) == [0, 1]
    benign = next(shape(f["geometry"]) for f in fc["features"] if _name(f) == "benign")
    assert len(benign.interiors) == 1
    assert benign.bounds == (120.0, 80.0, 800.0, 480.0)  # level-0 pixels (D = 4)


def test_blocks_leave_no_seams():
    lab = _raster()
    kw = {"downsample": 1.0, "simplify_px": 0.0}  # unsimplified: the union must be exact
    whole = list(label_features([(0, 0, lab)], CLASSES, **kw))
    tiled = list(label_features(_blocks(lab, 37), CLASSES, **kw))
    assert len(whole) == len(tiled)
    for a, b in zip(whole, tiled, strict=True):
        ga, gb = shape(a["geometry"]), shape(b["geometry"])
        assert ga.symmetric_difference(gb).area < 1e-9


def test_offset_by_openslide_bounds():
    lab = np.zeros((10, 10), np.uint8)
    lab[2:6, 3:8] = 1
    (f,) = label_features([(0, 0, lab)], CLASSES, downsample=2.0, offset_xy=(100, 50))
    assert shape(f["geometry"]).bounds == (6 - 100, 4 - 50, 16 - 100, 12 - 50)


def test_invalid_bowtie_is_repaired():
    lab = np.zeros((6, 6), np.uint8)
    lab[1:3, 1:3] = 1
    lab[3:5, 3:5] = 1  # touching at one corner
    feats = list(label_features([(0, 0, lab)], CLASSES, downsample=1.0, min_area_px=1))
    geoms = [shape(f["geometry"]) for f in feats]
    assert all(g.is_valid for g in geoms)
    assert abs(sum(g.area for g in geoms) - 8) < 0.3


def test_empty_raster_gives_no_features():
    with LabelCanvas((50, 40), chunk=16) as canvas:
        feats = list(label_features(canvas.iter_blocks(16, overlap=1), CLASSES, downsample=8))
    assert feats == [] and feature_collection(feats) == {
        "type": "FeatureCollection",
        "features": [],
    }


def test_canvas_blocks_feed_the_polygoniser():
    lab = _raster()
    with LabelCanvas(lab.shape, chunk=32) as canvas:
        canvas.write(0, 0, lab)
        feats = list(label_features(canvas.iter_blocks(64, overlap=1), CLASSES, downsample=1.0))
    area = sum(shapely.area(shape(f["geometry"])) for f in feats if _name(f) == "benign")
    assert abs(area - (lab == 1).sum()) / (lab == 1).sum() < 0.02
