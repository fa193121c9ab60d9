"""Writers of wsi-seg outputs: pyramidal OME-TIFF label masks, the canvas they are assembled
on, QuPath GeoJSON, preview PNGs and JSON sidecars."""

from wsi_downsample.io.canvas import LabelCanvas, TissueOwner, frame_shape
from wsi_downsample.io.geojson import feature_collection, label_features
from wsi_downsample.io.mask_tiff import LabelTiffResult, write_label_tiff
from wsi_downsample.io.preview import colour_labels, render_preview, write_preview
from wsi_downsample.io.sidecars import (
    OutputPaths,
    class_areas,
    classes_record,
    legend_metadata,
    output_paths,
    output_stem,
)

__all__ = [
    "LabelCanvas",
    "LabelTiffResult",
    "OutputPaths",
    "TissueOwner",
    "class_areas",
    "classes_record",
    "colour_labels",
    "feature_collection",
    "frame_shape",
    "label_features",
    "legend_metadata",
    "output_paths",
    "output_stem",
    "render_preview",
    "write_label_tiff",
    "write_preview",
]
