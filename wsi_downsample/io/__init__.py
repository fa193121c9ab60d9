"""Writers of wsi-seg outputs: pyramidal OME-TIFF label masks (and, beside them, overlays)."""

from wsi_downsample.io.mask_tiff import LabelTiffResult, write_label_tiff

__all__ = ["LabelTiffResult", "write_label_tiff"]
